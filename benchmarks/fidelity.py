"""Fidelity modes (issue 15): mriae's PSNR targets, maximum-error bounds and lossless mode
against the classical codecs, with encode/decode seconds and peak memory. Run by ``rd.py``
(the same run as the rate–distortion curves); see its docstring for the command.

(a) ``psnr``: mriae ``Fidelity.of(psnr=P)`` for P = 30…50 dB. Joined with mriae's quality
    levels (from rd.csv) into mriae's curve — the product's best file at each PSNR: the
    points no other mriae point beats in both rate and PSNR — and compared with SPERR 3D,
    JPEG 2000 and JPEG XL by BD-rate over 30–50 dB (cubics fitted to every point up to
    60 dB, as in rd.py; their difference averaged over [30, 50] ∩ the PSNRs both curves reach).
(b) ``bounded``: for E = 0.1 / 0.3 / 1 % of the volume's range (integers: rounded down,
    ≥ 1), mriae ``Fidelity.of(max_error=E)`` against SPERR point-wise error, SZ3 absolute
    error and JPEG-LS near-lossless (slice by slice, E ≤ 255); for integer data also SPERR
    and SZ3 at tolerance E + 0.49 with the output rounded. Every decoded volume's maximum
    error is checked against E: a result beyond it is marked ✗ and never wins.
(c) ``lossless``: mriae ``Fidelity.of(lossless=True)`` against gzip -6, zstd -19 (raw
    voxels, C order), JPEG-LS, JPEG 2000 reversible and JPEG XL lossless effort 7 (slice by
    slice on the volume shifted to start at 0); every result checked bit-exact.
(d) every codec × setting above, and one setting of each codec in the quality (RD) mode,
    runs in a fresh child process (``python benchmarks/fidelity.py --child SPEC``): its
    encode and decode are timed once each (wall clock and CPU time of the process), and each one's peak memory is the process's
    peak resident set (VmHWM, reset through /proc/self/clear_refs before each step). The
    child has loaded the volume and imported what the codec needs (torch for mriae) before
    measuring; the "+" figure is the peak minus that resident set. Conversions a user would
    need (to float64 for SPERR, the shift or stretch for slice codecs, rounding back to the
    stored type) are inside the timed steps; so is loading the network's weights for
    mriae's quality and PSNR modes (a fresh process, as the CLI).

mriae codes with the weights rd.py's ``--weights`` names (default: the shipped ones) in every
mode; each mriae row records their name and the first 16 hex digits of the SHA-256 of the
weights file its child found (``weights``, ``weights_sha256``; empty in CSVs from before).
The BD-rate table has one validation mean per group of ``sources.GROUPS`` (the skull-on heads
of issue 13, the other volumes) and one over all; training volumes are in none.

bits/voxel = bytes × 8 / voxels: the whole .mriae file for mriae (header, checksums), the
bare codestream for the classical codecs (slice codecs: each slice's codestream plus a
4-byte length); the side information a classical file would add (shape, dtype, shift) is
not counted.
"""

from __future__ import annotations

import atexit
import gc
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sources import GROUPS, OTHER, Source

PSNR_TARGETS = (30.0, 35.0, 40.0, 45.0, 50.0)
BOUND_PERCENTS = (0.1, 0.3, 1.0)
BD_WINDOW = (30.0, 50.0)
FIT_LIMITS = (0.0, 60.0)
"""PSNRs of the points fitted for BD-rate, as in rd.py (above 60 dB curves bend towards lossless)."""
SPEED_QUALITY = 5
"""mriae's quality level timed in the quality (RD) mode, beside one setting of each lossy codec."""
CHILD_TIMEOUT_S = 3600
MODES = ("psnr", "bounded", "lossless", "quality")
BOUNDED_CODECS = ("mriae", "sperr-pwe", "sperr-pwe+0.49", "sz3-abs", "sz3-abs+0.49", "jpegls-near")
LOSSLESS_CODECS = ("mriae", "gzip-6", "zstd-19", "jpegls", "jpeg2000-rev", "jpegxl-e7")
QUALITY_CODECS = (("mriae", f"q{SPEED_QUALITY}"), ("sperr-3d", "0.4bpv"), ("jpeg2000-2d", "38dB"), ("jpegxl-2d", "d2"))
TITLES = {"mriae": "mriae", "sperr-pwe": "SPERR pwe", "sperr-pwe+0.49": "SPERR +0.49 round", "sz3-abs": "SZ3 abs",
          "sz3-abs+0.49": "SZ3 +0.49 round", "jpegls-near": "JPEG-LS near", "gzip-6": "gzip -6", "zstd-19": "zstd -19",
          "jpegls": "JPEG-LS", "jpeg2000-rev": "J2K reversible", "jpegxl-e7": "JPEG XL e7", "sperr-3d": "SPERR 3D",
          "jpeg2000-2d": "JPEG 2000", "jpegxl-2d": "JPEG XL"}


