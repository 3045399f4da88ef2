"""Training configuration, read from YAML or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

import yaml

from mriae.models.weights import is_weights_file
from mriae.training.atlas import HeadAtlas
from mriae.training.cache import templates_folder


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; paths are relative to the config file.

    A batch quantized at nominal step ``s`` (drawn log-uniformly in [min_step, max_step]) is
    trained with the loss bits + λ(s)·MSE, λ(s) = rd_lambda · s ** -lambda_exponent: with an
    exponent of 2 every step is an optimal rate–distortion trade-off at high rate (D ∝ s²),
    so fine steps buy fidelity instead of saturating. At export, the context tables are
    counted over the real T1 template plus ``calibration_volumes`` synthetic volumes.

    ``head_fraction`` of the volumes are synthetic whole heads (issue 13), drawn from the 2009c
    templates in ``templates`` (default: the cache of pipelines/training/fetch_templates.py);
    the calibration volumes follow the same mixture.
    """

    seed: int = 0
    total_steps: int = 100_000
    batch_size: int = 4
    crop: int = 64
    rd_lambda: float = 1000.0
    lambda_exponent: float = 0.0
    min_step: float = 0.6
    max_step: float = 1.6
    learning_rate: float = 2e-4
    thin_fraction: float = 0.25
    real_fraction: float = 0.25
    refresh_every: int = 40
    checkpoint_every: int = 200
    threads: int = 2
    hidden_channels: int = 64
    latent_channels: int = 192
    levels: int = 3
    checkpoint: str = "checkpoint.pt"
    log: str = "train_log.csv"
    export: str = ""
    calibration_volumes: int = 8
    head_fraction: float = 0.0
    templates: str = ""
    narrow_from: str = ""
    """Weights (installed name, or file) a run without a checkpoint starts from, narrowed to
    ``hidden_channels`` (mriae.training.narrow); empty: from random weights."""

    def lambda_at(self, step: float) -> float:
        """Rate–distortion weight λ of a batch quantized at nominal ``step``."""
        return self.rd_lambda * step**-self.lambda_exponent

    def atlas(self) -> HeadAtlas | None:
        """The whole-head atlas the mixture needs (None when ``head_fraction`` is 0)."""
        if self.head_fraction <= 0:
            return None
        return _atlas(str(Path(self.templates) if self.templates else templates_folder()))

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        """Parse ``path`` (.yaml/.yml/.json), resolving relative paths against its folder."""
        text = Path(path).read_text()
        raw = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        known = {f.name for f in fields(cls)}
        unknown = set(raw or {}) - known
        if unknown:
            raise ValueError(f"{path}: unknown training options {sorted(unknown)}")
        config = cls(**(raw or {}))
        base = Path(path).parent
        resolved = {
            key: str(base / value) if value else value
            for key, value in (("checkpoint", config.checkpoint), ("log", config.log), ("export", config.export),
                               ("templates", config.templates))
        }
        if config.narrow_from and is_weights_file(config.narrow_from):
            resolved["narrow_from"] = str(base / config.narrow_from)
        return cls(**{**asdict(config), **resolved})


@lru_cache(maxsize=1)
def _atlas(folder: str) -> HeadAtlas:
    """The atlas of ``folder``, built once per process (seconds, ~300 MB): the training stream
    and the export's calibration volumes share it."""
    return HeadAtlas.from_templates(Path(folder))
