"""The unit of work of a batch job: one file, run on a Dask worker (or anywhere).

A task never raises for a bad input: it returns a record with ``status="failed"`` and the
one-line reason, so one corrupt scan does not stop the job and is not retried.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mriae import api
from mriae.batch.inputs import Item, output_path
from mriae.codec import CodecError
from mriae.container import ContainerError, unpack
from mriae.io import ImageError

EXPECTED_ERRORS = (ImageError, ContainerError, CodecError, OSError, ValueError, KeyError)


@dataclass(frozen=True)
class Settings:
    """What every task of a job shares."""

    output_root: Path
    decompress: bool = False
    quality: int = 5

    @property
    def signature(self) -> str:
        """What a previous result must have been made with to be reused."""
        return "decompress" if self.decompress else f"compress:q{self.quality}"


@dataclass
class Record:
    """The outcome of one file, as written to the job's reports."""

    path: str
    output: str
    status: str  # done | skipped | failed
    error: str = ""
    input_bytes: int = 0
    output_bytes: int = 0
    bits_per_voxel: float | None = None
    psnr: float | None = None
    seconds: float = 0.0
    worker: str = ""
    source_sha256: str = ""
    output_sha256: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


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


def already_done(previous: dict | None, source_sha256: str, target: Path, settings: Settings) -> bool:
    """True if ``previous`` recorded this very input (by checksum), with these settings,
    and its output is still there unchanged (by checksum)."""
    return bool(
        previous
        and previous.get("source_sha256") == source_sha256
        and previous.get("settings") == settings.signature
        and target.is_file()
        and sha256_of(target) == previous.get("output_sha256")
    )


def run_task(item: Item, settings: Settings, previous: dict | None = None) -> Record:
    """Compress (or decompress) one file into the output tree; never raises for bad input."""
    started = time.perf_counter()
    target = output_path(item, settings.output_root, settings.decompress)
    record = Record(str(item.source), str(target), "failed", worker=worker_name())
    try:
        record.input_bytes = item.source.stat().st_size
        record.source_sha256 = sha256_of(item.source)
        if settings.decompress:
            data = item.source.read_bytes()
            header = unpack(data).header
            target = output_path(item, settings.output_root, True, header["image"]["suffix"])
            record.output = str(target)
        if already_done(previous, record.source_sha256, target, settings):
            record.status = "skipped"
            record.output_sha256 = previous["output_sha256"]
            record.output_bytes = target.stat().st_size
            record.bits_per_voxel, record.psnr = previous.get("bits_per_voxel"), previous.get("psnr")
            return record
        if settings.decompress:
            api.decompress(data, target)
        else:
            _, stats = api.compress(item.source, target, quality=settings.quality)
            record.bits_per_voxel = stats.bits_per_voxel
            record.psnr = stats.psnr if stats.psnr != float("inf") else None
        record.output_bytes = target.stat().st_size
        record.output_sha256 = sha256_of(target)
        record.status = "done"
    except EXPECTED_ERRORS as error:
        message = " ".join(str(error).split())
        record.error = message if str(item.source) in message else f"{item.source}: {message}"
    finally:
        record.seconds = round(time.perf_counter() - started, 3)
    return record
