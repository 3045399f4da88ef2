"""summary.md of a ``mriae evaluate`` report: what was measured, on what, with what, and the
figures, in Markdown that GitHub and VS Code render (the figures sit beside it)."""

from __future__ import annotations

import datetime
import math
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import mriae
from mriae.evaluation.report import RDPoint
from mriae.evaluation.splits import Split


@dataclass(frozen=True)
class Provenance:
    """What produced a report: mriae's ``version`` and source ``commit`` (None when not known),
    the weights' name and SHA-256, and when (``date``, ``YYYY-MM-DD HH:MM:SS UTC``)."""

    version: str
    commit: str | None
    weights: str
    weights_sha256: str
    date: str


SOURCE = Path(mriae.__file__).resolve().parent
"""The folder mriae runs from."""


def source_commit(folder: Path = SOURCE) -> str | None:
    """The git commit of the checkout mriae runs from (``folder``, its package), with ``+
    uncommitted changes`` when its tracked files differ from it; None without git, outside a
    checkout, or when the checkout does not track mriae (an installed copy in a virtual
    environment inside another repository)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()

    try:
        if not git("ls-files", "--", "__init__.py"):
            return None
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + (" + uncommitted changes" if changed else "")


def provenance(weights: str, weights_sha256: str) -> Provenance:
    """This run's :class:`Provenance`, now."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return Provenance(mriae.__version__, source_commit(), weights, weights_sha256, now.strftime("%Y-%m-%d %H:%M:%S UTC"))


@dataclass(frozen=True)
class Scan:
    """The evaluated file: its path as given, voxel array and voxel size (mm)."""

    path: Path
    array: np.ndarray
    spacing: tuple[float, ...]


def _cell(text: str) -> str:
    """``text`` safe in a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _number(value: float) -> str:
    return f"{value:g}" if math.isfinite(value) else ("none" if value > 0 else str(value))


def about_table(scan: Scan, split: Split, about: Provenance, notes: Sequence[str] = ()) -> list[str]:
    """The two-column table of the scan (source, shape, voxel size, dtype, intensities, split) and the run."""
    shape = scan.array.shape
    volumes = int(np.prod(shape[3:], dtype=np.int64))
    commit = f"commit `{about.commit}`" if about.commit else "commit unknown (not run from a git checkout)"
    rows = [
        ("source", f"`{scan.path}`"),
        ("shape", " × ".join(map(str, shape)) + " voxels" + (f" ({volumes} volumes)" if volumes > 1 else "")),
        ("voxel size", " × ".join(f"{s:g}" for s in scan.spacing[:3]) + " mm"),
        ("dtype", scan.array.dtype.name + (" (big-endian)" if scan.array.dtype.str.startswith(">") else "")),
        ("intensities", f"{_number(float(scan.array.min()))} … {_number(float(scan.array.max()))} (stored units)"),
        ("split", f"**{split}**: {split.reason}"),
        ("weights", f"`{about.weights}`, sha256 `{about.weights_sha256}`"),
        ("mriae", f"{about.version}, {commit}"),
        ("date", about.date),
    ]
    table = ["| | |", "|---|---|", *(f"| {name} | {_cell(value)} |" for name, value in rows)]
    return table + (["", *notes] if notes else [])


def metrics_table(rows: Sequence[tuple[str, RDPoint]], raw_bits: int) -> list[str]:
    """One row per measured setting (its words, its point), the numbers of metrics.csv rounded
    as ``mriae evaluate`` prints them; ``raw_bits``: bits per stored voxel, for the ratio."""
    lines = ["| setting | coder | bits/voxel | ratio | PSNR (dB) | SSIM | max error | bound | at bound |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for words, p in rows:
        bound = "0 (lossless)" if p.bound == 0 else _number(p.bound)
        at_bound = f"{p.at_bound:.1%}" if 0 < p.bound < math.inf else "-"
        lines.append(f"| {_cell(words)} | {p.coder} | {p.bits_per_voxel:.4f} | {raw_bits / p.bits_per_voxel:.1f}× | "
                     f"{p.psnr:.2f} | {p.ssim:.4f} | {p.max_abs_error:.6g} | {bound} | {at_bound} |")
    return lines


def summary_markdown(scan: Scan, split: Split, rows: Sequence[tuple[str, RDPoint]], figures: Sequence[tuple[str, str]],
                     about: Provenance, notes: Sequence[str] = ()) -> str:
    """summary.md: the scan and the run (:func:`about_table`, then ``notes``), the metrics of
    each setting (:func:`metrics_table`) and the ``figures`` (heading, path relative to the
    summary)."""
    lines = [f"# mriae evaluate: {scan.path.name}", "", *about_table(scan, split, about, notes), "",
             "## Rate and distortion", "",
             ("One row per setting, as in [metrics.csv](metrics.csv): bits/voxel of the whole .mriae file; "
              "PSNR with peak = max − min of the original; errors in stored units; bound: the largest error "
              "the file promises (none for the network), at bound: the voxels whose error reaches it."), "",
             *metrics_table(rows, scan.array.dtype.itemsize * 8), ""]
    lines.append("## Figures")
    for heading, path in figures:
        lines += ["", f"### {heading}", "", f"![{heading}](<{path}>)"]
    return "\n".join(lines) + "\n"
