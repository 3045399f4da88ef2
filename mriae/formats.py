"""File types mriae reads and writes (shared by the readers and the header parser,
which must not import the readers)."""

import re

MRIAE_SUFFIX = ".mriae"

NIFTI_SUFFIXES = (".nii.gz", ".nii")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""Names of weights a .mriae header may record (installed weights, or the stem of a weights file)."""
