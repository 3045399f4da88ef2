"""Command line: ``mriae compress | decompress | info | batch | evaluate | train``.

A thin face over :mod:`mriae.api`. Every failure ends in one line on stderr, never wrapped,
and an exit code (docs/errors.md): 1 for a bad file or a failed run, 2 for a bad command
line, 130 for Ctrl-C, 143 for SIGTERM and 129 for SIGHUP (both turned into an exception,
so that partial outputs are removed on the way out); ``--debug`` shows the traceback
instead. Outputs are checked before any work, written whole or not at all, and never
replace a file without ``--force`` (:mod:`mriae.io.atomic`). A reader that goes away
(``mriae info x.mriae | head -1``) ends the command quietly with exit code 141, as it ends
``cat`` and ``gzip``. Each command imports what it needs: ``mriae info`` and ``--help`` never
load torch or MONAI (tests/test_startup.py).
"""

from __future__ import annotations

import sys

try:  # Ctrl-C while the modules load ends like any interrupt
    import json
    import math
    import os
    import re
    import signal
    import time
    from collections.abc import Callable, Iterator
    from contextlib import ExitStack, contextmanager
    from dataclasses import dataclass
    from pathlib import Path
    from typing import TYPE_CHECKING, Annotated, BinaryIO

    import numpy as np
    import typer
    from rich.console import Console
    from rich.progress import Progress as ProgressBar
    from rich.text import Text

    from mriae import api
    from mriae.container import ContainerError
    from mriae.extras import MissingExtra
    from mriae.fidelity import DEFAULT_QUALITY, Fidelity
    from mriae.formats import MRIAE_SUFFIX, OUTPUT_FORMATS, WRITTEN_SUFFIXES, cannot_write, restored_suffix
    from mriae.header import Header, VolumeInfo, read_header
    from mriae.header import read as read_container
    from mriae.io import ImageError
    from mriae.io.atomic import UnwritableOutput, check_targets, staging_folder
    from mriae.io.image import file_stem, one_line, output_suffix, stored_scale
    from mriae.io.scale import written_as
    from mriae.io.stream import STDIN_NAME, spooled_image, write_image_to
    from mriae.parallel import available_cores, checked_device
    from mriae.transforms.tiles import region_of
except KeyboardInterrupt:
    sys.stderr.write("interrupted\n")
    raise SystemExit(130) from None

if TYPE_CHECKING:
    from mriae.batch import BatchJob
    from mriae.codec import Stats

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Learned compression for MRI volumes.")
console = Console(stderr=True)
EXPECTED_ERRORS = (ImageError, ContainerError, OSError, ValueError, KeyError, MissingExtra)
"""Failures of the input or the environment (CodecError is a ValueError; MissingExtra: an
optional dependency not installed), reported as they are; anything else is an internal error."""

Force = Annotated[bool, typer.Option("--force", "-f", help="Replace existing output files.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
Output = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Output file (- for stdout), or an existing folder (the only choice for several inputs); "
    "default: beside each input.")]
Threads = Annotated[int | None, typer.Option(
    "--threads", min=1, help="Tiles coded at once (default: every core); the output does not depend on it.")]
Device = Annotated[str, typer.Option(
    "--device", metavar="cpu|cuda|auto", help="Where the network runs: cpu (the same bytes on every machine), "
    "cuda[:N], or auto (a GPU when torch sees one; its floats may give other bytes, decodable anywhere).")]
Quality = Annotated[int | None, typer.Option(
    "--quality", "-Q", help="Network level: 1 (smallest) … 8 (best); default 5.")]
MriaeFiles = Annotated[list[Path], typer.Argument(
    help=".mriae files; - reads one from stdin.", metavar="FILE", show_default=False)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No messages but errors.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="More: how each volume is coded, threads, timings.")]
MaxError = Annotated[float | None, typer.Option(
    "--max-error", help="Every voxel within this absolute error, in stored units (3D context coder); 0: lossless.")]
Lossless = Annotated[bool, typer.Option("--lossless", help="Bit-exact voxels (3D context coder).")]
TargetPsnr = Annotated[float | None, typer.Option(
    "--psnr", help="The smallest file reaching at least this PSNR in dB (network, context or wavelet coder).")]


class UsageError(ValueError):
    """A problem with the command line itself (exit code 2)."""


NAMES_ITS_FILE = (FileExistsError, UnwritableOutput, UsageError, MissingExtra)
"""Errors whose message names the file it is about (a MissingExtra names the file that needs
the extra, if one does): not prefixed with the input's name."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so that partial outputs are removed on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextmanager
def signals_raised() -> Iterator[None]:
    """While the command runs, SIGTERM and SIGHUP raise :class:`Terminated`."""
    previous = {signum: signal.signal(signum, _terminate) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def complain(message: str, label: str | None = "error") -> None:
    """Write ``label: message`` as one line on stderr, never wrapped."""
    line = Text.assemble((f"{label}:", "red"), " ", message) if label else Text(message)
    console.print(line, soft_wrap=True, highlight=False)


def say(text: str) -> None:
    """Print a result line on stdout. If the reader has gone (``| head``), stop quietly
    with exit code 141 (128 + SIGPIPE), as ``cat`` and ``gzip`` do."""
    with reader_kept():
        typer.echo(text)


@contextmanager
def reader_kept() -> Iterator[None]:
    """Write to stdout inside; if its reader has gone, stop quietly with exit code 141."""
    try:
        yield
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # what is left to flush goes nowhere
        raise typer.Exit(141) from None


def error_line(error: Exception, path: Path, doing: str) -> str:
    """The one line that reports ``error``, met while ``doing`` something to ``path``."""
    if isinstance(error, MemoryError):
        return f"out of memory while {doing} {path}"
    message = one_line(error)
    if not isinstance(error, EXPECTED_ERRORS):
        return f"{path}: internal error: {type(error).__name__}: {message} (run with --debug for the traceback)"
    if isinstance(error, NAMES_ITS_FILE) or str(path) in message:
        return message
    return f"{path}: {message}"


@contextmanager
def reported_errors(path: Path, debug: bool, doing: str) -> Iterator[None]:
    """Turn any failure into one line on stderr and its exit code: 2 for usage errors, 1 for
    the rest, 130 (Ctrl-C) or 128 + signal (SIGTERM, SIGHUP) for interrupts. With ``debug``,
    errors propagate with their traceback."""
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt as interrupt:
        complain("interrupted", label=None)
        raise typer.Exit(interrupt.exit_code if isinstance(interrupt, Terminated) else 130) from None
    except Exception as error:
        if debug:
            raise
        complain(error_line(error, path, doing))
        raise typer.Exit(2 if isinstance(error, UsageError) else 1) from None


def check_not_input(source: Path, target: Path) -> None:
    """Refuse an output that is the input itself (even with ``--force``); stdin (``-``) is no file."""
    if str(source) != "-" and target.resolve() == source.resolve():
        raise UsageError(f"output {target} would overwrite the input")


def check_quality(quality: int) -> None:
    """UsageError unless ``quality`` is a level of the installed weights."""
    from mriae.models.weights import load_codec

    levels = load_codec().qualities
    if quality not in levels:
        raise UsageError(f"--quality must be a level {level_range(levels)} (got {quality})")


def fidelity_of(quality: int | None, max_error: float | None, lossless: bool, psnr: float | None) -> Fidelity:
    """The fidelity the options ask for; UsageError (one line, naming the options) for two
    at once or a bad value. A quality level is checked against the installed weights."""
    given = [flag for flag, value in (("--quality", quality), ("--max-error", max_error), ("--psnr", psnr))
             if value is not None] + ["--lossless"] * lossless
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} cannot be combined: give one of -Q/--quality, --max-error, "
                         "--lossless, --psnr")
    if quality is not None:
        check_quality(quality)
    try:
        return Fidelity.of(quality, max_error, lossless, psnr)
    except ValueError as error:
        raise UsageError(f"bad {given[0]}: {one_line(error)}") from None


CODER_WORDS = {"network": "network", "context": "context coder", "wavelet": "wavelet coder", "exact": "stored exactly"}


def coder_words(stats: Stats) -> str:
    """How a file was coded, in words."""
    return CODER_WORDS.get(stats.coder, stats.coder)


def achieved(stats: Stats, header: Header) -> str:
    """What a compression achieved: the coder, the largest error (against the bound the file
    promises, and in physical units for a NIfTI whose scl_slope scales the stored values),
    and the PSNR."""
    if math.isinf(stats.psnr):
        return f"{coder_words(stats)}, lossless"
    bound = header.max_error
    text = f"{coder_words(stats)}, max error {stats.max_error:g}"
    if bound:
        text += f" (bound {bound:g}, {stats.at_bound:.1%} of voxels at it)"
    text += f", PSNR {stats.psnr:.2f} dB"
    if stats.outliers:
        text += f" ({stats.outliers} outlier voxel{'s' * (stats.outliers > 1)} stored exactly)"
    slope = stored_scale(header.image.source)
    if slope is not None:
        text += (f"; errors are in stored units, × |scl_slope| {slope:g} in physical units "
                 f"(max error {stats.max_error * slope:g}" + (f", bound {bound * slope:g})" if bound else ")"))
    return text


def level_range(levels: range) -> str:
    """``levels`` as ``first..last``."""
    return f"{levels.start}..{levels.stop - 1}"


@contextmanager
def volume_progress(label: str, shown: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A progress callback that shows a bar only when a file holds several volumes (and
    ``shown``: not with -q)."""
    bar: ProgressBar | None = None
    task = None

    def advance(done: int, total: int) -> None:
        nonlocal bar, task
        if total < 2 or not shown:
            return
        if bar is None:
            bar = ProgressBar(console=console, transient=True, disable=not console.is_terminal)
            bar.start()
            task = bar.add_task(label, total=total)
        bar.update(task, completed=done)

    try:
        yield advance
    finally:
        if bar is not None:
            bar.stop()


