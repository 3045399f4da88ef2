"""Figures (matplotlib, no pyplot): RD curves, and central slices with the error map.

Figures have set pixel sizes (no tight bounding box), so reports are comparable: RD figures a
fixed size, slice figures a fixed width and the height their volume's slices need. Every
axis says what it shows and in which unit: rate in bits/voxel, PSNR in dB, slices in voxel
indices (the direction each voxel axis points to, from the affine) drawn at the voxel size's
aspect ratio, intensities and errors in the image's stored units. The slice panels of a
figure are all the same size (colour bars have their own row), so original, decoded and
error compare side by side. Each ``*_figure`` function returns the Figure (for tests), each
``*_plot`` one writes it as a PNG.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mriae.evaluation.report import RDPoint

RD_SIZE = (8.0, 6.0)  # inches, at DPI → 800×600 pixels per panel
SLICES_WIDTH = 10.0  # inches, at DPI → 1000 pixels wide
MAP_WIDTH = 14.0  # → 1400 pixels
OUTLINE_COLOURS = ("tab:red", "tab:cyan")
ERROR_PERCENTILE = 99.9
"""The error colours saturate here: a few large errors would leave the rest black."""
DPI = 100
STORED_UNITS = "stored units"
"""The unit of intensities and errors: the values as stored in the file (before any NIfTI scl_slope)."""
PANEL_MARGINS = (0.75, 0.6)
"""Inches around a slice panel for its tick and axis labels: across, and up."""
TITLE_HEIGHT = 0.7
COLOUR_BAR_HEIGHT = 0.8
"""Inches of the colour-bar row, its labels included."""
LINE_HEIGHT = 0.17
"""Inches of a line of the map's table."""


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
CODEC_WORDS = {"mriae": "mriae, quality levels", "mriae-max-error": "mriae, maximum errors",
               "mriae-psnr": "mriae, PSNR targets", "mriae-lossless": "mriae, lossless"}
"""Legend entries of mriae's curves (:data:`mriae.evaluation.report.MRIAE_CODECS`); other codecs by name."""
PSNR_AXIS_TOP = 65.0  # dB: near-lossless points above are off the chart
RATE_LABEL = "rate (bits/voxel)"
PSNR_LABEL = "PSNR (dB; peak = max − min of the original)"


def _draw_rd(axes, points: Sequence[RDPoint], title: str) -> None:
    from matplotlib.ticker import FormatStrFormatter, FuncFormatter

    curves = curves_of(points)
    for index, (codec, (rates, psnrs)) in enumerate(sorted(curves.items(), key=lambda item: item[0] != "mriae")):
        width = 2.5 if codec == "mriae" else 1.2
        axes.plot(rates, psnrs, marker="o", markersize=3, label=CODEC_WORDS.get(codec, codec), linewidth=width,
                  color=COLORS.get(codec, f"C{index + 4}"))
    for p in points:
        if p.codec.startswith("mriae") and p.codec in curves and np.isfinite(p.psnr):
            axes.annotate(p.setting, (p.bits_per_voxel, p.psnr), textcoords="offset points", xytext=(4, -10),
                          fontsize=7)
        if p.codec in curves:  # a lossy codec reaching lossless at its top rate: not a lossless codec
            continue
        axes.axvline(p.bits_per_voxel, linestyle=":", linewidth=1, color="gray")
        axes.annotate(CODEC_WORDS.get(p.codec, p.codec), (p.bits_per_voxel, 0.98), xycoords=("data", "axes fraction"),
                      rotation=90, va="top", fontsize=7, color="gray")
    finite = [v for _, psnrs in curves.values() for v in psnrs]
    if finite:
        axes.set_ylim(min(finite) - 2, min(max(finite) + 2, PSNR_AXIS_TOP))
    rates = [p.bits_per_voxel for p in points if p.bits_per_voxel > 0]
    within_a_decade = bool(rates) and max(rates) < 10 * min(rates)
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    axes.xaxis.set_minor_formatter(FuncFormatter(
        lambda x, _: f"{x:g}" if within_a_decade or f"{x:.0e}"[0] in "25" else ""))
    axes.tick_params(axis="x", which="minor", labelsize=7)
    axes.set_xlabel(RATE_LABEL)
    axes.set_ylabel(PSNR_LABEL)
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")


