"""The DICOM attributes an .mriae file keeps of a series, with their value representations
(shared by mriae.io.dicom, which reads and writes them, and the header parser, which must
not import the readers).

Keys are SimpleITK's, ``gggg|eeee`` in lower-case hex. A series keeps only the attributes
listed here: the rest of each file (private tags, sequences, overlays) is not kept. The
geometry (Image Position and Orientation (Patient), Pixel Spacing, Rows, Columns) is not
among them: it is written from the image's affine and shape. SOP Instance UIDs are not
kept either: a written series gets new ones (docs/format.md, DICOM series).
"""

import math
import re
import struct

KEPT: dict[str, tuple[str, str]] = {
    # SOP common, general image
    "0008|0005": ("CS", "SpecificCharacterSet"),
    "0008|0008": ("CS", "ImageType"),
    "0008|0016": ("UI", "SOPClassUID"),
    "0008|0022": ("DA", "AcquisitionDate"),
    "0008|0023": ("DA", "ContentDate"),
    "0008|0032": ("TM", "AcquisitionTime"),
    "0008|0033": ("TM", "ContentTime"),
    "0020|0012": ("IS", "AcquisitionNumber"),
    "0020|0013": ("IS", "InstanceNumber"),
    # patient
    "0010|0010": ("PN", "PatientName"),
    "0010|0020": ("LO", "PatientID"),
    "0010|0030": ("DA", "PatientBirthDate"),
    "0010|0040": ("CS", "PatientSex"),
    "0010|1010": ("AS", "PatientAge"),
    "0010|1020": ("DS", "PatientSize"),
    "0010|1030": ("DS", "PatientWeight"),
    # study
    "0020|000d": ("UI", "StudyInstanceUID"),
    "0008|0020": ("DA", "StudyDate"),
    "0008|0030": ("TM", "StudyTime"),
    "0008|1030": ("LO", "StudyDescription"),
    "0020|0010": ("SH", "StudyID"),
    "0008|0050": ("SH", "AccessionNumber"),
    "0008|0090": ("PN", "ReferringPhysicianName"),
    # series, equipment
    "0020|000e": ("UI", "SeriesInstanceUID"),
    "0020|0011": ("IS", "SeriesNumber"),
    "0008|103e": ("LO", "SeriesDescription"),
    "0008|0060": ("CS", "Modality"),
    "0008|0021": ("DA", "SeriesDate"),
    "0008|0031": ("TM", "SeriesTime"),
    "0018|0015": ("CS", "BodyPartExamined"),
    "0018|1030": ("LO", "ProtocolName"),
    "0018|5100": ("CS", "PatientPosition"),
    "0008|0070": ("LO", "Manufacturer"),
    "0008|1090": ("LO", "ManufacturerModelName"),
    "0008|0080": ("LO", "InstitutionName"),
    "0008|1010": ("SH", "StationName"),
    "0018|1020": ("LO", "SoftwareVersions"),
    # frame of reference, plane
    "0020|0052": ("UI", "FrameOfReferenceUID"),
    "0020|1040": ("LO", "PositionReferenceIndicator"),
    "0018|0050": ("DS", "SliceThickness"),
    "0018|0088": ("DS", "SpacingBetweenSlices"),
    # pixels
    "0028|0004": ("CS", "PhotometricInterpretation"),
    "0028|0100": ("US", "BitsAllocated"),
    "0028|0101": ("US", "BitsStored"),
    "0028|0102": ("US", "HighBit"),
    "0028|0103": ("US", "PixelRepresentation"),
    "0028|1050": ("DS", "WindowCenter"),
    "0028|1051": ("DS", "WindowWidth"),
    "0028|1052": ("DS", "RescaleIntercept"),
    "0028|1053": ("DS", "RescaleSlope"),
    "0028|1054": ("LO", "RescaleType"),
    "0028|2110": ("CS", "LossyImageCompression"),
    # MR acquisition
    "0018|0020": ("CS", "ScanningSequence"),
    "0018|0021": ("CS", "SequenceVariant"),
    "0018|0022": ("CS", "ScanOptions"),
    "0018|0023": ("CS", "MRAcquisitionType"),
    "0018|0024": ("SH", "SequenceName"),
    "0018|0080": ("DS", "RepetitionTime"),
    "0018|0081": ("DS", "EchoTime"),
    "0018|0082": ("DS", "InversionTime"),
    "0018|0083": ("DS", "NumberOfAverages"),
    "0018|0084": ("DS", "ImagingFrequency"),
    "0018|0085": ("SH", "ImagedNucleus"),
    "0018|0086": ("IS", "EchoNumbers"),
    "0018|0087": ("DS", "MagneticFieldStrength"),
    "0018|0089": ("IS", "NumberOfPhaseEncodingSteps"),
    "0018|0091": ("IS", "EchoTrainLength"),
    "0018|0093": ("DS", "PercentSampling"),
    "0018|0094": ("DS", "PercentPhaseFieldOfView"),
    "0018|0095": ("DS", "PixelBandwidth"),
    "0018|1250": ("SH", "ReceiveCoilName"),
    "0018|1310": ("US", "AcquisitionMatrix"),
    "0018|1312": ("CS", "InPlanePhaseEncodingDirection"),
    "0018|1314": ("DS", "FlipAngle"),
}
"""Kept attributes: key → (value representation, keyword)."""