@dataclass(frozen=True)
class Row:
    """One codec × setting of one fidelity mode on one volume, as measured (one CSV row)."""

    volume: str
    split: str
    mode: str  # psnr | bounded | lossless | quality
    codec: str
    setting: str
    target: float  # PSNR (dB), maximum error E, quality level or rate; 0 for lossless
    percent: float = 0.0  # bounded: E as a percentage of the volume's range
    voxels: int = 0
    compressed_bytes: int = 0
    bits_per_voxel: float = math.nan
    psnr: float = math.nan
    max_abs_error: float = math.nan
    valid: bool = False  # within its bound / bit-exact / at least its PSNR; False for n/a and failures
    note: str = ""  # why not valid, "n/a: …" for a setting the codec cannot take, mriae's coder
    encode_s: float = math.nan  # wall-clock seconds
    decode_s: float = math.nan
    encode_cpu_s: float = math.nan  # CPU seconds of the process (all threads): robust on a shared machine
    decode_cpu_s: float = math.nan
    baseline_mib: float = math.nan  # resident set before encoding (volume loaded, libraries imported)
    encode_peak_mib: float = math.nan
    decode_peak_mib: float = math.nan
    weights: str = ""  # mriae: the weights it was run with ("": the default; empty in CSVs from before the column)
    weights_sha256: str = ""  # mriae: first 16 hex digits of the SHA-256 of that weights file, as its child found it


# ---------------------------------------------------------------- settings of each mode


def is_integer(array: np.ndarray) -> bool:
    return array.dtype.kind in "biu"


def bound(array: np.ndarray, percent: float) -> float:
    """E = ``percent`` % of the volume's range (integer data: rounded down, at least 1)."""
    span = float(array.max()) - float(array.min())
    if is_integer(array):
        return float(max(1, math.floor(percent / 100 * span)))
    return percent / 100 * span


def cases(volume: str, split: str, array: np.ndarray, modes: Iterable[str],
          psnr_targets: Sequence[float] = PSNR_TARGETS, weights: str = "") -> list[Row]:
    """The codec × setting rows to measure on one volume (not yet measured); mriae's rows run
    with the installed weights called ``weights`` ("": the default)."""
    rows = []
    for mode in modes:
        if mode == "psnr":
            rows += [Row(volume, split, mode, "mriae", f"psnr{p:g}", p) for p in psnr_targets]
        elif mode == "bounded":
            for percent in BOUND_PERCENTS:
                error = bound(array, percent)
                rows += [Row(volume, split, mode, codec, f"E{error:g}", error, percent) for codec in BOUNDED_CODECS]
        elif mode == "lossless":
            rows += [Row(volume, split, mode, codec, "lossless", 0.0) for codec in LOSSLESS_CODECS]
        elif mode == "quality":
            rows += [Row(volume, split, mode, codec, setting, float(setting.strip("qbpvdB")))
                     for codec, setting in QUALITY_CODECS]
    return [replace(row, weights=weights) if row.codec == "mriae" else row for row in rows]