def human_bytes(count: float) -> str:
    """``count`` bytes in B, kB, MB or GB (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count} B"


def usable_device(word: str) -> str:
    """``--device`` checked (:func:`mriae.parallel.checked_device`); UsageError otherwise."""
    try:
        return checked_device(word)
    except ValueError as error:
        raise UsageError(f"--device: {error}") from None


def parse_spacing(text: str | None) -> tuple[float, float, float] | None:
    """Voxel size from ``--spacing`` ('1' or '1,1,2'); UsageError unless positive and finite."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not all(v > 0 and math.isfinite(v) for v in values):
        raise UsageError(f"--spacing must be one or three positive numbers in mm (got '{text}')")
    return values  # type: ignore[return-value]


def parse_downsample(text: str | None) -> int:
    """The preview factor ``--downsample`` gives (1 without it); UsageError unless 2 or 4."""
    if text is None:
        return 1
    if text.strip() not in ("2", "4"):
        raise UsageError(f"--downsample must be 2 or 4 (got '{text}')")
    return int(text)


def parse_roi(text: str | None, shape: tuple[int, int, int]) -> tuple[slice, slice, slice] | None:
    """The region ``--roi x0:x1,y0:y1,z0:z1`` selects in a volume of ``shape`` (an omitted
    bound is the axis's end, as in Python); UsageError unless three whole ranges within it."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        if len(parts) != 3 or any(part.count(":") != 1 for part in parts):
            raise ValueError(text)
        roi = tuple(slice(*(int(v) if v.strip() else None for v in part.split(":"))) for part in parts)
    except ValueError:
        raise UsageError(f"bad --roi '{text}': give x0:x1,y0:y1,z0:z1, voxel indices, half-open like Python "
                         "slices") from None
    try:
        region_of(roi, shape)
    except ValueError as error:
        raise UsageError(f"bad --roi '{text}': {error}") from None
    return roi  # type: ignore[return-value]


STDIO = "-"
"""An input or output of ``-``: stdin or stdout."""
STDIN = Path(STDIN_NAME)
STDOUT_NAME = "<stdout>"


def listed(words: list[str]) -> str:
    """``words`` as ``a, b or c``."""
    return " or ".join(filter(None, [", ".join(words[:-1]), words[-1]]))


SINGLE_FILE_WORDS = listed([word for word, kind in OUTPUT_FORMATS.items() if kind.single_file])
"""The --format words stdout takes: ``nii, nii.gz, nrrd, mha, mgz or mgh``."""


def is_stdio(path: Path | None) -> bool:
    """True for ``-``: stdin as an input, stdout as an output."""
    return path is not None and str(path) == STDIO


def check_stdin(inputs: list[Path]) -> None:
    """Refuse, before any work, ``-`` among several inputs, and binary data from a terminal."""
    if len(inputs) > 1 and any(is_stdio(input) for input in inputs):
        raise UsageError("- (stdin) cannot be mixed with other inputs")
    if is_stdio(inputs[0]) and sys.stdin is not None and sys.stdin.isatty():
        raise UsageError("refusing to read binary data from a terminal; give a file or redirect")


def check_inputs(inputs: list[Path], output: Path | None, folders: bool = False) -> bool:
    """Refuse, before any work, what :func:`check_stdin` refuses, a ``-o`` that is not an
    existing folder for several inputs, a folder for stdin, and binary data to a terminal;
    True when the output goes to stdout (``-o -``, or stdin without ``-o``). ``folders``:
    each output is a folder (``--format dicom``), never stdout: stdin needs ``-o FOLDER``."""
    check_stdin(inputs)
    if len(inputs) > 1 and output is not None and not output.is_dir():
        raise UsageError(f"-o {output}: with several inputs, -o must be an existing folder")
    reads_stdin = is_stdio(inputs[0])
    if folders:
        if reads_stdin and output is None:
            raise UsageError("--format dicom writes a folder of files: give -o FOLDER for what comes from stdin")
        return False
    if reads_stdin and output is not None and output.is_dir():
        raise UsageError(f"-o {output} is a folder: give -o FILE (or -o -) for what comes from stdin")
    to_stdout = is_stdio(output) or (output is None and reads_stdin)
    if to_stdout and sys.stdout.isatty():
        raise UsageError("refusing to write binary data to a terminal; use -o FILE or redirect")
    return to_stdout


def named(path: Path) -> Path:
    """``path`` as messages name it: STDIN for ``-``."""
    return STDIN if is_stdio(path) else path


def read_mriae_input(input: Path) -> bytes:
    """The .mriae bytes of ``input``, a file or ``-`` (stdin)."""
    return api.read_mriae_stream(stdin_bytes()) if is_stdio(input) else api.read_mriae(input)


def target_of(input: Path, output: Path | None, default: Path) -> Path | None:
    """Where the output of ``input`` goes (None: stdout): ``-o``'s file, a file named as
    ``default`` in ``-o``'s folder, or ``default`` (beside the input)."""
    if is_stdio(output) or (output is None and is_stdio(input)):
        return None
    if output is None:
        return default
    return output / default.name if output.is_dir() else output


