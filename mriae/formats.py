"""File types mriae reads and writes (shared by the readers and the header parser,
which must not import the readers): from a file name alone, whether it is an image mriae
reads, what a decode writes for it, and why a known file type is not read."""

import re
from pathlib import PurePath
from typing import NamedTuple

MRIAE_SUFFIX = ".mriae"

NIFTI_SUFFIXES = (".nii.gz", ".nii")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
MGH_SUFFIXES = (".mgz", ".mgh")
ANALYZE_SUFFIXES = (".hdr",)
"""NIfTI-1/NIfTI-2 pairs and Analyze 7.5 (SPM) images: the header file, its voxels in NAME.img."""
MGH_HEADER_BYTES = 284
"""An MGH header: 90 bytes of fields, then zero padding; the voxels follow (big-endian, Fortran order)."""
MGH_DTYPES = {0: ">u1", 1: ">i4", 3: ">f4", 4: ">i2", 10: ">u2"}
"""MGH type codes and their voxel types."""
READ_ONLY = {".mnc": "MINC", ".par": "PAR/REC", ".head": "AFNI", ".v": "ECAT"}
"""Formats nibabel reads but cannot write (suffix: name): decoded as NIfTI."""
WRITTEN_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES + MGH_SUFFIXES + ANALYZE_SUFFIXES
"""Image types a decode writes (.nhdr before .hdr: a suffix is the first of these a name ends with)."""
SUFFIXES = WRITTEN_SUFFIXES + tuple(READ_ONLY)
"""Image types mriae reads (and a .mriae header may record), in lower case."""

DATA_FILES = {".img": (".hdr", "an Analyze/NIfTI pair"), ".brik": (".HEAD", "an AFNI dataset"),
              ".brik.gz": (".HEAD", "an AFNI dataset"), ".rec": (".PAR", "a PAR/REC pair")}
"""Voxel files read through their header (suffix: the header's suffix, what they belong to)."""
CIFTI_SUFFIXES = tuple(f".{kind}.nii" for kind in (
    "dconn", "dtseries", "dscalar", "dlabel", "dpconn", "pconnseries", "pconnscalar", "pconn", "ptseries",
    "pscalar", "pdconn", "plabel", "dfan", "dfibersamp", "dfansamp", "fibertemp"))
CIFTI_REFUSAL = "CIFTI-2 (surface/grayordinate data) is not supported"
NOT_VOLUMES = {
    **{suffix: "GIFTI surface data is not supported (mriae codes volumes)" for suffix in (".gii", ".gii.gz", ".gii.bz2")},
    **{suffix: "streamlines (tractography) are not supported (mriae codes volumes)"
       for suffix in (".trk", ".tck", ".trx")},
    **{suffix: "FreeSurfer surface files are not supported (mriae codes volumes)"
       for suffix in (".annot", ".label", ".white", ".pial", ".inflated", ".sphere", ".curv", ".sulc", ".thickness")},
}
"""Known file types that hold no volume, and why they are refused."""

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""Names of weights a .mriae header may record (installed weights, or the stem of a weights file)."""


def image_suffix(path: str | PurePath) -> str:
    """The image suffix (lower case, one of :data:`SUFFIXES`) of ``path``'s name; '' if none."""
    name = PurePath(path).name.lower()
    if name.endswith(CIFTI_SUFFIXES):
        return ""
    return next((suffix for suffix in SUFFIXES if name.endswith(suffix)), "")


def refusal(path: str | PurePath) -> str | None:
    """Why a file of this name is not read, for a known type that is not an image mriae reads
    (CIFTI-2, surfaces, streamlines, the voxel file of a pair); None for one it reads or does
    not know."""
    name = PurePath(path).name.lower()
    if name.endswith(CIFTI_SUFFIXES):
        return CIFTI_REFUSAL
    for suffix, (header, owner) in DATA_FILES.items():
        if name.endswith(suffix):
            return f"the voxel file of {owner}: give its header ({header})"
    return next((reason for suffix, reason in NOT_VOLUMES.items() if name.endswith(suffix)), None)


def restored_suffix(suffix: str) -> tuple[str, str]:
    """The type a decode writes by default for an image read from a ``suffix`` file, and a
    note when it is not that type (formats nibabel cannot write come back as NIfTI)."""
    if suffix in READ_ONLY:
        return ".nii.gz", f"written as NIfTI: nibabel cannot write {READ_ONLY[suffix]}"
    return suffix, ""


def cannot_write(path: str | PurePath) -> str | None:
    """Why a decode cannot write a file of this name (None if it can)."""
    suffix = image_suffix(path)
    if suffix in READ_ONLY:
        return f"nibabel cannot write {READ_ONLY[suffix]} (write {WRITTEN_SUFFIXES[0]} or {WRITTEN_SUFFIXES[1]} instead)"
    if not suffix:
        return f"unsupported output type (use {', '.join(WRITTEN_SUFFIXES[:-1])} or {WRITTEN_SUFFIXES[-1]})"
    return None


class OutputFormat(NamedTuple):
    """A format ``mriae decompress --format WORD`` writes: the suffix its file takes, and
    whether it is one file (which can go to stdout) rather than a header and a data file."""

    suffix: str
    single_file: bool


OUTPUT_FORMATS = {
    "nii": OutputFormat(".nii", True),
    "nii.gz": OutputFormat(".nii.gz", True),
    "nrrd": OutputFormat(".nrrd", True),
    "nhdr": OutputFormat(".nhdr", False),
    "mha": OutputFormat(".mha", True),
    "mhd": OutputFormat(".mhd", False),
    "mgz": OutputFormat(".mgz", True),
    "mgh": OutputFormat(".mgh", True),
    "hdr": OutputFormat(".hdr", False),
    "dicom": OutputFormat("", False),
}
"""The words of ``--format``, one line each (dicom: a folder, one file per slice)."""
