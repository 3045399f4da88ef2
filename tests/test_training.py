"""`mriae train`: seeded, resumable from its checkpoint, logged, exported as loadable weights."""

import csv
import subprocess
import sys
from dataclasses import replace

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


def tiny_model(hidden: int = 6, levels: int = 3) -> Autoencoder:
    """A small network whose GDNs are not at their (symmetric) initial values."""
    torch.manual_seed(5)
    model = Autoencoder(AutoencoderConfig(hidden_channels=hidden, latent_channels=4, levels=levels)).eval()
    with torch.no_grad():
        for gdn in (*model.analysis_gdn, *model.synthesis_gdn):
            gdn.beta_root.uniform_(0.5, 1.5)
            gdn.gamma_root.uniform_(0.0, 0.5)
    return model


def test_narrowed_keeps_the_channels_whose_output_weighs_most():
    model, volume, strides = tiny_model(), torch.rand(1, 1, 16, 16, 8), (3, 3, 2)
    dropped = {"analysis": (2, 5), "synthesis": (4, 0)}  # per hidden stage, the channel that feeds nothing
    with torch.no_grad():
        for stage, channel in enumerate(dropped["analysis"]):
            model.analysis[stage + 1].weight[:, channel] = 0
            model.analysis_gdn[stage].gamma_root[:, channel] = 0  # nor the other channels' normalizers
        for stage, channel in enumerate(dropped["synthesis"]):
            model.synthesis[stage + 1].weight[channel] = 0
            model.synthesis_gdn[stage].gamma_root[:, channel] = 0
            model.synthesis[stage].bias.add_(0.5)  # active although an untrained network's latents round to 0
    narrow = narrowed(model, 5, volume, strides)
    assert narrow.config == AutoencoderConfig(hidden_channels=5, latent_channels=4, levels=3)
    a0, a1 = ([c for c in range(6) if c != channel] for channel in dropped["analysis"])
    s0, s1 = ([c for c in range(6) if c != channel] for channel in dropped["synthesis"])
    assert torch.equal(narrow.analysis[0].weight, model.analysis[0].weight[a0])
    assert torch.equal(narrow.analysis[1].weight, model.analysis[1].weight[a1][:, a0])
    assert torch.equal(narrow.analysis[2].weight, model.analysis[2].weight[:, a1])
    assert torch.equal(narrow.analysis_gdn[1].gamma_root, model.analysis_gdn[1].gamma_root[a1][:, a1])
    assert torch.equal(narrow.analysis_gdn[0].beta_root, model.analysis_gdn[0].beta_root[a0])
    assert torch.equal(narrow.synthesis[0].bias, model.synthesis[0].bias[s0])
    assert torch.equal(narrow.synthesis[1].weight, model.synthesis[1].weight[s0][:, s1])
    assert torch.equal(narrow.synthesis[2].weight, model.synthesis[2].weight[s1])
    assert torch.equal(narrow.synthesis_gdn[0].gamma_root, model.synthesis_gdn[0].gamma_root[s0][:, s0])
    assert torch.equal(narrow.synthesis_gdn[1].beta_root, model.synthesis_gdn[1].beta_root[s1])
    assert torch.equal(narrow.entropy_bottleneck.step_slopes, model.entropy_bottleneck.step_slopes)
    with torch.no_grad():  # the dropped channels added nothing: the same latents and reconstruction
        latents = model.encode(volume, strides)
        assert torch.allclose(narrow.encode(volume, strides), latents, rtol=0, atol=1e-6)
        assert torch.allclose(narrow.decode(latents, strides), model.decode(latents, strides), rtol=0, atol=1e-6)
    whole = narrowed(model, 6, volume, strides).state_dict()
    assert all(torch.equal(whole[name], value) for name, value in model.state_dict().items())
    with pytest.raises(ValueError, match="hidden channels must be in 1..6, got 7"):
        narrowed(model, 7, volume, strides)


def test_a_run_narrowed_from_weights_starts_from_them_once(tmp_path):
    model = tiny_model(levels=2)
    with torch.no_grad():
        calibration = [model.encode(torch.rand(1, 1, 8, 8, 8), (2, 2, 2))]
    export(model, tmp_path / "wide.pt", calibration)
    (tmp_path / "run").mkdir()
    config = tmp_path / "run" / "narrow.yaml"  # narrow_from, a file, is relative to the config as the other paths
    config.write_text("batch_size: 1\ncrop: 16\nhidden_channels: 3\nlatent_channels: 4\nlevels: 2\nthreads: 1\n"
                      "total_steps: 0\nnarrow_from: ../wide.pt\n")
    settings = TrainConfig.load(config)
    said = []
    train(settings, report=said.append)
    assert said == [f"started from weights '{tmp_path / 'run' / '..' / 'wide.pt'}' narrowed to 3 hidden channels"]
    start = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    template, strides = on_codec_grid(load_templates()["t1"][0], 2)
    expected = narrowed(load_codec(tmp_path / "wide.pt").model, 3, template, strides).state_dict()
    assert start.keys() == expected.keys() and all(torch.equal(start[k], expected[k]) for k in start)
    assert start["analysis.0.weight"].shape == (3, 1, 3, 3, 3)

    (tmp_path / "wide.pt").unlink()  # a run with a checkpoint resumes it: the weights are not read again
    said.clear()
    train(settings, report=said.append)
    assert said == [f"resumed from {tmp_path / 'run' / 'checkpoint.pt'} at step 0"]

    export(model, tmp_path / "wide.pt", calibration)
    for change, message in (({"latent_channels": 5}, "only hidden_channels may differ"),
                            ({"hidden_channels": 7}, "have 6 hidden channels: they cannot be narrowed to 7")):
        with pytest.raises(ValueError, match=message):
            train(replace(settings, checkpoint=str(tmp_path / "other.pt"), **change))