def claim(target: Path, input: Path, claimed: dict[Path, Path]) -> None:
    """Refuse a ``target`` that an earlier input of this command was given (``claimed``:
    target → input), so that one never replaces another's output, even with --force."""
    key = target.resolve()
    if key in claimed:
        raise ValueError(f"{target} is the output of {claimed[key]}, an earlier input of this command")
    claimed[key] = input


def shown(path: Path | None, stdio: str) -> str:
    """``path`` as messages name it: ``stdio`` (<stdin>, <stdout>) for ``-`` or None."""
    return stdio if path is None or is_stdio(path) else str(path)


def stdin_bytes() -> BinaryIO:
    """The binary stream of stdin."""
    return sys.stdin.buffer


def write_stdout(write: Callable[[BinaryIO], None]) -> None:
    """Let ``write`` put a file's bytes on stdout (nothing else goes there meanwhile); a
    reader that has gone ends the command with 141, as in :func:`say`."""
    with reader_kept():
        sys.stdout.flush()
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()


def each_input(inputs: list[Path], debug: bool, doing: str, work: Callable[[Path], None]) -> None:
    """Run ``work`` on every input in turn: a failure is its one line on stderr and the others
    go on; at the end, the exit code of the failure for one input, 1 if any of several failed.
    An interrupt or a closed stdout (exit codes from 128) stops at once."""
    codes: list[int] = []
    for input in inputs:
        try:
            with reported_errors(named(input), debug, doing):
                work(input)
        except typer.Exit as stop:
            if stop.exit_code >= 128:
                raise
            codes.append(stop.exit_code)
    if codes:
        raise typer.Exit(codes[0] if len(inputs) == 1 else 1)


@dataclass(frozen=True)
class Messages:
    """Where a command's messages go: ``level`` 0 shows none but errors (-q), 1 the result
    lines, 2 details too (-v); on stderr when stdout carries a file's bytes."""

    level: int = 1
    on_stderr: bool = False

    @classmethod
    def of(cls, quiet: bool, verbose: bool, on_stderr: bool = False) -> Messages:
        """The messages -q and -v ask for; UsageError for both."""
        if quiet and verbose:
            raise UsageError("-q/--quiet and -v/--verbose cannot be combined")
        return cls(1 - quiet + verbose, on_stderr)

    def result(self, text: str) -> None:
        """A result line (not with -q)."""
        if self.level >= 1:
            self._show(text)

    def details(self, lines: Callable[[], list[str]]) -> None:
        """The lines that ``lines`` makes, made and shown only with -v."""
        if self.level >= 2:
            for line in lines():
                self._show(line)

    def _show(self, text: str) -> None:
        if self.on_stderr:
            complain(text, label=None)
        else:
            say(text)


QUALITY_COMMANDS = frozenset({"compress", "batch"})
"""Commands whose quality option was -q before -q meant --quiet."""
OLD_QUALITY = re.compile(r"-q([0-9]+)")


def quality_option_renamed(args: list[str]) -> tuple[list[str], list[str]]:
    """``args`` with the old quality option, ``-q N`` or ``-qN`` (a number after -q) in a
    command that takes a quality, turned into ``--quality N``, and a deprecation warning for
    each; a bare ``-q``, or one before the name of an existing file or folder (``mriae
    compress -q 1 2``: inputs 1 and 2), is --quiet."""
    command = next((arg for arg in args if not arg.startswith("-")), None)
    if command not in QUALITY_COMMANDS:
        return list(args), []
    renamed: list[str] = []
    warnings: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            renamed += args[index:]
            break
        attached = OLD_QUALITY.fullmatch(arg)
        value = attached.group(1) if attached else None
        if (arg == "-q" and index + 1 < len(args) and re.fullmatch("[0-9]+", args[index + 1])
                and not os.path.lexists(args[index + 1])):
            value = args[index + 1]
            index += 1
        index += 1
        if value is None:
            renamed.append(arg)
            continue
        renamed += ["--quality", value]
        warnings.append(f"-q {value} for the quality level is deprecated: use -Q {value} or --quality {value} "
                        "(-q now means --quiet)")
    return renamed, warnings


def volume_words(volume: VolumeInfo) -> str:
    """How one volume is coded, in words (mriae -v)."""
    if volume.exact:
        return "stored exactly"
    if volume.context is not None:
        error = volume.context.error
        return "context coder, lossless" if error == 0 else f"context coder, every voxel within {error:g}"
    if volume.wavelet is not None:
        return f"wavelet coder, every voxel within {volume.wavelet.error:g}"
    if volume.tiling is None:
        return "network, constant (nothing coded)"
    tiles = volume.tiling.count
    text = f"network, {tiles} tile{'s' * (tiles > 1)}" + (f" of {volume.tiling.size}³" if volume.tiling.size else "")
    if volume.outliers:
        text += f", {volume.outliers} outlier voxel{'s' * (volume.outliers > 1)} stored exactly"
    return text


def coding_details(data: bytes, threads: int | None, timing: str) -> list[str]:
    """What -v adds about the .mriae ``data``: each volume's coder and the bytes of its code,
    the threads that code tiles, and ``timing``."""
    header, chunks = read_container(data)
    count = len(header.volumes)
    lines = []
    first = 0
    for number, volume in enumerate(header.volumes, 1):
        size = sum(len(chunk) for chunk in chunks[first:first + volume.chunks])
        first += volume.chunks
        lines.append(f"  volume {number}/{count}: {volume_words(volume)}, {human_bytes(size)}")
    workers = threads or available_cores()
    lines.append(f"  {workers} thread{'s' * (workers > 1)} for tiles; {timing}")
    return lines


def seconds_since(start: float) -> str:
    """The time since ``start`` (``time.perf_counter()``) in words."""
    return f"{time.perf_counter() - start:.2f} s"


