"""The benchmark volumes: public MRI volumes shipped with installed packages.

Kept free of torch (numpy and nibabel only) so that the per-codec child processes of
``fidelity.py`` measure a classical codec's memory without the network's libraries loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import datacache
import nibabel as nib
import numpy as np


@dataclass(frozen=True)
class Source:
    """One volume of a NIfTI (or PAR/REC) file: its voxels as stored (native byte order;
    one volume of a 4D series if ``index`` is given; trailing unit axes dropped) and affine.
    ``unscaled``: the stored integers, without the file's intensity scaling (PAR/REC).
    ``fetch``: for a file fetched into the cache, the command that fetches it (named in the
    error if the file is missing)."""

    path: str
    index: int | None = None
    unscaled: bool = False
    fetch: str | None = None

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        if self.fetch is not None and not Path(self.path).exists():
            raise FileNotFoundError(f"{self.path} is not in the cache: fetch it with `{self.fetch}`")
        image = nib.load(self.path)
        array = np.asarray(image.dataobj.get_unscaled() if self.unscaled else image.dataobj)
        if self.index is not None:
            array = array[..., self.index]
        array = array.reshape(array.shape[:3]) if array.ndim > 3 and math.prod(array.shape[3:]) == 1 else array
        return array.astype(array.dtype.newbyteorder("=")), image.affine


SKULL_ON = "skull-on"
OTHER = "other"
GROUPS = {SKULL_ON: "skull-on", OTHER: "others"}
"""The validation groups (issue 13), each with its own mean in the tables, in table order →
their title there: the skull-on heads, and every other validation volume."""


@dataclass(frozen=True)
class Volume:
    """A benchmark volume: ``split`` "train" (seen in training: reported, never in a
    validation mean) or "validation"; its ``source``; and its validation ``group`` (one of
    :data:`GROUPS`)."""

    split: str
    source: Source
    group: str = OTHER


def nifti(path: Path, index: int | None = None, unscaled: bool = False) -> Source:
    """Loader of a NIfTI (or PAR/REC) file's voxels and affine (see :class:`Source`)."""
    return Source(str(path), index, unscaled)


def validation_heads(cache: str | Path | None = None) -> dict[str, Volume]:
    """name → volume of the skull-on validation heads of issue 13 (group :data:`SKULL_ON`), read
    from the cache (``datacache.py``), whether fetched or not: a loader of a head that is not in
    the cache raises FileNotFoundError naming the command that fetches it. Never used for
    training or calibration."""
    command = datacache.FETCH_COMMAND + (f" --cache {cache}" if cache else "")
    return {name: Volume("validation", Source(str(datacache.validation_path(name, cache)), fetch=command), SKULL_ON)
            for name in datacache.VALIDATION_HEADS}


def volumes() -> dict[str, Volume]:
    """name → volume of the benchmarks, from installed packages, plus the validation heads
    that have been fetched into the cache (so that a fresh clone runs offline). The MNI152
    template was used in training ("train"); the others are validation volumes, the heads in
    group :data:`SKULL_ON`, the rest in :data:`OTHER`."""
    import dipy
    import nilearn.datasets

    template = Path(nilearn.datasets.__file__).parent / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    nibabel_data = Path(nib.__file__).parent / "tests" / "data"
    dipy_data = Path(dipy.__file__).parent / "data" / "files"
    return {
        "mni152_t1_1mm": Volume("train", nifti(template)),
        "example4d_vol0": Volume("validation", nifti(nibabel_data / "example4d.nii.gz", 0)),
        "phantom_epi_vol0": Volume("validation", nifti(nibabel_data / "phantom_EPI_asc_CLEAR_2_1.PAR", 0, unscaled=True)),
        "anatomical": Volume("validation", nifti(nibabel_data / "anatomical.nii")),
        "aniso_vox": Volume("validation", nifti(dipy_data / "aniso_vox.nii.gz")),
        "S0_10slices": Volume("validation", nifti(dipy_data / "S0_10slices.nii.gz")),
    } | {name: volume for name, volume in validation_heads().items() if Path(volume.source.path).exists()}


def groups() -> dict[str, str]:
    """name → validation group of every benchmark volume, the heads included whether fetched
    or not (for tables redone from a CSV)."""
    return {name: volume.group for name, volume in (validation_heads() | volumes()).items()}
