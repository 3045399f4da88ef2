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
    report = json.loads((output / "batch_report.json").read_text())
    assert report["summary"] == {**report["summary"], "files": 23, "done": 21, "failed": 2, "skipped": 0}


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
    state = output / ".mriae-batch-state.jsonl"
    deadline = time.time() + 120
    while not (state.is_file() and state.read_text().count("\n") >= 2):
        assert process.poll() is None and time.time() < deadline, "the job did not start"
        time.sleep(0.05)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_code, stderr
    assert "Traceback" not in stderr
    assert "(interrupted)" in stdout
    report = json.loads((output / "batch_report.json").read_text())
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
