"""File types mriae reads and writes (shared by the readers and the header parser,
which must not import the readers)."""

MRIAE_SUFFIX = ".mriae"

NIFTI_SUFFIXES = (".nii.gz", ".nii")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES
