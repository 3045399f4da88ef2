"""`mriae train`: seeded, resumable from its checkpoint, logged, exported as loadable weights."""

import csv
import subprocess
import sys

import torch

from mriae.entropy_coder.context import CONTEXTS
from mriae.models.weights import WEIGHTS_FORMAT
from mriae.training.config import TrainConfig


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