REQUIRED = ("0008|0016", "0028|0004", "0028|0100", "0028|0101", "0028|0102", "0028|0103")
"""Attributes every kept series has, the same in every slice (SOP Class UID, Photometric
Interpretation, Bits Allocated, Bits Stored, High Bit, Pixel Representation): the writer
needs them, and the parser checks the pixel ones against the image's dtype."""
RESCALE = ("0028|1053", "0028|1052")
"""Rescale Slope and Rescale Intercept: physical value = stored value × slope + intercept."""
PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2")
AXIS_LIMIT = 65535
"""Most columns, rows (US values in DICOM) and slices of a series mriae reads or writes: a
forged .mriae header cannot make ``--format dicom`` write more files than this."""
VALUE_LIMIT = 1024
"""Longest value kept (characters; DICOM's own limits are far lower, but for ST/LT texts)."""
UID = re.compile(r"(?:[0-9]+(?:\.[0-9]+)*)?")
"""A UID (digits and dots), or empty (type-2 attributes)."""
NUMBERS = re.compile(r"[0-9+\-.eE \\]*")
"""Characters of DS and IS values (decimal numbers, backslash-separated)."""
WORDS = re.compile(r"(?:[0-9]{1,5}(?:\\[0-9]{1,5})*)?")
"""A US value: unsigned 16-bit numbers, backslash-separated."""
TEXT_CONTROL = re.compile(r"[\x00-\x1a\x1c-\x1f\x7f]")
"""Control characters no kept text may hold (ESC, 0x1b, is allowed: ISO 2022 character sets use it)."""


def number(text: str | None, default: float = math.nan) -> float:
    """The decimal number ``text`` (``default`` if it is None or empty; NaN if it is no number)."""
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        return math.nan


def in_float32(value: float) -> float:
    """``value`` rounded to float32, as NIfTI stores ``scl_slope``/``scl_inter`` (±inf beyond
    its range, NaN kept)."""
    try:
        return struct.unpack("<f", struct.pack("<f", value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)


def usable_rescale(slope: float, intercept: float) -> bool:
    """True if a Rescale Slope and Intercept are finite in float32 and the slope is not 0
    there: what a NIfTI output can store (a float32 slope of 0 means "unscaled" to readers)."""
    slope, intercept = in_float32(slope), in_float32(intercept)
    return math.isfinite(slope) and math.isfinite(intercept) and slope != 0


def check_value(key: str, value: str) -> str | None:
    """What is wrong with ``value`` as the value of the kept attribute ``key`` (None if nothing)."""
    vr = KEPT[key][0]
    if len(value) > VALUE_LIMIT:
        return f"is longer than {VALUE_LIMIT} characters"
    if vr == "UI":
        valid = len(value) <= 64 and UID.fullmatch(value)
    elif vr in ("DS", "IS"):
        valid = NUMBERS.fullmatch(value)
    elif vr == "US":
        valid = WORDS.fullmatch(value) and all(int(part) < 1 << 16 for part in value.split("\\") if part)
    else:
        valid = not TEXT_CONTROL.search(value)
        try:
            value.encode("utf-8", "surrogateescape")  # the bytes the value was read from
        except UnicodeEncodeError:
            valid = False
    return None if valid else f"{value[:40]!r} is not a valid {vr} value"