@app.command()
def compress(
    inputs: Annotated[list[Path], typer.Argument(
        help="Image files (NIfTI, NRRD, MetaImage, MGH, Analyze/NIfTI pairs, MINC, PAR/REC, AFNI, ECAT) or folders of "
        "DICOM files; - reads one from stdin (.nii, .nii.gz, .nrrd, .mha).", metavar="FILE", show_default=False)],
    output: Output = None,
    quality: Quality = None,
    max_error: MaxError = None,
    lossless: Lossless = False,
    psnr: TargetPsnr = None,
    spacing: Annotated[str | None, typer.Option(help="Code on this voxel size (mm), e.g. 1 or 1,1,2; undone on decode.")] = None,
    threads: Threads = None,
    device: Device = "cpu",
    series: Annotated[str | None, typer.Option(
        "--series", metavar="UID", help="The Series Instance UID to read from a DICOM folder holding several.")] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
    force: Force = False,
    debug: Debug = False,
) -> None:
    """Compress MRI volumes to .mriae, each beside its input (or into -o): at a quality level
    (default 5), within a maximum error, lossless, or to a PSNR (give at most one). One line
    per file; if some fail, the others are still done and the exit code is 1."""
    with reported_errors(named(inputs[0]), debug, "compressing"):
        fidelity = fidelity_of(quality, max_error, lossless, psnr)
        coding_spacing = parse_spacing(spacing)
        network = usable_device(device)
        messages = Messages.of(quiet, verbose, check_inputs(inputs, output))
        if series is not None:
            check_series_inputs(inputs)
    claimed: dict[Path, Path] = {}

    def compress_one(input: Path) -> None:
        started = time.perf_counter()
        target = target_of(input, output, beside(input, MRIAE_SUFFIX))
        if target is not None:
            check_not_input(input, target)
            claim(target, input, claimed)
        with ExitStack() as stack:
            source = stack.enter_context(spooled_image(stdin_bytes())) if is_stdio(input) else input
            with volume_progress("compressing", messages.level > 0) as progress:
                data, stats = api.compress(source, target, quality=fidelity.quality, max_error=fidelity.max_error,
                                           lossless=fidelity.lossless, psnr=fidelity.psnr, spacing=coding_spacing,
                                           progress=progress, force=force, threads=threads, device=network,
                                           series=series)
        if target is None:
            write_stdout(lambda stream: stream.write(data))
        messages.result(
            f"{shown(input, STDIN_NAME)} → {shown(target, STDOUT_NAME)}: {human_bytes(stats.original_bytes)} → "
            f"{human_bytes(stats.compressed_bytes)} ({stats.ratio:.1f}×), {stats.bits_per_voxel:.3f} bits/voxel, "
            f"{achieved(stats, read_header(data))}"
        )
        timing = f"{seconds_since(started)} in all (read, code, verify, write)"
        messages.details(lambda: coding_details(data, threads, timing))

    each_input(inputs, debug, "compressing", compress_one)


def check_series_inputs(inputs: list[Path]) -> None:
    """Refuse, before any work, ``--series`` with stdin or an input that is not a folder of
    DICOM files (one without an image suffix; a missing input is reported as such later)."""
    for input in inputs:
        if is_stdio(input) or (input.exists() and (not input.is_dir() or output_suffix(input))):
            raise UsageError(f"--series picks a series in a folder of DICOM files; {shown(input, STDIN_NAME)} is not "
                             "one")


def parse_format(word: str | None, output: Path | None) -> str | None:
    """The ``--format`` word (None without one), checked against ``-o``: an output file's
    suffix must agree with it, a name without an image suffix needs it (and a single-file
    format, as stdout does); UsageError otherwise."""
    if word is not None and word not in OUTPUT_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(OUTPUT_FORMATS)} (got '{word}')")
    if word == "dicom":
        if is_stdio(output):
            raise UsageError(f"--format dicom writes a folder of files, which stdout cannot take: use -o FOLDER, or "
                             f"--format {SINGLE_FILE_WORDS}")
        if output is not None and output_suffix(output):
            raise UsageError(f"{output}: --format dicom writes a folder of files: name it without an image suffix")
        return word
    chosen = OUTPUT_FORMATS.get(word)
    if is_stdio(output) and chosen is not None and not chosen.single_file:
        raise UsageError(f"--format {word} writes a header and a data file, which stdout cannot take: use -o FILE, "
                         f"or --format {SINGLE_FILE_WORDS}")
    if output is None or is_stdio(output) or output.is_dir():
        return word
    suffix = output_suffix(output)
    if chosen is None and not suffix:
        raise UsageError(f"{output}: unsupported output type (use {listed(list(WRITTEN_SUFFIXES))}, or --format WORD)")
    if suffix and cannot_write(output):
        raise UsageError(f"{output}: {cannot_write(output)}")
    if chosen is not None and suffix and suffix != chosen.suffix:
        raise UsageError(f"{output}: its name says {suffix}, but --format says {word}")
    if chosen is not None and not suffix and not chosen.single_file:
        raise UsageError(f"{output}: --format {word} writes a header and a data file: name the output "
                         f"NAME{chosen.suffix}")
    return word


def format_suffix(word: str | None, recorded: str, to_stdout: bool) -> tuple[str, str]:
    """The suffix of what decompress writes when -o does not name it, and a note when that is
    not the original format: --format's, else the file's original one (``recorded``; NIfTI for
    formats nibabel cannot write: :func:`mriae.formats.restored_suffix`), which stdout takes
    only if it is a single file."""
    if word is not None:
        return OUTPUT_FORMATS[word].suffix, ""
    suffix, note = restored_suffix(recorded)
    if to_stdout and not any(kind.single_file and kind.suffix == suffix for kind in OUTPUT_FORMATS.values()):
        raise UsageError(f"the original format ({suffix}) is not a single file, which stdout needs: give "
                         f"--format {SINGLE_FILE_WORDS}")
    return suffix, note


def beside(input: Path, suffix: str) -> Path:
    """``input``'s name with ``suffix`` instead of its image suffix (a folder's whole name),
    beside it: scan.nii.gz → scan.mriae, T1/ → T1.mriae, scan.mriae → scan (with suffix '')."""
    if input.is_dir() and not output_suffix(input):
        folder = input if input.name not in ("", ".", "..") else input.resolve()
        return folder.with_name(folder.name + suffix)
    return input.with_name(file_stem(input) + suffix)