def unsupported(row: Row, array: np.ndarray) -> str | None:
    """Why ``row``'s codec cannot take this volume at this setting (None: it can)."""
    span = float(array.max()) - float(array.min())
    if row.codec.endswith("+0.49") and not is_integer(array):
        return "n/a: integer data only"
    if row.codec.startswith(("jpegls", "jpeg2000-rev", "jpegxl-e7")):
        if not is_integer(array) or span >= 65536:
            return "n/a: needs integers with a range < 65536"
        if row.codec == "jpegls-near" and row.target > 255:
            return "n/a: JPEG-LS near-lossless takes E ≤ 255"
    return None


# ---------------------------------------------------------------- the codecs (in the child)

Coder = tuple[Callable[[], bytes], Callable[[bytes], np.ndarray]]


def shifted(array: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """The volume shifted to start at 0 as uint8 (8-bit data) or uint16 (native byte
    order), and the inverse map back to the stored type."""
    low = int(array.min())
    coded = np.uint8 if array.dtype.itemsize == 1 and int(array.max()) - low < 256 else np.uint16
    return (array.astype(np.int64) - low).astype(coded), lambda decoded: (decoded.astype(np.int64) + low).astype(array.dtype)


def slices(encode_slice: Callable[[np.ndarray], bytes], decode_slice: Callable[[bytes], np.ndarray],
           array: np.ndarray) -> Coder:
    """Codes each axial (last-axis) slice of the shifted volume (classical.join_slices; the
    shift happens inside the timed step)."""
    from classical import join_slices, split_slices

    inverse: list[Callable[[np.ndarray], np.ndarray]] = []

    def encode() -> bytes:
        coded, back = shifted(array)
        inverse.append(back)
        return join_slices(coded, encode_slice)

    return encode, lambda data: inverse[0](split_slices(data, decode_slice))


def stored(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A float reconstruction as the stored type: rounded and clipped for integers."""
    if np.dtype(dtype).kind in "biu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def coder(row: Row, array: np.ndarray, affine: np.ndarray, info: dict) -> Coder:
    """Encode/decode functions of ``row``'s codec and setting (imports its libraries)."""
    import imagecodecs as ic

    if row.codec == "mriae":
        import mriae
        from mriae.codec import compress_image, decompress_image
        from mriae.fidelity import Fidelity
        from mriae.io import Image
        from mriae.models.weights import DEFAULT_WEIGHTS

        fidelity = {"psnr": lambda: Fidelity.of(psnr=row.target), "bounded": lambda: Fidelity.of(max_error=row.target),
                    "lossless": lambda: Fidelity.of(lossless=True), "quality": lambda: int(row.target)}[row.mode]()

        def encode() -> bytes:
            data, stats = compress_image(Image(array, affine, ".nii.gz", {}), fidelity,
                                         weights=row.weights or DEFAULT_WEIGHTS)
            info["note"] = f"coder {stats.coder}"
            info["package"] = str(Path(mriae.__file__).parent)
            return data

        return encode, lambda data: decompress_image(data).array
    integer = is_integer(array)
    tolerance = row.target + (0.49 if row.codec.endswith("+0.49") else 0.0)
    if row.codec.startswith("sperr-pwe"):
        return (lambda: ic.sperr_encode(np.ascontiguousarray(array, dtype=np.float64), mode="pwe", level=tolerance,
                                        numthreads=1),
                lambda data: stored(ic.sperr_decode(data, numthreads=1), array.dtype))
    if row.codec.startswith("sz3-abs"):
        exact32 = integer and max(abs(int(array.min())), abs(int(array.max()))) < 2**24 or array.dtype == np.float32
        kind = np.float32 if exact32 else np.float64
        return (lambda: ic.sz3_encode(np.ascontiguousarray(array, dtype=kind), mode="abs", abs=tolerance),
                lambda data: stored(ic.sz3_decode(data, array.shape, kind), array.dtype))
    if row.codec == "gzip-6" or row.codec == "zstd-19":
        name = row.codec.split("-")[0]
        level = int(row.codec.split("-")[1])
        encoder, decoder = getattr(ic, f"{name}_encode"), getattr(ic, f"{name}_decode")
        return (lambda: encoder(np.ascontiguousarray(array).tobytes(), level=level),
                lambda data: np.frombuffer(decoder(data), dtype=array.dtype).reshape(array.shape))
    if row.codec in ("jpegls", "jpegls-near"):
        level = int(row.target)
        return slices(lambda s: ic.jpegls_encode(s, level=level), ic.jpegls_decode, array)
    if row.codec == "jpeg2000-rev":
        return slices(lambda s: ic.jpeg2k_encode(s, level=0, reversible=True, numthreads=1), ic.jpeg2k_decode, array)
    if row.codec == "jpegxl-e7":
        return slices(lambda s: ic.jpegxl_encode(s, lossless=True, effort=7, numthreads=1), ic.jpegxl_decode, array)
    if row.mode == "quality":  # one RD setting of a lossy classical codec, built as in rd.py
        import classical

        make = {"sperr-3d": lambda: classical.sperr(array, (row.target,)),
                "jpeg2000-2d": lambda: classical.jpeg2000(array, (int(row.target),)),
                "jpegxl-2d": lambda: classical.jpegxl(array, (row.target,))}[row.codec]
        built: list = []

        def encode() -> bytes:  # the conversions (float64, stretch) happen inside the timed step
            built.append(make()[0])
            return built[0].encode()

        return encode, lambda data: built[0].decode(data)
    raise ValueError(f"unknown codec {row.codec}")


def resident_mib(field: str) -> float:
    """VmRSS or VmHWM of this process, in MiB (ru_maxrss where /proc is missing)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Reset VmHWM to the current resident set (Linux ≥ 4.0); without it the peak is the
    process's lifetime peak, which can only overstate."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def child(spec: str) -> None:
    """Measure one codec × setting (``spec``: JSON of row, source, path for the decoded
    volume) and print the measurements as one JSON line."""
    job = json.loads(spec)
    row, source = Row(**job["row"]), Source(**job["source"])
    array, affine = source()
    info: dict = {}
    encode, decode = coder(row, array, affine, info)
    gc.collect()
    baseline = resident_mib("VmRSS")
    reset_peak()
    start, cpu = time.perf_counter(), time.process_time()
    data = encode()
    encode_s, encode_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    encode_peak = resident_mib("VmHWM")
    gc.collect()
    reset_peak()
    start, cpu = time.perf_counter(), time.process_time()
    decoded = decode(data)
    decode_s, decode_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    decode_peak = resident_mib("VmHWM")
    np.save(job["decoded"], np.asarray(decoded))
    if row.codec == "mriae":  # after measuring: the weights file this child's mriae finds under that name
        from mriae.models.weights import DEFAULT_WEIGHTS, weights_path

        weights = weights_path(row.weights or DEFAULT_WEIGHTS).read_bytes()
        info["weights_sha256"] = hashlib.sha256(weights).hexdigest()[:16]
    print(json.dumps({"compressed_bytes": len(data), "encode_s": encode_s, "decode_s": decode_s,
                      "encode_cpu_s": encode_cpu_s, "decode_cpu_s": decode_cpu_s,
                      "baseline_mib": baseline, "encode_peak_mib": encode_peak, "decode_peak_mib": decode_peak,
                      "note": info.get("note", ""), "package": info.get("package", ""),
                      "weights_sha256": info.get("weights_sha256", "")}))


# ---------------------------------------------------------------- measuring (the parent)

_snapshot: list[tuple[Path, str]] = []


def code_snapshot() -> tuple[Path, str]:
    """(folder, sha256 prefix) of a copy of the mriae package taken at the first call: every
    child imports mriae from it, so a run measures one state of the code even while the
    working tree is being edited (weights included; the hash covers the .py files)."""
    if not _snapshot:
        import mriae

        folder = Path(tempfile.mkdtemp(prefix="mriae-code-"))
        atexit.register(shutil.rmtree, folder, True)
        shutil.copytree(Path(mriae.__file__).parent, folder / "mriae", ignore=shutil.ignore_patterns("__pycache__"))
        digest = hashlib.sha256()
        for path in sorted((folder / "mriae").rglob("*.py")):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
        _snapshot.append((folder, digest.hexdigest()[:12]))
    return _snapshot[0]


def verdict(row: Row, original: np.ndarray, decoded: np.ndarray) -> Row:
    """``row`` with the decoded volume's PSNR and maximum error, and whether it keeps its promise."""
    from mriae.evaluation.metrics import max_abs_error, psnr

    if decoded.shape != original.shape:
        return replace(row, valid=False, note=f"decoded shape {decoded.shape} != {original.shape}")
    error, quality = max_abs_error(original, decoded), psnr(original, decoded)
    row = replace(row, psnr=quality, max_abs_error=error)
    if row.mode == "lossless":
        exact = decoded.dtype == original.dtype and np.array_equal(decoded, original)
        return replace(row, valid=exact, note=row.note if exact else f"NOT bit-exact (max error {error:g}); {row.note}")
    if row.mode == "bounded":
        kept = error <= row.target
        return replace(row, valid=kept, note=row.note if kept else f"max error {error:g} > E; {row.note}")
    if row.mode == "psnr":
        kept = quality >= row.target
        return replace(row, valid=kept, note=row.note if kept else f"{quality:.2f} dB < target; {row.note}")
    return replace(row, valid=True)


def measure(row: Row, source: Source, original: np.ndarray, scratch: Path) -> Row:
    """Run ``row`` in a fresh child process and check what it decoded."""
    row = replace(row, voxels=int(original.size))
    reason = unsupported(row, original)
    if reason:
        return replace(row, note=reason)
    decoded_path = scratch / "decoded.npy"
    spec = json.dumps({"row": asdict(row), "source": asdict(source), "decoded": str(decoded_path)})
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(code_snapshot()[0]), env.get("PYTHONPATH", "")])
    try:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", spec], capture_output=True,
                              text=True, env=env, timeout=CHILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return replace(row, note=f"failed: over {CHILD_TIMEOUT_S} s")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return replace(row, note=f"failed: {last[:160]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    package = result.pop("package")
    if package and not Path(package).is_relative_to(code_snapshot()[0]):
        raise RuntimeError(f"the child imported mriae from {package}, not from the run's snapshot")
    decoded = np.load(decoded_path)
    decoded_path.unlink()
    row = replace(row, bits_per_voxel=result["compressed_bytes"] * 8 / original.size,
                  **{k: v for k, v in result.items()})
    return verdict(row, original, decoded)


def run_volume(volume: str, split: str, source: Source, modes: Iterable[str], log: Callable[[str], None],
               psnr_targets: Sequence[float] = PSNR_TARGETS, weights: str = "") -> list[Row]:
    """Measure every fidelity-mode row of one volume, one child process at a time (mriae with
    the installed weights called ``weights``; "": the default)."""
    original, _ = source()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mriae-fidelity-") as scratch:
        for row in cases(volume, split, original, modes, psnr_targets, weights):
            row = measure(row, source, original, Path(scratch))
            rows.append(row)
            mark = "" if row.valid or row.note.startswith("n/a") else "  ✗"
            log(f"  {row.mode:>8} {row.codec:>16} {row.setting:>9}: {row.bits_per_voxel:8.4f} bpv "
                f"{row.psnr:7.2f} dB  max err {row.max_abs_error:g}  enc {row.encode_s:6.2f} s  dec {row.decode_s:6.2f} s  "
                f"peak {row.encode_peak_mib:5.0f}/{row.decode_peak_mib:5.0f} MiB  {row.note}{mark}")
    return rows


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """Write fidelity rows as CSV (mriae.evaluation's writer)."""
    from mriae.evaluation import report

    report.write_csv(rows, path, Row)


def read_csv(path: Path) -> list[Row]:
    """Read the rows :func:`write_csv` wrote."""
    from mriae.evaluation import report

    return report.read_csv(path, Row)


# ---------------------------------------------------------------- tables


def fmt(value: float, spec: str = ".3f", suffix: str = "") -> str:
    return "n/a" if not math.isfinite(value) else f"{value:{spec}}{suffix}"


def split_cell(split: str, group: str) -> str:
    """A volume's split column: "train", or "validation, <group>"."""
    return f"{split}, {group}" if split == "validation" else split


def mean_rows(values: dict[str, Sequence[float]], splits: dict[str, str], groups: dict[str, str],
              trailing: int = 0) -> list[str]:
    """Markdown rows "validation mean, <group> (n=…)" for each group of ``sources.GROUPS``,
    then "validation mean, all (n=…)", of a table of percentages whose volume rows have two
    leading columns (volume, split), the ``values`` volume → that row's values (nan: n/a), and
    ``trailing`` more columns (left empty here). Training volumes are in no mean; a volume
    missing from ``groups`` counts as OTHER. n: the group's validation volumes in the table; a
    cell averaged over fewer (n/a values left out) says over how many."""
    validation = [v for v in values if splits[v] == "validation"]
    members = [(f"validation mean, {title}", [v for v in validation if groups.get(v, OTHER) == group])
               for group, title in GROUPS.items()] + [("validation mean, all", validation)]
    columns = len(next(iter(values.values()), ()))
    lines = []
    for title, names in members:
        cells = []
        for i in range(columns):
            finite = [values[v][i] for v in names if math.isfinite(values[v][i])]
            cells.append(f"{np.mean(finite):+.1f}%" + ("" if len(finite) == len(names) else f" (n={len(finite)})")
                         if finite else "n/a")
        lines.append(f"| **{title} (n={len(names)})** | | " + " | ".join(cells) + " |" + " |" * trailing)
    return lines


def pareto(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (rate, PSNR) points that no other point beats in both: by rising rate, rising PSNR."""
    front: list[tuple[float, float]] = []
    for rate, quality in sorted(points, key=lambda p: (p[0], -p[1])):
        if math.isfinite(quality) and (not front or quality > front[-1][1]):
            front.append((rate, quality))
    return front


def bd_rate_window(anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]]
                   ) -> tuple[float, float, float]:
    """(BD-rate %, low, high) of (rate, PSNR) curves: fitted on the points within FIT_LIMITS,
    compared over BD_WINDOW ∩ the PSNRs both reach (mriae.evaluation.bdrate)."""
    from mriae.evaluation.bdrate import bd_interval, bd_rate

    anchor_psnrs, test_psnrs = [q for _, q in anchor], [q for _, q in test]
    value = bd_rate([r for r, _ in anchor], anchor_psnrs, [r for r, _ in test], test_psnrs, FIT_LIMITS, BD_WINDOW)
    return (value, *bd_interval(anchor_psnrs, test_psnrs, FIT_LIMITS, BD_WINDOW))


def mriae_curve(volume: str, rd_points: Sequence, rows: Sequence[Row]) -> list[tuple[float, float]]:
    """mriae's best files on ``volume``: its quality levels and its valid PSNR-target files."""
    points = [(p.bits_per_voxel, p.psnr) for p in rd_points if p.volume == volume and p.codec == "mriae"]
    points += [(r.bits_per_voxel, r.psnr) for r in rows if r.volume == volume and r.mode == "psnr" and r.valid]
    return pareto(points)


def psnr_tables(rd_points: Sequence, rows: Sequence[Row], groups: dict[str, str] | None = None) -> str:
    """(a): BD-rate over 30–50 dB (with the validation mean of each group: ``groups``, volume →
    group, see :func:`mean_rows`), and mriae's file at each PSNR target beside SPERR's rate there."""
    from mriae.evaluation.bdrate import bd_rate, rate_at

    anchors = ("sperr-3d", "jpeg2000-2d", "jpegxl-2d")
    volumes = list(dict.fromkeys(r.volume for r in rows if r.mode == "psnr"))
    head = " | ".join(f"vs {TITLES[a]}" for a in anchors)
    lines = [f"| volume | split | {head} | interval (dB) | mriae points in 30–50 dB | vs SPERR, only points in 30–50 dB fitted |",
             "|---|---|" + "---|" * (len(anchors) + 3)]
    groups = groups or {}
    values: dict[str, list[float]] = {}
    splits: dict[str, str] = {}
    for volume in volumes:
        split = splits[volume] = next(r.split for r in rows if r.volume == volume)
        values[volume] = []
        test = mriae_curve(volume, rd_points, rows)
        cells, interval = [], "n/a"
        for i, anchor in enumerate(anchors):
            curve = [(p.bits_per_voxel, p.psnr) for p in rd_points if p.volume == volume and p.codec == anchor]
            value, low, high = bd_rate_window(curve, test)
            cells.append(fmt(value, "+.1f", "%"))
            values[volume].append(value)
            if i == 0 and math.isfinite(value):
                interval = f"{low:.1f}–{high:.1f}"
        sperr = [p for p in rd_points if p.volume == volume and p.codec == "sperr-3d"]
        inside = sum(BD_WINDOW[0] <= q <= BD_WINDOW[1] for _, q in test)
        library = bd_rate([p.bits_per_voxel for p in sperr], [p.psnr for p in sperr], [r for r, _ in test],
                          [q for _, q in test], psnr_limits=BD_WINDOW) if sperr and test else math.nan
        lines.append(f"| {volume} | {split_cell(split, groups.get(volume, OTHER))} | " + " | ".join(cells)
                     + f" | {interval} | {inside} | {fmt(library, '+.1f', '%')} |")
    lines += mean_rows(values, splits, groups, trailing=3)
    table = "\n".join(lines)
    detail = ["| volume | target | mriae bpv (whole file) | dB reached | coder | SPERR 3D bpv at that dB | mriae / SPERR |",
              "|---|---|---|---|---|---|---|"]
    for row in (r for r in rows if r.mode == "psnr"):
        sperr = [p for p in rd_points if p.volume == row.volume and p.codec == "sperr-3d"]
        rate = rate_at([p.bits_per_voxel for p in sperr], [p.psnr for p in sperr], row.psnr) if sperr else math.nan
        ratio = row.bits_per_voxel / rate if math.isfinite(rate) and row.valid else math.nan
        shown = fmt(row.bits_per_voxel) + ("" if row.valid else " ✗")
        detail.append(f"| {row.volume} | {row.target:g} dB | {shown} | {fmt(row.psnr, '.2f')} | "
                      f"{row.note.removeprefix('coder ')} | {fmt(rate)} | {fmt(ratio, '.2f')} |")
    return table + "\n\n" + "\n".join(detail)


def versus_table(rows: Sequence[Row], mode: str, codecs: Sequence[str], keys: Sequence[str]) -> str:
    """(b) or (c): bits/voxel of each codec per volume (and bound), the best classical codec
    that kept its promise, and mriae's rate over it."""
    groups: dict[tuple, dict[str, Row]] = {}
    for row in rows:
        if row.mode == mode:
            groups.setdefault(tuple(getattr(row, k) for k in keys), {})[row.codec] = row
    names = {"volume": "volume", "percent": "% of range", "target": "E"}
    lines = ["| " + " | ".join(names[k] for k in keys) + " | " + " | ".join(TITLES[c] for c in codecs)
             + " | best classical | mriae / best |", "|---" * (len(keys) + len(codecs) + 2) + "|"]
    for key, by_codec in groups.items():
        valid = {c: r.bits_per_voxel for c, r in by_codec.items() if r.valid}
        classical = {c: v for c, v in valid.items() if c != "mriae"}
        winner = min(valid, key=valid.get) if valid else None
        cells = []
        for codec in codecs:
            row = by_codec.get(codec)
            if row is None or row.note.startswith(("n/a", "failed")):
                cells.append("n/a" if row is None or row.note.startswith("n/a") else "failed")
            elif not row.valid:
                cells.append(f"✗ {fmt(row.bits_per_voxel)} (err {row.max_abs_error:g})")
            else:
                cells.append(f"**{fmt(row.bits_per_voxel)}**" if codec == winner else fmt(row.bits_per_voxel))
        best = min(classical, key=classical.get) if classical else None
        ratio = valid["mriae"] / classical[best] if best and "mriae" in valid else math.nan
        lines.append("| " + " | ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in key) + " | "
                     + " | ".join(cells) + f" | {TITLES[best] if best else 'n/a'} | {fmt(ratio, '.2f')} |")
    return "\n".join(lines)


def seconds(value: float) -> str:
    """Two significant digits below 10 s (tiny volumes code in milliseconds), else whole tenths."""
    return f"{value:.2g}" if value < 10 else f"{value:.1f}"


def speed_table(rows: Sequence[Row]) -> str:
    """(d): per mode and codec, median encode / decode seconds over its settings and the
    largest peak resident set (and the largest rise over the loaded process), per volume."""
    volumes = list(dict.fromkeys(r.volume for r in rows))
    keys = list(dict.fromkeys((r.mode, r.codec) for r in rows))
    lines = ["| mode | codec | " + " | ".join(volumes) + " |", "|---|---|" + "---|" * len(volumes)]
    for mode, codec in keys:
        cells = []
        for volume in volumes:
            measured = [r for r in rows if (r.mode, r.codec, r.volume) == (mode, codec, volume) and math.isfinite(r.encode_s)]
            if not measured:
                cells.append("n/a")
                continue
            peak = max(max(r.encode_peak_mib, r.decode_peak_mib) for r in measured)
            rise = max(max(r.encode_peak_mib, r.decode_peak_mib) - r.baseline_mib for r in measured)
            cells.append(f"{seconds(np.median([r.encode_cpu_s for r in measured]))} / "
                         f"{seconds(np.median([r.decode_cpu_s for r in measured]))} s, "
                         f"{peak:.0f} (+{rise:.0f}) MiB")
        lines.append(f"| {mode} | {TITLES[codec]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(rd_points: Sequence, rows: Sequence[Row], groups: dict[str, str] | None = None) -> str:
    """The fidelity-mode tables in Markdown (``groups``: volume → validation group, for the
    means of the BD-rate table)."""
    parts = []
    if any(r.mode == "psnr" for r in rows):
        parts.append(f"(a) BD-rate over {BD_WINDOW[0]:g}–{BD_WINDOW[1]:g} dB, mriae's curve = its quality levels + its "
                     f"--psnr files (the Pareto front of both); negative: fewer bits than the anchor at equal PSNR. "
                     f"Cubics fitted through every point in {FIT_LIMITS[0]:g}–{FIT_LIMITS[1]:g} dB, their difference "
                     f"averaged over the interval shown (30–50 dB ∩ both curves). Last column: "
                     f"mriae.evaluation.bd_rate with psnr_limits=(30, 50), which fits only the points inside "
                     f"(n/a under 4 points)\n\n" + psnr_tables(rd_points, rows, groups))
    if any(r.mode == "bounded" for r in rows):
        parts.append("(b) Maximum absolute error E: bits/voxel (mriae: whole .mriae file; classical: codestream). "
                     "Bold: smallest that kept its bound; ✗: decoded beyond E (not counted); "
                     "mriae / best < 1: mriae smaller\n\n"
                     + versus_table(rows, "bounded", BOUNDED_CODECS, ("volume", "percent", "target")))
    if any(r.mode == "lossless" for r in rows):
        parts.append("(c) Lossless: bits/voxel (mriae: whole .mriae file; classical: codestream), every result "
                     "checked bit-exact (✗: not)\n\n" + versus_table(rows, "lossless", LOSSLESS_CODECS, ("volume",)))
    if rows:
        parts.append("(d) Encode / decode CPU seconds (median over the settings of the mode; wall-clock seconds "
                     "are in fidelity.csv, inflated when the machine is shared) and peak resident set of "
                     "the process (largest over the settings; + the rise over the process with the volume loaded "
                     "and the codec's libraries imported — torch for mriae), one fresh process per codec × setting, "
                     "one thread\n\n" + speed_table(rows))
    return "\n\n".join(parts)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        sys.exit("fidelity.py is run by rd.py (see its docstring); `--child SPEC` is its per-codec worker")
