"""File types mriae reads and writes (shared by the readers and the header parser,
which must not import the readers)."""

import re
from typing import NamedTuple

MRIAE_SUFFIX = ".mriae"

NIFTI_SUFFIXES = (".nii.gz", ".nii")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""Names of weights a .mriae header may record (installed weights, or the stem of a weights file)."""


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
}
"""The words of ``--format``, one line each."""