@app.command()
def decompress(
    inputs: MriaeFiles,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Output file, or folder (several inputs; --format dicom).")] = None,
    format: Annotated[str | None, typer.Option(
        "--format", metavar="WORD", help=f"Output format: {', '.join(OUTPUT_FORMATS)} (default: -o's suffix, else the "
        f"original format, NIfTI for those nibabel cannot write). Stdout (-o -) takes {SINGLE_FILE_WORDS}; -o NAME "
        "without an image suffix is written as it is named. dicom: a file made from a DICOM series back as one, a "
        "file per slice, into the folder -o (default: the file's name without .mriae); key attributes as they were, "
        "new Series and SOP Instance UIDs.")] = None,
    roi: Annotated[str | None, typer.Option(
        "--roi", help="Only this region, x0:x1,y0:y1,z0:z1 (voxel indices, half-open like Python slices), with its "
        "own affine; network-coded files decode only the tiles it needs, others are decoded whole and cropped.")] = None,
    downsample: Annotated[str | None, typer.Option(
        "--downsample", metavar="2|4", help="A preview, each axis shrunk by 2 or 4, with its own affine: network-coded "
        "files give block averages of a full decode (no faster); bounded/lossless ones a subsample (every f-th voxel, "
        "not an average), decoded from the stream's coarse levels only (faster; the whole-volume checksum is not "
        "verified then); exactly stored ones (labels) a subsample. Not with --roi.")] = None,
    threads: Threads = None,
    device: Device = "cpu",
    quiet: Quiet = False,
    verbose: Verbose = False,
    force: Force = False,
    debug: Debug = False,
) -> None:
    """Restore .mriae files to their original format, grid, dtype and header (or a region, or a
    preview), each beside its input (or into -o). One line per file; if some fail, the others
    are still done and the exit code is 1."""
    with reported_errors(named(inputs[0]), debug, "decompressing"):
        factor = parse_downsample(downsample)
        network = usable_device(device)
        if factor != 1 and roi is not None:
            raise UsageError("--downsample and --roi cannot be combined")
        word = parse_format(format, output)
        to_stdout = check_inputs(inputs, output, folders=word == "dicom")
        messages = Messages.of(quiet, verbose, to_stdout)
    claimed: dict[Path, Path] = {}

    def decompress_one(input: Path) -> None:
        started = time.perf_counter()
        data = read_mriae_input(input)
        header = read_header(data)
        region = parse_roi(roi, header.image.volume_shape)
        if word == "dicom":
            folder = output / file_stem(input) if output is not None and len(inputs) > 1 else output
            target = folder or beside(input, "")
            check_not_input(input, target)
            claim(target, input, claimed)
            image = api.decompress(data, target, roi=region, downsample=factor, force=force, threads=threads,
                                   device=network, format="dicom")
            count = image.array.shape[2]
            messages.result(f"{shown(input, STDIN_NAME)} → {target}: {count} DICOM file{'s' * (count > 1)}, shape "
                            f"{tuple(image.array.shape)}, {image.array.dtype}")
            timing = f"{seconds_since(started)} in all (read, decode, write)"
            messages.details(lambda: coding_details(data, threads, timing))
            return
        suffix, note = format_suffix(word, header.image.suffix, to_stdout)
        target = target_of(input, output, input.with_name(file_stem(input) + suffix))
        unnamed = target is not None and not output_suffix(target)  # -o NAME --format WORD: written as named
        if target is not None:
            check_not_input(input, target)
            claim(target, input, claimed)
            if unnamed:
                check_targets([target], force)
        written_suffix = (target is not None and output_suffix(target)) or suffix
        written_as(header.image.source, header.image.dtype, written_suffix)  # refuses what it cannot hold, now
        with volume_progress("decompressing", messages.level > 0) as progress:
            image = api.decompress(data, None if target is None or unnamed else target, roi=region,
                                   downsample=factor, progress=progress, force=force, threads=threads,
                                   device=network)
        decoded = seconds_since(started)
        if target is None:
            write_stdout(lambda stream: write_image_to(image, stream, suffix))
        elif unnamed:
            with staging_folder(target.parent, force) as scratch, open(scratch / target.name, "wb") as stream:
                write_image_to(image, stream, suffix)
        written = written_as(image.source, image.array.dtype, written_suffix)
        notes = [text for text in (note if written_suffix == suffix else "", written.note) if text]
        messages.result(f"{shown(input, STDIN_NAME)} → {shown(target, STDOUT_NAME)}: shape {tuple(image.array.shape)}, "
                        f"{written.dtype}" + "".join(f" ({text})" for text in notes))
        timing = f"{seconds_since(started)} in all ({decoded} to read and decode)"
        messages.details(lambda: coding_details(data, threads, timing))

    each_input(inputs, debug, "decompressing", decompress_one)


def show_version(value: bool) -> None:
    """``--version``: print the version and stop."""
    if value:
        from mriae import __version__

        say(f"mriae {__version__}")
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Learned compression for MRI volumes."""


@app.command()
def test(
    inputs: MriaeFiles,
    threads: Threads = None,
    device: Device = "cpu",
    quiet: Quiet = False,
    verbose: Verbose = False,
    debug: Debug = False,
) -> None:
    """Decode .mriae files and verify every checksum, writing nothing (like gzip -t): one line
    per file; exit code 1 if any fails."""
    with reported_errors(named(inputs[0]), debug, "testing"):
        check_stdin(inputs)
        network = usable_device(device)
        messages = Messages.of(quiet, verbose)

    def test_one(input: Path) -> None:
        started = time.perf_counter()
        data = read_mriae_input(input)
        image = api.decompress(data, threads=threads, device=network)
        messages.result(f"{shown(input, STDIN_NAME)}: OK, shape {tuple(image.array.shape)}, {image.array.dtype}")
        timing = f"{seconds_since(started)} to read and decode"
        messages.details(lambda: coding_details(data, threads, timing))

    each_input(inputs, debug, "testing", test_one)


@app.command()
def info(
    input: Annotated[Path, typer.Argument(help=".mriae file; - reads one from stdin.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the header as JSON (full precision).")] = False,
    debug: Debug = False,
) -> None:
    """Describe an .mriae file without decoding it."""
    with reported_errors(named(input), debug, "reading"):
        check_stdin([input])
        data = read_mriae_input(input)
        summary = _summary(named(input), len(data), read_header(data))
        if as_json:
            say(json.dumps(summary, indent=2))
            return
        model = summary["model"]
        summary["model"] = f"{model['name']} (sha256 {model['sha256']}…)" if model["name"] else "none"
        summary["mode"] = MODE_WORDS[summary["mode"]].format(**summary)
        summary["max_error"] = _bound_words(summary["max_error"], summary["scl_slope"])
        summary["dtype"] = dtype_words(np.dtype(summary["dtype"]))
        summary["bits_per_voxel"] = f"{summary['bits_per_voxel']:.4f}"
        summary["spacing"] = " × ".join(rounded(s) for s in summary["spacing"]) + " mm"
        if summary["psnr"] is not None:
            summary["psnr"] = f"{summary['psnr']:.2f} dB"
        del summary["scl_slope"]
        summary["affine"] = " ".join(f"[{' '.join(rounded(v) for v in row)}]" for row in summary["affine"])
        for key, value in summary.items():
            say(f"{key:>15}: {value}")


MODE_WORDS = {"learned": "learned, quality {quality}", "context": "context coder, every voxel within {max_error:g}",
              "wavelet": "wavelet coder, every voxel within {max_error:g}", "lossless": "lossless (context coder)",
              "exact": "exact (lossless)"}
"""`mriae info`'s words for each mode of the JSON summary."""


def mode_of(header: Header) -> str:
    """``learned`` (the network codes some volume), ``exact`` (every volume stored as it is:
    label maps), ``wavelet`` (the wavelet coder codes some volume), ``lossless`` (the context
    coder, bit-exact) or ``context`` (within a bound)."""
    if header.learned:
        return "learned"
    if all(volume.exact for volume in header.volumes):
        return "exact"
    if any(volume.wavelet is not None for volume in header.volumes):
        return "wavelet"
    return "lossless" if header.lossless else "context"


def _bound_words(bound: float | None, slope: float | None) -> str:
    if bound is None:
        return "none (learned: no per-voxel bound)"
    if bound == 0:
        return "0 (lossless)"
    physical = f"; × |scl_slope| {slope:g}: {bound * slope:g} in physical units" if slope is not None else ""
    return f"{bound:g} (stored units{physical})"


def orientation(affine: np.ndarray) -> str:
    """The world direction each voxel axis points to most, as in NIfTI's convention: R/L, A/P,
    S/I per axis (e.g. ``RAS``); ``?`` for an axis of zero length."""
    codes = ""
    for column in np.asarray(affine, dtype=np.float64)[:3, :3].T:
        axis = int(np.argmax(np.abs(column)))
        codes += "?" if column[axis] == 0 else ("RAS" if column[axis] > 0 else "LPI")[axis]
    return codes


