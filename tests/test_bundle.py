"""The MONAI bundle as the Model Zoo runs it: ``python -m monai.bundle`` from the bundle's own
folder (``bundle_root`` ".") or from anywhere with ``--bundle_root``, the standard workflow
properties, ``verify_net_in_out``, ``monai.bundle.load`` offline, weights given by path and
measured metadata."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO, anatomy
from test_dicom import write_series

from mriae.models.weights import DEFAULT_WEIGHTS

BUNDLE = REPO / "pipelines" / "bundle" / "mriae_codec"
CONFIGS = BUNDLE / "configs"
SCHEMA = BUNDLE / "schema" / "meta_schema_20240725.json"
SAMPLES = REPO / "sample_data"
OFFLINE = {"PYTHONPATH": str(REPO), "NO_PROXY": "*", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}


def bundle(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``python -m monai.bundle ARGS`` in ``cwd``, offline."""
    result = subprocess.run([sys.executable, "-m", "monai.bundle", *args], cwd=cwd, env={**os.environ, **OFFLINE},
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def rows(path: Path) -> list[dict]:
    with path.open() as stream:
        return list(csv.DictReader(stream))


def workflow(config: str, workflow_type: str, **overrides):
    """An initialized ``ConfigWorkflow`` of ``configs/<config>`` with ``bundle_root`` set."""
    from monai.bundle import ConfigWorkflow

    flow = ConfigWorkflow(config_file=str(CONFIGS / config), workflow_type=workflow_type, logging_file=False,
                          bundle_root=str(BUNDLE), **overrides)
    flow.initialize()
    return flow


def test_layout_follows_the_bundle_spec():
    for name in ("configs/metadata.json", "configs/inference.json", "configs/evaluate.json", "configs/train.json",
                 "configs/logging.conf", "docs/README.md", "LICENSE", "models/README.md", "models/model.pt",
                 "scripts/update_metadata.py"):
        assert (BUNDLE / name).is_file(), name
    from mriae.models.weights import weights_path

    assert (BUNDLE / "models" / "model.pt").read_bytes() == weights_path(DEFAULT_WEIGHTS).read_bytes()


def test_verify_metadata_offline_with_the_shipped_schema():
    result = bundle("verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"), "--filepath", str(SCHEMA))
    assert "skipped downloading" in result.stdout + result.stderr
    assert "metadata is verified with no error" in result.stdout + result.stderr


def test_inference_config_has_the_standard_infer_properties():
    from monai.inferers import SimpleInferer

    from mriae.models.export import Decoder
    from mriae.models.weights import load_codec
    from mriae.monai.bundle import InferenceRunner

    flow = workflow("inference.json", "infer")
    assert flow.check_properties() == []
    assert flow.device == torch.device("cpu")
    assert Path(flow.dataset_dir).resolve() == SAMPLES
    assert [Path(item["image"]).name for item in flow.dataset.data] == ["example4d.nii.gz", "mni152_t1_2mm.nii.gz"]
    assert isinstance(flow.evaluator, InferenceRunner) and flow.evaluator.dataset is flow.dataset
    assert isinstance(flow.inferer, SimpleInferer)
    assert isinstance(flow.network_def, Decoder)
    config = load_codec(flow.parser.get_parsed_content("weights")).model.config  # the architecture of models/model.pt
    assert flow.parser["network_def"] == {"_target_": "mriae.models.export.Decoder", **config.to_dict()}


