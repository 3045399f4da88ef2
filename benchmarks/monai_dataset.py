"""A MONAI Dataset stored as .nii.gz vs .mriae: total disk size and load time.

Builds N volumes derived from ``sample_data/mni152_t1_2mm.nii.gz`` (99×117×95): each is the
template scaled to int16 [0, 1000] with a seeded random gamma, a smooth multiplicative bias
field and Rician-like noise (σ = 1 % of the range), written as .nii.gz (nibabel, default gzip
level) and compressed with ``mriae.monai.Compress`` at the given quality. Then it
times one pass over ``monai.data.Dataset`` with ``LoadImaged`` (NibabelReader for .nii.gz,
``MriaeReader`` for .mriae) + ``EnsureChannelFirstd``, best of ``--repeat`` passes.

    python benchmarks/monai_dataset.py [--count 12] [--quality 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.data import Dataset
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from mriae.codec import psnr
from mriae.monai import Compress, MriaeReader

SOURCE = Path(__file__).resolve().parents[1] / "sample_data" / "mni152_t1_2mm.nii.gz"


def make_volumes(folder: Path, count: int) -> list[Path]:
    template = nib.load(SOURCE)
    base = np.asarray(template.dataobj, dtype=np.float64) / 255.0
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in base.shape], indexing="ij")
    paths = []
    for index in range(count):
        rng = np.random.default_rng(index)
        gamma = rng.uniform(0.8, 1.25)
        bias = 1 + sum(rng.uniform(-0.1, 0.1) * g for g in grid)
        volume = (base**gamma) * bias
        noisy = np.hypot(volume + rng.normal(0, 0.01, base.shape), rng.normal(0, 0.01, base.shape))
        array = np.clip(np.rint(noisy * 1000), 0, 32767).astype(np.int16)
        path = folder / f"subject{index:02d}.nii.gz"
        nib.save(nib.Nifti1Image(array, template.affine), path)
        paths.append(path)
    return paths


def load_time(files: list[Path], reader, repeat: int) -> float:
    transform = Compose([LoadImaged("image", reader=reader, image_only=True), EnsureChannelFirstd("image")])
    best = float("inf")
    for _ in range(repeat):
        dataset = Dataset([{"image": str(p)} for p in files], transform=transform)
        start = time.perf_counter()
        for index in range(len(dataset)):
            dataset[index]
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--quality", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        nifti = make_volumes(folder, args.count)
        compress = Compress(quality=args.quality)
        coded, qualities = [], []
        start = time.perf_counter()
        for path in nifti:
            data, stats = compress.compress(str(path))
            target = path.with_name(path.name.replace(".nii.gz", ".mriae"))
            target.write_bytes(data)
            coded.append(target)
            qualities.append(stats.psnr)
        compress_seconds = time.perf_counter() - start
        nifti_bytes = sum(p.stat().st_size for p in nifti)
        mriae_bytes = sum(p.stat().st_size for p in coded)
        nifti_seconds = load_time(nifti, "NibabelReader", args.repeat)
        mriae_seconds = load_time(coded, MriaeReader(), args.repeat)
        loaded = Compose([LoadImaged("image", reader=MriaeReader(), image_only=True)])({"image": str(coded[0])})
        reference = np.asarray(nib.load(nifti[0]).dataobj)
        assert np.array_equal(loaded["image"].affine.numpy(), nib.load(nifti[0]).affine)
        voxels = reference.size * args.count
        print(f"{args.count} volumes 99×117×95 int16, quality {args.quality}; "
              f"mean PSNR {np.mean(qualities):.2f} dB (first re-checked: {psnr(reference, loaded['image'].numpy()):.2f})")
        print(f"compressing all: {compress_seconds:.1f} s")
        print("| storage | files | total size | bits/voxel | load time (one pass, best of "
              f"{args.repeat}) | per volume |")
        print("|---|---|---|---|---|---|")
        for name, size, seconds in ((".nii.gz", nifti_bytes, nifti_seconds), (".mriae", mriae_bytes, mriae_seconds)):
            print(f"| {name} | {args.count} | {size / 1e6:.2f} MB | {size * 8 / voxels:.3f} | {seconds:.2f} s | "
                  f"{seconds / args.count * 1000:.0f} ms |")
        print(f"size ratio .nii.gz/.mriae: {nifti_bytes / mriae_bytes:.1f}×")


if __name__ == "__main__":
    main()
