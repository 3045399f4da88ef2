"""Command line: ``mriae compress | decompress | info | batch | evaluate | train``.

A thin face over :mod:`mriae.api`: bad input gives one line on stderr and a non-zero exit
code (a traceback only with ``--debug``); outputs are written atomically and never
overwritten without ``--force``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress as ProgressBar

from mriae import api
from mriae.codec import DEFAULT_QUALITY, CodecError, spatial_shape
from mriae.container import ContainerError, unpack
from mriae.header import affine_of
from mriae.io import ImageError
from mriae.io.image import output_suffix

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Learned compression for MRI volumes.")
console = Console(stderr=True)
MRIAE_SUFFIX = ".mriae"
EXPECTED_ERRORS = (ImageError, ContainerError, CodecError, FileExistsError, OSError, ValueError, KeyError)

Force = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output file.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
Output = Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file.")]


class UsageError(ValueError):
    """A problem with the command line itself (exit code 2)."""


@contextmanager
def reported_errors(path: Path, debug: bool) -> Iterator[None]:
    """Turn expected failures into one line on stderr and exit code 1 (2 for usage errors)."""
    try:
        yield
    except EXPECTED_ERRORS as error:
        if debug:
            raise
        message = str(error)
        if not isinstance(error, (FileExistsError, UsageError)) and str(path) not in message:
            message = f"{path}: {message}"
        console.print(f"[red]error:[/red] {message}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(2 if isinstance(error, UsageError) else 1) from None


def check_output(source: Path, target: Path, force: bool) -> None:
    """Refuse to overwrite the input, or an existing file without ``--force``."""
    if target.resolve() == source.resolve():
        raise UsageError(f"output {target} would overwrite the input")
    if target.exists() and not force:
        raise FileExistsError(f"{target} already exists (use --force to overwrite)")


def strip_suffix(path: Path) -> str:
    """File name without its image or .mriae suffix."""
    suffix = output_suffix(path) or path.suffix
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


@contextmanager
def volume_progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress callback that shows a bar only when a file holds several volumes."""
    bar: ProgressBar | None = None
    task = None

    def advance(done: int, total: int) -> None:
        nonlocal bar, task
        if total < 2:
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
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count} B"


def parse_spacing(text: str | None) -> tuple[float, float, float] | None:
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


@app.command()
def compress(
    input: Annotated[Path, typer.Argument(help="NIfTI (.nii, .nii.gz), NRRD or MetaImage file.")],
    output: Output = None,
    quality: Annotated[int, typer.Option("--quality", "-q", help="1 (smallest) … 8 (best).")] = DEFAULT_QUALITY,
    spacing: Annotated[Optional[str], typer.Option(help="Code on this voxel size (mm), e.g. 1 or 1,1,2; undone on decode.")] = None,
    force: Force = False,
    debug: Debug = False,
) -> None:
    """Compress an MRI volume to .mriae."""
    with reported_errors(input, debug):
        target = output or input.with_name(strip_suffix(input) + MRIAE_SUFFIX)
        check_output(input, target, force)
        with volume_progress("compressing") as progress:
            data, stats = api.compress(input, target, quality=quality, spacing=parse_spacing(spacing), progress=progress)
        fidelity = "lossless" if math.isinf(stats.psnr) else f"PSNR {stats.psnr:.2f} dB"
        typer.echo(
            f"{input} → {target}: {human_bytes(stats.original_bytes)} → {human_bytes(stats.compressed_bytes)} "
            f"({stats.ratio:.1f}×), {stats.bits_per_voxel:.3f} bits/voxel, {fidelity}"
        )


@app.command()
def decompress(
    input: Annotated[Path, typer.Argument(help=".mriae file.")],
    output: Output = None,
    force: Force = False,
    debug: Debug = False,
) -> None:
    """Restore an .mriae file to its original format, grid, dtype and header."""
    with reported_errors(input, debug):
        data = input.read_bytes()
        header = unpack(data).header
        target = output or input.with_name(strip_suffix(input) + header["image"]["suffix"])
        if not output_suffix(target):
            raise UsageError(f"{target}: unsupported output type (use .nii, .nii.gz, .nrrd, .nhdr, .mha or .mhd)")
        check_output(input, target, force)
        with volume_progress("decompressing") as progress:
            image = api.decompress(data, target, progress=progress)
        typer.echo(f"{input} → {target}: shape {tuple(image.array.shape)}, {image.array.dtype}")


@app.command()
def info(
    input: Annotated[Path, typer.Argument(help=".mriae file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the header as JSON.")] = False,
    debug: Debug = False,
) -> None:
    """Describe an .mriae file without decoding it."""
    with reported_errors(input, debug):
        parsed = unpack(input.read_bytes())
        header = parsed.header
        try:
            summary = _summary(input, header, len(parsed.chunks))
        except (KeyError, TypeError, ValueError) as error:
            raise CodecError(f"header is incomplete or malformed ({error!r})") from error
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
            return
        model = summary["model"]
        summary["model"] = f"{model.get('name')} (sha256 {model.get('sha256')}…)"
        for key, value in summary.items():
            typer.echo(f"{key:>15}: {value}")


def _summary(input: Path, header: dict, volumes: int) -> dict:
    """What `mriae info` shows of a parsed header."""
    image = header["image"]
    voxels = math.prod(image["shape"])
    size = input.stat().st_size
    return {
        "file": str(input),
        "bytes": size,
        "shape": image["shape"],
        "dtype": image["dtype"],
        "format": image["suffix"],
        "spacing": [round(float(s), 6) for s in np.linalg.norm(affine_of(image)[:3, :3], axis=0)],
        "volumes": volumes,
        "quality": header["quality"],
        "bits_per_voxel": size * 8 / voxels,
        "psnr": header["psnr"],
        "model": header["model"],
        "coded_shape": (header.get("grid") or {}).get("shape", list(spatial_shape(image["shape"]))),
    }