def test_train_config_has_the_standard_train_properties(tmp_path: Path):
    from monai.inferers import SimpleInferer

    from mriae.monai.bundle import BundleInputError, TrainingRunner
    from mriae.training.cache import templates_folder
    from mriae.training.train import TrainingVolumes

    flow = workflow("train.json", "train", output_dir=str(tmp_path / "train"))
    assert flow.check_properties() == []
    assert flow.max_epochs == 1 and flow.trainer.epoch_length == 2
    assert isinstance(flow.trainer, TrainingRunner) and flow.trainer.dataset is flow.train_dataset
    assert isinstance(flow.train_dataset, TrainingVolumes) and isinstance(flow.train_inferer, SimpleInferer)
    assert flow.dataset_dir == str(templates_folder()) == flow.train_dataset.config.templates
    assert flow.device.type in ("cpu", "cuda")
    assert flow.trainer.config.checkpoint == str(tmp_path / "train" / "checkpoint.pt")
    assert not (tmp_path / "train").exists()  # nothing is written before the run
    with pytest.raises(BundleInputError) as refused:
        TrainingRunner(flow.trainer.config, flow.train_dataset, max_epochs=0, epoch_length=2)
    assert str(refused.value) == "max_epochs must be a whole number of at least 1, got 0"


class SmallVolumes:
    """A light stand-in for TrainingVolumes: one smooth 20³ blob, counting how often it is drawn."""

    def __init__(self) -> None:
        self.drawn = 0

    def at_step(self, step: int) -> SmallVolumes:
        return self

    def __iter__(self):
        axis = torch.linspace(-1, 1, 20)
        blob = torch.exp(-3 * (axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2))
        while True:
            self.drawn += 1
            yield blob[None]


def test_train_workflow_trains_max_epochs_of_epoch_length_steps_from_its_dataset(tmp_path: Path):
    tiny = {f"train_config#{key}": value for key, value in
            (("hidden_channels", 4), ("latent_channels", 4), ("levels", 2), ("refresh_every", 1), ("export", ""))}
    flow = workflow("train.json", "train", output_dir=str(tmp_path / "train"), max_epochs=2, epoch_length=1, crop=16,
                    device="cpu", **tiny)
    volumes = SmallVolumes()
    flow.train_dataset = volumes  # the property: train#trainer takes its dataset from it
    flow.initialize()
    threads = torch.get_num_threads()
    (checkpoint,) = flow.run()
    assert torch.load(checkpoint, weights_only=True)["step"] == 2
    # the process as it was: its thread count, and denormals not flushed (they were while training)
    assert torch.get_num_threads() == threads and np.float32(1e-40) * np.float32(1) != 0
    assert [int(row["step"]) for row in rows(tmp_path / "train" / "train_log.csv")] == [1, 2]
    assert volumes.drawn == 2  # a volume at the start, another at step 2 (refresh_every 1)


def test_verify_net_in_out_checks_the_network_against_the_metadata():
    from monai.bundle import verify_net_in_out

    arguments = {"net_id": "network_def", "meta_file": str(CONFIGS / "metadata.json"),
                 "config_file": str(CONFIGS / "inference.json"), "device": "cpu", "any": 2}
    verify_net_in_out(**arguments)
    with pytest.raises(RuntimeError):  # the check is real: 3 input channels do not fit the decoder
        verify_net_in_out(**arguments, **{"_meta_#network_data_format#inputs#image#num_channels": 3})