def rounded(value: float) -> str:
    """``value`` with at most 3 decimals and no trailing zeros (``2``, ``-0.5``, ``90.125``)."""
    return np.format_float_positional(round(float(value), 3) + 0.0, trim="-")


def dtype_words(dtype: np.dtype) -> str:
    """``uint8``, ``int16``, ``float32 (big-endian)``, … for a stored dtype (little-endian,
    the usual order, goes unsaid)."""
    dtype = np.dtype(dtype)
    return dtype.name + (" (big-endian)" if dtype.str.startswith(">") else "")


def _summary(input: Path, size: int, header: Header) -> dict:
    """What `mriae info` shows of a file of ``size`` bytes with ``header``: ``mode`` is
    ``learned``, ``context``, ``wavelet``, ``lossless`` or ``exact`` (:func:`mode_of`),
    ``max_error`` the bound every voxel keeps, in stored units (None for learned files, 0 when
    lossless), and
    ``scl_slope`` the absolute slope that turns stored into physical units for a NIfTI that has one
    (else None)."""
    image = header.image
    return {
        "file": str(input),
        "bytes": size,
        "shape": list(image.shape),
        "dtype": image.dtype.str,
        "format": "dicom" if image.source.get("kind") == "dicom" else image.suffix,
        "spacing": [float(s) for s in np.linalg.norm(image.affine[:3, :3], axis=0)],
        "orientation": orientation(image.affine),
        "affine": image.affine.tolist(),
        "volumes": len(header.volumes),
        "mode": mode_of(header),
        "max_error": header.max_error,
        "scl_slope": stored_scale(image.source),
        "quality": header.quality,
        "bits_per_voxel": size * 8 / math.prod(image.shape),
        "psnr": header.psnr,
        "outliers": sum(volume.outliers for volume in header.volumes),
        "model": {"name": header.model_name, "sha256": header.model_sha256},
        "coded_shape": list(header.grid["shape"] if header.grid else image.volume_shape),
    }


BATCH_FLAGS = {"inputs": "INPUTS", "output": "OUTPUT", "decompress": "--decompress", "quality": "--quality",
               "max_error": "--max-error", "lossless": "--lossless", "psnr": "--psnr", "workers": "--workers",
               "threads_per_worker": "--threads-per-worker", "scheduler": "--scheduler", "report": "--report",
               "copy_other": "--copy-other/--no-copy-other", "force": "--force", "device": "--device"}
"""The arguments of `mriae batch` that make its job, by BatchJob option."""


def batch_options(context: typer.Context) -> dict[str, object]:
    """The job options given on the command line (not left at their defaults), by BatchJob
    option, paths as text."""
    given = {name: context.params[name] for name in BATCH_FLAGS
             if getattr(context.get_parameter_source(name), "name", "") == "COMMANDLINE"}
    return {name: str(value) if isinstance(value, Path) else value for name, value in given.items()}


def refuse_unused(spec: BatchJob) -> None:
    """UsageError for options given on the command line that the job would not use (a job
    file's are recorded in the report instead)."""
    from mriae.batch.job import COMMAND_LINE, FIDELITY_KEYS, LOCAL_CLUSTER_KEYS

    for keys, where in ((FIDELITY_KEYS, "to a decompress job"),
                        (LOCAL_CLUSTER_KEYS, "to a job on a running cluster (it sizes the embedded one)")):
        refused = [BATCH_FLAGS[key] for key in spec.unused if key in keys and spec.sources.get(key) == COMMAND_LINE]
        if refused:
            raise UsageError(f"{' and '.join(refused)} {'does' if len(refused) == 1 else 'do'} not apply {where}")


@app.command()
def batch(
    context: typer.Context,
    inputs: Annotated[str | None, typer.Argument(help="Folder (recursive), glob, or manifest (.csv/.txt).")] = None,
    output: Annotated[Path | None, typer.Argument(help="Output folder (mirrors the input tree).")] = None,
    job: Annotated[Path | None, typer.Option(
        help="Job spec (YAML); options given here too win over the file's.")] = None,
    decompress: Annotated[bool, typer.Option("--decompress", help="Decompress .mriae files instead.")] = False,
    quality: Quality = None,
    max_error: MaxError = None,
    lossless: Lossless = False,
    psnr: TargetPsnr = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Local workers (default: one per core).")] = None,
    threads_per_worker: Annotated[int, typer.Option(min=1, help="Threads per local worker.")] = 1,
    scheduler: Annotated[str | None, typer.Option(help="Join a running Dask cluster, e.g. tcp://host:8786.")] = None,
    report: Annotated[Path | None, typer.Option(
        help="Folder of the reports and the job's state (default: OUTPUT.report, beside OUTPUT).")] = None,
    copy_other: Annotated[bool, typer.Option(
        "--copy-other/--no-copy-other", help="Copy a folder's other files (BIDS sidecars, tables, README) "
        "verbatim.")] = True,
    device: Device = "cpu",
    progress_every: Annotated[int, typer.Option(
        "--progress-every", min=1, metavar="N", help="Without a terminal: a progress line on stderr every N "
        "files.")] = 10,
    quiet: Quiet = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="A line for each file done or skipped.")] = False,
    force: Force = False,
    debug: Debug = False,
) -> None:
    """Compress (or decompress) many files on Dask: embedded by default, a cluster by address.
    Every file is compressed at the one fidelity given (a quality level, default 5, a maximum
    error, lossless or a PSNR); masks and label images (_mask, _dseg, _probseg) losslessly.
    A folder's other files are copied, so that a BIDS dataset comes out whole."""
    from importlib.util import find_spec

    from mriae.batch import BatchJob, run_batch
    from mriae.batch.job import COMMAND_LINE
    from mriae.batch.progress import ProgressLines

    with reported_errors(job or Path(str(inputs)), debug, "running the batch"):
        given = batch_options(context)
        fidelity_of(quality, max_error, lossless, psnr)  # refuses two at once, or a bad value
        usable_device(device)
        messages = Messages.of(quiet, verbose)
        if job is not None:
            spec = BatchJob.from_yaml(job, given)
        elif inputs is None or output is None:
            raise UsageError("give INPUTS and OUTPUT, or --job job.yaml")
        else:
            spec = BatchJob(**given, sources=dict.fromkeys(given, COMMAND_LINE))
        refuse_unused(spec)
        if not spec.decompress and spec.quality is not None:
            check_quality(spec.quality)
        lines = None if console.is_terminal or messages.level == 0 else ProgressLines(
            lambda line: complain(line, label=None), progress_every)

        def started(dashboard: str) -> None:
            if dashboard and messages.level > 0:
                needs = "" if spec.scheduler or find_spec("bokeh") else " (it needs bokeh: pip install 'mriae[batch]')"
                complain(f"dashboard: {dashboard}{needs}", label=None)
            if lines:
                lines.start()

        visible = messages.level > 0 and console.is_terminal
        with ProgressBar(console=console, transient=True, disable=not visible) as bar:
            task = bar.add_task("files", total=None)

            def advance(record, done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)
                if record.status == "failed":
                    complain(record.error, label="failed")
                elif record.status in ("done", "skipped"):
                    line = f"{record.status}: {record.path} → {record.output} ({record.seconds:.2f} s)"
                    messages.details(lambda: [line])
                if lines:
                    lines(record, done, total)

            summary = run_batch(spec, on_record=advance, on_cluster=started)
        messages.result(summary.line())
        messages.result(f"reports: {spec.report_folder / 'batch_report.csv'} and .json")
        if summary.interrupted:
            raise typer.Exit(summary.exit_code)
        if summary.count("failed"):
            raise typer.Exit(1)


