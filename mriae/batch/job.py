"""Batch jobs on Dask distributed: an embedded LocalCluster by default, or a running
cluster by address. The client checks every output path before any work, submits one
task per file (each task logs its finished file in the job's state log, so a stopped job
resumes), collects the records as they finish, and writes the CSV/JSON reports whatever
happens, in the job's report folder (beside the output folder unless the job says).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from mriae.batch.inputs import Item, check_outputs, discover
from mriae.batch.state import default_report_folder
from mriae.batch.task import Record, Settings, failure_reason, run_task
from mriae.batch.tree import CODE, COPY, FAIL
from mriae.fidelity import Fidelity
from mriae.parallel import available_cores, checked_device

REPORT_STEM = "batch_report"
FIDELITY_KEYS = ("quality", "max_error", "lossless", "psnr")
LOCAL_CLUSTER_KEYS = ("workers", "threads_per_worker", "memory_limit")
"""Options that size the embedded cluster only."""
PATH_KEYS = ("inputs", "output", "report")
"""Options that a job file gives relative to its own folder."""
COMMAND_LINE, JOB_FILE, OVERRIDDEN = "command line", "job file", "job file, overridden by the command line"
"""Where an option of a job came from (:attr:`BatchJob.sources`)."""
DASHBOARD = "127.0.0.1:0"
"""Where the embedded cluster serves its dashboard: this machine only, any free port."""


@dataclass(frozen=True)
class BatchJob:
    """A batch job; also what a job YAML (``mriae batch --job job.yaml``) holds.

    The fidelity of a compress job is at most one of ``quality`` (None: the default level 5),
    ``max_error``, ``lossless`` and ``psnr`` (see :func:`mriae.compress`); a job asking for two,
    or a bad value, is refused when it is made (ValueError), before any work. ``report``: the
    folder of the reports and the state log (None: ``OUTPUT.report`` beside the output).
    ``copy_other``: a folder's other files (sidecars, tables, README) are copied verbatim.
    ``device``: where the network runs on each worker ("cpu", "cuda", "cuda:N", "auto";
    ValueError for another word when the job is made).
    ``sources`` records where each option came from (:meth:`from_yaml`; not a YAML key).
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
    report: str | None = None
    copy_other: bool = True
    device: str = "cpu"
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _ = self.fidelity  # refuses conflicting or bad options now
        checked_device(self.device)
        for name in ("workers", "threads_per_worker"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive whole number (got {value!r})")

    @property
    def local_workers(self) -> int:
        """Workers of the embedded LocalCluster: ``workers``, else one per ``threads_per_worker`` cores."""
        return self.workers or max(1, available_cores() // self.threads_per_worker)

    @property
    def tile_threads(self) -> int:
        """Tiles each file codes at once (mriae.parallel): the cores the embedded cluster's
        threads leave over, at least 1; 1 on a scheduler's workers, whose threads are taken to
        be their cores. Without this bound every task would code on every core: a machine's
        worth of tiles (and their memory) per cluster thread."""
        if self.scheduler:
            return 1
        return max(1, available_cores() // (self.local_workers * self.threads_per_worker))

    @property
    def fidelity(self) -> Fidelity:
        """What every file is compressed to."""
        return Fidelity.of(self.quality, self.max_error, self.lossless, self.psnr)

    @property
    def report_folder(self) -> Path:
        """The absolute folder of the reports and the state log."""
        return Path(self.report).absolute() if self.report else default_report_folder(Path(self.output).absolute())

    @property
    def unused(self) -> list[str]:
        """Options set away from their defaults that this job does not use: a fidelity when
        it decompresses, the size of the embedded cluster when it joins a scheduler."""
        keys = FIDELITY_KEYS * self.decompress + LOCAL_CLUSTER_KEYS * bool(self.scheduler)
        defaults = {option.name: option.default for option in fields(self)}
        return [key for key in keys if getattr(self, key) != defaults[key]]

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: Mapping[str, object] | None = None) -> BatchJob:
        """Load a job spec; relative ``inputs``/``output``/``report`` are relative to the YAML
        file. ``overrides`` (the options given on the command line) win over the file's; one
        fidelity option among them replaces the file's fidelity. :attr:`sources` records
        where each option came from, and which of the file's were overridden."""
        raw = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a job file holds options (key: value), not a {type(raw).__name__}")  # noqa: TRY004
        unknown = set(raw) - ({option.name for option in fields(cls)} - {"sources"})
        if unknown:
            raise ValueError(f"{path}: unknown job options {sorted(unknown)}")
        base = Path(path).parent
        for key in PATH_KEYS:
            if raw.get(key) is not None and not Path(raw[key]).is_absolute():
                raw[key] = str(base / raw[key])
        overrides = dict(overrides or {})
        replaced = set(overrides) | (set(FIDELITY_KEYS) if set(FIDELITY_KEYS) & set(overrides) else set())
        sources = {key: OVERRIDDEN if key in replaced else JOB_FILE for key in raw} | dict.fromkeys(overrides,
                                                                                                      COMMAND_LINE)
        options = {key: value for key, value in raw.items() if key not in replaced} | overrides
        for key in ("inputs", "output"):
            if key not in options:
                raise ValueError(f"{path}: missing '{key}'")
        try:
            return cls(**options, sources=sources)
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
        others = "".join(f", {self.count(status)} {status}" for status in ("copied", "cancelled") if self.count(status))
        return (
            f"{len(self.records)} files{state}: {self.count('done')} done, {self.count('skipped')} skipped, "
            f"{self.count('failed')} failed{others} in {self.seconds:.1f} s{ratio}"
        )

    def add_unfinished(self, items: list[Item], settings: Settings) -> None:
        """A record for every item the client got none for (Ctrl-C, an error of the job):
        the one its task logged in this run if it got that far, else ``cancelled``."""
        state = settings.state()
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
    cluster = LocalCluster(
        n_workers=job.local_workers, threads_per_worker=job.threads_per_worker, processes=True,
        memory_limit=job.memory_limit, dashboard_address=DASHBOARD,
    )
    return Client(cluster)


def dashboard_of(client) -> str:
    """The address of the dashboard of ``client``'s cluster ('' if it serves none)."""
    return client.dashboard_link if "dashboard" in client.scheduler_info().get("services", {}) else ""


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
    output_root, report_root = Path(job.output).absolute(), job.report_folder
    items = discover(job.inputs, job.decompress, job.copy_other, exclude=(output_root, report_root))
    check_outputs(items, output_root, job.decompress)
    return items, Settings(output_root, job.decompress, job.quality, job.force, run=uuid.uuid4().hex,
                           max_error=job.max_error, lossless=job.lossless, psnr=job.psnr, report_root=report_root,
                           device=job.device, threads=job.tile_threads)


def run_batch(job: BatchJob, on_record: Callable[[Record, int, int], None] | None = None,
              on_cluster: Callable[[str], None] | None = None) -> Summary:
    """Run ``job`` to the end (or until Ctrl-C); returns its summary and writes the reports.
    ``on_record(record, done, total)`` is called as each file finishes, ``on_cluster`` with
    the address of the cluster's dashboard ('' if none) once the cluster is up.

    A job that cannot run as given raises BatchInputError before anything is written. Once
    it runs, the reports are written whatever happens; files without a result (Ctrl-C, or
    an error of the job itself, which is raised after the reports) are ``cancelled``.
    """
    started = time.perf_counter()
    items, settings = plan(job)
    settings.output_root.mkdir(parents=True, exist_ok=True)
    settings.report_folder.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    client = None
    try:
        with ctrl_c_held():
            client = start_client(job)
        if on_cluster:
            on_cluster(dashboard_of(client))
        collect(client, items, settings, summary, on_record)
    except KeyboardInterrupt as interrupt:
        summary.interrupted = True
        summary.exit_code = getattr(interrupt, "exit_code", 130)
    finally:
        summary.add_unfinished(items, settings)
        summary.seconds = time.perf_counter() - started
        write_reports(summary, settings.report_folder, settings, job)
        if client is not None:
            close_client(client)
    return summary


def collect(client, items: list[Item], settings: Settings, summary: Summary,
            on_record: Callable[[Record, int, int], None] | None) -> None:
    """Submit one task per item to code or copy (with its entry in the state log) and add
    each record to ``summary`` as it finishes; items only reported (skipped or failed
    with their reason) come first. A future that fails at the Dask level (a worker killed too
    often, a cancelled task) gives its file a failed record; on Ctrl-C the remaining tasks
    are cancelled."""
    from distributed import as_completed

    def add(record: Record) -> None:
        summary.records.append(record)
        if on_record:
            on_record(record, len(summary.records), len(items))

    state = settings.state()
    futures = {
        client.submit(run_task, item, settings, state.get(str(item.source)), key=f"mriae-{index}-{item.relative}",
                      pure=False): item
        for index, item in enumerate(items) if item.action in (CODE, COPY)
    }
    for item in items:
        if item.action not in (CODE, COPY):
            add(Record(str(item.source), "", "failed" if item.action == FAIL else "skipped",
                       error=f"{item.source}: {item.reason}"))
    try:
        for future in as_completed(futures):
            add(result_of(future, futures[future]))
    except KeyboardInterrupt:
        client.cancel(list(futures))
        raise


def result_of(future, item: Item) -> Record:
    """The record a finished future holds, or a failed one naming the Dask-level error."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - KilledWorker, FutureCancelledError, a lost worker, ...
        return Record(str(item.source), "", "failed", error=failure_reason(error, item.source))


def write_reports(summary: Summary, folder: Path, settings: Settings | None = None, job: BatchJob | None = None) -> None:
    """``batch_report.csv`` and ``batch_report.json`` (records + summary, and the job's
    settings: ``settings`` as the state log signs its entries, ``fidelity`` in words; with
    ``job``, its options, where each came from, and those it does not use) in ``folder``."""
    rows = sorted((r.to_dict() for r in summary.records), key=lambda r: r["path"])
    columns = list(Record.__dataclass_fields__)
    with (folder / f"{REPORT_STEM}.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    report = {
        "summary": {
            "files": len(summary.records),
            "done": summary.count("done"),
            "skipped": summary.count("skipped"),
            "copied": summary.count("copied"),
            "failed": summary.count("failed"),
            "cancelled": summary.count("cancelled"),
            "seconds": round(summary.seconds, 3),
            "interrupted": summary.interrupted,
        },
        **({"settings": {"signature": settings.signature,
                         "fidelity": "decompress" if settings.decompress else str(settings.fidelity),
                         "tiles_at_once": settings.threads,
                         **(job_settings(job) if job is not None else {})}}
           if settings is not None else {}),
        "files": rows,
    }
    (folder / f"{REPORT_STEM}.json").write_text(json.dumps(report, indent=2))


def job_settings(job: BatchJob) -> dict:
    """The options of ``job`` as the JSON report records them: their values (the output and
    report folders absolute), where each came from (``sources``: the command line or the job
    file, and the file's that the command line overrode) and those it does not use (``unused``)."""
    options = {option.name: getattr(job, option.name) for option in fields(job) if option.name != "sources"}
    options |= {"output": str(Path(job.output).absolute()), "report": str(job.report_folder)}
    return {"options": options, "sources": dict(job.sources), "unused": job.unused}
