"""Batch jobs never lose or corrupt a scan: no two inputs share an output, nothing is written
outside the output folder, nothing is replaced unless asked, one file's failure (of any kind,
at any level) is that file's record, and the reports are written whatever happens."""

from __future__ import annotations

import json
import subprocess
import sys
from hashlib import sha256
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO, anatomy, as_from_a_terminal

import mriae.api
import mriae.batch.job as batch_job
from mriae.batch import BatchJob, run_batch
from mriae.batch.inputs import BatchInputError, Item, discover
from mriae.batch.job import Summary, plan
from mriae.batch.task import Settings, run_task
from mriae.container import pack, unpack


def small_scan(path: Path, mni_t1: np.ndarray, high: float = 1000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(anatomy(mni_t1, (16, 18, 12), np.int16, 0, high), np.eye(4)), path)
    return path


def report(output: Path) -> dict:
    return json.loads((output.with_name(output.name + ".report") / "batch_report.json").read_text())


# --------------------------------------------------------------------------- collisions


def test_inputs_sharing_an_output_are_refused_before_any_work(tmp_path: Path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("vol.nii", "vol.nrrd", "vol.mha", "other.nii"):
        (folder / name).write_bytes(b"not read: the job is refused first")
    output = tmp_path / "out"
    with pytest.raises(BatchInputError) as refused:
        run_batch(BatchJob(str(folder), str(output)))
    message = str(refused.value)
    assert message == (f"3 inputs would be written to {output / 'vol.mriae'}: {folder / 'vol.mha'}, "
                       f"{folder / 'vol.nii'}, {folder / 'vol.nrrd'} (rename them or run them as separate jobs)")
    assert not output.exists()


def test_cli_refuses_colliding_inputs_with_one_line_and_exit_1(tmp_path: Path):
    folder = tmp_path / "in"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "x.nii").write_bytes(b"")
    (folder / "a" / "x.nii.gz").write_bytes(b"")
    output = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "mriae", "batch", str(folder), str(output)], check=False, capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [(
        f"error: 2 inputs would be written to {output / 'a' / 'x.mriae'}: {folder / 'a' / 'x.nii'}, "
        f"{folder / 'a' / 'x.nii.gz'} (rename them or run them as separate jobs)")]
    assert not output.exists()


def test_absolute_manifest_entries_keep_their_tree(tmp_path: Path):
    manifest = tmp_path / "lists" / "manifest.csv"
    manifest.parent.mkdir()
    manifest.write_text(f"path\n{tmp_path / 'data' / 'a' / 'x.nii.gz'}\n{tmp_path / 'data' / 'b' / 'x.nii.gz'}\n")
    items = discover(manifest)
    assert [item.relative.as_posix() for item in items] == ["a/x.nii.gz", "b/x.nii.gz"]
    assert [item.source for item in items] == [tmp_path / "data" / "a" / "x.nii.gz",
                                               tmp_path / "data" / "b" / "x.nii.gz"]


def test_manifest_entry_leaving_its_folder_is_refused(tmp_path: Path):
    manifest = tmp_path / "lists" / "manifest.txt"
    manifest.parent.mkdir()
    manifest.write_text("scans/a.nii.gz\nscans/../../b.nii.gz\n")
    with pytest.raises(BatchInputError) as refused:
        discover(manifest)
    assert str(refused.value) == (f"{manifest}: entry 'scans/../../b.nii.gz' leads outside the manifest's folder "
                                  "(list it by its absolute path)")


def test_two_archives_restoring_to_one_name_are_refused(tmp_path: Path):
    manifest = tmp_path / "manifest.txt"
    (tmp_path / "p").mkdir()
    manifest.write_text(f"p/x.mriae\n{tmp_path / 'q' / 'p' / 'x.mriae'}\n{tmp_path / 'q' / 'r' / 'y.mriae'}\n")
    output = tmp_path / "restored"
    with pytest.raises(BatchInputError) as refused:
        run_batch(BatchJob(str(manifest), str(output), decompress=True))
    assert str(refused.value) == (
        f"2 inputs would be written to {output / 'p' / 'x'}.*: {tmp_path / 'p' / 'x.mriae'}, "
        f"{tmp_path / 'q' / 'p' / 'x.mriae'} (rename them or run them as separate jobs)")
    assert not output.exists()


