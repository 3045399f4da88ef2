"""Rate–distortion benchmark: mriae at every quality level against SPERR 3D, JPEG 2000 and
JPEG XL (slice by slice) and lossless gzip / zstd / JPEG XL, on public MRI volumes.

Writes to --out: rd.csv (one row per volume × codec × setting: bits/voxel, PSNR, SSIM,
max abs error, encode/decode seconds), rd.png (RD curves, one panel per volume) and
bdrate.md (BD-rate tables and the rate each codec needs for 35 / 40 dB). The MNI152
template is a training volume: it is benchmarked but marked "train" and left out of the
validation averages.

    PYTHONPATH=. python benchmarks/rd.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from classical import all_settings

from mriae.evaluation import RDPoint, bd_rate, evaluate_mriae, read_csv, write_csv
from mriae.evaluation.bdrate import rate_at
from mriae.evaluation.plots import curves_of, rd_plot
from mriae.evaluation.report import measure

Loader = Callable[[], tuple[np.ndarray, np.ndarray]]
PSNR_LIMITS = (0.0, 60.0)
"""PSNR range of the points fitted for BD-rate: above 60 dB curves bend towards lossless."""


def nifti(path: Path, index: int | None = None) -> Loader:
    """Loader of a NIfTI file's voxels (as stored, native byte order; one volume of a 4D
    series if ``index`` is given; trailing unit axes dropped) and affine."""

    def load() -> tuple[np.ndarray, np.ndarray]:
        image = nib.load(path)
        array = np.asarray(image.dataobj)
        if index is not None:
            array = array[..., index]
        array = array.reshape(array.shape[:3]) if array.ndim > 3 and math.prod(array.shape[3:]) == 1 else array
        return array.astype(array.dtype.newbyteorder("=")), image.affine

    return load


def volumes() -> dict[str, tuple[str, Loader]]:
    """name → (split, loader) of the benchmark volumes, from installed packages."""
    import dipy

    from mriae.training.synthetic import TEMPLATES, template_dir

    nibabel_data = Path(nib.__file__).parent / "tests" / "data"
    dipy_data = Path(dipy.__file__).parent / "data" / "files"
    return {
        "mni152_t1_1mm": ("train", nifti(template_dir() / TEMPLATES["t1"])),
        "example4d_vol0": ("validation", nifti(nibabel_data / "example4d.nii.gz", 0)),
        "anatomical": ("validation", nifti(nibabel_data / "anatomical.nii")),
        "aniso_vox": ("validation", nifti(dipy_data / "aniso_vox.nii.gz")),
        "S0_10slices": ("validation", nifti(dipy_data / "S0_10slices.nii.gz")),
    }


def run_volume(name: str, split: str, load: Loader, codecs: tuple[str, ...], log: Callable[[str], None]) -> list[RDPoint]:
    array, affine = load()
    log(f"{name} ({split}): {array.shape} {array.dtype}, range {array.min()}..{array.max()}")
    points = []

    def report(point: RDPoint, *_: object) -> None:
        log(f"  {point.codec:>16} {point.setting:>9}: {point.bits_per_voxel:8.4f} bpv {point.psnr:7.2f} dB "
            f"SSIM {point.ssim:.4f}  enc {point.encode_s:6.2f} s  dec {point.decode_s:6.2f} s")

    if "mriae" in codecs:
        points += evaluate_mriae(array, affine, volume=name, split=split, on_point=report)
    for s in all_settings(array, tuple(c for c in codecs if c != "mriae")):
        points.append(measure(name, split, s.codec, s.setting, array, s.encode, s.decode))
        report(points[-1])
    return points


def fmt(value: float, spec: str = "+.1f", suffix: str = "%") -> str:
    return "n/a" if not math.isfinite(value) else f"{value:{spec}}{suffix}"


def bd_table(points: list[RDPoint], pairs: list[tuple[str, str]]) -> str:
    """Markdown BD-rate table (test vs anchor, per volume, plus the validation mean)."""
    by_volume: dict[str, list[RDPoint]] = {}
    for p in points:
        by_volume.setdefault(p.volume, []).append(p)
    lines = ["| volume | split | " + " | ".join(f"{t} vs {a}" for t, a in pairs) + " |",
             "|---|---|" + "---|" * len(pairs)]
    validation: list[list[float]] = [[] for _ in pairs]
    for volume, vpoints in by_volume.items():
        curves = curves_of(vpoints)
        split = vpoints[0].split
        row = []
        for i, (test, anchor) in enumerate(pairs):
            present = test in curves and anchor in curves
            value = bd_rate(*curves[anchor], *curves[test], psnr_limits=PSNR_LIMITS) if present else float("nan")
            row.append(fmt(value))
            if split == "validation" and math.isfinite(value):
                validation[i].append(value)
        lines.append(f"| {volume} | {split} | " + " | ".join(row) + " |")
    means = [fmt(float(np.mean(v))) + f" (n={len(v)})" if v else "n/a" for v in validation]
    lines.append("| **validation mean** | | " + " | ".join(means) + " |")
    return "\n".join(lines)


def rate_table(points: list[RDPoint], targets: tuple[float, ...] = (35.0, 40.0)) -> str:
    """Markdown table of the bits/voxel each codec needs for the target PSNRs, and the
    lossless sizes (compare with /work/shared/anchors.md)."""
    by_volume: dict[str, list[RDPoint]] = {}
    for p in points:
        by_volume.setdefault(p.volume, []).append(p)
    codecs = list(dict.fromkeys(p.codec for p in points if math.isfinite(p.psnr)))
    lossless = list(dict.fromkeys(p.codec for p in points if not math.isfinite(p.psnr) and p.codec not in codecs))
    head = " / ".join(f"{t:g}" for t in targets)
    lines = ["| volume | " + " | ".join(f"{c} {head} dB" for c in codecs) + " | " + " | ".join(lossless) + " |",
             "|---|" + "---|" * (len(codecs) + len(lossless))]
    for volume, vpoints in by_volume.items():
        curves = curves_of(vpoints)
        cells = [" / ".join(fmt(rate_at(*curves[c], t), ".3f", "") for t in targets) if c in curves else "n/a"
                 for c in codecs]
        cells += [next((f"{p.bits_per_voxel:.2f}" for p in vpoints if p.codec == c and not math.isfinite(p.psnr)), "n/a")
                  for c in lossless]
        lines.append(f"| {volume} ({vpoints[0].split}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=False).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "),
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    names = list(volumes())
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    parser.add_argument("--volumes", nargs="+", choices=names, default=names, help="volumes to run (default: all)")
    parser.add_argument("--from-csv", type=Path, help="redo the plot and tables from an rd.csv, measuring nothing")
    parser.add_argument("--codecs", nargs="+", choices=["mriae", "sperr", "jpeg2000", "jpegxl", "lossless"],
                        default=["mriae", "sperr", "jpeg2000", "jpegxl", "lossless"], help="codecs to run (default: all)")
    args = parser.parse_args()
    from mriae.models.weights import load_codec

    args.out.mkdir(parents=True, exist_ok=True)
    catalogue = volumes()
    start = time.perf_counter()
    points: list[RDPoint] = read_csv(args.from_csv) if args.from_csv else []
    for name in [] if args.from_csv else args.volumes:
        split, load = catalogue[name]
        points += run_volume(name, split, load, tuple(args.codecs), lambda line: print(line, flush=True))
    if not args.from_csv:
        write_csv(points, args.out / "rd.csv")
    grouped: dict[str, list[RDPoint]] = {}
    for p in points:
        grouped.setdefault(f"{p.volume} ({p.split})", []).append(p)
    rd_plot(grouped, args.out / "rd.png")
    pairs = [("mriae", "sperr-3d"), ("mriae", "jpeg2000-2d"), ("mriae", "jpegxl-2d"), ("sperr-3d", "jpeg2000-2d")]
    codec = load_codec()
    summary = "\n\n".join([
        (f"tables redone from {args.from_csv} at commit {commit()}" if args.from_csv else
         f"commit {commit()}, weights '{codec.name}' sha256 {codec.sha256[:16]}…, {time.perf_counter() - start:.0f} s"),
        f"BD-rate (negative: fewer bits than the anchor at equal PSNR; points with PSNR in "
        f"{PSNR_LIMITS[0]:g}–{PSNR_LIMITS[1]:g} dB fitted)\n\n" + bd_table(points, pairs),
        "bits/voxel needed for 35 / 40 dB, and lossless bits/voxel\n\n" + rate_table(points),
    ])
    (args.out / "bdrate.md").write_text(summary + "\n")
    print("\n" + summary)
    written = [args.out / name for name in ("rd.png", "bdrate.md")] + ([] if args.from_csv else [args.out / "rd.csv"])
    print(f"\nwrote {', '.join(map(str, written))}")
    print(f"({len(points)} points; BD-rate n/a: fewer than 4 points in range or no common PSNR interval)")


if __name__ == "__main__":
    main()
