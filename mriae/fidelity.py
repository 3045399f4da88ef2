"""What a user asks of a compression: a quality level, a maximum error, lossless, or a PSNR.

One :class:`Fidelity` travels from every face (CLI, API, MONAI, bundle, batch) to
:func:`mriae.codec.compress_image`, which picks the coder: the network for quality levels, the
3D context coder for a maximum error or lossless, whichever file is smaller for a PSNR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_QUALITY = 5
QUALITIES = range(1, 9)
PSNR_RANGE = (10.0, 200.0)
"""PSNR targets accepted, in dB (above ~150 dB only lossless reaches them)."""


@dataclass(frozen=True)
class Fidelity:
    """At most one of: ``quality`` (network level 1–8), ``max_error`` (every voxel within
    it, in the image's stored units), ``lossless``, ``psnr`` (at least this many dB); none
    set means quality DEFAULT_QUALITY. Checked on construction (ValueError, one line)."""

    quality: int | None = None
    max_error: float | None = None
    lossless: bool = False
    psnr: float | None = None

    def __post_init__(self) -> None:
        chosen = [name for name, value in (("a quality level", self.quality), ("a maximum error", self.max_error),
                                           ("a PSNR", self.psnr)) if value is not None] + ["lossless"] * bool(self.lossless)
        if len(chosen) > 1:
            raise ValueError(f"ask for one of a quality level, a maximum error, a PSNR or lossless, not {' and '.join(chosen)}")
        if self.quality is not None and (isinstance(self.quality, bool) or self.quality not in QUALITIES):
            raise ValueError(f"quality must be {QUALITIES.start}–{QUALITIES.stop - 1}, got {self.quality}")
        if self.max_error is not None and not (math.isfinite(self.max_error) and self.max_error >= 0):
            raise ValueError(f"the maximum error must be a finite number ≥ 0, got {self.max_error}")
        if self.psnr is not None and not (math.isfinite(self.psnr) and PSNR_RANGE[0] <= self.psnr <= PSNR_RANGE[1]):
            raise ValueError(f"the PSNR must be {PSNR_RANGE[0]:g}–{PSNR_RANGE[1]:g} dB, got {self.psnr}")

    @classmethod
    def of(cls, quality: int | None = None, max_error: float | None = None, lossless: bool = False,
           psnr: float | None = None) -> Fidelity:
        """The fidelity asked for by options of which at most one is set (ValueError
        otherwise); a maximum error of 0 is lossless, none set is quality DEFAULT_QUALITY."""
        fidelity = cls(quality, None if max_error is None else float(max_error), bool(lossless),
                       None if psnr is None else float(psnr))
        if fidelity.max_error == 0:
            return cls(lossless=True)
        return fidelity if fidelity != cls() else cls(quality=DEFAULT_QUALITY)

    @property
    def level(self) -> int:
        """The network quality level this fidelity means when it is a quality level."""
        return DEFAULT_QUALITY if self.quality is None else self.quality

    @property
    def name(self) -> str:
        """Short name, as reports, logs and file names use it: ``q5`` (quality 5), ``e2``
        (maximum error 2), ``lossless``, ``40dB`` (PSNR ≥ 40 dB)."""
        return self._spelled(("lossless", "e{:g}", "{:g}dB", "q{}"))

    def __str__(self) -> str:
        return self._spelled(("lossless", "max error {:g}", "PSNR ≥ {:g} dB", "quality {}"))

    def _spelled(self, forms: tuple[str, str, str, str]) -> str:
        """The mode in one of ``forms`` (lossless, maximum error, PSNR, quality), its value filled in."""
        if self.lossless:
            return forms[0]
        if self.max_error is not None:
            return forms[1].format(self.max_error)
        if self.psnr is not None:
            return forms[2].format(self.psnr)
        return forms[3].format(self.level)