@app.command()
def batch(
    inputs: Annotated[Optional[str], typer.Argument(help="Folder (recursive), glob, or manifest (.csv/.txt).")] = None,
    output: Annotated[Optional[Path], typer.Argument(help="Output folder (mirrors the input tree).")] = None,
    job: Annotated[Optional[Path], typer.Option(help="Job spec (YAML) instead of INPUTS/OUTPUT.")] = None,
    decompress: Annotated[bool, typer.Option("--decompress", help="Decompress .mriae files instead.")] = False,
    quality: Annotated[int, typer.Option("--quality", "-q")] = DEFAULT_QUALITY,
    workers: Annotated[Optional[int], typer.Option(help="Local workers (default: one per core).")] = None,
    threads_per_worker: Annotated[int, typer.Option(help="Threads per local worker.")] = 1,
    scheduler: Annotated[Optional[str], typer.Option(help="Join a running Dask cluster, e.g. tcp://host:8786.")] = None,
    debug: Debug = False,
) -> None:
    """Compress (or decompress) many files on Dask: embedded by default, a cluster by address."""
    from mriae.batch import BatchJob, run_batch

    with reported_errors(job or Path(str(inputs)), debug):
        if job is not None:
            spec = BatchJob.from_yaml(job)
        elif inputs is None or output is None:
            raise UsageError("give INPUTS and OUTPUT, or --job job.yaml")
        else:
            spec = BatchJob(inputs, str(output), decompress, quality, scheduler, workers, threads_per_worker)
        with ProgressBar(console=console, transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task("files", total=None)

            def advance(record, done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)
                if record.status == "failed":
                    console.print(f"[red]failed:[/red] {record.error}", highlight=False)

            summary = run_batch(spec, on_record=advance)
        typer.echo(summary.line())
        typer.echo(f"reports: {Path(spec.output) / 'batch_report.csv'} and .json")
        if summary.interrupted:
            raise typer.Exit(130)
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
        levels = f"{available.start}..{available.stop - 1}"
        raise UsageError(f"--qualities must be levels {levels}, e.g. 1,3,5 or 2-6 (got '{text}')")
    return sorted(set(values))


@app.command()
def evaluate(
    input: Annotated[Path, typer.Argument(help="NIfTI (.nii, .nii.gz), NRRD or MetaImage file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Report folder.")] = Path("report"),
    qualities: Annotated[Optional[str], typer.Option(help="Quality levels, e.g. 1,3,5 or 2-6 (default: all).")] = None,
    slices_quality: Annotated[int, typer.Option(help="Quality level shown in slices.png.")] = DEFAULT_QUALITY,
    force: Force = False,
    debug: Debug = False,
) -> None:
    """Rate–distortion report of one scan: metrics.csv, rd.png and slices.png in the report folder."""
    from mriae.evaluation import evaluate_mriae, write_csv
    from mriae.evaluation.plots import rd_plot, slices_plot
    from mriae.io import read_image
    from mriae.models.weights import load_codec

    with reported_errors(input, debug):
        levels = parse_qualities(qualities, load_codec().qualities)
        shown = slices_quality if slices_quality in levels else levels[-1]
        targets = {name: output / name for name in ("metrics.csv", "rd.png", "slices.png")}
        for target in targets.values():
            check_output(input, target, force)
        image = read_image(input)
        name = strip_suffix(input)
        first = image.array.reshape(image.array.shape[:3] + (-1,), order="F")[..., 0]
        output.mkdir(parents=True, exist_ok=True)

        def draw_slices(point, reconstruction) -> None:
            if point.setting == f"q{shown}":
                restored = reconstruction.reshape(first.shape + (-1,), order="F")[..., 0]
                slices_plot(first, restored, targets["slices.png"], image.spacing,
                            f"{name}, quality {shown}: {point.bits_per_voxel:.3f} bits/voxel, PSNR {point.psnr:.2f} dB")

        points = evaluate_mriae(image.array, image.affine, volume=name, qualities=levels, on_point=draw_slices)
        write_csv(points, targets["metrics.csv"])
        rd_plot({f"{name} {tuple(image.array.shape)}": points}, targets["rd.png"])
        typer.echo(f"{'quality':>7} {'bits/voxel':>10} {'ratio':>7} {'PSNR dB':>8} {'SSIM':>7} "
                   f"{'max err':>9} {'enc s':>6} {'dec s':>6}")
        raw_bits = image.array.dtype.itemsize * 8
        for p in points:
            ratio = raw_bits / p.bits_per_voxel
            typer.echo(f"{p.setting[1:]:>7} {p.bits_per_voxel:>10.4f} {ratio:>6.1f}× {p.psnr:>8.2f} {p.ssim:>7.4f} "
                       f"{p.max_abs_error:>9.4g} {p.encode_s:>6.2f} {p.decode_s:>6.2f}")
        typer.echo(f"report: {', '.join(str(t) for t in targets.values())}")


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

    with reported_errors(config, debug):
        settings = TrainConfig.load(config)
        if export_only:
            typer.echo(f"exported {export_checkpoint(settings)}")
        else:
            run_training(settings, report=typer.echo)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted", highlight=False)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
