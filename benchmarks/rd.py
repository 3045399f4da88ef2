"""Rate–distortion benchmark: mriae at every quality level against SPERR 3D, JPEG 2000 and
JPEG XL (slice by slice) and lossless gzip / zstd / JPEG XL, on public MRI volumes; and, in
the same run, mriae's fidelity modes (issue 15, ``fidelity.py``): PSNR targets, maximum
errors and lossless against SPERR, SZ3, JPEG-LS, JPEG 2000 and JPEG XL, with timing and memory.

Writes to --out: rd.csv (one row per volume × codec × setting: bits/voxel, PSNR, SSIM,
max abs error, encode/decode seconds), rd.png (RD curves, one panel per volume) and
bdrate.md (BD-rate tables and the rate each codec needs for 35 / 40 dB); fidelity.csv (one
row per volume × mode × codec × setting, with its check, seconds and peak memory) and
fidelity.md (the BD-rate over 30–50 dB, bounded-error, lossless and timing/memory tables).
The MNI152 template is a training volume: it is benchmarked but marked "train" and left out
of the validation averages.

Full run (every volume and part; ~18 min on 2 CPU cores shared with other jobs, ~2 GiB peak memory):

    PYTHONPATH=. python benchmarks/rd.py --out benchmarks/results

Smoke run (one small volume, every part, ~1.5 min; writes to /tmp/mriae-bench-quick):

    PYTHONPATH=. python benchmarks/rd.py --quick
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import fidelity
from classical import all_settings
from sources import Source, volumes

from mriae.evaluation import RDPoint, bd_rate, evaluate_mriae, read_csv, write_csv
from mriae.evaluation.bdrate import rate_at
from mriae.evaluation.plots import curves_of, rd_plot
from mriae.evaluation.report import measure

Loader = Source
PSNR_LIMITS = (0.0, 60.0)
"""PSNR range of the points fitted for BD-rate: above 60 dB curves bend towards lossless."""


def run_volume(name: str, split: str, load: Loader, codecs: tuple[str, ...], log: Callable[[str], None]) -> list[RDPoint]:
    array, affine = load()
    log(f"{name} ({split}): {array.shape} {array.dtype}, range {array.min()}..{array.max()}")
    points = []

    def report(point: RDPoint, *_: object) -> None:
        log(f"  {point.codec:>16} {point.setting:>9}: {point.bits_per_voxel:8.4f} bpv {point.psnr:7.2f} dB "
            f"SSIM {point.ssim:.4f}  enc {point.encode_s:6.2f} s  dec {point.decode_s:6.2f} s")

    if "mriae" in codecs:
        points += evaluate_mriae(array, affine, volume=name, split=split, on_point=report)
    for s in all_settings(array, tuple(c for c in codecs if c != "mriae")):
        points.append(measure(name, split, s.codec, s.setting, array, s.encode, s.decode))
        report(points[-1])
    return points


def fmt(value: float, spec: str = "+.1f", suffix: str = "%") -> str:
    return "n/a" if not math.isfinite(value) else f"{value:{spec}}{suffix}"


def bd_table(points: list[RDPoint], pairs: list[tuple[str, str]]) -> str:
    """Markdown BD-rate table (test vs anchor, per volume, plus the validation mean)."""
    by_volume: dict[str, list[RDPoint]] = {}
    for p in points:
        by_volume.setdefault(p.volume, []).append(p)
    lines = ["| volume | split | " + " | ".join(f"{t} vs {a}" for t, a in pairs) + " |",
             "|---|---|" + "---|" * len(pairs)]
    validation: list[list[float]] = [[] for _ in pairs]
    for volume, vpoints in by_volume.items():
        curves = curves_of(vpoints)
        split = vpoints[0].split
        row = []
        for i, (test, anchor) in enumerate(pairs):
            present = test in curves and anchor in curves
            value = bd_rate(*curves[anchor], *curves[test], psnr_limits=PSNR_LIMITS) if present else float("nan")
            row.append(fmt(value))
            if split == "validation" and math.isfinite(value):
                validation[i].append(value)
        lines.append(f"| {volume} | {split} | " + " | ".join(row) + " |")
    means = [fmt(float(np.mean(v))) + f" (n={len(v)})" if v else "n/a" for v in validation]
    lines.append("| **validation mean** | | " + " | ".join(means) + " |")
    return "\n".join(lines)


def rate_table(points: list[RDPoint], targets: tuple[float, ...] = (35.0, 40.0)) -> str:
    """Markdown table of the bits/voxel each codec needs for the target PSNRs, and the
    lossless sizes (compare with /work/shared/anchors.md)."""
    by_volume: dict[str, list[RDPoint]] = {}
    for p in points:
        by_volume.setdefault(p.volume, []).append(p)
    codecs = list(dict.fromkeys(p.codec for p in points if math.isfinite(p.psnr)))
    lossless = list(dict.fromkeys(p.codec for p in points if not math.isfinite(p.psnr) and p.codec not in codecs))
    head = " / ".join(f"{t:g}" for t in targets)
    lines = ["| volume | " + " | ".join(f"{c} {head} dB" for c in codecs) + " | " + " | ".join(lossless) + " |",
             "|---|" + "---|" * (len(codecs) + len(lossless))]
    for volume, vpoints in by_volume.items():
        curves = curves_of(vpoints)
        cells = [" / ".join(fmt(rate_at(*curves[c], t), ".3f", "") for t in targets) if c in curves else "n/a"
                 for c in codecs]
        cells += [next((f"{p.bits_per_voxel:.2f}" for p in vpoints if p.codec == c and not math.isfinite(p.psnr)), "n/a")
                  for c in lossless]
        lines.append(f"| {volume} ({vpoints[0].split}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def log(line: str) -> None:
    print(line, flush=True)


def commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=False).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "),
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    names = list(volumes())
    parts = ["rd", *fidelity.MODES]
    parser.add_argument("--out", type=Path, help="output folder (default: benchmarks/results; "
                        "with --quick: /tmp/mriae-bench-quick)")
    parser.add_argument("--volumes", nargs="+", choices=names, default=names, help="volumes to run (default: all)")
    parser.add_argument("--from-csv", type=Path, help="redo the plot and tables from an rd.csv (and the fidelity.csv "
                        "beside it), measuring nothing")
    parser.add_argument("--codecs", nargs="+", choices=["mriae", "sperr", "jpeg2000", "jpegxl", "lossless"],
                        default=["mriae", "sperr", "jpeg2000", "jpegxl", "lossless"], help="codecs of the rd part (default: all)")
    parser.add_argument("--parts", nargs="+", choices=parts, default=parts,
                        help="rd: the quality-level RD curves; psnr, bounded, lossless: the fidelity modes (a–c); "
                             "quality: one setting per codec of the rd part timed in its own process (d) (default: all)")
    parser.add_argument("--quick", action="store_true", help="smoke run: the smallest volume (anatomical), PSNR "
                        "targets 35 and 45 dB only, every part")
    args = parser.parse_args()
    from mriae.models.weights import load_codec

    if args.quick and args.volumes == names:
        args.volumes = ["anatomical"]
    args.out = args.out or Path("/tmp/mriae-bench-quick" if args.quick else "benchmarks/results")
    psnr_targets = (35.0, 45.0) if args.quick else fidelity.PSNR_TARGETS
    modes = [p for p in args.parts if p != "rd"]
    args.out.mkdir(parents=True, exist_ok=True)
    catalogue = volumes()
    snapshot = fidelity.code_snapshot()[1] if modes and not args.from_csv else None
    start = time.perf_counter()
    points: list[RDPoint] = read_csv(args.from_csv) if args.from_csv else []
    rows: list[fidelity.Row] = []
    if args.from_csv and (args.from_csv.parent / "fidelity.csv").exists():
        rows = fidelity.read_csv(args.from_csv.parent / "fidelity.csv")
    for name in [] if args.from_csv else args.volumes:
        split, load = catalogue[name]
        if "rd" in args.parts:
            points += run_volume(name, split, load, tuple(args.codecs), log)
        if modes:
            log(f"{name}: fidelity modes {', '.join(modes)}, one process per codec × setting")
            rows += fidelity.run_volume(name, split, load, modes, log, psnr_targets)
    seconds = time.perf_counter() - start
    reused = None
    if "rd" not in args.parts and not args.from_csv and (args.out / "rd.csv").exists():
        reused = args.out / "rd.csv"  # the fidelity tables join mriae's quality levels and the classical curves
        points = [p for p in read_csv(reused) if p.volume in args.volumes]
    written = []
    if not args.from_csv:
        if "rd" in args.parts:
            write_csv(points, args.out / "rd.csv")
            written.append(args.out / "rd.csv")
        if rows:
            fidelity.write_csv(rows, args.out / "fidelity.csv")
            written.append(args.out / "fidelity.csv")
    stamp = (f"tables redone from {args.from_csv} at commit {commit()}" if args.from_csv else
             f"commit {commit()}, weights '{load_codec().name}' sha256 {load_codec().sha256[:16]}…, "
             f"{seconds:.0f} s ({' '.join(args.parts)} on {' '.join(args.volumes)})"
             + (f"; children ran mriae code sha256 {snapshot}… (its .py files)" if snapshot else "")
             + (f"; RD points from the earlier {reused}" if reused else ""))
    if points and not reused:
        grouped: dict[str, list[RDPoint]] = {}
        for p in points:
            grouped.setdefault(f"{p.volume} ({p.split})", []).append(p)
        rd_plot(grouped, args.out / "rd.png")
        pairs = [("mriae", "sperr-3d"), ("mriae", "jpeg2000-2d"), ("mriae", "jpegxl-2d"), ("sperr-3d", "jpeg2000-2d")]
        summary = "\n\n".join([
            stamp,
            f"BD-rate (negative: fewer bits than the anchor at equal PSNR; points with PSNR in "
            f"{PSNR_LIMITS[0]:g}–{PSNR_LIMITS[1]:g} dB fitted)\n\n" + bd_table(points, pairs),
            "bits/voxel needed for 35 / 40 dB, and lossless bits/voxel\n\n" + rate_table(points),
        ])
        (args.out / "bdrate.md").write_text(summary + "\n")
        print("\n" + summary)
        written += [args.out / "rd.png", args.out / "bdrate.md"]
    if rows:
        tables = stamp + "\n\n" + fidelity.report(points, rows)
        (args.out / "fidelity.md").write_text(tables + "\n")
        print("\n" + tables)
        written.append(args.out / "fidelity.md")
    print(f"\nwrote {', '.join(map(str, written))}")
    print(f"({len(points)} RD points, {len(rows)} fidelity rows; BD-rate n/a: fewer than 4 points in range or no "
          f"common PSNR interval)")


if __name__ == "__main__":
    main()
