"""`mriae train`: seeded, resumable from its checkpoint, logged, exported as loadable weights."""

import csv
import subprocess
import sys

import pytest
import torch

from mriae.entropy_coder.context import CONTEXTS
from mriae.models.autoencoder import Autoencoder, AutoencoderConfig
from mriae.models.weights import WEIGHTS_FORMAT, export, load_codec
from mriae.training.config import TrainConfig
from mriae.training.narrow import narrowed
from mriae.training.synthetic import load_templates
from mriae.training.train import on_codec_grid, train


def test_train_resumes_logs_and_exports(tmp_path):
    config = tmp_path / "tiny.yaml"
    settings = (
        "seed: 3\nbatch_size: 1\ncrop: 16\nhidden_channels: 4\nlatent_channels: 4\nlevels: 2\n"
        "refresh_every: 1000\ncheckpoint_every: 1\nthreads: 1\nexport: tiny.pt\ncalibration_volumes: 1\n"
    )
    config.write_text(settings + "total_steps: 2\n")
    first = subprocess.run([sys.executable, "-m", "mriae", "train", str(config)], capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 2

    config.write_text(settings + "total_steps: 3\n")
    second = subprocess.run([sys.executable, "-m", "mriae", "train", str(config)], capture_output=True, text=True, check=False)
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout and "at step 2" in second.stdout
    with (tmp_path / "train_log.csv").open() as stream:
        steps = [int(row["step"]) for row in csv.DictReader(stream)]
    assert steps == [1, 2, 3]

    weights = torch.load(tmp_path / "tiny.pt", weights_only=True)
    assert weights["format"] == WEIGHTS_FORMAT
    assert weights["config"] == {"hidden_channels": 4, "latent_channels": 4, "levels": 2}
    assert len(weights["tables"]) == len(weights["steps"]) == 8
    assert all(len(level["probabilities"]) == 4 for level in weights["tables"])
    assert {tuple(p.shape[:1]) for level in weights["tables"] for p in level["probabilities"]} == {(CONTEXTS,)}
    slopes = weights["state_dict"]["entropy_bottleneck.step_slopes"].clamp(-1, 1)
    for step, level in zip(weights["steps"], weights["tables"]):
        assert torch.allclose(level["channel_steps"], step ** (1 + slopes))


def test_lambda_grows_as_the_step_shrinks():
    config = TrainConfig(rd_lambda=600.0, lambda_exponent=2.0)
    assert config.lambda_at(1.0) == 600.0
    assert config.lambda_at(0.5) == 2400.0
    assert TrainConfig(rd_lambda=600.0).lambda_at(0.5) == 600.0


def test_unknown_option_is_a_one_line_error(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("learning_rat: 0.1\n")
    result = subprocess.run([sys.executable, "-m", "mriae", "train", str(config)], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {config}: unknown training options ['learning_rat']"


def tiny_model(hidden: int = 6) -> Autoencoder:
    torch.manual_seed(5)
    return Autoencoder(AutoencoderConfig(hidden_channels=hidden, latent_channels=4, levels=2)).eval()


def test_narrowed_keeps_the_channels_whose_output_weighs_most():
    model, volume = tiny_model(), torch.rand(1, 1, 16, 16, 8)
    with torch.no_grad():
        model.analysis[1].weight[:, 2] = 0  # what hidden channel 2 of the analysis feeds on: nothing
        model.synthesis[1].weight[4] = 0.0  # and channel 4 of the synthesis
        model.synthesis[0].bias.fill_(0.5)  # active although an untrained network's latents round to 0
    narrow = narrowed(model, 5, volume, (2, 2, 1))
    assert narrow.config == AutoencoderConfig(hidden_channels=5, latent_channels=4, levels=2)
    kept_analysis, kept_synthesis = [0, 1, 3, 4, 5], [0, 1, 2, 3, 5]
    assert torch.equal(narrow.analysis[0].weight, model.analysis[0].weight[kept_analysis])
    assert torch.equal(narrow.analysis[1].weight, model.analysis[1].weight[:, kept_analysis])
    assert torch.equal(narrow.analysis_gdn[0].gamma_root, model.analysis_gdn[0].gamma_root[kept_analysis][:, kept_analysis])
    assert torch.equal(narrow.synthesis[0].bias, model.synthesis[0].bias[kept_synthesis])
    assert torch.equal(narrow.synthesis[1].weight, model.synthesis[1].weight[kept_synthesis])
    assert torch.equal(narrow.synthesis_gdn[0].beta_root, model.synthesis_gdn[0].beta_root[kept_synthesis])
    assert torch.equal(narrow.entropy_bottleneck.step_slopes, model.entropy_bottleneck.step_slopes)
    with torch.no_grad():  # the dropped channels added nothing: the same latents
        assert torch.allclose(narrow.encode(volume, (2, 2, 1)), model.encode(volume, (2, 2, 1)), rtol=0, atol=1e-6)
    whole = narrowed(model, 6, volume, (2, 2, 1)).state_dict()
    assert all(torch.equal(whole[name], value) for name, value in model.state_dict().items())
    with pytest.raises(ValueError, match="hidden channels must be in 1..6, got 7"):
        narrowed(model, 7, volume, (2, 2, 1))


def test_a_run_narrowed_from_weights_starts_from_them(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        calibration = [model.encode(torch.rand(1, 1, 8, 8, 8), (2, 2, 2))]
    export(model, tmp_path / "wide.pt", calibration)
    settings = {"batch_size": 1, "crop": 16, "hidden_channels": 3, "latent_channels": 4, "levels": 2, "threads": 1,
                "total_steps": 0, "narrow_from": str(tmp_path / "wide.pt"), "checkpoint": str(tmp_path / "narrow.pt"),
                "log": str(tmp_path / "log.csv")}
    said = []
    train(TrainConfig(**settings), report=said.append)
    assert said == [f"started from weights '{tmp_path / 'wide.pt'}' narrowed to 3 hidden channels"]
    start = torch.load(tmp_path / "narrow.pt", weights_only=True)["model"]
    template, strides = on_codec_grid(load_templates()["t1"][0], 2)
    expected = narrowed(load_codec(tmp_path / "wide.pt").model, 3, template, strides).state_dict()
    assert start.keys() == expected.keys() and all(torch.equal(start[k], expected[k]) for k in start)
    assert start["analysis.0.weight"].shape == (3, 1, 3, 3, 3)
    with pytest.raises(ValueError, match="only hidden_channels may differ"):
        train(TrainConfig(**{**settings, "latent_channels": 5, "checkpoint": str(tmp_path / "other.pt")}))
