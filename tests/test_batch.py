"""Batch jobs on a real Dask cluster (scheduler + 2 workers on 127.0.0.1) and embedded."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import anatomy, as_from_a_terminal

import mriae
from mriae.batch import BatchJob, run_batch
from mriae.batch.inputs import discover
from mriae.parallel import available_cores

SHAPES = [(24, 28, 20), (33, 41, 25), (16, 16, 5), (1, 40, 40), (31, 37, 29), (40, 48, 36, 2), (20, 20, 20)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dataset(tmp_path: Path, mni_t1: np.ndarray) -> Path:
    """21 good volumes of mixed shapes in a BIDS-like tree, plus 2 corrupt files."""
    root = tmp_path / "in"
    for index in range(21):
        shape = SHAPES[index % len(SHAPES)]
        folder = root / f"sub-{index:02d}" / "anat"
        folder.mkdir(parents=True)
        array = anatomy(mni_t1, shape, np.int16, 0, 1000 + 10 * index)
        nib.save(nib.Nifti1Image(array, np.diag([1.0, 1.2, 2.0, 1.0])), folder / f"sub-{index:02d}_T1w.nii.gz")
    (root / "sub-bad1").mkdir()
    (root / "sub-bad1" / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08 this is not a volume")
    (root / "sub-bad2").mkdir()
    (root / "sub-bad2" / "empty.nii").write_bytes(b"")
    return root


def check_outputs(summary, dataset: Path, output: Path) -> None:
    good = [item for item in discover(dataset) if "bad" not in str(item.relative)]
    done = [r for r in summary.records if r.status == "done"]
    assert sorted(r.path for r in done) == sorted(str(item.source) for item in good)  # each exactly once
    for item in good:
        compressed = output / item.relative.parent / item.relative.name.replace(".nii.gz", ".mriae")
        restored = mriae.decompress(compressed)
        assert restored.array.shape == nib.load(item.source).shape
    failed = {Path(r.path).name: r.error for r in summary.records if r.status == "failed"}
    assert set(failed) == {"broken.nii.gz", "empty.nii"}
    assert "cannot read image" in failed["broken.nii.gz"]
    report = json.loads((output.with_name("out.report") / "batch_report.json").read_text())
    assert report["summary"] == {**report["summary"], "files": 23, "done": 21, "failed": 2, "skipped": 0}
    assert not (output / "batch_report.json").exists() and not (output / ".mriae-batch-state.jsonl").exists()


def rerun_does_nothing(job: BatchJob, output: Path) -> None:
    stamps = {p: p.stat().st_mtime_ns for p in output.rglob("*.mriae")}
    summary = run_batch(job)
    assert summary.count("done") == 0
    assert summary.count("skipped") == 21
    assert summary.count("failed") == 2
    assert {p: p.stat().st_mtime_ns for p in output.rglob("*.mriae")} == stamps


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def test_job_on_a_real_cluster_survives_a_killed_worker(dataset: Path, tmp_path: Path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = start("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                      "--dashboard-address", ":0")
    workers = {}
    for _ in range(2):
        worker_address = f"tcp://127.0.0.1:{free_port()}"
        workers[worker_address] = start("distributed.cli.dask_worker", address, "--nthreads", "1", "--no-nanny",
                                        "--listen-address", worker_address, "--memory-limit", "3GiB")
    try:
        output = tmp_path / "out"
        job = BatchJob(str(dataset), str(output), scheduler=address)
        killed: list[str] = []

        def kill_one_worker(record, done: int, total: int) -> None:
            if done == 3 and not killed:  # the worker that just finished a file is mid-job
                os.killpg(workers[record.worker].pid, signal.SIGKILL)
                killed.append(record.worker)

        deadline = time.time() + 60
        from distributed import Client

        while True:  # wait for both workers to register
            try:
                with Client(address, timeout="5s") as client:
                    if len(client.scheduler_info()["workers"]) == 2:
                        break
            except OSError:
                pass
            assert time.time() < deadline, "Dask workers did not start"
            time.sleep(0.5)

        summary = run_batch(job, on_record=kill_one_worker)
        assert killed
        check_outputs(summary, dataset, output)
        assert {r.worker for r in summary.records} == set(workers)  # the survivor finished the job
        rerun_does_nothing(job, output)
    finally:
        for process in [*workers.values(), scheduler]:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


def test_same_job_on_the_embedded_local_cluster(dataset: Path, tmp_path: Path):
    output = tmp_path / "out"
    job = BatchJob(str(dataset), str(output), workers=2)
    summary = run_batch(job)
    check_outputs(summary, dataset, output)
    rerun_does_nothing(job, output)


def test_changed_input_is_redone(dataset: Path, tmp_path: Path, mni_t1: np.ndarray):
    output = tmp_path / "out"
    job = BatchJob(str(dataset / "sub-00"), str(output), workers=1)
    assert run_batch(job).count("done") == 1
    target = dataset / "sub-00" / "anat" / "sub-00_T1w.nii.gz"
    nib.save(nib.Nifti1Image(anatomy(mni_t1, (20, 22, 18), np.int16, 0, 500), np.eye(4)), target)
    summary = run_batch(job)
    assert summary.count("done") == 1 and summary.count("skipped") == 0


def test_manifest_glob_and_job_yaml(dataset: Path, tmp_path: Path):
    manifest = tmp_path / "list.txt"
    manifest.write_text("in/sub-00/anat/sub-00_T1w.nii.gz\n# a comment\nin/sub-01/anat/sub-01_T1w.nii.gz\n")
    assert [i.relative.as_posix() for i in discover(manifest)] == [
        "in/sub-00/anat/sub-00_T1w.nii.gz", "in/sub-01/anat/sub-01_T1w.nii.gz"]
    pattern = str(dataset / "sub-0*" / "anat" / "*.nii.gz")
    assert [i.relative.as_posix() for i in discover(pattern)][:2] == [
        "sub-00/anat/sub-00_T1w.nii.gz", "sub-01/anat/sub-01_T1w.nii.gz"]
    spec = tmp_path / "job.yaml"
    spec.write_text("inputs: in/sub-02\noutput: out\nquality: 3\nworkers: 1\n")
    job = BatchJob.from_yaml(spec)
    assert job.inputs == str(tmp_path / "in/sub-02") and job.quality == 3
    result = subprocess.run([sys.executable, "-m", "mriae", "batch", "--job", str(spec)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "1 files: 1 done, 0 skipped, 0 failed" in result.stdout
    assert (tmp_path / "out" / "anat" / "sub-02_T1w.mriae").is_file()
    shutil.rmtree(tmp_path / "out")


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_stops_cleanly_and_the_job_resumes(mni_t1: np.ndarray, tmp_path: Path, signum: int, exit_code: int):
    # Volumes big enough (~0.3 s each) that the job is still running when Ctrl-C arrives.
    dataset, output = tmp_path / "in", tmp_path / "out"
    dataset.mkdir()
    for index in range(12):
        array = anatomy(mni_t1, (72, 80, 64), np.int16, 0, 1000 + 10 * index)
        nib.save(nib.Nifti1Image(array, np.eye(4)), dataset / f"sub-{index:02d}_T1w.nii.gz")
    command = [sys.executable, "-m", "mriae", "batch", str(dataset), str(output), "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=as_from_a_terminal)  # noqa: PLW1509 - it only resets SIGINT before exec
    state = tmp_path / "out.report" / ".mriae-batch-state.jsonl"
    deadline = time.time() + 120
    while not (state.is_file() and state.read_text().count("\n") >= 2):
        assert process.poll() is None and time.time() < deadline, "the job did not start"
        time.sleep(0.05)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_code, stderr
    assert "Traceback" not in stderr
    assert "(interrupted)" in stdout
    report = json.loads((tmp_path / "out.report" / "batch_report.json").read_text())
    finished = report["summary"]["done"]
    assert report["summary"]["interrupted"] is True and 2 <= finished < 12
    resumed = run_batch(BatchJob(str(dataset), str(output), workers=1))
    assert resumed.count("skipped") >= finished
    assert resumed.count("done") + resumed.count("skipped") == 12


def test_decompress_job_restores_the_tree(dataset: Path, tmp_path: Path):
    packed, restored = tmp_path / "packed", tmp_path / "restored"
    assert run_batch(BatchJob(str(dataset / "sub-03"), str(packed), workers=1)).count("done") == 1
    summary = run_batch(BatchJob(str(packed), str(restored), decompress=True, workers=1))
    assert summary.count("done") == 1
    original = nib.load(dataset / "sub-03" / "anat" / "sub-03_T1w.nii.gz")
    back = nib.load(restored / "anat" / "sub-03_T1w.nii.gz")
    assert back.shape == original.shape and np.array_equal(back.affine, original.affine)
    assert back.header.binaryblock == original.header.binaryblock
    assert run_batch(BatchJob(str(packed), str(restored), decompress=True, workers=1)).count("skipped") == 1


# --------------------------------------------------------------------------- job file + command line, progress


def test_command_line_options_win_over_the_job_file(tmp_path: Path):
    spec = tmp_path / "jobs" / "job.yaml"
    spec.parent.mkdir()
    spec.write_text("inputs: in\noutput: out\nreport: logs\nquality: 3\nworkers: 2\ncopy_other: false\n")
    job = BatchJob.from_yaml(spec)
    assert (job.inputs, job.output, job.report_folder) == (
        str(spec.parent / "in"), str(spec.parent / "out"), spec.parent / "logs")
    assert dict(job.sources) == dict.fromkeys(("inputs", "output", "report", "quality", "workers", "copy_other"),
                                              "job file")
    merged = BatchJob.from_yaml(spec, {"inputs": "elsewhere", "max_error": 2.0, "workers": 1, "copy_other": True})
    assert (merged.inputs, merged.output, merged.quality, merged.max_error, merged.workers, merged.copy_other) == (
        "elsewhere", str(spec.parent / "out"), None, 2.0, 1, True)  # one fidelity replaces the file's
    assert dict(merged.sources) == {
        "inputs": "command line", "output": "job file", "report": "job file",
        "quality": "job file, overridden by the command line", "max_error": "command line",
        "workers": "command line", "copy_other": "command line"}
    assert merged.unused == []
    joined = BatchJob.from_yaml(spec, {"scheduler": "tcp://10.0.0.5:8786", "decompress": True})
    assert joined.unused == ["quality", "workers"]  # recorded in the report, refused from the command line
    spec.write_text("inputs: in\noutput: out\nsources: {}\n")
    with pytest.raises(ValueError, match=r"job.yaml: unknown job options \['sources'\]$"):
        BatchJob.from_yaml(spec)


@pytest.mark.parametrize(("args", "message"), [
    (["--decompress", "-Q", "3"], "--quality does not apply to a decompress job"),
    (["--decompress", "--lossless", "--job", "JOB"], "--lossless does not apply to a decompress job"),
    (["--scheduler", "tcp://127.0.0.1:1", "--workers", "2", "--threads-per-worker", "2"],
     "--workers and --threads-per-worker do not apply to a job on a running cluster (it sizes the embedded one)"),
])
def test_cli_refuses_options_the_job_would_not_use(tmp_path: Path, monkeypatch, capsys, args, message):
    from conftest import run_mriae

    spec = tmp_path / "job.yaml"
    spec.write_text("inputs: in\noutput: out\nquality: 4\n")
    (tmp_path / "in").mkdir()
    args = [str(spec) if arg == "JOB" else arg for arg in args]
    positional = [] if "--job" in args else [str(tmp_path / "in"), str(tmp_path / "out")]
    assert run_mriae(monkeypatch, capsys, "batch", *positional, *args) == (2, "", f"error: {message}\n")
    assert not (tmp_path / "out").exists()


def test_cli_job_merge_is_recorded_and_progress_is_printed_without_a_terminal(tmp_path: Path, mni_t1: np.ndarray,
                                                                            monkeypatch, capsys, in_process):
    from conftest import run_mriae

    (tmp_path / "in").mkdir()
    for name in ("a", "b", "c"):
        nib.save(nib.Nifti1Image(anatomy(mni_t1, (16, 18, 12), np.int16, 0, 900), np.eye(4)),
                 tmp_path / "in" / f"{name}.nii.gz")
    (tmp_path / "in" / "notes.txt").write_text("kept\n")
    spec = tmp_path / "job.yaml"
    spec.write_text("inputs: in\noutput: out\nquality: 3\nworkers: 2\n")
    code, out, err = run_mriae(monkeypatch, capsys, "batch", "--job", str(spec), "--lossless", "--workers", "1",
                               "--progress-every", "3", "--report", str(tmp_path / "logs"))
    assert code == 0, err
    assert out.splitlines()[1] == f"reports: {tmp_path / 'logs' / 'batch_report.csv'} and .json"
    lines = err.splitlines()
    assert lines[0].startswith("dashboard: http://")
    assert [line.split(" (")[0] for line in lines[1:]] == ["progress: 3/4 files", "progress: 4/4 files"]
    assert lines[2].startswith("progress: 4/4 files (3 done, 1 copied, 0 skipped, 0 failed), ")
    settings = json.loads((tmp_path / "logs" / "batch_report.json").read_text())["settings"]
    assert (settings["signature"], settings["fidelity"], settings["unused"]) == ("compress:lossless", "lossless", [])
    assert settings["tiles_at_once"] == available_cores()  # one worker of one thread: every core for its file
    assert settings["options"] | {"inputs": "", "output": ""} == {
        "inputs": "", "output": "", "decompress": False, "quality": None, "scheduler": None, "workers": 1,
        "threads_per_worker": 1, "memory_limit": "4GiB", "force": False, "max_error": None, "lossless": True,
        "psnr": None, "report": str(tmp_path / "logs"), "copy_other": True, "device": "cpu"}
    assert settings["sources"] == {
        "inputs": "job file", "output": "job file", "quality": "job file, overridden by the command line",
        "workers": "command line", "lossless": "command line", "report": "command line"}
    assert (tmp_path / "out" / "notes.txt").read_text() == "kept\n"


def test_progress_lines_count_files_and_estimate_the_time_left():
    from mriae.batch.progress import ProgressLines, duration
    from mriae.batch.task import Record

    now = [100.0]
    written: list[str] = []
    progress = ProgressLines(written.append, every=2, clock=lambda: now[0])
    now[0] = 110.0
    progress.start()  # the cluster is up: time counts from here
    for done, status in enumerate(("done", "copied", "failed", "done", "skipped"), start=1):
        now[0] = 110.0 + 4 * done
        progress(Record("x", "", status), done, 5)
    assert written == [
        "progress: 2/5 files (1 done, 1 copied, 0 skipped, 0 failed), 8s elapsed, ETA 12s",
        "progress: 4/5 files (2 done, 1 copied, 0 skipped, 1 failed), 16s elapsed, ETA 4s",
        "progress: 5/5 files (2 done, 1 copied, 1 skipped, 1 failed), 20s elapsed"]
    assert [duration(s) for s in (0.4, 59.6, 187, 7500)] == ["0s", "1m00s", "3m07s", "2h05m"]
    with pytest.raises(ValueError, match="every 0 files"):
        ProgressLines(written.append, every=0)


def test_each_file_codes_on_the_cores_its_cluster_thread_leaves(tmp_path: Path, monkeypatch):
    """A task codes tiles on cores ÷ (workers × threads per worker) of the embedded cluster,
    at least 1, and on 1 on a scheduler's workers; not on every core per cluster thread."""
    from mriae.batch import job as batch_job
    from mriae.batch import task as batch_task
    from mriae.batch.inputs import Item
    from mriae.batch.task import Settings, run_task

    monkeypatch.setattr(batch_job, "available_cores", lambda: 16)
    folders = str(tmp_path / "in"), str(tmp_path / "out")
    assert (BatchJob(*folders).local_workers, BatchJob(*folders).tile_threads) == (16, 1)
    assert BatchJob(*folders, workers=2).tile_threads == 8
    assert BatchJob(*folders, workers=3, threads_per_worker=2).tile_threads == 2
    assert BatchJob(*folders, workers=40).tile_threads == 1
    assert BatchJob(*folders, workers=2, scheduler="tcp://host:8786").tile_threads == 1
    (tmp_path / "in").mkdir()
    assert batch_job.plan(BatchJob(*folders, workers=4))[1].threads == 4

    calls = []
    monkeypatch.setattr(batch_task.api, "compress", lambda *args, **options: calls.append(options) or (b"", None))
    source = tmp_path / "in" / "x.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), source)
    run_task(Item(source, Path("x.nii.gz")), Settings(tmp_path / "out", threads=3))
    assert calls and calls[0]["threads"] == 3


@pytest.mark.parametrize(("args", "message"), [
    (["--workers", "0"], "error: Invalid value for '--workers': Input should be greater than or equal to 1"),
    (["--threads-per-worker", "0"],
     "error: Invalid value for '--threads-per-worker': Input should be greater than or equal to 1")])
def test_a_cluster_size_below_one_is_refused(tmp_path: Path, args: list[str], message: str):
    (tmp_path / "in").mkdir()
    result = subprocess.run([sys.executable, "-m", "mriae", "batch", str(tmp_path / "in"), str(tmp_path / "out"), *args],
                            capture_output=True, text=True, timeout=120, check=False)
    assert (result.returncode, result.stderr.startswith(message)) == (2, True), result.stderr
    job = tmp_path / "job.yaml"
    job.write_text("inputs: in\noutput: out\nthreads_per_worker: 0\n")
    with pytest.raises(ValueError, match=r"threads_per_worker must be a positive whole number \(got 0\)$"):
        BatchJob.from_yaml(job)
    with pytest.raises(ValueError, match=r"^workers must be a positive whole number \(got True\)$"):
        BatchJob(str(tmp_path / "in"), str(tmp_path / "out"), workers=True)
    assert not (tmp_path / "out").exists()