def test_monai_bundle_load_gives_the_decoder_offline():
    """The bundle's scriptable decoder is the codec's synthesis, to float rounding (the codec
    computes its last layer by output phases, channels-last: mriae.models.autoencoder), that is
    within a few float32 steps of the output's largest value (random latents give outputs in the
    hundreds: a fixed absolute tolerance failed by one float32 step)."""
    script = (
        "import sys, torch, monai.bundle\n"
        "from mriae.models.weights import load_codec\n"
        "net = monai.bundle.load('mriae_codec', bundle_dir=sys.argv[1], workflow_type='inference',"
        " key_in_ckpt='state_dict', device='cpu')\n"
        "latents = torch.randn(1, 192, 2, 3, 2, generator=torch.Generator().manual_seed(0)) * 4\n"
        "with torch.no_grad():\n"
        "    ours, codec = net(latents), load_codec().model.decode(latents, (3, 3, 3))\n"
        "close = ours.shape == codec.shape and float((ours - codec).abs().max()) <= 1e-6 * float(codec.abs().max())\n"
        "print(type(net).__name__, close, float(codec.std()) > 0.01)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(BUNDLE.parent)], cwd=REPO,
                            env={**os.environ, **OFFLINE}, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "Decoder True True"


def test_inference_from_the_bundle_folder_with_its_defaults(tmp_path: Path):
    output = tmp_path / "out"
    bundle("run", "--config_file", "configs/inference.json", "--output_dir", str(output), cwd=BUNDLE)
    assert not (BUNDLE / "eval").exists()
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
        assert json.loads(info(mriae_file))["model"]["name"] == DEFAULT_WEIGHTS  # models/model.pt is the default weights
    assert float(metrics["mni152_t1_2mm.nii.gz"]["psnr_db"]) >= 25.0
    assert float(metrics["example4d.nii.gz"]["psnr_db"]) >= 25.0


def info(path: Path) -> str:
    """``mriae info PATH --json`` in a fresh interpreter."""
    result = subprocess.run([sys.executable, "-m", "mriae", "info", str(path), "--json"], cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=True)
    return result.stdout


def test_inference_from_the_repository_root_with_bundle_root_and_overrides(tmp_path: Path):
    dataset = tmp_path / "in"
    dataset.mkdir()
    shutil.copy(SAMPLES / "mni152_t1_2mm.nii.gz", dataset / "subject01_T1w.nii.gz")
    output = tmp_path / "out"
    bundle("run", "--config_file", str(CONFIGS / "inference.json"), "--bundle_root", str(BUNDLE),
           "--dataset_dir", str(dataset), "--output_dir", str(output), "--quality", "2",
           "--save_reconstructions", "False")
    (row,) = rows(output / "metrics.csv")
    assert row["file"] == "subject01_T1w.nii.gz" and row["quality"] == "2"
    assert (output / "subject01_T1w.mriae").is_file()
    assert not (output / "subject01_T1w_recon.nii.gz").exists()


def test_inference_names_a_missing_dataset_dir(tmp_path):
    result = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file",
                             str(CONFIGS / "inference.json"), "--dataset_dir", str(tmp_path / "nowhere"),
                             "--output_dir", str(tmp_path / "out")], cwd=REPO, env={**os.environ, **OFFLINE},
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode != 0
    assert (f"BundleInputError: dataset_dir {tmp_path / 'nowhere'} is not a folder (override it with --dataset_dir "
            "DIR; the defaults are relative to bundle_root: run from the bundle folder or give --bundle_root)"
            in result.stderr)


def test_weights_given_by_path(tmp_path: Path, mni_t1: np.ndarray):
    from monai.bundle import ConfigParser

    payload = torch.load(BUNDLE / "models" / "model.pt", weights_only=True)
    payload["state_dict"]["synthesis.0.bias"] = payload["state_dict"]["synthesis.0.bias"] + 0.01
    weights = tmp_path / "bundle-test-weights.pt"
    torch.save(payload, weights)
    dataset, output = tmp_path / "in", tmp_path / "out"
    dataset.mkdir()
    nib.save(nib.Nifti1Image(anatomy(mni_t1, (24, 28, 20), np.int16, 0, 900), np.eye(4)), dataset / "scan.nii.gz")
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.update({"bundle_root": str(BUNDLE), "dataset_dir": str(dataset), "output_dir": str(output),
                   "weights": str(weights)})
    (row,) = parser.get_parsed_content("evaluator").run()
    assert row["status"] == "done" and float(row["psnr_db"]) > 15
    model = json.loads(info(output / "scan.mriae"))["model"]
    assert model["name"] == "bundle-test-weights"
    assert hashlib.sha256(weights.read_bytes()).hexdigest().startswith(model["sha256"])


