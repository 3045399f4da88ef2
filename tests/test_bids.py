"""A BIDS dataset through `mriae batch` and back: the images coded (masks and label images
never degraded), every other file copied byte for byte, the reports beside the output, and
the restored tree the same dataset, name for name."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import anatomy

import mriae
from mriae.batch import BatchInputError, BatchJob, run_batch
from mriae.batch.inputs import Item, discover
from mriae.batch.job import plan
from mriae.batch.state import STATE_FILE
from mriae.batch.task import Settings, run_task
from mriae.batch.tree import COPY

SIDECARS = {
    "dataset_description.json": '{"Name": "tiny", "BIDSVersion": "1.9.0"}\n',
    "participants.tsv": "participant_id\tage\nsub-01\t30\nsub-02\t41\n",
    "README": "A tiny dataset for the tests.\n",
    "derivatives/seg/dataset_description.json": '{"Name": "seg", "DatasetType": "derivative"}\n',
    **{name: text for s in ("01", "02") for name, text in (
        (f"sub-{s}/anat/sub-{s}_T1w.json", '{"RepetitionTime": 2.3}\n'),
        (f"sub-{s}/func/sub-{s}_task-rest_bold.json", '{"RepetitionTime": 2.0, "TaskName": "rest"}\n'),
        (f"sub-{s}/func/sub-{s}_task-rest_events.tsv", f"onset\tduration\ttrial_type\n0\t1\tgo-{s}\n"))},
}
LABELS = ("desc-brain_mask", "dseg", "label-GM_probseg")
AFFINE = np.array([[-2.0, 0, 0, 30], [0, 2.0, 0, -40], [0, 0, 2.5, -20], [0, 0, 0, 1]])


def images(root: Path) -> dict[str, Path]:
    return {f"sub-{s}_{kind}": path for s in ("01", "02") for kind, path in (
        ("T1w", root / f"sub-{s}/anat/sub-{s}_T1w.nii.gz"),
        ("bold", root / f"sub-{s}/func/sub-{s}_task-rest_bold.nii.gz"),
        *((label, root / f"derivatives/seg/sub-{s}/anat/sub-{s}_{label}.nii.gz") for label in LABELS))}


@pytest.fixture
def dataset(tmp_path: Path, mni_t1: np.ndarray) -> Path:
    """2 subjects: anat T1w + json, func bold (4D) + json + events; derivatives with a brain
    mask (uint8), a segmentation (int16 labels) and a GM probability map (float32)."""
    root = tmp_path / "ds"
    for name, text in SIDECARS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    head = anatomy(mni_t1, (16, 18, 12), np.float32, 0, 1)
    rng = np.random.default_rng(1)
    arrays = {"T1w": anatomy(mni_t1, (16, 18, 12), np.int16, 0, 900),
              "bold": anatomy(mni_t1, (16, 18, 12, 3), np.int16, 0, 600),
              "desc-brain_mask": (head > 0.2).astype(np.uint8),
              "dseg": np.digitize(head, [0.2, 0.5, 0.8]).astype(np.int16),
              "label-GM_probseg": (head * rng.uniform(0.5, 1, head.shape)).astype(np.float32)}
    for name, path in images(root).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(arrays[name.split("_", 1)[1]], AFFINE), path)
    return root


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def compressed_name(relative: str) -> str:
    return relative.replace(".nii.gz", ".mriae")


def test_a_bids_dataset_comes_back_whole(dataset: Path, tmp_path: Path, in_process):
    packed, restored = tmp_path / "packed", tmp_path / "restored"
    command = [sys.executable, "-m", "mriae", "batch", str(dataset), str(packed), "--workers", "1",
               "--progress-every", "5"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        result.stdout.splitlines()[0],
        f"reports: {tmp_path / 'packed.report' / 'batch_report.csv'} and .json"]
    assert result.stdout.startswith("20 files: 10 done, 0 skipped, 0 failed, 10 copied in ")
    lines = result.stderr.splitlines()  # stderr is no terminal: progress lines, every 5 files
    assert lines[0].startswith("dashboard: http://127.0.0.1:")
    assert [line.split(" (")[0] for line in lines[1:]] == [f"progress: {n}/20 files" for n in (5, 10, 15, 20)]
    assert lines[-1].startswith("progress: 20/20 files (10 done, 10 copied, 0 skipped, 0 failed), ")
    assert "ETA" in lines[1] and "ETA" not in lines[-1]

    assert tree(packed) == sorted(compressed_name(name) for name in tree(dataset))  # nothing else inside
    assert sorted(p.name for p in (tmp_path / "packed.report").iterdir()) == [
        STATE_FILE, "batch_report.csv", "batch_report.json"]
    report = json.loads((tmp_path / "packed.report" / "batch_report.json").read_text())
    rows = {Path(row["path"]).relative_to(dataset).as_posix(): row for row in report["files"]}
    for name in SIDECARS:
        assert (rows[name]["status"], rows[name]["output"]) == ("copied", str(packed / name))
        assert (packed / name).read_bytes() == (dataset / name).read_bytes()
    coded = {name: (row["coder"], row["fidelity"], row["max_error"]) for name, row in rows.items() if row["coder"]}
    assert coded == {
        **{f"sub-{s}/anat/sub-{s}_T1w.nii.gz": ("network", "q5", coded[f"sub-{s}/anat/sub-{s}_T1w.nii.gz"][2])
           for s in ("01", "02")},
        **{f"sub-{s}/func/sub-{s}_task-rest_bold.nii.gz": (
            "network", "q5", coded[f"sub-{s}/func/sub-{s}_task-rest_bold.nii.gz"][2]) for s in ("01", "02")},
        **{f"derivatives/seg/sub-{s}/anat/sub-{s}_{label}.nii.gz": (coder, "lossless", 0)
           for s in ("01", "02") for label, coder in zip(LABELS, ("exact", "exact", "context"))}}

    summary = run_batch(BatchJob(str(packed), str(restored), decompress=True, workers=1))
    assert (summary.count("done"), summary.count("copied"), summary.count("failed")) == (10, 10, 0)
    assert tree(restored) == tree(dataset)  # the same BIDS tree, .nii.gz back
    for name in SIDECARS:
        assert (restored / name).read_bytes() == (dataset / name).read_bytes()
    for name, original_path in images(dataset).items():
        original, back = nib.load(original_path), nib.load(restored / original_path.relative_to(dataset))
        assert back.shape == original.shape and np.array_equal(back.affine, original.affine)
        assert back.header.binaryblock == original.header.binaryblock
        if name.endswith(LABELS):  # never degraded: every voxel, and its type
            assert np.asarray(back.dataobj).dtype == np.asarray(original.dataobj).dtype
            assert np.array_equal(np.asarray(back.dataobj), np.asarray(original.dataobj))
    assert not (tmp_path / "restored" / "batch_report.json").exists()
    assert (tmp_path / "restored.report" / "batch_report.json").is_file()

    stamps = {p: p.stat().st_mtime_ns for p in packed.rglob("*")}
    again = run_batch(BatchJob(str(dataset), str(packed), workers=1))
    assert again.count("skipped") == 20  # coded files and copies alike
    assert {p: p.stat().st_mtime_ns for p in packed.rglob("*")} == stamps


def test_no_copy_other_and_a_report_folder_of_ones_own(dataset: Path, tmp_path: Path, in_process):
    packed, reports = tmp_path / "packed", tmp_path / "logs" / "job-1"
    summary = run_batch(BatchJob(str(dataset), str(packed), copy_other=False, report=str(reports)))
    assert (len(summary.records), summary.count("done")) == (10, 10)
    assert tree(packed) == sorted(compressed_name(name) for name in tree(dataset) if name.endswith(".nii.gz"))
    assert sorted(p.name for p in reports.iterdir()) == [STATE_FILE, "batch_report.csv", "batch_report.json"]
    assert not (tmp_path / "packed.report").exists()
    report = json.loads((reports / "batch_report.json").read_text())
    assert report["settings"]["options"] | {"inputs": ""} == {
        "inputs": "", "output": str(packed), "decompress": False, "quality": None, "scheduler": None,
        "workers": None, "threads_per_worker": 1, "memory_limit": "4GiB", "force": False, "max_error": None,
        "lossless": False, "psnr": None, "report": str(reports), "copy_other": False, "device": "cpu"}


def test_what_a_folder_walk_codes_copies_and_leaves_out(tmp_path: Path):
    root, outside = tmp_path / "ds", tmp_path / "elsewhere"
    for name in ("sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_T1w.json", "README",
                 "sub-01/func/sub-01_task-rest_bold.dtseries.nii", "sub-01/anat/sub-01_hemi-L_pial.surf.gii",
                 ".git/config", ".git/annex/objects/x.nii.gz", ".mriae-1a2b3c/half-written.mriae",
                 STATE_FILE, "batch_report.json", "derivatives/mriae/sub-01_T1w.mriae", "elsewhere.json",
                 "pair/a.hdr", "pair/a.img", "pair/b.mhd", "pair/b.raw", "pair/orphan.img"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"not read")
    (root / "pair" / "a.hdr").write_bytes((348).to_bytes(4, "little") + b"not read")
    (root / "pair" / "b.mhd").write_bytes(b"ObjectType = Image\nElementDataFile = b.raw\n")
    outside.mkdir()
    (outside / "secret.json").write_bytes(b"not copied")
    (root / "link.json").symlink_to("README")
    (root / "escape.json").symlink_to(outside / "secret.json")
    (root / "gone.nii.gz").symlink_to(root / "missing.nii.gz")
    (root / "alias").symlink_to(root / "sub-01")
    found = discover(root, copy_other=True, exclude=(root / "derivatives" / "mriae",))
    assert [(item.relative.as_posix(), item.action, item.reason) for item in found] == [
        (".git", "skip", "a version-control folder, not copied"),
        (".mriae-1a2b3c", "skip", "a scratch folder left by mriae, not copied"),
        (STATE_FILE, "skip", "a batch job's state, report or scratch file, not copied"),
        ("README", "copy", ""),
        ("alias", "skip", "a symbolic link to a folder, not followed"),
        ("batch_report.json", "skip", "a batch job's state, report or scratch file, not copied"),
        ("elsewhere.json", "copy", ""),
        ("escape.json", "fail", (f"a symbolic link to {outside / 'secret.json'}, outside the input folder, "
                                "not followed")),
        ("gone.nii.gz", "fail", f"a broken symbolic link (to {root / 'missing.nii.gz'}), not followed"),
        ("link.json", "copy", ""),
        ("pair/a.hdr", "code", ""),  # with its a.img, as b.mhd with b.raw: neither data file is copied
        ("pair/b.mhd", "code", ""),
        ("pair/orphan.img", "copy", "the voxel file of an Analyze/NIfTI pair: give its header (.hdr) (copied unchanged)"),
        ("sub-01/anat/sub-01_T1w.json", "copy", ""),
        ("sub-01/anat/sub-01_T1w.nii.gz", "code", ""),
        ("sub-01/anat/sub-01_hemi-L_pial.surf.gii", "copy",
         "GIFTI surface data is not supported (mriae codes volumes) (copied unchanged)"),
        ("sub-01/func/sub-01_task-rest_bold.dtseries.nii", "copy",
         "CIFTI-2 (surface/grayordinate data) is not supported (copied unchanged)")]
    assert all(item.source == root / item.relative for item in found)
    assert [(item.relative.as_posix(), item.action, item.reason) for item in discover(root)] == [
        ("gone.nii.gz", "fail", f"a broken symbolic link (to {root / 'missing.nii.gz'}), not followed"),
        ("pair/a.hdr", "code", ""),
        ("pair/b.mhd", "code", ""),
        ("pair/orphan.img", "skip", "the voxel file of an Analyze/NIfTI pair: give its header (.hdr) (not copied)"),
        ("sub-01/anat/sub-01_T1w.nii.gz", "code", ""),
        ("sub-01/anat/sub-01_hemi-L_pial.surf.gii", "skip", "GIFTI surface data is not supported (mriae codes volumes) (not copied)"),
        ("sub-01/func/sub-01_task-rest_bold.dtseries.nii", "skip",
         "CIFTI-2 (surface/grayordinate data) is not supported (not copied)")]


OTHER_FILES_NAMED_LIKE_IMAGES = {
    "derivatives/fsl/prefiltered_func_data_mcf.par": b"-0.00165  0.00021  0.00038  0.0211 -0.0402  0.0617\n",
    "derivatives/fsl/prefiltered_func_data_mcf.rec": b"notes on the motion correction\n",
    "spectra/cube.hdr": b"ENVI\ndescription = {a hyperspectral cube}\nsamples = 4\nlines = 4\nbands = 2\n",
    "spectra/cube.img": bytes(range(64)),
    "code/counter.v": b"module counter(input clk, output reg [3:0] n);\nendmodule\n",
    "notes/session+orig.HEAD": b"head coil, 32 channels\n",
    "notes/session+orig.BRIK": b"not an AFNI dataset either\n",
}


def test_files_named_like_images_that_hold_something_else_are_copied(tmp_path: Path, in_process):
    """FSL motion parameters (.par), an ENVI cube (.hdr + .img), a Verilog .v, a text .HEAD:
    their first bytes are not the image type their suffix names, so they and the files beside
    them are other files, copied unchanged; a real pair beside them is still coded."""
    root = tmp_path / "ds"
    for name, content in OTHER_FILES_NAMED_LIKE_IMAGES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    pair = nib.Nifti1Pair(np.arange(60, dtype=np.int16).reshape(3, 4, 5), AFFINE)
    nib.save(pair, root / "spectra" / "t1.hdr")
    assert [(item.relative.as_posix(), item.action, item.reason) for item in discover(root, copy_other=True)] == [
        *((name, "copy", "") for name in sorted(OTHER_FILES_NAMED_LIKE_IMAGES)), ("spectra/t1.hdr", "code", "")]
    assert [item.relative.as_posix() for item in discover(root)] == ["spectra/t1.hdr"]

    summary = run_batch(BatchJob(str(root), str(tmp_path / "out")))
    assert (summary.count("done"), summary.count("copied"), summary.count("failed")) == (1, 7, 0)
    assert tree(tmp_path / "out") == sorted([*OTHER_FILES_NAMED_LIKE_IMAGES, "spectra/t1.mriae"])
    for name, content in OTHER_FILES_NAMED_LIKE_IMAGES.items():
        assert (tmp_path / "out" / name).read_bytes() == content
    assert np.array_equal(mriae.decompress(tmp_path / "out" / "spectra" / "t1.mriae").array, pair.get_fdata())


def test_a_link_followed_inside_the_tree_is_copied_as_a_file_and_one_leaving_it_fails(tmp_path: Path, in_process):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "README").write_text("hello\n")
    (root / "link.txt").symlink_to("README")
    (tmp_path / "secret.txt").write_text("private\n")
    (root / "escape.txt").symlink_to(tmp_path / "secret.txt")
    summary = run_batch(BatchJob(str(root), str(tmp_path / "out")))
    assert {Path(r.path).name: (r.status, r.error) for r in summary.records} == {
        "README": ("copied", ""), "link.txt": ("copied", ""),
        "escape.txt": ("failed", (f"{root / 'escape.txt'}: a symbolic link to {tmp_path / 'secret.txt'}, outside "
                                 "the input folder, not followed"))}
    assert (tmp_path / "out" / "link.txt").read_text() == "hello\n" and not (tmp_path / "out" / "link.txt").is_symlink()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["README", "link.txt"]


def test_copies_resume_and_replace_only_what_the_job_wrote(tmp_path: Path):
    source = tmp_path / "ds" / "sub-01" / "sub-01_scans.tsv"
    source.parent.mkdir(parents=True)
    source.write_text("filename\tacq_time\n")
    item, settings = Item(source, Path("sub-01/sub-01_scans.tsv"), COPY), Settings(tmp_path / "out")
    target = tmp_path / "out" / "sub-01" / "sub-01_scans.tsv"
    first = run_task(item, settings)
    assert (first.status, first.output, first.output_sha256) == ("copied", str(target), first.source_sha256)
    assert target.read_bytes() == source.read_bytes()
    stamp = target.stat().st_mtime_ns
    assert run_task(item, settings).status == "skipped"  # identical already: not copied again
    assert target.stat().st_mtime_ns == stamp
    source.write_text("filename\tacq_time\nanat/x.nii.gz\t10:00\n")
    assert run_task(item, settings).status == "copied"  # the job's own copy: replaced
    assert target.read_bytes() == source.read_bytes()

    other = tmp_path / "ds" / "README"
    other.write_text("the dataset's\n")
    (tmp_path / "out" / "README").write_text("someone else's\n")
    kept = run_task(Item(other, Path("README"), COPY), settings)
    assert (kept.status, kept.error) == (
        "failed", f"{other}: {tmp_path / 'out' / 'README'} already exists (use --force to replace)")
    assert (tmp_path / "out" / "README").read_text() == "someone else's\n"
    forced = run_task(Item(other, Path("README"), COPY), Settings(tmp_path / "out", force=True))
    assert forced.status == "copied" and (tmp_path / "out" / "README").read_text() == "the dataset's\n"
    uncoded = tmp_path / "ds" / "x.surf.gii"
    uncoded.write_bytes(b"<GIFTI/>")
    record = run_task(Item(uncoded, Path("x.surf.gii"), COPY, "a GIFTI surface file, … (copied unchanged)"), settings)
    assert (record.status, record.error) == ("skipped", f"{uncoded}: a GIFTI surface file, … (copied unchanged)")
    assert (tmp_path / "out" / "x.surf.gii").read_bytes() == b"<GIFTI/>"
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(".mriae-")]  # no scratch left


def test_a_job_of_an_earlier_version_resumes_and_redoes_a_degraded_label_image(tmp_path: Path, mni_t1: np.ndarray):
    """Earlier jobs logged their state inside OUTPUT, without each file's fidelity, and coded
    a _probseg map at the job's (lossy) fidelity."""
    folder = tmp_path / "ds" / "anat"
    folder.mkdir(parents=True)
    t1 = folder / "sub-01_T1w.nii.gz"
    probseg = folder / "sub-01_label-WM_probseg.nii.gz"
    nib.save(nib.Nifti1Image(anatomy(mni_t1, (16, 18, 12), np.int16, 0, 900), AFFINE), t1)
    nib.save(nib.Nifti1Image(anatomy(mni_t1, (16, 18, 12), np.float32, 0, 1), AFFINE), probseg)
    output = tmp_path / "out"
    items, settings = plan(BatchJob(str(tmp_path / "ds"), str(output)))
    assert [run_task(item, settings).status for item in items] == ["done", "done"]
    entries = [json.loads(line) for line in (tmp_path / "out.report" / STATE_FILE).read_text().splitlines()]
    for entry in entries:  # as an earlier version logged them, in OUTPUT
        del entry["fidelity"]
        entry["max_error"] = 0.004 if "probseg" in entry["path"] else entry["max_error"]
    (output / STATE_FILE).write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    shutil.rmtree(tmp_path / "out.report")
    redone = {Path(r.path).name: r.status for r in (run_task(item, settings, None) for item in items)}
    assert redone == {"sub-01_T1w.nii.gz": "skipped", "sub-01_label-WM_probseg.nii.gz": "done"}
    back = mriae.decompress(output / "anat" / "sub-01_label-WM_probseg.mriae").array
    assert np.array_equal(back, np.asarray(nib.load(probseg).dataobj))
    assert [Path(json.loads(line)["path"]).name for line in (tmp_path / "out.report" / STATE_FILE).read_text()
            .splitlines()] == ["sub-01_label-WM_probseg.nii.gz"]  # new entries go to the report folder


def test_a_restored_name_taken_by_a_copied_file_is_refused(tmp_path: Path):
    packed = tmp_path / "packed"
    packed.mkdir()
    (packed / "x.mriae").write_bytes(b"not read: the job is refused first")
    (packed / "x.nii").write_bytes(b"a file of the same stem")
    (packed / "x.json").write_bytes(b"{}")
    with pytest.raises(BatchInputError) as refused:
        plan(BatchJob(str(packed), str(tmp_path / "restored"), decompress=True))
    assert str(refused.value) == (f"2 inputs would be written to {tmp_path / 'restored' / 'x'}.*: "
                                  f"{packed / 'x.mriae'}, {packed / 'x.nii'} (rename them or run them as separate jobs)")
    assert not os.path.lexists(tmp_path / "restored")
