"""Figures (matplotlib, Agg backend): RD curves and central slices with the error map.

Figures have fixed pixel sizes (no tight bounding box), so reports are comparable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mriae.evaluation.report import RDPoint

RD_SIZE = (8.0, 6.0)  # inches, at DPI → 800×600 pixels per panel
SLICES_SIZE = (9.0, 9.0)  # → 900×900 pixels
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
    error_max = float(error.max()) or 1.0
    figure, axes = plt.subplots(3, 3, figsize=SLICES_SIZE, dpi=DPI)
    columns = (("original", original, "gray", low, high), ("reconstruction", reconstruction, "gray", low, high),
               ("|error|", error, "inferno", 0.0, error_max))
    for col, (name, volume, cmap, vmin, vmax) in enumerate(columns):
        planes = zip(("axial", "coronal", "sagittal"), central_slices(volume), slice_aspects(spacing))
        for row, (plane, image, aspect) in enumerate(planes):
            shown = axes[row, col].imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower",
                                          interpolation="nearest", aspect=aspect)
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
            if row == 0:
                axes[row, col].set_title(name)
            if col == 0:
                axes[row, col].set_ylabel(plane)
        if col == 2:
            figure.colorbar(shown, ax=list(axes[:, col]), shrink=0.6, label="absolute error")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
