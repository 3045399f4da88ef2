"""The unit of work of a batch job: one file, run on a Dask worker (or anywhere).

A task never raises for a failure of its file, whatever the exception (a corrupt scan, a
MemoryError, a RuntimeError from torch): it returns a record with ``status="failed"`` and
the one-line reason, so that one file never stops the job and is not retried. Only
``KeyboardInterrupt``/``SystemExit`` pass through.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mriae import api
from mriae.batch.inputs import Item, inside, output_path
from mriae.batch.state import append_state, load_state
from mriae.fidelity import Fidelity
from mriae.formats import restored_suffix
from mriae.header import read_header


@dataclass(frozen=True)
class Settings:
    """What every task of a job shares. ``output_root`` is absolute; ``force`` lets a task
    replace an output this job did not make; ``run`` tells this run's state entries apart.
    The fidelity is at most one of ``quality`` (None: the default level), ``max_error``,
    ``lossless`` and ``psnr``, as in :func:`mriae.compress`."""

    output_root: Path
    decompress: bool = False
    quality: int | None = None
    force: bool = False
    run: str = ""
    max_error: float | None = None
    lossless: bool = False
    psnr: float | None = None

    @property
    def fidelity(self) -> Fidelity:
        """What every file is compressed to; ValueError if the options conflict."""
        return Fidelity.of(self.quality, self.max_error, self.lossless, self.psnr)

    @property
    def signature(self) -> str:
        """What a previous result must have been made with to be reused (``compress:q5``,
        ``compress:e2``, ``compress:lossless``, ``compress:40dB``), as the state log records it."""
        return "decompress" if self.decompress else f"compress:{self.fidelity.name}"


@dataclass
class Record:
    """The outcome of one file, as written to the job's reports."""

    path: str
    output: str
    status: str  # done | skipped | failed | cancelled
    error: str = ""
    input_bytes: int = 0
    output_bytes: int = 0
    bits_per_voxel: float | None = None
    psnr: float | None = None
    max_error: float | None = None
    """Largest absolute voxel difference measured, in stored units (compressing)."""
    coder: str = ""
    """What coded the file: ``network``, ``context`` or ``exact`` (compressing)."""
    seconds: float = 0.0
    worker: str = ""
    source_sha256: str = ""
    output_sha256: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, entry: dict) -> Record:
        """The record a state log entry holds (fields an older entry lacks keep their defaults)."""
        return cls(**{name: entry[name] for name in cls.__dataclass_fields__ if name in entry})


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "local"


def failure_reason(error: BaseException, source: Path) -> str:
    """One line naming ``source`` and the problem. Errors written for users (ValueError,
    OSError and their subclasses) give their message; any other exception its type too
    (``RuntimeError: CUDA out of memory``, ``MemoryError``)."""
    message = " ".join(str(error).split())
    if not isinstance(error, (ValueError, OSError)) or not message:
        message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return message if str(source) in message else f"{source}: {message}"


def made_by_this_job(previous: dict | None, target: Path, settings: Settings) -> bool:
    """True if ``previous`` (this file's entry in the job's state log) made ``target`` with
    these settings and it is still there unchanged (by checksum)."""
    return bool(
        previous
        and previous.get("settings") == settings.signature
        and target.is_file()
        and sha256_of(target) == previous.get("output_sha256")
    )


def run_task(item: Item, settings: Settings, previous: dict | None = None) -> Record:
    """Compress (or decompress) one file into the output tree; never raises for a failure of its file."""
    started = time.perf_counter()
    record = Record(str(item.source), "", "failed", worker=worker_name())
    try:
        _process(item, settings, previous, record)
    except Exception as error:  # noqa: BLE001 - whatever went wrong is this file's failure
        record.error = failure_reason(error, item.source)
    finally:
        record.seconds = round(time.perf_counter() - started, 3)
    return record


def _process(item: Item, settings: Settings, previous: dict | None, record: Record) -> None:
    """The work of :func:`run_task`, filling ``record``.

    An output whose input (by checksum) and settings are unchanged since this job made it
    is skipped; an output this job made is replaced when its input changed; any other
    existing output is replaced only with ``settings.force``. ``previous`` is this file's
    state entry when the job started; for an output it does not vouch for, the state log
    is read again (the output may come from an attempt the client never heard of: a task
    that finished after Ctrl-C, a worker lost after its write).
    """
    record.input_bytes = item.source.stat().st_size
    record.source_sha256 = sha256_of(item.source)
    data = api.read_mriae(item.source) if settings.decompress else b""
    suffix = restored_suffix(read_header(data).image.suffix)[0] if settings.decompress else ""
    target = inside(output_path(item, settings.output_root, settings.decompress, suffix), settings.output_root,
                    item.source)
    record.output = str(target)
    ours = made_by_this_job(previous, target, settings)
    if not ours and target.exists():
        previous = load_state(settings.output_root).get(str(item.source))
        ours = made_by_this_job(previous, target, settings)
    if ours and previous["source_sha256"] == record.source_sha256:
        record.status = "skipped"
        record.output_sha256 = previous["output_sha256"]
        record.output_bytes = target.stat().st_size
        record.bits_per_voxel, record.psnr = previous.get("bits_per_voxel"), previous.get("psnr")
        record.max_error, record.coder = previous.get("max_error"), previous.get("coder", "")
        return
    replace = ours or settings.force  # otherwise the API refuses an existing output before any work
    if settings.decompress:
        api.decompress(data, target, force=replace)
    else:
        fidelity = settings.fidelity
        _, stats = api.compress(item.source, target, quality=fidelity.quality, max_error=fidelity.max_error,
                                lossless=fidelity.lossless, psnr=fidelity.psnr, force=replace)
        record.coder, record.max_error = stats.coder, stats.max_error
        record.bits_per_voxel = stats.bits_per_voxel
        record.psnr = stats.psnr if stats.psnr != float("inf") else None
    record.output_bytes = target.stat().st_size
    record.output_sha256 = sha256_of(target)
    record.status = "done"
    append_state(settings.output_root, {**record.to_dict(), "settings": settings.signature, "run": settings.run})
