"""The MONAI bundle, driven through ``python -m monai.bundle`` as a user runs it."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO

BUNDLE = REPO / "pipelines" / "bundle" / "mriae_codec"
CONFIGS = BUNDLE / "configs"
SCHEMA = BUNDLE / "schema" / "meta_schema_20240725.json"
SAMPLES = REPO / "sample_data"


def bundle(*args: str) -> subprocess.CompletedProcess:
    """``python -m monai.bundle ARGS`` from the repository root, offline."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_PROXY": "*", "HTTPS_PROXY": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-m", "monai.bundle", *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def rows(path: Path) -> list[dict]:
    with path.open() as stream:
        return list(csv.DictReader(stream))


def test_layout_follows_the_bundle_spec():
    for name in ("configs/metadata.json", "configs/inference.json", "configs/evaluate.json", "configs/train.json",
                 "configs/logging.conf", "docs/README.md", "LICENSE", "models/README.md"):
        assert (BUNDLE / name).is_file(), name


def test_verify_metadata_offline_with_the_shipped_schema():
    result = bundle("verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"), "--filepath", str(SCHEMA))
    assert "skipped downloading" in result.stdout + result.stderr
    assert "metadata is verified with no error" in result.stdout + result.stderr


def test_inference_on_sample_data_writes_mriae_reconstructions_and_metrics(tmp_path):
    output = tmp_path / "out"
    bundle("run", "--config_file", str(CONFIGS / "inference.json"), "--output_dir", str(output))
    metrics = {row["file"]: row for row in rows(output / "metrics.csv")}
    assert set(metrics) == {"mni152_t1_2mm.nii.gz", "example4d.nii.gz"}
    for name, stem in (("mni152_t1_2mm.nii.gz", "mni152_t1_2mm"), ("example4d.nii.gz", "example4d")):
        original = nib.load(SAMPLES / name)
        mriae_file = output / f"{stem}.mriae"
        restored = nib.load(output / f"{stem}_recon.nii.gz")
        assert restored.shape == original.shape
        assert restored.get_data_dtype() == original.get_data_dtype()
        assert np.array_equal(restored.affine, original.affine)
        assert restored.header.binaryblock == original.header.binaryblock
        row = metrics[name]
        assert int(row["compressed_bytes"]) == mriae_file.stat().st_size
        assert float(row["bits_per_voxel"]) == pytest.approx(mriae_file.stat().st_size * 8 / np.prod(original.shape),
                                                             abs=1e-4)
        assert row["quality"] == "5"
        difference = np.asarray(original.dataobj, np.float64) - np.asarray(restored.dataobj, np.float64)
        peak = float(np.ptp(np.asarray(original.dataobj)))
        assert float(row["psnr_db"]) == pytest.approx(10 * np.log10(peak**2 / np.mean(difference**2)), abs=1e-3)
    assert float(metrics["mni152_t1_2mm.nii.gz"]["psnr_db"]) >= 18.0
    assert float(metrics["example4d.nii.gz"]["psnr_db"]) >= 15.0  # provisional weights; never trained on EPI


def test_inference_dataset_dir_override_and_quality(tmp_path):
    dataset = tmp_path / "in"
    dataset.mkdir()
    shutil.copy(SAMPLES / "mni152_t1_2mm.nii.gz", dataset / "subject01_T1w.nii.gz")
    output = tmp_path / "out"
    bundle("run", "--config_file", str(CONFIGS / "inference.json"), "--dataset_dir", str(dataset),
           "--output_dir", str(output), "--quality", "2", "--save_reconstructions", "False")
    (row,) = rows(output / "metrics.csv")
    assert row["file"] == "subject01_T1w.nii.gz" and row["quality"] == "2"
    assert (output / "subject01_T1w.mriae").is_file()
    assert not (output / "subject01_T1w_recon.nii.gz").exists()


def test_inference_names_a_missing_dataset_dir(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file",
                             str(CONFIGS / "inference.json"), "--dataset_dir", str(tmp_path / "nowhere"),
                             "--output_dir", str(tmp_path / "out")], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode != 0
    assert f"dataset_dir {tmp_path / 'nowhere'} is not a folder" in result.stderr


def test_evaluate_reads_back_through_loadimaged(tmp_path):
    output = tmp_path / "eval"
    bundle("run", "--config_file", str(CONFIGS / "evaluate.json"), "--output_dir", str(output),
           "--qualities", "[1,5]")
    evaluation = rows(output / "evaluation.csv")
    assert [(r["file"], r["quality"]) for r in evaluation] == [
        ("example4d.nii.gz", "1"), ("example4d.nii.gz", "5"), ("mni152_t1_2mm.nii.gz", "1"),
        ("mni152_t1_2mm.nii.gz", "5"),
    ]
    assert all(r["affine_equal"] == "True" for r in evaluation)
    for r in evaluation:
        mriae_file = output / f"{r['file'].split('.')[0]}_q{r['quality']}.mriae"
        voxels = np.prod(nib.load(SAMPLES / r["file"]).shape)
        assert float(r["bits_per_voxel"]) == pytest.approx(mriae_file.stat().st_size * 8 / voxels, abs=1e-4)
    assert min(float(r["psnr_db"]) for r in evaluation if r["file"].startswith("mni")) >= 18.0
    summary = rows(output / "summary.csv")
    assert [s["quality"] for s in summary] == ["1", "5"] and all(s["files"] == "2" for s in summary)
    assert float(summary[0]["mean_bits_per_voxel"]) < float(summary[1]["mean_bits_per_voxel"])


def test_train_config_parses_into_the_training_settings():
    from monai.bundle import ConfigParser

    from mriae.training.config import TrainConfig

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser["output_dir"] = "/tmp/mriae-bundle-train"
    settings = parser.get_parsed_content("train_config")
    assert isinstance(settings, TrainConfig)
    assert settings.total_steps == 2 and settings.crop == 32
    assert settings.checkpoint == "/tmp/mriae-bundle-train/checkpoint.pt"
    assert parser.get("run") == ["$mriae.training.train.train(@train_config)"]


def test_ckpt_export_scripts_the_decoder(tmp_path):
    from mriae.models.weights import load_codec, weights_path

    target = tmp_path / "decoder.ts"
    bundle("ckpt_export", "network_def", "--filepath", str(target), "--ckpt_file", str(weights_path("default")),
           "--key_in_ckpt", "state_dict", "--meta_file", str(CONFIGS / "metadata.json"),
           "--config_file", str(CONFIGS / "inference.json"))
    decoder = torch.jit.load(str(target))
    model = load_codec().model
    latents = torch.randn(1, model.config.latent_channels, 2, 3, 2)
    with torch.no_grad():
        expected = model.decode(latents, (model.config.levels,) * 3)
        assert torch.equal(decoder(latents), expected)
    assert tuple(expected.shape[2:]) == tuple(n * 2**model.config.levels for n in (2, 3, 2))
