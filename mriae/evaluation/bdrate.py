"""Bjøntegaard delta rate (VCEG-M33): the average rate difference between two RD curves
at equal quality.

Each curve's log-rate is fitted as a cubic polynomial of PSNR; the fits are integrated
over the PSNR interval both curves cover, and the mean log-rate difference is turned
into a percentage. This is the classic form used by JVET's and CompressAI's tools.
Negative means the test codec needs fewer bits than the anchor for the same PSNR.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _curve(
    rates: Sequence[float], psnrs: Sequence[float], limits: tuple[float, float] = (-np.inf, np.inf)
) -> tuple[np.ndarray, np.ndarray]:
    """(PSNR, log rate) of the finite, positive-rate points within ``limits``, sorted by PSNR."""
    r = np.asarray(rates, dtype=np.float64)
    p = np.asarray(psnrs, dtype=np.float64)
    keep = np.isfinite(p) & np.isfinite(r) & (r > 0) & (p >= limits[0]) & (p <= limits[1])
    order = np.argsort(p[keep])
    return p[keep][order], np.log(r[keep][order])


def bd_rate(
    anchor_rates: Sequence[float],
    anchor_psnrs: Sequence[float],
    test_rates: Sequence[float],
    test_psnrs: Sequence[float],
    psnr_limits: tuple[float, float] = (-np.inf, np.inf),
    window: tuple[float, float] = (-np.inf, np.inf),
) -> float:
    """BD-rate of the test curve against the anchor, in percent; NaN if either curve has
    fewer than 4 usable points or the curves share no PSNR interval.

    Only points with PSNR within ``psnr_limits`` are fitted: near-lossless points (SPERR
    reaches ~100 dB on 8-bit data) would otherwise bend the cubic over the range that matters.
    The mean difference is taken over :func:`bd_interval` (the PSNRs both curves reach,
    within ``window``: e.g. 30–50 dB, fitted on every point up to 60 dB).
    """
    p1, r1 = _curve(anchor_rates, anchor_psnrs, psnr_limits)
    p2, r2 = _curve(test_rates, test_psnrs, psnr_limits)
    low, high = bd_interval(anchor_psnrs, test_psnrs, psnr_limits, window)
    if len(p1) < 4 or len(p2) < 4 or not high > low:
        return float("nan")
    fit1, fit2 = np.polyint(np.polyfit(p1, r1, 3)), np.polyint(np.polyfit(p2, r2, 3))
    mean1 = (np.polyval(fit1, high) - np.polyval(fit1, low)) / (high - low)
    mean2 = (np.polyval(fit2, high) - np.polyval(fit2, low)) / (high - low)
    return float((np.exp(mean2 - mean1) - 1) * 100)


def bd_interval(anchor_psnrs: Sequence[float], test_psnrs: Sequence[float],
                psnr_limits: tuple[float, float] = (-np.inf, np.inf),
                window: tuple[float, float] = (-np.inf, np.inf)) -> tuple[float, float]:
    """(low, high): the PSNRs of the fitted points of both curves reach, within ``window``."""
    anchor = [p for p in anchor_psnrs if np.isfinite(p) and psnr_limits[0] <= p <= psnr_limits[1]]
    test = [p for p in test_psnrs if np.isfinite(p) and psnr_limits[0] <= p <= psnr_limits[1]]
    if not anchor or not test:
        return float("nan"), float("nan")
    return float(max(min(anchor), min(test), window[0])), float(min(max(anchor), max(test), window[1]))


def rate_at(rates: Sequence[float], psnrs: Sequence[float], target: float) -> float:
    """Rate needed for ``target`` PSNR, interpolated linearly in (PSNR, log rate) between
    measured points; NaN outside the measured PSNR range."""
    p, r = _curve(rates, psnrs)
    p, first = np.unique(p, return_index=True)
    if len(p) == 0 or not p[0] <= target <= p[-1]:
        return float("nan")
    return float(np.exp(np.interp(target, p, r[first])))
