"""Batch jobs on Dask distributed: an embedded LocalCluster by default, or a running
cluster by address. The client submits one task per file, collects records as they
finish, appends each to the job's state log (so a killed job resumes), and writes the
CSV/JSON reports.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mriae.batch.inputs import discover
from mriae.batch.task import Record, Settings, run_task

STATE_FILE = ".mriae-batch-state.jsonl"
REPORT_STEM = "batch_report"


@dataclass(frozen=True)
class BatchJob:
    """A batch job; also what a job YAML (``mriae batch --job job.yaml``) holds."""

    inputs: str
    output: str
    decompress: bool = False
    quality: int = 5
    scheduler: str | None = None
    workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str = "4GiB"

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "BatchJob":
        """Load a job spec; relative ``inputs``/``output`` are relative to the YAML file."""
        raw = yaml.safe_load(Path(path).read_text()) or {}
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown job options {sorted(unknown)}")
        base = Path(path).parent
        for key in ("inputs", "output"):
            if key not in raw:
                raise ValueError(f"{path}: missing '{key}'")
            if not any(ch in str(raw[key]) for ch in "*?[") and not Path(raw[key]).is_absolute():
                raw[key] = str(base / raw[key])
            elif not Path(raw[key]).is_absolute():
                raw[key] = str(base / raw[key])
        return cls(**raw)


@dataclass
class Summary:
    """Totals of a job run."""

    records: list[Record] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    def line(self) -> str:
        done = [r for r in self.records if r.status == "done"]
        before, after = sum(r.input_bytes for r in done), sum(r.output_bytes for r in done)
        ratio = f", {before / after:.1f}× on the files done" if after else ""
        state = " (interrupted)" if self.interrupted else ""
        return (
            f"{len(self.records)} files{state}: {self.count('done')} done, {self.count('skipped')} skipped, "
            f"{self.count('failed')} failed in {self.seconds:.1f} s{ratio}"
        )


def load_state(output_root: Path) -> dict[str, dict]:
    """Latest state entry per source path (later lines win)."""
    path = output_root / STATE_FILE
    entries: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill: ignore it
            entries[entry["path"]] = entry
    return entries


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


def run_batch(job: BatchJob, on_record: Callable[[Record, int, int], None] | None = None) -> Summary:
    """Run ``job`` to the end (or until Ctrl-C); returns its summary and writes the reports."""
    from distributed import as_completed

    started = time.perf_counter()
    output_root = Path(job.output)
    output_root.mkdir(parents=True, exist_ok=True)
    items = discover(job.inputs, job.decompress)
    settings = Settings(output_root, job.decompress, job.quality)
    state = load_state(output_root)
    summary = Summary()
    client = start_client(job)
    try:
        futures = [
            client.submit(run_task, item, settings, state.get(str(item.source)), key=f"mriae-{index}-{item.relative}",
                          pure=False)
            for index, item in enumerate(items)
        ]
        with (output_root / STATE_FILE).open("a") as log:
            try:
                for future in as_completed(futures):
                    record = future.result()
                    summary.records.append(record)
                    if record.status != "failed":
                        log.write(json.dumps({**record.to_dict(), "settings": settings.signature}) + "\n")
                        log.flush()
                    if on_record:
                        on_record(record, len(summary.records), len(items))
            except KeyboardInterrupt:
                summary.interrupted = True
                client.cancel(futures)
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()
    summary.seconds = time.perf_counter() - started
    write_reports(summary, output_root)
    return summary


def write_reports(summary: Summary, output_root: Path) -> None:
    """``batch_report.csv`` and ``batch_report.json`` (records + summary) in ``output_root``."""
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
            "seconds": round(summary.seconds, 3),
            "interrupted": summary.interrupted,
        },
        "files": rows,
    }
    (output_root / f"{REPORT_STEM}.json").write_text(json.dumps(report, indent=2))
