"""The unit of work of a batch job: one file, run on a Dask worker (or anywhere).

A file is compressed (or decompressed), or copied verbatim (a sidecar). A task never raises
for a failure of its file, whatever the exception (a corrupt scan, a MemoryError, a
RuntimeError from torch): it returns a record with ``status="failed"`` and
the one-line reason, so that one file never stops the job and is not retried. Only
``KeyboardInterrupt``/``SystemExit`` pass through.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mriae import api
from mriae.batch.inputs import Item, inside, output_path
from mriae.batch.state import append_state, default_report_folder, load_state
from mriae.batch.tree import COPY
from mriae.fidelity import Fidelity
from mriae.formats import restored_suffix
from mriae.header import read_header
from mriae.io.atomic import check_targets, staging_folder
from mriae.io.image import file_stem, image_files, names_a_label_map, source_files

COPY_SIGNATURE = "copy"
"""How the state log signs a file copied verbatim."""


@dataclass(frozen=True)
class Settings:
    """What every task of a job shares. ``output_root`` is absolute; ``force`` lets a task
    replace an output this job did not make; ``run`` tells this run's state entries apart.
    The fidelity is at most one of ``quality`` (None: the default level), ``max_error``,
    ``lossless`` and ``psnr``, as in :func:`mriae.compress`. ``report_root`` (absolute) holds
    the state log and the reports; None: beside the output folder (:func:`default_report_folder`).
    ``device``: where each task runs the network (``device=`` of :func:`mriae.compress`);
    ``threads``: the tiles it codes at once (``threads=``)."""

    output_root: Path
    decompress: bool = False
    quality: int | None = None
    force: bool = False
    run: str = ""
    max_error: float | None = None
    lossless: bool = False
    psnr: float | None = None
    report_root: Path | None = None
    device: str = "cpu"
    threads: int = 1

    @property
    def report_folder(self) -> Path:
        """Where the state log and the reports go."""
        return self.report_root or default_report_folder(self.output_root)

    def state(self) -> dict[str, dict]:
        """The job's state log, as it is now (with the entries an earlier version of mriae
        logged inside the output folder, :func:`load_state`)."""
        return load_state(self.output_root, self.report_folder)

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
    fidelity: str = ""
    """What the file was compressed to (``q5``, ``lossless``…): the job's fidelity, or
    ``lossless`` for a mask or label image (:func:`file_fidelity`)."""
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


def sha256_of(*paths: Path) -> str:
    """SHA-256 of the files ``paths`` one after the other (an image pair's header and data)."""
    digest = hashlib.sha256()
    for path in paths:
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


def file_fidelity(path: Path, fidelity: Fidelity) -> Fidelity:
    """What ``path`` is compressed to: lossless for a mask or label image by its name (BIDS
    ``_mask``, ``_dseg``, ``_probseg``, FreeSurfer ``aseg``…), which is never degraded
    (integer ones are then stored exactly); the job's ``fidelity`` for any other file."""
    never_degraded = names_a_label_map(path) or file_stem(path).lower().endswith("_probseg")
    return Fidelity.of(lossless=True) if never_degraded else fidelity


def logged_checksums(entry: dict, files: list[Path]) -> dict[Path, str | None]:
    """The SHA-256 the state log ``entry`` records for each of the output ``files`` (a
    decompressed pair: its data file, then its header): every one (``output_files``); for an
    entry of an earlier version, which checksummed only the last (the header), that one."""
    if "output_files" in entry:
        return {file: entry["output_files"][file.name] for file in files if file.name in entry["output_files"]}
    return {files[-1]: entry.get("output_sha256")}


def made_by_this_job(previous: dict | None, files: list[Path], signature: str) -> bool:
    """True if ``previous`` (this file's entry in the job's state log) made the output
    ``files`` with the settings ``signature`` and those still there are unchanged: each has
    its logged checksum (:func:`logged_checksums`; the job makes one that is missing again,
    :func:`whole`)."""
    if not (previous and previous.get("settings") == signature):
        return False
    there = {file: checksum for file, checksum in logged_checksums(previous, files).items() if file.is_file()}
    return bool(there) and all(sha256_of(file) == checksum for file, checksum in there.items())


def whole(entry: dict, files: list[Path]) -> bool:
    """True if every one of the output ``files`` is there and ``entry`` logged its checksum
    (which :func:`made_by_this_job` checked): not for a pair whose data file is missing, nor
    for one an earlier version logged (its data file was never checksummed): both are redone."""
    return logged_checksums(entry, files).keys() == set(files) and all(file.is_file() for file in files)


def entry_of_output(item: Item, settings: Settings, previous: dict | None, files: list[Path],
                    signature: str) -> dict | None:
    """This file's state entry if this job made the output ``files`` (with ``signature``,
    unchanged since), else None. ``previous`` is the entry when the job started; for an
    output it does not vouch for, the state log is read again (the output may come from an
    attempt the client never heard of: a task that finished after Ctrl-C, a worker lost after
    its write)."""
    if made_by_this_job(previous, files, signature):
        return previous
    if any(file.exists() for file in files):
        previous = settings.state().get(str(item.source))
        if made_by_this_job(previous, files, signature):
            return previous
    return None


def run_task(item: Item, settings: Settings, previous: dict | None = None) -> Record:
    """Compress (or decompress, or copy) one file into the output tree; never raises for a failure of its file."""
    started = time.perf_counter()
    record = Record(str(item.source), "", "failed", worker=worker_name())
    try:
        (_copy if item.action == COPY else _process)(item, settings, previous, record)
    except Exception as error:  # noqa: BLE001 - whatever went wrong is this file's failure
        record.error = failure_reason(error, item.source)
    finally:
        record.seconds = round(time.perf_counter() - started, 3)
    return record


def _process(item: Item, settings: Settings, previous: dict | None, record: Record) -> None:
    """The work of :func:`run_task`, filling ``record``.

    An output whose input (by checksum) and settings are unchanged since this job made it
    is skipped (unless it is a mask or label image an earlier version coded with errors);
    an output this job made is replaced when its input changed; any other existing output
    is replaced only with ``settings.force``.
    """
    sources = [item.source] if settings.decompress else source_files(item.source)
    record.input_bytes = sum(source.stat().st_size for source in sources)
    record.source_sha256 = sha256_of(*sources)
    data = api.read_mriae(item.source) if settings.decompress else b""
    suffix = restored_suffix(read_header(data).image.suffix)[0] if settings.decompress else ""
    target = inside(output_path(item, settings.output_root, settings.decompress, suffix), settings.output_root,
                    item.source)
    record.output = str(target)
    files = image_files(target) if settings.decompress else [target]  # a pair: its data file, then target
    fidelity = None if settings.decompress else file_fidelity(item.source, settings.fidelity)
    previous = entry_of_output(item, settings, previous, files, settings.signature)
    if (previous and whole(previous, files) and previous["source_sha256"] == record.source_sha256
            and _same_fidelity(previous, fidelity)):
        record.status = "skipped"
        record.output_sha256 = previous["output_sha256"]
        record.output_bytes = sum(file.stat().st_size for file in files)
        record.bits_per_voxel, record.psnr = previous.get("bits_per_voxel"), previous.get("psnr")
        record.max_error, record.coder = previous.get("max_error"), previous.get("coder", "")
        record.fidelity = previous.get("fidelity", "")
        return
    replace = bool(previous) or settings.force  # otherwise the API refuses an existing output before any work
    if fidelity is None:
        api.decompress(data, target, force=replace, threads=settings.threads, device=settings.device)
    else:
        _, stats = api.compress(item.source, target, quality=fidelity.quality, max_error=fidelity.max_error,
                                lossless=fidelity.lossless, psnr=fidelity.psnr, force=replace, threads=settings.threads,
                                device=settings.device)
        record.coder, record.max_error, record.fidelity = stats.coder, stats.max_error, fidelity.name
        record.bits_per_voxel = stats.bits_per_voxel
        record.psnr = stats.psnr if stats.psnr != float("inf") else None
    record.output_bytes = sum(file.stat().st_size for file in files)
    checksums = {file.name: sha256_of(file) for file in files}
    record.output_sha256 = sha256_of(*files) if len(files) > 1 else checksums[target.name]
    record.status = "done"
    _log(settings, record, settings.signature, checksums)


def _same_fidelity(entry: dict, fidelity: Fidelity | None) -> bool:
    """True if the output ``entry`` logs was made at ``fidelity`` (None: decompressing). An
    entry of an earlier version, without its fidelity, was made at the job's, which is
    ``fidelity`` unless the file is a mask or label image: then it must have no error."""
    if fidelity is None:
        return True
    if "fidelity" in entry:
        return entry["fidelity"] == fidelity.name
    return not (fidelity.lossless and entry.get("max_error"))


def _copy(item: Item, settings: Settings, previous: dict | None, record: Record) -> None:
    """Copy ``item`` byte for byte to its place in the output tree, filling ``record``
    (``copied``; ``skipped`` if an identical file is there already, and, with its reason, for
    an image type mriae does not code). An existing different file is replaced only if this
    job copied it there or with ``settings.force``. The copy is staged beside the target and
    checked against the source's checksum before it moves into place."""
    record.input_bytes = record.output_bytes = item.source.stat().st_size
    record.source_sha256 = record.output_sha256 = sha256_of(item.source)
    target = inside(settings.output_root / item.relative, settings.output_root, item.source)
    record.output = str(target)
    there = target.is_file() and not target.is_symlink() and sha256_of(target) == record.source_sha256
    if not there:
        replace = bool(entry_of_output(item, settings, previous, [target], COPY_SIGNATURE)) or settings.force
        check_targets([target], replace)
        with staging_folder(target.parent, replace) as scratch:
            shutil.copyfile(item.source, scratch / target.name)
            if sha256_of(scratch / target.name) != record.source_sha256:
                raise OSError(f"{item.source}: it changed while it was copied")
    record.status = "skipped" if there or item.reason else "copied"
    record.error = f"{item.source}: {item.reason}" if item.reason else ""
    if not there:
        _log(settings, record, COPY_SIGNATURE, {target.name: record.output_sha256})


def _log(settings: Settings, record: Record, signature: str, checksums: dict[str, str]) -> None:
    """Append ``record`` to the job's state log, with the ``signature`` of the settings it was
    made with and the SHA-256 of each of its output files by name (``output_files``)."""
    append_state(settings.report_folder, {**record.to_dict(), "settings": signature, "run": settings.run,
                                          "output_files": checksums})