def test_an_output_outside_the_output_folder_is_refused(tmp_path: Path):
    (tmp_path / "in" / "a").mkdir(parents=True)
    (tmp_path / "x.nii.gz").write_bytes(b"")
    output = tmp_path / "out"
    with pytest.raises(BatchInputError) as refused:
        run_batch(BatchJob(str(tmp_path / "in" / "*" / ".." / ".." / "x.nii.gz"), str(output)))
    assert str(refused.value) == (
        f"{tmp_path / 'in' / 'a' / '..' / '..' / 'x.nii.gz'}: its output {output / 'a' / '..' / '..' / 'x.mriae'} "
        f"would be outside the output folder {output}")
    assert not output.exists()


# --------------------------------------------------------------------------- forged header


def test_a_forged_header_suffix_cannot_write_outside_the_output_folder(tmp_path: Path, mni_t1: np.ndarray):
    data, _ = mriae.api.compress(anatomy(mni_t1, (16, 18, 12), np.int16, 0, 1000))
    container = unpack(data)
    header = json.loads(json.dumps(container.header))
    header["image"]["suffix"] = "/../../escaped.nii"
    forged = tmp_path / "packed" / "evil.mriae"
    forged.parent.mkdir()
    forged.write_bytes(pack(header, container.chunks))  # a valid CRC over the forged header
    output = tmp_path / "out" / "restored"
    record = run_task(Item(forged, Path("evil.mriae")), Settings(output, decompress=True))
    assert record.status == "failed"
    assert record.output == ""  # no output path was ever chosen for it
    assert record.error.startswith(f"{forged}: ")
    assert "'/../../escaped.nii' is not one of .nii.gz" in record.error
    assert not list(tmp_path.rglob("escaped*"))


# --------------------------------------------------------------------------- overwrites


def test_an_existing_output_is_never_replaced_without_force(tmp_path: Path, mni_t1: np.ndarray):
    source = small_scan(tmp_path / "in" / "x.nii.gz", mni_t1)
    output = tmp_path / "out"
    output.mkdir()
    (output / "x.mriae").write_bytes(b"someone's archive")
    record = run_task(Item(source, Path("x.nii.gz")), Settings(output))
    assert (record.status, record.error) == (
        "failed", f"{source}: {output / 'x.mriae'} already exists (use --force to replace)")
    assert (output / "x.mriae").read_bytes() == b"someone's archive"
    forced = run_task(Item(source, Path("x.nii.gz")), Settings(output, force=True))
    assert forced.status == "done"
    assert mriae.api.decompress(output / "x.mriae").array.shape == (16, 18, 12)


def test_rerun_with_another_quality_keeps_outputs_unless_forced(tmp_path: Path, mni_t1: np.ndarray, in_process):
    source = small_scan(tmp_path / "in" / "x.nii.gz", mni_t1)
    inputs, output = str(tmp_path / "in"), tmp_path / "out"
    assert run_batch(BatchJob(inputs, str(output), quality=5)).count("done") == 1
    first = (output / "x.mriae").read_bytes()
    assert run_batch(BatchJob(inputs, str(output), quality=5)).count("skipped") == 1  # resume
    (other,) = run_batch(BatchJob(inputs, str(output), quality=2)).records
    assert (other.status, other.error) == (
        "failed", f"{source}: {output / 'x.mriae'} already exists (use --force to replace)")
    assert (output / "x.mriae").read_bytes() == first
    assert run_batch(BatchJob(inputs, str(output), quality=2, force=True)).count("done") == 1
    assert (output / "x.mriae").read_bytes() != first
    assert unpack((output / "x.mriae").read_bytes()).header["quality"] == 2