def test_evaluate_reads_every_input_format_back_through_loadimaged(tmp_path: Path, mni_t1: np.ndarray):
    from mriae.formats import WRITTEN_SUFFIXES
    from mriae.io import Image, write_image

    dataset, output = tmp_path / "in", tmp_path / "eval"
    dataset.mkdir()
    affine = np.array([[-1.5, 0, 0, 40], [0, 1.2, 0.1, -30], [0, 0, 2.0, -20], [0, 0, 0, 1]])
    volume = anatomy(mni_t1, (24, 28, 20), np.int16, 0, 900)
    names = [f"vol{index}{suffix}" for index, suffix in enumerate(WRITTEN_SUFFIXES)]
    for name in names:
        write_image(Image(volume, affine), dataset / name)
    write_series(dataset / "series", volume)  # a folder of DICOM files: one series
    names.append("series")
    flow = workflow("evaluate.json", None, dataset_dir=str(dataset), output_dir=str(output), qualities=[1])
    flow.run()
    evaluation = {row["file"]: row for row in rows(output / "evaluation.csv")}
    assert sorted(evaluation) == sorted(names)
    for row in evaluation.values():
        assert row["affine_equal"] == "True" and row["setting"] == "q1"
        assert float(row["psnr_db"]) > 15


def test_evaluate_from_the_repository_root(tmp_path):
    output = tmp_path / "eval"
    bundle("run", "--config_file", str(CONFIGS / "evaluate.json"), "--bundle_root", str(BUNDLE),
           "--output_dir", str(output), "--qualities", "[1,5]")
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
    metadata = json.loads((CONFIGS / "metadata.json").read_text())["eval_metrics"]
    assert float(summary[1]["mean_bits_per_voxel"]) == pytest.approx(metadata["mean_bits_per_voxel_q5"], abs=1e-4)
    assert float(summary[1]["mean_psnr_db"]) == pytest.approx(metadata["mean_psnr_db_q5"], abs=0.01)


def test_metadata_figures_are_written_by_the_script(tmp_path: Path):
    import monai

    import mriae

    spec = importlib.util.spec_from_file_location("update_metadata", BUNDLE / "scripts" / "update_metadata.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    metadata = tmp_path / "configs" / "metadata.json"
    shutil.copytree(CONFIGS, metadata.parent)
    shutil.copytree(BUNDLE / "models", tmp_path / "models")  # the link becomes a copy of the weights
    dataset = tmp_path / "in"
    dataset.mkdir()
    shutil.copy(SAMPLES / "mni152_t1_2mm.nii.gz", dataset)
    written = script.update(metadata, dataset)
    assert json.loads(metadata.read_text()) == written
    data, stats = mriae.compress(SAMPLES / "mni152_t1_2mm.nii.gz", quality=5)
    assert written["eval_metrics"]["mean_bits_per_voxel_q5"] == round(len(data) * 8 / stats.voxels, 4)
    assert written["eval_metrics"]["mean_psnr_db_q5"] == pytest.approx(stats.psnr, abs=0.006)
    assert written["monai_version"] == monai.__version__
    assert written["required_packages_version"]["mriae"] == mriae.__version__


def test_ckpt_export_scripts_the_decoder(tmp_path):
    from mriae.models.weights import load_codec

    target = tmp_path / "decoder.ts"
    bundle("ckpt_export", "network_def", "--filepath", str(target), "--ckpt_file", str(BUNDLE / "models" / "model.pt"),
           "--key_in_ckpt", "state_dict", "--meta_file", str(CONFIGS / "metadata.json"),
           "--config_file", str(CONFIGS / "inference.json"))
    decoder = torch.jit.load(str(target))
    model = load_codec().model
    latents = torch.randn(1, model.config.latent_channels, 2, 3, 2, generator=torch.Generator().manual_seed(0)) * 4
    with torch.no_grad():  # to float rounding, as test_monai_bundle_load_gives_the_decoder_offline says
        expected = model.decode(latents, (model.config.levels,) * 3)
        assert float((decoder(latents) - expected).abs().max()) <= 1e-6 * float(expected.abs().max())
        assert float(expected.std()) > 0.01
    assert tuple(expected.shape[2:]) == tuple(n * 2**model.config.levels for n in (2, 3, 2))
