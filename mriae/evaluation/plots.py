"""Figures (matplotlib, Agg backend): RD curves and central slices with the error map.

Figures have fixed pixel sizes (no tight bounding box), so reports are comparable.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mriae.evaluation.report import RDPoint

RD_SIZE = (8.0, 6.0)  # inches, at DPI → 800×600 pixels per panel
SLICES_SIZE = (9.0, 9.0)  # → 900×900 pixels
MAP_SIZE = (14.0, 11.0)  # → 1400×1100 pixels
OUTLINE_COLOURS = ("tab:red", "tab:cyan")
ERROR_PERCENTILE = 99.9
"""The map's error colours saturate here: a few large errors would leave the rest black."""
DPI = 100


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - matplotlib is a dependency
        raise ImportError("plots need matplotlib: pip install matplotlib") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_of(points: Sequence[RDPoint]) -> dict[str, tuple[list[float], list[float]]]:
    """Lossy points grouped by codec as (bits/voxel, PSNR) sorted by rate."""
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for p in sorted(points, key=lambda p: p.bits_per_voxel):
        if np.isfinite(p.psnr):
            rates, psnrs = curves.setdefault(p.codec, ([], []))
            rates.append(p.bits_per_voxel)
            psnrs.append(p.psnr)
    return curves


COLORS = {"mriae": "black", "sperr-3d": "tab:blue", "jpeg2000-2d": "tab:orange", "jpegxl-2d": "tab:green"}
PSNR_AXIS_TOP = 65.0  # dB: near-lossless points above are off the chart


def _draw_rd(axes, points: Sequence[RDPoint], title: str) -> None:
    from matplotlib.ticker import FormatStrFormatter, FuncFormatter

    curves = curves_of(points)
    for index, (codec, (rates, psnrs)) in enumerate(sorted(curves.items(), key=lambda item: item[0] != "mriae")):
        width = 2.5 if codec == "mriae" else 1.2
        axes.plot(rates, psnrs, marker="o", markersize=3, label=codec, linewidth=width,
                  color=COLORS.get(codec, f"C{index + 4}"))
    for p in points:
        if p.codec in curves:  # a lossy codec reaching lossless at its top rate: not a lossless codec
            continue
        axes.axvline(p.bits_per_voxel, linestyle=":", linewidth=1, color="gray")
        axes.annotate(p.codec, (p.bits_per_voxel, 0.02), xycoords=("data", "axes fraction"),
                      rotation=90, fontsize=7, color="gray")
    finite = [v for _, psnrs in curves.values() for v in psnrs]
    if finite:
        axes.set_ylim(min(finite) - 2, min(max(finite) + 2, PSNR_AXIS_TOP))
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    axes.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: f"{x:g}" if f"{x:.0e}"[0] in "25" else ""))
    axes.tick_params(axis="x", which="minor", labelsize=7)
    axes.set_xlabel("bits/voxel")
    axes.set_ylabel("PSNR (dB, peak = max − min)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")