def parse_qualities(text: str | None, available: range) -> list[int]:
    """Quality levels from '1,3,5' or '2-6' (all available ones if None)."""
    if text is None:
        return list(available)
    try:
        values: list[int] = []
        for part in text.split(","):
            low, _, high = part.partition("-")
            values += range(int(low), int(high or low) + 1)
    except ValueError:
        values = []
    if not values or any(q not in available for q in values):
        raise UsageError(f"--qualities must be levels {level_range(available)}, e.g. 1,3,5 or 2-6 (got '{text}')")
    return sorted(set(values))


def parse_numbers(text: str | None, flag: str, example: str, check: Callable[[float], Fidelity]) -> list[Fidelity]:
    """The fidelities of a list of numbers ('1,5,20') given to ``flag``, each made by
    ``check`` (which raises ValueError for a bad one); UsageError naming the flag otherwise."""
    if text is None:
        return []
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"bad {flag} '{text}': give {example}") from None
    try:
        fidelities = [check(value) for value in values]
    except ValueError as error:
        raise UsageError(f"bad {flag} '{text}': {one_line(error)}") from None
    return list(dict.fromkeys(fidelities))


def evaluation_settings(qualities: str | None, max_errors: str | None, psnrs: str | None,
                        lossless: bool) -> tuple[list[int], list[Fidelity]]:
    """(quality levels, other fidelities) that `mriae evaluate` measures: every level when
    no setting is given; otherwise the ones given, in the order: levels, PSNR targets from
    the lowest, maximum errors from the largest, lossless."""
    from mriae.models.weights import load_codec

    others = (sorted(parse_numbers(psnrs, "--psnr", "dB, e.g. --psnr 40,45", lambda v: Fidelity.of(psnr=v)),
                     key=lambda f: f.psnr or 0)
              + sorted(parse_numbers(max_errors, "--max-error", "numbers ≥ 0, e.g. --max-error 1,5,20",
                                     lambda v: Fidelity.of(max_error=v)), key=lambda f: -(f.max_error or 0)))
    others += [Fidelity.of(lossless=True)] * lossless
    others = list(dict.fromkeys(others))
    available = load_codec().qualities
    levels = parse_qualities(qualities, available) if qualities is not None or not others else []
    return levels, others


@app.command()
def evaluate(
    input: Annotated[Path, typer.Argument(help="Image file (any type compress reads) or folder of DICOM files.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Report folder.")] = Path("report"),
    qualities: Annotated[str | None, typer.Option(
        help="Quality levels, e.g. 1,3,5 or 2-6 (default: all, unless other settings are given).")] = None,
    max_error: Annotated[str | None, typer.Option(
        "--max-error", help="Maximum errors (stored units, context coder), e.g. 1,5,20.")] = None,
    psnr: Annotated[str | None, typer.Option("--psnr", help="PSNR targets in dB, e.g. 40,45.")] = None,
    lossless: Annotated[bool, typer.Option("--lossless", help="Also measure lossless.")] = False,
    slices_quality: Annotated[int, typer.Option(help="Quality level shown in slices.png.")] = DEFAULT_QUALITY,
    map_path: Annotated[Path | None, typer.Option(
        "--map", help="Also draw where that setting's bits and errors sit (PNG), with a table per region.")] = None,
    brain_mask: Annotated[Path | None, typer.Option(
        "--brain-mask", help="Brain mask (nonzero voxels) on the image's grid: the brain region of --map.")] = None,
    volume: Annotated[int, typer.Option(help="Volume of a 4D image that --map shows, from 1.")] = 1,
    force: Force = False,
    debug: Debug = False,
) -> None:
    """Rate–distortion report of one scan: metrics.csv, rd.png, slices.png and summary.md in the report folder.

    Measures the quality levels (all by default) and, if given, maximum errors, PSNR targets
    and lossless; each row reports the coder, the bound the file promises, the largest error
    measured and the fraction of voxels at the bound. slices.png shows --slices-quality if
    measured, else the last lossy setting. --map OUT.png draws where that setting's bits and
    errors sit (background, head, and brain with --brain-mask) and writes the table per region
    to regions.csv. summary.md describes the scan (training, validation or unknown to the
    weights' training set list), the run and each setting, with the figures."""
    from mriae.codec import volumes_of
    from mriae.evaluation import evaluate_mriae, write_csv
    from mriae.evaluation.maps import read_brain_mask, region_masks
    from mriae.evaluation.plots import STORED_UNITS, rd_plot, slices_plot
    from mriae.evaluation.splits import split_of
    from mriae.evaluation.summary import Scan, provenance, summary_markdown
    from mriae.io import read_image
    from mriae.models.weights import load_codec

    with reported_errors(input, debug, "evaluating"):
        levels, others = evaluation_settings(qualities, max_error, psnr, lossless)
        settings = [Fidelity.of(quality=q) for q in levels] + others
        lossy = [f for f in settings if not f.lossless] or settings
        shown_fidelity = Fidelity.of(quality=slices_quality) if slices_quality in levels else lossy[-1]
        shown = shown_fidelity.name
        if map_path is None and (brain_mask is not None or volume != 1):
            raise UsageError("--brain-mask and --volume go with --map")
        names = ("metrics.csv", "rd.png", "slices.png", "summary.md") + ("regions.csv",) * (map_path is not None)
        targets = [output / name for name in names] + [map_path] * (map_path is not None)
        check_targets(targets, force)
        image = read_image(input)
        name = file_stem(input)
        volumes = volumes_of(image.array)
        split = split_of(volumes, weights_sha256=load_codec().sha256)  # the codec evaluate loaded
        slope = stored_scale(image.source)
        scan = (f"{name}: {' × '.join(map(str, image.array.shape))} voxels of "
                f"{' × '.join(f'{s:g}' for s in image.spacing[:3])} mm, {image.array.dtype.name}; split: {split}")
        if map_path is not None:
            if not 1 <= volume <= volumes.shape[3]:
                raise UsageError(f"--volume must be 1..{volumes.shape[3]} (got {volume})")
            mapped = volumes[..., volume - 1]
            brain = None
            if brain_mask is not None:
                with reported_errors(brain_mask, debug, "reading"):
                    brain = read_brain_mask(brain_mask, mapped.shape, image.affine)
            masks = region_masks(mapped, brain)
        table: list[str] = []
        with ExitStack() as staged:  # the report and the map appear whole or not at all
            scratch = staged.enter_context(staging_folder(output, force))
            map_scratch = staged.enter_context(staging_folder(map_path.parent, force)) if map_path else None

            def draw(point, reconstruction, data) -> None:
                if point.setting != shown:
                    return
                restored = volumes_of(reconstruction)
                title = (f"{scan}\n{shown_fidelity}: {point.bits_per_voxel:.3f} bits/voxel, PSNR {point.psnr:.2f} dB, "
                         f"max error {point.max_abs_error:g} ({STORED_UNITS})")
                which = f"; volume {{}} of {volumes.shape[3]} shown" if volumes.shape[3] > 1 else ""
                slices_plot(volumes[..., 0], restored[..., 0], scratch / "slices.png", image.affine,
                            title + which.format(1), f"decoded, {shown_fidelity}", slope)
                if map_path is not None:
                    table.extend(draw_map(mapped, restored[..., volume - 1], data, volume, masks, point.coder,
                                          map_scratch / map_path.name, scratch / "regions.csv", image.affine,
                                          title + which.format(volume), f"decoded, {shown_fidelity}", slope))

            points = evaluate_mriae(image.array, image.affine, volume=name, split=split.split, qualities=levels,
                                    fidelities=others, on_point=draw)
            write_csv(points, scratch / "metrics.csv")
            rd_plot({scan: points}, scratch / "rd.png")
            figures = [("Rate–distortion", "rd.png"), (f"Central slices, {shown_fidelity}", "slices.png")]
            if map_path is not None:
                figures.append((f"Bits and errors by region, {shown_fidelity}",
                                os.path.relpath(map_path.absolute(), output.absolute())))
            codec = load_codec()
            notes = [f"Stored values carry a NIfTI scl_slope: errors × {slope:g} in physical units."] if slope else []
            summary = summary_markdown(Scan(input, image.array, image.spacing), split,
                                       list(zip(map(str, settings), points)), figures,
                                       provenance(codec.name, codec.sha256), notes)
            (scratch / "summary.md").write_text(summary, encoding="utf-8")
        say(f"{'setting':>12} {'coder':>8} {'bits/voxel':>10} {'ratio':>7} {'PSNR dB':>8} {'SSIM':>7} "
            f"{'max err':>9} {'bound':>7} {'at bound':>8} {'enc s':>6} {'dec s':>6}")
        raw_bits = image.array.dtype.itemsize * 8
        for fidelity, p in zip(settings, points):
            ratio = raw_bits / p.bits_per_voxel
            at_bound = f"{p.at_bound:.1%}" if 0 < p.bound < math.inf else "-"
            say(f"{fidelity!s:>12} {p.coder:>8} {p.bits_per_voxel:>10.4f} {ratio:>6.1f}× {p.psnr:>8.2f} "
                f"{p.ssim:>7.4f} {p.max_abs_error:>9.4g} {p.bound:>7.4g} {at_bound:>8} {p.encode_s:>6.2f} "
                f"{p.decode_s:>6.2f}")
        for line in table:
            say(line)
        say(f"split: {split} ({split.reason})")
        say(f"report: {', '.join(str(target) for target in targets)}")


