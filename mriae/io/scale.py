"""Scaled images written in another format than their own: one rule for every kind of source.

Three kinds of source record a scale that maps the stored values to physical ones: NIfTI
(``scl_slope``/``scl_inter``, also in the NIfTI header made for MINC, PAR/REC, AFNI and ECAT),
NIfTI and Analyze pairs (the same, or SPM2's scale) and DICOM (Rescale Slope and Intercept,
per slice). Written in its own format, an image keeps its header and so its scale. Written in
another, the values its readers see (nibabel's ``get_fdata()``, SimpleITK's array) are the
physical values nibabel computes from the source, ``stored × slope + intercept`` in float64:

* a NIfTI or pair output gets the stored values and the scale in its fresh header, when one
  scale serves the whole image and float32 (what NIfTI-1 stores) holds it exactly;
* otherwise (a scale per slice, one float32 cannot hold, or NRRD, MetaImage and MGH, which
  have no scale) the physical values are written: float32 when that is exact for every value
  the stored type can hold, else float64; MGH, which holds float32 at most, is refused then.

:func:`written_as` says so from the header alone (before any decoding); :func:`as_written`
makes the image to write.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mriae.formats import ANALYZE_SUFFIXES, ITK_SUFFIXES, MGH_SUFFIXES, NIFTI_SUFFIXES
from mriae.io.image import Image, ImageError, _nifti_header, fresh_nifti_source

OWN_SUFFIXES = {"nifti": NIFTI_SUFFIXES, "pair": ANALYZE_SUFFIXES, "mgh": MGH_SUFFIXES, "itk": ITK_SUFFIXES}
"""Source kind → the suffixes whose writer keeps its header (and so its scale)."""
FLOAT32_SIGNIFICAND = 1 << 24
FLOAT32_EXPONENTS = range(-149, 105)
"""float32 holds n × 2**e exactly for every integer |n| < 2**24 and e in this range."""


class Written(NamedTuple):
    """How an image is written to a file of some format: its voxel type, the (slope,
    intercept) its fresh NIfTI/pair header carries, and whether its voxels are the physical
    values (stored × slope + intercept) instead of the stored ones."""

    dtype: np.dtype
    scale: tuple[float, float] | None = None
    physical: bool = False

    @property
    def note(self) -> str:
        """What a result line says of it ('' for the stored values)."""
        return "physical values: stored × slope + intercept" if self.physical else ""


def scales(source: dict) -> np.ndarray | None:
    """The (slope, intercept) that map the stored values of the image ``source`` describes to
    its physical ones, as its readers apply them: one row per slice (DICOM) or one for the
    whole image (NIfTI, pair); None when it is unscaled. ImageError for a header whose scale
    its readers refuse."""
    kind = source.get("kind")
    if kind == "dicom":
        from mriae.io.dicom import rescales

        found = rescales(source)
    elif kind in ("nifti", "pair"):
        found = np.asarray([_header_scale(source)], dtype=np.float64)
    else:
        return None
    return None if (found == (1.0, 0.0)).all() else found


def _header_scale(source: dict) -> tuple[float, float]:
    """(slope, intercept) of a ``nifti`` or ``pair`` record's header, by nibabel's rules:
    NIfTI's ``scl_slope``/``scl_inter`` (a slope of 0 or not finite: unscaled), SPM2's for an
    Analyze pair (nibabel reads every Analyze header as SPM2's)."""
    from nibabel.spatialimages import HeaderDataError
    from nibabel.spm2analyze import Spm2AnalyzeHeader

    from mriae.io.nibabel_formats import PAIR_MAGIC

    header, raw, size = _nifti_header(source["header"])
    if source["kind"] == "pair" and size == 348 and raw[344:348] not in PAIR_MAGIC:
        header = Spm2AnalyzeHeader(raw[:348], endianness=header.endianness, check=False)
    try:
        slope, inter = header.get_slope_inter()
    except HeaderDataError as error:
        raise ImageError(f"the recorded header's scale is unusable ({error})") from error
    return (1.0, 0.0) if slope is None else (float(slope), float(inter or 0.0))


def written_as(source: dict, dtype: np.dtype, suffix: str) -> Written:
    """How an image of ``source`` (its original header) and stored ``dtype`` is written to a
    file of ``suffix`` (see the module). ImageError, before anything is decoded, when that
    format cannot hold its physical values (MGH needing float64)."""
    dtype = np.dtype(np.uint8) if dtype == np.bool_ else np.dtype(dtype)
    found = None if _keeps_header(source, suffix) else scales(source)
    if found is None:
        return Written(dtype)
    pairs = [(float(slope), float(inter)) for slope, inter in np.unique(found, axis=0)]
    with np.errstate(over="ignore"):  # a slope beyond float32 is no float32: not a warning on stderr
        one_float32_scale = len(pairs) == 1 and np.array_equal(np.float32(pairs[0]), pairs[0])
    if one_float32_scale and suffix in NIFTI_SUFFIXES + ANALYZE_SUFFIXES:
        return Written(dtype, pairs[0])
    if all(_float32_holds(dtype, slope, inter) for slope, inter in pairs):
        return Written(np.dtype(np.float32), physical=True)
    if suffix in MGH_SUFFIXES:
        raise ImageError(f"MGH holds float32 voxels at most, and not every physical value of this image (stored "
                         f"{dtype.name} × slope + intercept) is a float32: write NIfTI (.nii.gz), NRRD or MetaImage")
    return Written(np.dtype(np.float64), physical=True)


def _keeps_header(source: dict, suffix: str) -> bool:
    """True if the writer of ``suffix`` keeps the header ``source`` records (its own format)."""
    return suffix in OWN_SUFFIXES.get(source.get("kind"), ())


def _float32_holds(dtype: np.dtype, slope: float, inter: float) -> bool:
    """True if ``v × slope + inter`` is a float32 for every value ``v`` of the integer type
    ``dtype`` (then float64 arithmetic, the readers', computes it exactly too); False for a
    float type, whose values give no such guarantee."""
    if dtype.kind not in "iu":
        return False
    (a, p), (b, q) = slope.as_integer_ratio(), inter.as_integer_ratio()  # p, q: powers of two
    denominator = max(p, q)
    a, b = a * (denominator // p), b * (denominator // q)  # v × slope + inter = (v·a + b) / denominator
    twos = a & -a if b == 0 else min(a & -a, b & -b)  # the power of two that divides both
    values = np.iinfo(dtype)
    significand = max(-int(values.min), int(values.max)) * abs(a // twos) + abs(b // twos)
    exponent = twos.bit_length() - denominator.bit_length()
    return significand < FLOAT32_SIGNIFICAND and exponent in FLOAT32_EXPONENTS


def as_written(image: Image, suffix: str) -> Image:
    """``image`` as it is written to a file of ``suffix`` (:func:`written_as`): itself in its
    own format; else with a fresh header carrying its scale, or its physical values, or its
    stored ones when unscaled. ImageError for physical values beyond float64."""
    if _keeps_header(image.source, suffix):
        return image
    written = written_as(image.source, image.array.dtype, suffix)
    plain = Image(image.array, image.affine, suffix, {})
    if written.scale is not None:
        if suffix in ANALYZE_SUFFIXES:
            from mriae.io.nibabel_formats import fresh_pair_source

            return Image(image.array, image.affine, suffix, fresh_pair_source(plain, written.scale))
        return Image(image.array, image.affine, suffix, fresh_nifti_source(plain, written.scale))
    if not written.physical:
        return plain
    found = scales(image.source)
    with np.errstate(over="ignore", invalid="ignore"):  # refused below, not warned about on stderr
        physical = np.asarray(image.array, dtype=np.float64) * found[:, 0] + found[:, 1]
    if not np.isfinite(physical).all():
        raise ImageError("the physical values (stored × slope + intercept) are beyond float64")
    return Image(physical.astype(written.dtype, copy=False), image.affine, suffix, {})
