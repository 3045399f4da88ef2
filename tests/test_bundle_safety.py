"""The MONAI bundle never loses or corrupts a scan: a big-endian file runs like any other, a
bad file is reported while the others finish, two inputs never share an output, and nothing
is replaced unless ``overwrite`` is set."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO, anatomy

from mriae.monai.bundle import BundleInputError, BundleRunError

BUNDLE = REPO / "pipelines" / "bundle" / "mriae_codec"
INFERENCE = BUNDLE / "configs" / "inference.json"


def big_endian_nifti(path: Path, mni_t1: np.ndarray) -> Path:
    """An int16 NIfTI stored big-endian (header and voxels), as some scanners export."""
    image = nib.Nifti1Image(anatomy(mni_t1, (24, 28, 20), np.int16, 0, 1000), np.diag([1.0, 1.2, 2.0, 1.0]),
                            nib.Nifti1Header().as_byteswapped(">"))
    image.set_data_dtype(">i2")
    nib.save(image, path)
    return path


def small_nifti(path: Path, mni_t1: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(anatomy(mni_t1, (20, 22, 16), np.int16, 0, 800), np.eye(4)), path)
    return path


def metrics(output: Path) -> dict[str, dict]:
    with (output / "metrics.csv").open() as stream:
        return {row["file"]: row for row in csv.DictReader(stream)}


def run_inference(dataset: Path, output: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run`` of the inference config, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_PROXY": "*", "HTTPS_PROXY": "http://127.0.0.1:9"}
    return subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", str(INFERENCE),
                           "--bundle_root", str(BUNDLE), "--dataset_dir", str(dataset), "--output_dir", str(output),
                           *overrides],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)


def inference_in_process(dataset: Path, output: Path, **overrides) -> list[dict]:
    """The inference config's ``run`` in this process (quicker than a ``monai.bundle`` process);
    raises what the runner raised (the config parser wraps it in a RuntimeError)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(INFERENCE))
    parser.update({"bundle_root": str(BUNDLE), "dataset_dir": str(dataset), "output_dir": str(output), **overrides})
    try:
        (rows,) = parser.get_parsed_content("run")
    except RuntimeError as error:
        raise error.__cause__ or error
    return rows


def test_big_endian_and_corrupt_files_in_one_run(tmp_path: Path, mni_t1: np.ndarray):
    dataset, output = tmp_path / "in", tmp_path / "out"
    dataset.mkdir()
    big = big_endian_nifti(dataset / "big.nii.gz", mni_t1)
    small_nifti(dataset / "good.nii.gz", mni_t1)
    (dataset / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08 not a volume")
    result = run_inference(dataset, output)
    assert result.returncode != 0, result.stderr[-3000:]
    assert f"1 of 3 files failed (see {output / 'metrics.csv'}): {dataset / 'broken.nii.gz'}: cannot read image" \
        in result.stderr, result.stderr[-3000:]
    rows = metrics(output)
    assert {name: row["status"] for name, row in rows.items()} == {
        "big.nii.gz": "done", "good.nii.gz": "done", "broken.nii.gz": "failed"}
    assert rows["broken.nii.gz"]["error"].startswith(f"{dataset / 'broken.nii.gz'}: cannot read image (")
    assert rows["big.nii.gz"]["error"] == "" and float(rows["big.nii.gz"]["psnr_db"]) > 15
    original, restored = nib.load(big), nib.load(output / "big_recon.nii.gz")
    assert restored.header.binaryblock == original.header.binaryblock  # still big-endian, header intact
    assert restored.get_data_dtype() == np.dtype(">i2") and restored.shape == original.shape
    assert sorted(p.name for p in output.glob("*.mriae")) == ["big.mriae", "good.mriae"]


def test_inputs_sharing_a_name_are_refused_before_any_work(tmp_path: Path, mni_t1: np.ndarray):
    dataset, output = tmp_path / "in", tmp_path / "out"
    dataset.mkdir()
    small_nifti(dataset / "vol.nii", mni_t1)
    small_nifti(dataset / "vol.nii.gz", mni_t1)
    small_nifti(dataset / "other.nii.gz", mni_t1)
    with pytest.raises(BundleInputError) as refused:
        inference_in_process(dataset, output)
    assert str(refused.value) == (f"2 inputs would be written to {output / 'vol.mriae'}: {dataset / 'vol.nii'}, "
                                  f"{dataset / 'vol.nii.gz'} (rename them or run them as separate jobs)")
    assert not output.exists()  # refused before any work: not even the folder


def test_outputs_are_replaced_only_with_overwrite(tmp_path: Path, mni_t1: np.ndarray):
    dataset, output = tmp_path / "in", tmp_path / "out"
    dataset.mkdir()
    source = small_nifti(dataset / "scan.nii.gz", mni_t1)
    inference_in_process(dataset, output)
    before = {p.name: p.read_bytes() for p in output.iterdir() if p.name != "metrics.csv"}
    assert set(before) == {"scan.mriae", "scan_recon.nii.gz"}
    with pytest.raises(BundleRunError, match="1 of 1 files failed"):
        inference_in_process(dataset, output, quality=2)
    row = metrics(output)["scan.nii.gz"]
    assert (row["status"], row["error"]) == (
        "failed", f"{source}: {output / 'scan.mriae'} already exists (overwrite=True replaces it)")
    assert {name: (output / name).read_bytes() for name in before} == before
    (output / "scan.mriae").unlink()  # the reconstruction is refused on its own too
    with pytest.raises(BundleRunError):
        inference_in_process(dataset, output, quality=2)
    assert metrics(output)["scan.nii.gz"]["error"] == (
        f"{source}: {output / 'scan_recon.nii.gz'} already exists (overwrite=True replaces it)")
    assert (output / "scan_recon.nii.gz").read_bytes() == before["scan_recon.nii.gz"]
    (row,) = inference_in_process(dataset, output, quality=2, overwrite=True)
    assert (row["status"], row["quality"]) == ("done", 2)
    assert (output / "scan.mriae").read_bytes() != before["scan.mriae"]