def rd_plot(points_by_volume: Mapping[str, Sequence[RDPoint]], path: Path, columns: int = 3) -> None:
    """PSNR against bits/voxel (log scale), one panel per volume, one curve per codec;
    lossless codecs are dotted vertical lines, and lossless points of lossy codecs are
    left off the curves."""
    plt = _pyplot()
    count = len(points_by_volume)
    cols = min(columns, count)
    rows = -(-count // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(RD_SIZE[0] * cols, RD_SIZE[1] * rows), dpi=DPI, squeeze=False)
    for ax, (title, points) in zip(axes.ravel(), points_by_volume.items()):
        _draw_rd(ax, points, title)
    for ax in axes.ravel()[count:]:
        ax.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def central_slices(volume: np.ndarray) -> list[np.ndarray]:
    """Axial, coronal and sagittal central slices of a 3D (x, y, z) volume, displayed
    with the first listed in-plane axis horizontal and the other pointing up."""
    x, y, z = (n // 2 for n in volume.shape[:3])
    return [volume[:, :, z].T, volume[:, y, :].T, volume[x, :, :].T]


def slice_aspects(spacing: Sequence[float]) -> list[float]:
    """Display aspect (height/width of a voxel) of the slices :func:`central_slices` gives."""
    sx, sy, sz = (tuple(spacing) + (1.0, 1.0, 1.0))[:3]
    return [sy / sx, sz / sx, sz / sy]


PLANES = ("axial", "coronal", "sagittal")
"""The planes of :func:`central_slices`, in its order."""


def _draw_column(axes, volume: np.ndarray, spacing: Sequence[float], name: str, cmap: str, vmin: float,
                 vmax: float):
    """Draw the central slices of ``volume`` down a column of three ``axes``; returns the last image."""
    for ax, image, aspect in zip(axes, central_slices(volume), slice_aspects(spacing)):
        shown = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", interpolation="nearest",
                          aspect=aspect)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_title(name)
    return shown


def slices_plot(
    original: np.ndarray,
    reconstruction: np.ndarray,
    path: Path,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    title: str = "",
) -> None:
    """A 3×3 grid: central axial / coronal / sagittal slices of the original, the
    reconstruction and the absolute error (its own colour scale, with a colour bar),
    drawn with the voxel size's aspect ratio."""
    plt = _pyplot()
    original = np.asarray(original, dtype=np.float64)
    reconstruction = np.asarray(reconstruction, dtype=np.float64)
    low, high = float(original.min()), float(original.max())
    error = np.abs(original - reconstruction)
    figure, axes = plt.subplots(3, 3, figsize=SLICES_SIZE, dpi=DPI)
    _draw_column(axes[:, 0], original, spacing, "original", "gray", low, high)
    _draw_column(axes[:, 1], reconstruction, spacing, "reconstruction", "gray", low, high)
    shown = _draw_column(axes[:, 2], error, spacing, "|error|", "inferno", 0.0, float(error.max()) or 1.0)
    figure.colorbar(shown, ax=list(axes[:, 2]), shrink=0.6, label="absolute error")
    for ax, plane in zip(axes[:, 0], PLANES):
        ax.set_ylabel(plane)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def _draw_outlines(axes, masks: Mapping[str, np.ndarray]) -> None:
    """Outline each of ``masks`` on the central slices down a column of three ``axes``, with a legend."""
    for (name, mask), colour in zip(masks.items(), OUTLINE_COLOURS):
        for ax, plane in zip(axes, central_slices(mask.astype(np.float32))):
            ax.contour(plane, levels=[0.5], colors=colour, linewidths=0.8)
        axes[0].plot([], [], color=colour, label=name)
    axes[0].legend(fontsize=7, loc="upper right")


def map_plot(
    original: np.ndarray,
    decoded: np.ndarray,
    bits: np.ndarray | None,
    masks: Mapping[str, np.ndarray],
    table: Sequence[str],
    path: Path,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    title: str = "",
    no_bits: str = "no latent bits",
) -> None:
    """Where bits and errors sit (:mod:`mriae.evaluation.maps`): central slices of the
    original (outlined: the head, and the brain if ``masks`` has one), the decoded volume,
    the absolute error and the latent ``bits`` on the image grid (colour bars for both), with
    the per-region ``table`` below; ``no_bits`` says why the bits panel is empty when ``bits``
    is None."""
    plt = _pyplot()
    original = np.asarray(original, dtype=np.float64)
    decoded = np.asarray(decoded, dtype=np.float64)
    low, high = float(original.min()), float(original.max())
    error = np.abs(original - decoded)
    figure = plt.figure(figsize=MAP_SIZE, dpi=DPI, layout="constrained")
    grid = figure.add_gridspec(4, 4, height_ratios=(1, 1, 1, 0.3))
    axes = np.array([[figure.add_subplot(grid[row, col]) for col in range(4)] for row in range(3)])
    _draw_column(axes[:, 0], original, spacing, "original", "gray", low, high)
    _draw_outlines(axes[:, 0], {"head": ~masks["background"], **{k: v for k, v in masks.items() if k == "brain"}})
    _draw_column(axes[:, 1], decoded, spacing, "decoded", "gray", low, high)
    saturated = float(np.percentile(error, ERROR_PERCENTILE)) or 1.0
    shown = _draw_column(axes[:, 2], error, spacing, "|error|", "inferno", 0.0, saturated)
    figure.colorbar(shown, ax=list(axes[:, 2]), shrink=0.6, extend="max", label="absolute error")
    if bits is None:
        for ax in axes[:, 3]:
            ax.axis("off")
        axes[1, 3].text(0.5, 0.5, textwrap.fill(no_bits, 30), ha="center", va="center", fontsize=9)
    else:
        shown = _draw_column(axes[:, 3], bits, spacing, "latent bits", "viridis", 0.0, float(bits.max()) or 1.0)
        figure.colorbar(shown, ax=list(axes[:, 3]), shrink=0.6, label="bits per latent position")
    for ax, plane in zip(axes[:, 0], PLANES):
        ax.set_ylabel(plane)
    text = figure.add_subplot(grid[3, :])
    text.axis("off")
    text.text(0.5, 0.5, "\n".join(table), ha="center", va="center", family="monospace", fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
