"""Batch jobs on Dask distributed: an embedded LocalCluster by default, or a running
cluster by address. The client checks every output path before any work, submits one
task per file (each task logs its finished file in the job's state log, so a stopped job
resumes), collects the records as they finish, and writes the CSV/JSON reports whatever
happens.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mriae.batch.inputs import Item, check_outputs, discover
from mriae.batch.state import load_state
from mriae.batch.task import Record, Settings, failure_reason, run_task
from mriae.fidelity import Fidelity

REPORT_STEM = "batch_report"


@dataclass(frozen=True)
class BatchJob:
    """A batch job; also what a job YAML (``mriae batch --job job.yaml``) holds.

    The fidelity of a compress job is at most one of ``quality`` (None: the default level 5),
    ``max_error``, ``lossless`` and ``psnr`` (see :func:`mriae.compress`); a job asking for two,
    or a bad value, is refused when it is made (ValueError), before any work.
    """

    inputs: str
    output: str
    decompress: bool = False
    quality: int | None = None
    scheduler: str | None = None
    workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str = "4GiB"
    force: bool = False
    max_error: float | None = None
    lossless: bool = False
    psnr: float | None = None

    def __post_init__(self) -> None:
        _ = self.fidelity  # refuses conflicting or bad options now

    @property
    def fidelity(self) -> Fidelity:
        """What every file is compressed to."""
        return Fidelity.of(self.quality, self.max_error, self.lossless, self.psnr)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, force: bool = False) -> BatchJob:
        """Load a job spec; relative ``inputs``/``output`` are relative to the YAML file.
        ``force`` (the command line's ``--force``) forces whatever the file says."""
        raw = yaml.safe_load(Path(path).read_text()) or {}
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown job options {sorted(unknown)}")
        base = Path(path).parent
        for key in ("inputs", "output"):
            if key not in raw:
                raise ValueError(f"{path}: missing '{key}'")
            if not Path(raw[key]).is_absolute():
                raw[key] = str(base / raw[key])
        try:
            return cls(**{**raw, "force": bool(raw.get("force")) or force})
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from error


@dataclass
class Summary:
    """Totals of a job run."""

    records: list[Record] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    exit_code: int = 0
    """What the interrupt asks the process to exit with: 130 for Ctrl-C, 128 + signal for an
    interrupt raised by a signal handler that sets ``exit_code`` (the CLI's SIGTERM/SIGHUP)."""

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    def line(self) -> str:
        done = [r for r in self.records if r.status == "done"]
        before, after = sum(r.input_bytes for r in done), sum(r.output_bytes for r in done)
        ratio = f", {before / after:.1f}× on the files done" if after else ""
        state = " (interrupted)" if self.interrupted else ""
        cancelled = f", {self.count('cancelled')} cancelled" if self.count("cancelled") else ""
        return (
            f"{len(self.records)} files{state}: {self.count('done')} done, {self.count('skipped')} skipped, "
            f"{self.count('failed')} failed{cancelled} in {self.seconds:.1f} s{ratio}"
        )

    def add_unfinished(self, items: list[Item], settings: Settings) -> None:
        """A record for every item the client got none for (Ctrl-C, an error of the job):
        the one its task logged in this run if it got that far, else ``cancelled``."""
        state = load_state(settings.output_root)
        reported = {r.path for r in self.records}
        reason = "interrupted" if self.interrupted else "the job stopped"
        for item in items:
            if str(item.source) in reported:
                continue
            entry = state.get(str(item.source), {})
            if entry.get("run") == settings.run:
                self.records.append(Record.from_state(entry))
            else:
                self.records.append(Record(str(item.source), "", "cancelled", error=f"{reason} before it finished"))


def start_client(job: BatchJob):
    """A Dask client: to ``job.scheduler`` if set, else to a new LocalCluster."""
    from distributed import Client, LocalCluster

    if job.scheduler:
        return Client(job.scheduler, timeout="20s")
    workers = job.workers or max(1, (os.cpu_count() or 1) // job.threads_per_worker)
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=job.threads_per_worker, processes=True,
        memory_limit=job.memory_limit, dashboard_address=None,
    )
    return Client(cluster)


def close_client(client) -> None:
    """Close ``client`` and the LocalCluster it started, if any."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


@contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Hold a Ctrl-C that comes while the body (the cluster's start) runs, and raise it as
    KeyboardInterrupt when the body is done, even if the body failed (a Ctrl-C in a terminal
    also reaches the worker processes being started): Dask cannot clean up a cluster
    interrupted halfway through its start. The body runs as is outside the main thread, or
    when SIGINT has another handler than Python's default.
    """
    in_main = threading.current_thread() is threading.main_thread()
    if not in_main or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    pressed: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if pressed:
            raise KeyboardInterrupt


def plan(job: BatchJob) -> tuple[list[Item], Settings]:
    """The items of ``job`` and their settings, paths absolute; BatchInputError if two
    inputs would share an output or one would leave the output folder."""
    output_root = Path(job.output).absolute()
    items = discover(job.inputs, job.decompress)
    check_outputs(items, output_root, job.decompress)
    return items, Settings(output_root, job.decompress, job.quality, job.force, run=uuid.uuid4().hex,
                           max_error=job.max_error, lossless=job.lossless, psnr=job.psnr)


def run_batch(job: BatchJob, on_record: Callable[[Record, int, int], None] | None = None) -> Summary:
    """Run ``job`` to the end (or until Ctrl-C); returns its summary and writes the reports.

    A job that cannot run as given raises BatchInputError before anything is written. Once
    it runs, the reports are written whatever happens; files without a result (Ctrl-C, or
    an error of the job itself, which is raised after the reports) are ``cancelled``.
    """
    started = time.perf_counter()
    items, settings = plan(job)
    settings.output_root.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    client = None
    try:
        with ctrl_c_held():
            client = start_client(job)
        collect(client, items, settings, summary, on_record)
    except KeyboardInterrupt as interrupt:
        summary.interrupted = True
        summary.exit_code = getattr(interrupt, "exit_code", 130)
    finally:
        summary.add_unfinished(items, settings)
        summary.seconds = time.perf_counter() - started
        write_reports(summary, settings.output_root, settings)
        if client is not None:
            close_client(client)
    return summary


def collect(client, items: list[Item], settings: Settings, summary: Summary,
            on_record: Callable[[Record, int, int], None] | None) -> None:
    """Submit one task per item (with its entry in the state log) and add each record to
    ``summary`` as it finishes. A future that fails at the Dask level (a worker killed too
    often, a cancelled task) gives its file a failed record; on Ctrl-C the remaining tasks
    are cancelled."""
    from distributed import as_completed

    state = load_state(settings.output_root)
    futures = {
        client.submit(run_task, item, settings, state.get(str(item.source)), key=f"mriae-{index}-{item.relative}",
                      pure=False): item
        for index, item in enumerate(items)
    }
    try:
        for future in as_completed(futures):
            summary.records.append(result_of(future, futures[future]))
            if on_record:
                on_record(summary.records[-1], len(summary.records), len(items))
    except KeyboardInterrupt:
        client.cancel(list(futures))
        raise


def result_of(future, item: Item) -> Record:
    """The record a finished future holds, or a failed one naming the Dask-level error."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - KilledWorker, FutureCancelledError, a lost worker, ...
        return Record(str(item.source), "", "failed", error=failure_reason(error, item.source))


def write_reports(summary: Summary, output_root: Path, settings: Settings | None = None) -> None:
    """``batch_report.csv`` and ``batch_report.json`` (records + summary, and the job's
    settings: ``settings`` as the state log signs its entries, ``fidelity`` in words) in
    ``output_root``."""
    rows = sorted((r.to_dict() for r in summary.records), key=lambda r: r["path"])
    columns = list(Record.__dataclass_fields__)
    with (output_root / f"{REPORT_STEM}.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    report = {
        "summary": {
            "files": len(summary.records),
            "done": summary.count("done"),
            "skipped": summary.count("skipped"),
            "failed": summary.count("failed"),
            "cancelled": summary.count("cancelled"),
            "seconds": round(summary.seconds, 3),
            "interrupted": summary.interrupted,
        },
        **({"settings": {"signature": settings.signature,
                         "fidelity": "decompress" if settings.decompress else str(settings.fidelity)}}
           if settings is not None else {}),
        "files": rows,
    }
    (output_root / f"{REPORT_STEM}.json").write_text(json.dumps(report, indent=2))