def draw_map(original: np.ndarray, decoded: np.ndarray, data: bytes, volume: int, masks: dict[str, np.ndarray],
             coder: str, figure: Path, csv: Path, affine: np.ndarray, title: str, setting: str,
             scl_slope: float | None) -> list[str]:
    """Where the bits and errors of ``volume`` (from 1) of the .mriae ``data`` sit: the figure
    at ``figure``, the per-region numbers at ``csv``; returns the lines `mriae evaluate` prints."""
    from mriae.evaluation import write_csv
    from mriae.evaluation.maps import RegionStats, latent_bits, region_stats, region_table
    from mriae.evaluation.plots import map_plot

    bits = latent_bits(data, volume - 1)
    stats = region_stats(original, decoded, masks, bits)
    write_csv(stats, csv, RegionStats)
    notes = [] if "brain" in masks else ["brain: not available without --brain-mask (head includes the brain)"]
    no_bits = f"bits: none per latent position: only network volumes have latents (this file: {CODER_WORDS[coder]})"
    if bits is None:
        notes.append(no_bits)
    lines = [f"regions of volume {volume}:", *region_table(stats), *notes]
    map_plot(original, decoded, None if bits is None else bits.on_image_grid(), masks, lines[1:], figure, affine,
             title, no_bits, setting, scl_slope)
    return lines


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Training config (YAML or JSON).")],
    export_only: Annotated[bool, typer.Option("--export-only", help="Only export the checkpoint as weights.")] = False,
    debug: Debug = False,
) -> None:
    """Train (or resume training) the codec; export weights at the end."""
    from mriae.training.config import TrainConfig
    from mriae.training.train import export_checkpoint
    from mriae.training.train import train as run_training

    with reported_errors(config, debug, "training"):
        settings = TrainConfig.load(config)
        if export_only:
            say(f"exported {export_checkpoint(settings)}")
        else:
            run_training(settings, report=say)


def plain_info(args: list[str]) -> tuple[Path, bool, bool] | None:
    """(file, --json, --debug) of a command line ``mriae info FILE [--json] [--debug]``; None for
    any other (help, another or a repeated option, no file or two: typer parses those). Typer coerces
    every other parameter through a pydantic TypeAdapter, and importing pydantic is a third of
    the 0.5 s that ``mriae info`` may take to start (issue 14), so this one is read here."""
    flags = ("--json", "--debug")
    files = [arg for arg in args[1:] if arg not in flags]
    plain = (args[:1] == ["info"] and len(files) == 1 and (files[0] == "-" or not files[0].startswith("-"))
             and len(set(args[1:])) == len(args) - 1)
    return (Path(files[0]), "--json" in args, "--debug" in args) if plain else None


def plain_help(args: list[str]) -> str | None:
    """The help text of a command line ``mriae COMMAND --help`` (those two words); None for any
    other. Rendered as typer would, without parsing the line first: typer coerces the group's
    unset help flag through pydantic (a fifth of the 0.5 s start-up budget, issue 14)."""
    if len(args) != 2 or args[1] != "--help":
        return None
    group = typer.main.get_command(app)
    command = group.commands.get(args[0])
    if command is None:
        return None
    return command.get_help(typer.Context(command, info_name=args[0], parent=typer.Context(group, info_name="mriae")))


def _exit_code(run: Callable[[], object]) -> int:
    """0 once ``run()`` returns, or the exit code of the typer.Exit it raises (a command run
    without typer: :func:`plain_info`, :func:`plain_help`)."""
    try:
        run()
    except typer.Exit as stop:
        return stop.exit_code
    return 0


def _show_help(text: str) -> None:
    """Print ``text`` as click does; a reader gone stops quietly (exit code 141)."""
    with reader_kept():
        typer.echo(text)


def main() -> None:
    """The ``mriae`` command; its exit codes are in the module docstring and docs/errors.md."""
    args, warnings = quality_option_renamed(sys.argv[1:])
    for warning in warnings:
        complain(warning, label="warning")
    with signals_raised():
        try:
            if (plain := plain_info(args)) is not None:
                code = _exit_code(lambda: info(*plain))
            elif (text := plain_help(args)) is not None:
                code = _exit_code(lambda: _show_help(text))
            else:
                code = app(args=args, prog_name="mriae", standalone_mode=False)
        except MissingExtra as error:  # a command whose own modules need an extra (batch, evaluate, train)
            complain(str(error))
            code = 1
        except typer.TyperException as error:  # a bad command line, found while parsing it
            message = " ".join(error.format_message().split())
            if message:  # empty for a bare `mriae`, whose help is shown already
                context = getattr(error, "ctx", None)
                complain(f"{message} (see '{context.command_path if context else 'mriae'} --help')")
            code = error.exit_code
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