def test_force_is_a_job_yaml_option(tmp_path: Path):
    spec = tmp_path / "job.yaml"
    spec.write_text("inputs: in\noutput: out\nforce: true\n")
    assert BatchJob.from_yaml(spec).force is True
    spec.write_text("inputs: in\noutput: out\n")
    assert BatchJob.from_yaml(spec).force is False
    assert BatchJob.from_yaml(spec, {"force": True}).force is True  # --force with --job
    assert BatchJob("in", "out").force is False


def test_cli_keeps_an_existing_output_unless_force(tmp_path: Path, mni_t1: np.ndarray):
    source = small_scan(tmp_path / "in" / "x.nii.gz", mni_t1)
    output = tmp_path / "out"
    output.mkdir()
    (output / "x.mriae").write_bytes(b"someone's archive")
    command = [sys.executable, "-m", "mriae", "batch", str(tmp_path / "in"), str(output), "--workers", "1"]
    kept = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert kept.returncode == 1
    assert f"failed: {source}: {output / 'x.mriae'} already exists (use --force to replace)" in kept.stderr
    assert (output / "x.mriae").read_bytes() == b"someone's archive"
    forced = subprocess.run([*command, "--force"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert forced.returncode == 0, forced.stderr
    assert "1 files: 1 done, 0 skipped, 0 failed" in forced.stdout
    assert unpack((output / "x.mriae").read_bytes()).header["quality"] == 5


# --------------------------------------------------------------------------- failures of any kind


@pytest.mark.parametrize("error, reason", [
    (RuntimeError("CUDA out of memory"), "RuntimeError: CUDA out of memory"),
    (MemoryError(), "MemoryError"),
])
def test_any_exception_of_a_task_is_its_failure_record(tmp_path: Path, mni_t1: np.ndarray, monkeypatch, error, reason):
    source = small_scan(tmp_path / "in" / "x.nii.gz", mni_t1)

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(mriae.api, "compress", fail)
    record = run_task(Item(source, Path("x.nii.gz")), Settings(tmp_path / "out"))
    assert (record.status, record.error) == ("failed", f"{source}: {reason}")
    assert not (tmp_path / "out" / "x.mriae").exists()


def test_ctrl_c_inside_a_task_is_not_swallowed(tmp_path: Path, mni_t1: np.ndarray, monkeypatch):
    source = small_scan(tmp_path / "in" / "x.nii.gz", mni_t1)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mriae.api, "compress", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_task(Item(source, Path("x.nii.gz")), Settings(tmp_path / "out"))


def test_a_future_failing_at_the_dask_level_is_that_files_record(tmp_path: Path, mni_t1: np.ndarray, monkeypatch,
                                                                 in_process):
    from distributed import KilledWorker

    for name in ("a", "b", "c"):
        small_scan(tmp_path / "in" / f"{name}.nii.gz", mni_t1)
    real_task = batch_job.run_task

    def task(item, settings, previous):
        if item.relative.name == "b.nii.gz":
            raise KilledWorker("mriae-1-b.nii.gz", SimpleNamespace(address="tcp://127.0.0.1:1"), 3)
        return real_task(item, settings, previous)

    monkeypatch.setattr(batch_job, "run_task", task)
    output = tmp_path / "out"
    summary = run_batch(BatchJob(str(tmp_path / "in"), str(output)))
    records = {Path(r.path).name: r for r in summary.records}
    assert {name: r.status for name, r in records.items()} == {
        "a.nii.gz": "done", "b.nii.gz": "failed", "c.nii.gz": "done"}
    assert records["b.nii.gz"].error.startswith(f"{tmp_path / 'in' / 'b.nii.gz'}: KilledWorker: ")
    assert report(output)["summary"] | {"seconds": 0} == {
        "files": 3, "done": 2, "skipped": 0, "copied": 0, "failed": 1, "cancelled": 0, "seconds": 0,
        "interrupted": False}


def test_relative_paths_are_resolved_before_they_reach_the_workers(tmp_path: Path, mni_t1: np.ndarray, monkeypatch,
                                                                   in_process):
    from distributed import Client

    small_scan(tmp_path / "in" / "sub" / "x.nii.gz", mni_t1)
    monkeypatch.chdir(tmp_path)
    sent = []
    submit = Client.submit

    def spy(self, function, *args, **kwargs):
        sent.append(args)
        return submit(self, function, *args, **kwargs)

    monkeypatch.setattr(Client, "submit", spy)
    (record,) = run_batch(BatchJob("in", "out")).records
    ((item, settings, _previous),) = sent
    assert item == Item(tmp_path / "in" / "sub" / "x.nii.gz", Path("sub/x.nii.gz"))
    assert settings.output_root == tmp_path / "out"
    assert (record.path, record.output, record.status) == (
        str(tmp_path / "in" / "sub" / "x.nii.gz"), str(tmp_path / "out" / "sub" / "x.mriae"), "done")


def test_ctrl_c_while_the_cluster_starts_writes_reports(tmp_path: Path, monkeypatch):
    (tmp_path / "in").mkdir()
    for name in ("a.nii.gz", "b.nii.gz"):
        (tmp_path / "in" / name).write_bytes(b"")

    def interrupted(job):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch_job, "start_client", interrupted)
    output = tmp_path / "out"
    summary = run_batch(BatchJob(str(tmp_path / "in"), str(output)))
    assert summary.interrupted
    rows = report(output)["files"]
    assert [(Path(r["path"]).name, r["status"], r["error"]) for r in rows] == [
        ("a.nii.gz", "cancelled", "interrupted before it finished"),
        ("b.nii.gz", "cancelled", "interrupted before it finished")]
    assert report(output)["summary"]["interrupted"] is True


def test_cli_ctrl_c_during_cluster_start_up_exits_130_with_reports(tmp_path: Path):
    """A real SIGINT while the embedded LocalCluster starts its worker (sent as its Nanny starts)."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.nii.gz").write_bytes(b"")
    output = tmp_path / "out"
    script = (
        "import os, signal\n"
        "import distributed.nanny\n"
        "from mriae.cli import app\n"
        "start = distributed.nanny.Nanny.start_unsafe\n"
        "async def interrupted(self):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    return await start(self)\n"
        "distributed.nanny.Nanny.start_unsafe = interrupted\n"
        "if __name__ == '__main__':\n"
        f"    app(['batch', {str(tmp_path / 'in')!r}, {str(output)!r}, '--workers', '1'])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
                            preexec_fn=as_from_a_terminal)
    assert result.returncode == 130, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "1 files (interrupted): 0 done, 0 skipped, 0 failed, 1 cancelled" in result.stdout
    assert [r["status"] for r in report(output)["files"]] == ["cancelled"]


def test_an_output_logged_after_the_job_started_is_recognised(tmp_path: Path, mni_t1: np.ndarray):
    """A retried task (its worker was lost after the write) or a re-run after a task that
    finished despite Ctrl-C: the output is in the state log, not in the entry the task got."""
    source = small_scan(tmp_path / "in" / "x.nii.gz", mni_t1)
    item, settings = Item(source, Path("x.nii.gz")), Settings(tmp_path / "out")
    assert run_task(item, settings).status == "done"
    state = [json.loads(line) for line in (tmp_path / "out.report" / ".mriae-batch-state.jsonl").read_text().splitlines()]
    assert [(entry["path"], entry["status"], entry["settings"]) for entry in state] == [
        (str(source), "done", "compress:q5")]
    again = run_task(item, settings, previous=None)
    assert (again.status, again.output_sha256) == ("skipped", state[0]["output_sha256"])


def test_a_decompressed_pair_is_checked_whole_on_resume(tmp_path: Path, mni_t1: np.ndarray):
    """A pair's data file counts as much as its header: a missing one is made again, a changed
    one is someone's (kept unless --force), and an entry of an earlier version, which
    checksummed the header alone, is redone once."""
    source, packed = tmp_path / "in" / "p.hdr", tmp_path / "packed" / "p.mriae"
    for folder in (source.parent, packed.parent):
        folder.mkdir()
    nib.save(nib.Nifti1Pair(anatomy(mni_t1, (16, 18, 12), np.int16, 0, 1000), np.eye(4)), source)
    packed.write_bytes(mriae.api.compress(source, lossless=True)[0])
    output = tmp_path / "out"
    item, settings = Item(packed, Path("p.mriae")), Settings(output, decompress=True)
    header, data = output / "p.hdr", output / "p.img"
    log = tmp_path / "out.report" / ".mriae-batch-state.jsonl"

    first = run_task(item, settings)
    pair = (data.read_bytes(), header.read_bytes())
    assert (first.status, first.output) == ("done", str(header))
    assert (first.output_bytes, first.output_sha256) == (len(pair[0]) + len(pair[1]), sha256(pair[0] + pair[1]).hexdigest())
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["output_files"] == {"p.img": sha256(pair[0]).hexdigest(), "p.hdr": sha256(pair[1]).hexdigest()}
    assert run_task(item, settings).status == "skipped"

    data.unlink()  # the header alone is left: made again, whole
    assert run_task(item, settings).status == "done"
    assert (data.read_bytes(), header.read_bytes()) == pair
    header.unlink()
    assert run_task(item, settings).status == "done" and header.read_bytes() == pair[1]

    data.write_bytes(b"someone's voxels")
    changed = run_task(item, settings)
    assert (changed.status, changed.error) == ("failed", f"{packed}: {data} already exists (use --force to replace)")
    assert data.read_bytes() == b"someone's voxels"
    assert run_task(item, Settings(output, decompress=True, force=True)).status == "done"
    assert (data.read_bytes(), header.read_bytes()) == pair

    earlier = {key: value for key, value in entry.items() if key != "output_files"}
    log.write_text(json.dumps({**earlier, "output_sha256": sha256(pair[1]).hexdigest()}) + "\n")
    data.write_bytes(b"not checked by an earlier version")
    assert [run_task(item, settings).status for _ in range(2)] == ["done", "skipped"]
    assert (data.read_bytes(), header.read_bytes()) == pair


def test_a_file_finished_after_ctrl_c_is_reported_from_the_state_log(tmp_path: Path, mni_t1: np.ndarray):
    """Its task logged it, but the client stopped listening before the record came back."""
    for name in ("a", "b"):
        small_scan(tmp_path / "in" / f"{name}.nii.gz", mni_t1)
    items, settings = plan(BatchJob(str(tmp_path / "in"), str(tmp_path / "out")))
    finished = run_task(items[1], settings)
    summary = Summary(interrupted=True)
    summary.add_unfinished(items, settings)
    assert [(Path(r.path).name, r.status, r.error) for r in summary.records] == [
        ("a.nii.gz", "cancelled", "interrupted before it finished"), ("b.nii.gz", "done", "")]
    assert summary.records[1].output_sha256 == finished.output_sha256
    earlier_run = Summary(interrupted=True)
    earlier_run.add_unfinished(items, plan(BatchJob(str(tmp_path / "in"), str(tmp_path / "out")))[1])
    assert [r.status for r in earlier_run.records] == ["cancelled", "cancelled"]  # another run's entry is not ours


def test_cli_refuses_a_quality_that_is_no_level_before_starting_a_cluster(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    result = subprocess.run([sys.executable, "-m", "mriae", "batch", str(source), str(tmp_path / "out"), "-Q", "9"],
                            check=False, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stderr) == (2, "error: --quality must be a level 1..8 (got 9)\n")
    assert not (tmp_path / "out").exists()