def rd_figure(points_by_volume: Mapping[str, Sequence[RDPoint]], columns: int = 3) -> Figure:
    """PSNR against bits/voxel (log scale), one panel per volume (titled by its key), one
    curve per codec, mriae's points named by setting; lossless codecs are dotted vertical
    lines, and lossless points of lossy codecs are left off the curves."""
    count = len(points_by_volume)
    cols = min(columns, count)
    rows = -(-count // cols)
    figure = Figure(figsize=(RD_SIZE[0] * cols, RD_SIZE[1] * rows), dpi=DPI)
    axes = figure.subplots(rows, cols, squeeze=False)
    for ax, (title, points) in zip(axes.ravel(), points_by_volume.items()):
        _draw_rd(ax, points, title)
    for ax in axes.ravel()[count:]:
        ax.axis("off")
    figure.tight_layout()
    return figure


def rd_plot(points_by_volume: Mapping[str, Sequence[RDPoint]], path: Path, columns: int = 3) -> None:
    """Write :func:`rd_figure` to ``path`` (PNG)."""
    rd_figure(points_by_volume, columns).savefig(path, dpi=DPI)


AXES = "ijk"
"""Names of the voxel axes."""
PLANE_NAMES = {"S": "axial", "I": "axial", "A": "coronal", "P": "coronal", "L": "sagittal", "R": "sagittal"}
"""The plane across a voxel axis, by the direction that axis points to."""


@dataclass(frozen=True)
class Plane:
    """The slice of a 3D volume across voxel axis ``normal`` at ``index``, shown with voxel
    axis ``across`` left to right and ``up`` upwards; ``name`` axial, coronal or sagittal
    (from the affine), or ``slice`` when an axis has no direction."""

    name: str
    normal: int
    index: int
    across: int
    up: int

    def of(self, volume: np.ndarray) -> np.ndarray:
        """The slice of ``volume`` as an image: rows ``up``, columns ``across``."""
        return np.take(volume, self.index, axis=self.normal).T

    def aspect(self, spacing: Sequence[float]) -> float:
        """Display height/width of one voxel of the slice."""
        return spacing[self.up] / spacing[self.across]


def central_planes(shape: Sequence[int], affine: np.ndarray) -> list[Plane]:
    """The central slices across voxel axes k, j and i of a volume of ``shape`` (an axial,
    a coronal and a sagittal slice for the usual orientations)."""
    codes = _directions(affine)
    planes = []
    for normal in (2, 1, 0):
        across, up = (axis for axis in range(3) if axis != normal)
        planes.append(Plane(PLANE_NAMES.get(codes[normal], "slice"), normal, int(shape[normal]) // 2, across, up))
    return planes


def _directions(affine: np.ndarray) -> tuple:
    """The world direction (R/L, A/P, S/I) each voxel axis points to most; None for an axis without one."""
    from nibabel.orientations import aff2axcodes

    try:
        return tuple(aff2axcodes(np.asarray(affine, dtype=np.float64)))
    except ValueError:  # a singular or non-finite affine
        return (None, None, None)


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) of the three spatial axes; 1 for an axis of no length."""
    sizes = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return tuple(float(s) if np.isfinite(s) and s > 0 else 1.0 for s in sizes)  # type: ignore[return-value]


def axis_label(axis: int, codes: Sequence) -> str:
    """``i (voxel index) → R``: a voxel axis, and where it points."""
    return f"{AXES[axis]} (voxel index)" + (f" → {codes[axis]}" if codes[axis] else "")


@dataclass(frozen=True)
class SliceGrid:
    """A figure of equal panels for the central slices of one volume: ``axes`` (rows: planes;
    columns: what is shown), a row of colour-bar slots below them, and a last row if asked for.
    Its width is fixed; its height is what the slices need at that width."""

    figure: Figure
    planes: list[Plane]
    spacing: tuple[float, float, float]
    codes: tuple
    axes: np.ndarray
    grid: object

    @classmethod
    def of(cls, shape: Sequence[int], affine: np.ndarray, columns: int, width: float,
           last_row: float = 0.0) -> SliceGrid:
        """A figure ``width`` inches wide: a row per plane, as high as the plane is at the
        panels' common width (each slice fills its panel), then the colour bars and a last
        row ``last_row`` inches high (none if 0)."""
        planes, spacing = central_planes(shape, affine), spacing_of(affine)
        panel = width / columns - PANEL_MARGINS[0]
        heights = [panel * shape[p.up] * spacing[p.up] / (shape[p.across] * spacing[p.across]) + PANEL_MARGINS[1]
                   for p in planes]
        rows = heights + [COLOUR_BAR_HEIGHT] + [last_row] * (last_row > 0)
        figure = Figure(figsize=(width, TITLE_HEIGHT + sum(rows)), dpi=DPI, layout="constrained")
        grid = figure.add_gridspec(len(rows), columns, height_ratios=rows)
        axes = np.array([[figure.add_subplot(grid[row, col]) for col in range(columns)] for row in range(len(planes))])
        return cls(figure, planes, spacing, _directions(affine), axes, grid)

    def draw(self, column: int, volume: np.ndarray, title: str, **style):
        """Draw the slices of ``volume`` down ``column`` (``style``: imshow's cmap, vmin,
        vmax); returns the last image, for a colour bar."""
        for row, (ax, plane) in enumerate(zip(self.axes[:, column], self.planes)):
            shown = ax.imshow(plane.of(volume), origin="lower", interpolation="nearest",
                              aspect=plane.aspect(self.spacing), **style)
            ax.set_xlabel(axis_label(plane.across, self.codes), fontsize=8, labelpad=1)
            up = axis_label(plane.up, self.codes)
            ax.set_ylabel(f"{plane.name}, {AXES[plane.normal]} = {plane.index}\n{up}" if column == 0 else up,
                          fontsize=8, labelpad=1)
            ax.tick_params(labelsize=7)
            ax.locator_params(nbins=5)
            ax.set_label(f"{plane.name} {title}")
        self.axes[0, column].set_title(title, fontsize=10)
        return shown

    def colour_bar(self, shown, columns: slice, label: str, extend: str = "neither"):
        """A horizontal colour bar of ``shown`` under ``columns``, labelled with its unit."""
        bar = self.figure.colorbar(shown, cax=self.figure.add_subplot(self.grid[len(self.planes), columns]),
                                   orientation="horizontal", extend=extend)
        bar.set_label(label, fontsize=8)
        bar.ax.tick_params(labelsize=7)
        return bar

    def outline(self, column: int, masks: Mapping[str, np.ndarray]) -> None:
        """Outline each of ``masks`` on the slices of ``column``, with a legend."""
        top = self.axes[0, column]
        for (name, mask), colour in zip(masks.items(), OUTLINE_COLOURS):
            for ax, plane in zip(self.axes[:, column], self.planes):
                ax.contour(plane.of(mask.astype(np.float32)), levels=[0.5], colors=colour, linewidths=0.8)
            top.plot([], [], color=colour, label=name)
        top.legend(fontsize=7, loc="upper right")


def error_colours(error: np.ndarray) -> tuple[float, str]:
    """(top of the error colour scale, what the colour bar says of it): the ERROR_PERCENTILE
    of ``error``, or its maximum if that is 0."""
    largest = float(error.max())
    top = float(np.percentile(error, ERROR_PERCENTILE)) or largest or 1.0
    note = f"saturated at the {ERROR_PERCENTILE:g}th percentile ({top:.4g}); max {largest:.4g}"
    return top, note if top < largest else f"max {largest:.4g}"


def _intensity_and_error(grid: SliceGrid, original: np.ndarray, decoded: np.ndarray, setting: str,
                         scl_slope: float | None) -> None:
    """Original | decoded | |error| in the first three columns of ``grid``, with their colour bars
    (the error's says how to get physical units when the stored values have a ``scl_slope``)."""
    error = np.abs(original - decoded)
    low, high = float(original.min()), float(original.max())
    grid.draw(0, original, "original", cmap="gray", vmin=low, vmax=high)
    shown = grid.draw(1, decoded, setting, cmap="gray", vmin=low, vmax=high)
    grid.colour_bar(shown, slice(0, 2), f"intensity of original and decoded ({STORED_UNITS})")
    top, note = error_colours(error)
    shown = grid.draw(2, error, "|original − decoded|", cmap="inferno", vmin=0.0, vmax=top)
    physical = f"\n× {scl_slope:g} in physical units (scl_slope)" if scl_slope else ""
    grid.colour_bar(shown, slice(2, 3), f"|original − decoded| ({STORED_UNITS}){physical}\n{note}",
                    extend="max" if top < error.max() else "neither")


def slices_figure(original: np.ndarray, decoded: np.ndarray, affine: np.ndarray | None = None, title: str = "",
                  setting: str = "decoded", scl_slope: float | None = None) -> Figure:
    """Central slices of a 3D ``original`` and the ``decoded`` volume (titled ``setting``)
    and the absolute error between them, in three equal columns on the voxel grid of
    ``affine`` (default: 1 mm voxels); colour bars below, in stored units (and how to get
    physical errors when the stored values have a ``scl_slope``)."""
    original = np.asarray(original, dtype=np.float64)
    decoded = np.asarray(decoded, dtype=np.float64)
    grid = SliceGrid.of(original.shape, np.eye(4) if affine is None else affine, 3, SLICES_WIDTH)
    figure = grid.figure
    _intensity_and_error(grid, original, decoded, setting, scl_slope)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def slices_plot(original: np.ndarray, decoded: np.ndarray, path: Path, affine: np.ndarray | None = None,
                title: str = "", setting: str = "decoded", scl_slope: float | None = None) -> None:
    """Write :func:`slices_figure` to ``path`` (PNG)."""
    slices_figure(original, decoded, affine, title, setting, scl_slope).savefig(path, dpi=DPI)


def map_figure(
    original: np.ndarray,
    decoded: np.ndarray,
    bits: np.ndarray | None,
    masks: Mapping[str, np.ndarray],
    table: Sequence[str],
    affine: np.ndarray | None = None,
    title: str = "",
    no_bits: str = "no latent bits",
    setting: str = "decoded",
    scl_slope: float | None = None,
) -> Figure:
    """Where bits and errors sit (:mod:`mriae.evaluation.maps`): the columns of
    :func:`slices_figure` (the original outlined: the head, and the brain if ``masks`` has
    one) and the latent ``bits`` on the image grid, with the per-region ``table`` below;
    ``no_bits`` says why the bits panels are empty when ``bits`` is None."""
    original = np.asarray(original, dtype=np.float64)
    decoded = np.asarray(decoded, dtype=np.float64)
    grid = SliceGrid.of(original.shape, np.eye(4) if affine is None else affine, 4, MAP_WIDTH,
                        last_row=LINE_HEIGHT * (len(table) + 1))
    figure = grid.figure
    _intensity_and_error(grid, original, decoded, setting, scl_slope)
    grid.outline(0, {"head": ~masks["background"], **{k: v for k, v in masks.items() if k == "brain"}})
    if bits is None:
        for ax in grid.axes[:, 3]:
            ax.axis("off")
        grid.axes[1, 3].text(0.5, 0.5, textwrap.fill(no_bits, 30), ha="center", va="center", fontsize=9)
    else:
        shown = grid.draw(3, bits, "latent bits", cmap="viridis", vmin=0.0, vmax=float(bits.max()) or 1.0)
        grid.colour_bar(shown, slice(3, 4), "bits per latent position (each covers a block of voxels)")
    text = figure.add_subplot(grid.grid[-1, :])
    text.axis("off")
    text.text(0.5, 0.5, "\n".join(table), ha="center", va="center", family="monospace", fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def map_plot(original: np.ndarray, decoded: np.ndarray, bits: np.ndarray | None, masks: Mapping[str, np.ndarray],
             table: Sequence[str], path: Path, affine: np.ndarray | None = None, title: str = "",
             no_bits: str = "no latent bits", setting: str = "decoded", scl_slope: float | None = None) -> None:
    """Write :func:`map_figure` to ``path`` (PNG)."""
    map_figure(original, decoded, bits, masks, table, affine, title, no_bits, setting, scl_slope).savefig(path,
                                                                                                       dpi=DPI)
