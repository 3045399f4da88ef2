"""Formats survey: which of the files nibabel, dipy and nilearn ship mriae compresses.

Walks the data folders of the three installed packages (nibabel's ``*/tests/data``, dipy's
``data/files``, nilearn's ``*/data``), skips what is plainly no image (code, text, tables,
numpy arrays, pickles, archives), and tries ``mriae.io.read_image`` on the rest. Each file
read is compressed losslessly and decoded: its voxels must come back bit for bit, and the file
a decode writes (its own format, or NIfTI for formats nibabel cannot write) must read back in
nibabel with the affine and values nibabel reads from the original (values to float32
precision where the original is scaled). Prints one line per file with --verbose, then the
counts: compressed, and refused by reason.

    python benchmarks/formats_survey.py [--verbose]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

import mriae
from mriae.formats import restored_suffix
from mriae.io import ImageError, read_image
from mriae.io.image import file_stem

NOT_IMAGES = (".py", ".pyc", ".txt", ".csv", ".tsv", ".json", ".md", ".rst", ".sh", ".m", ".npy", ".npz", ".pkl",
              ".pkl.gz", ".zip", ".tar.gz", ".tar.bz2", ".bval", ".bvec", ".bvals.npy", ".log.gz", ".dat", ".bin",
              ".bin.gz", ".gitignore", ".nc")
"""Files that are plainly no image: not counted."""
REASONS = [  # (category, pattern of the one-line error)
    ("DICOM (not read yet)", r"\.dcm(\.gz)?: unsupported file type"),
    ("CIFTI-2", r"CIFTI-2"),
    ("GIFTI surface", r"GIFTI"),
    ("streamlines", r"streamlines"),
    ("FreeSurfer surface file", r"FreeSurfer surface"),
    ("voxel file of a pair (its header is counted)", r"the voxel file of"),
    ("header whose voxel file is not shipped", r"its voxel file .* is missing"),
    ("NaN or infinite voxels", r"NaN or infinite"),
    ("nibabel cannot read it (test file of a broken header)", r"cannot read image"),
    ("unknown file type", r"unsupported file type"),
]


def data_folders() -> list[Path]:
    """The data folders of nibabel, dipy and nilearn, as installed."""
    import dipy
    import nibabel
    import nilearn

    folders = [p for p in Path(nibabel.__file__).parent.rglob("data") if p.parent.name == "tests"]
    folders.append(Path(dipy.__file__).parent / "data" / "files")
    folders += [p for p in Path(nilearn.__file__).parent.rglob("data") if p.is_dir()]
    return sorted(folder for folder in folders if folder.is_dir())


def candidates() -> list[Path]:
    """Every file of the data folders that may be an image."""
    files = {file for folder in data_folders() for file in folder.rglob("*") if file.is_file()}
    return sorted(f for f in files if "__pycache__" not in f.parts and not f.name.lower().endswith(NOT_IMAGES))


def nibabel_reading(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """nibabel's values (float64) and affine of ``path``, spatial axes first."""
    import nibabel as nib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = nib.ecat.load(path) if path.suffix.lower() == ".v" else nib.load(path)
        values = np.asarray(loaded.dataobj, dtype=np.float64)
    if path.suffix.lower() == ".mnc" and values.ndim > 3:  # MINC stores time first
        names = list(loaded.dataobj.minc_file._dim_names)
        spatial = [names.index(name) for name in loaded.dataobj.minc_file._spatial_dims]
        values = values.transpose(spatial + [axis for axis in range(values.ndim) if axis not in spatial])
    return values, np.asarray(loaded.affine)


def round_trip(path: Path, scratch: Path) -> str:
    """Compress ``path`` losslessly, decode it to its default output and check it; a note on
    what came back (an AssertionError if anything differs)."""
    import nibabel as nib

    image = read_image(path)
    data, stats = mriae.compress(path, lossless=True)
    suffix, note = restored_suffix(image.suffix)
    target = scratch / (file_stem(path) + suffix)
    decoded = mriae.decompress(data, target, force=True)
    assert decoded.array.dtype == image.array.dtype and np.array_equal(decoded.array, image.array), "voxels differ"
    values, affine = nibabel_reading(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = nib.load(target)
        restored = back.get_fdata()
    assert np.allclose(back.affine, affine, rtol=0, atol=1e-4), "affine differs"
    assert restored.shape == values.shape, f"shape {restored.shape} != {values.shape}"
    scale = np.abs(values).max() or 1.0
    error = float(np.abs(restored - values).max() / scale)
    assert error <= 2**-23, f"values differ by {error:.2g} of their range"
    exact = "exact" if error == 0 else f"within {error:.1g} of the largest value"
    return f"{image.suffix} → {suffix}, {stats.ratio:.2f}×, values {exact}" + (f" ({note})" if note else "")


def category(message: str) -> str:
    return next((name for name, pattern in REASONS if re.search(pattern, message)), "other: " + message)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="One line per file.")
    args = parser.parse_args()
    files = candidates()
    outcomes: Counter[str] = Counter()
    by_format: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as scratch:
        for path in files:
            try:
                line = round_trip(path, Path(scratch))
                outcomes["compressed (lossless round trip checked)"] += 1
                by_format[line.split(" ")[0]] += 1
            except ImageError as error:
                line = str(error).replace(str(path.parent) + "/", "")
                outcomes[category(line)] += 1
            if args.verbose:
                print(f"{path.name}: {line}")
    print(f"\n{len(files)} files that may be images in the data folders of nibabel, dipy and nilearn\n")
    print("| outcome | files |\n|---|---|")
    for outcome, count in outcomes.most_common():
        print(f"| {outcome} | {count} |")
    print("\n| compressed, by format | files |\n|---|---|")
    for suffix, count in by_format.most_common():
        print(f"| {suffix} | {count} |")


if __name__ == "__main__":
    main()
