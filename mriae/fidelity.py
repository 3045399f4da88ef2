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
    """Exactly one of: ``quality`` (network level 1–8), ``max_error`` (every voxel within
    it, in the image's stored units), ``lossless``, ``psnr`` (at least this many dB)."""

    quality: int | None = DEFAULT_QUALITY
    max_error: float | None = None
    lossless: bool = False
    psnr: float | None = None

    @classmethod
    def of(cls, quality: int | None = None, max_error: float | None = None, lossless: bool = False,
           psnr: float | None = None) -> Fidelity:
        """The fidelity asked for by options of which at most one is set (none: the default
        quality); ValueError with a one-line reason otherwise."""
        chosen = [name for name, value in (("a quality level", quality), ("a maximum error", max_error),
                                           ("a PSNR", psnr)) if value is not None] + ["lossless"] * bool(lossless)
        if len(chosen) > 1:
            raise ValueError(f"ask for one of a quality level, a maximum error, a PSNR or lossless, not {' and '.join(chosen)}")
        if quality is not None and (isinstance(quality, bool) or quality not in QUALITIES):
            raise ValueError(f"quality must be {QUALITIES.start}–{QUALITIES.stop - 1}, got {quality}")
        if max_error is not None and not (math.isfinite(max_error) and max_error >= 0):
            raise ValueError(f"the maximum error must be a finite number ≥ 0, got {max_error}")
        if psnr is not None and not (math.isfinite(psnr) and PSNR_RANGE[0] <= psnr <= PSNR_RANGE[1]):
            raise ValueError(f"the PSNR must be {PSNR_RANGE[0]:g}–{PSNR_RANGE[1]:g} dB, got {psnr}")
        if max_error == 0:
            lossless, max_error = True, None
        if chosen:
            return cls(quality, None if max_error is None else float(max_error), bool(lossless),
                       None if psnr is None else float(psnr))
        return cls()

    @property
    def name(self) -> str:
        """Short name, as reports, logs and file names use it: ``q5`` (quality 5), ``e2``
        (maximum error 2), ``lossless``, ``40dB`` (PSNR ≥ 40 dB)."""
        if self.lossless:
            return "lossless"
        if self.max_error is not None:
            return f"e{self.max_error:g}"
        if self.psnr is not None:
            return f"{self.psnr:g}dB"
        return f"q{self.quality}"

    def __str__(self) -> str:
        if self.lossless:
            return "lossless"
        if self.max_error is not None:
            return f"max error {self.max_error:g}"
        if self.psnr is not None:
            return f"PSNR ≥ {self.psnr:g} dB"
        return f"quality {self.quality}"
