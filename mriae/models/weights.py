"""Shipped codec weights: network parameters plus, per quality, the channel quantization steps
and the entropy coder's tables (one row per context of mriae.entropy_coder.context).

A weights file is a plain ``torch.save`` dict of tensors, numbers and strings, loaded with
``weights_only=True``. Its SHA-256 identifies it in every ``.mriae`` file it writes.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from mriae.entropy_coder.stream import ChannelTable, with_context_rows
from mriae.models.autoencoder import Autoencoder, AutoencoderConfig

WEIGHTS_FORMAT = 3
DEFAULT_WEIGHTS = "default"
QUALITY_STEPS = (4.0, 3.05, 2.33, 1.77, 1.35, 1.03, 0.79, 0.6)
"""Nominal latent quantization step of quality levels 1 (smallest files) to 8 (highest fidelity);
each channel's own step derives from it (EntropyBottleneck.channel_steps)."""


@dataclass(frozen=True)
class Level:
    """One quality level of the weights: its nominal step, the quantization step of every
    latent channel (C,), and the coding table of every channel."""

    step: float
    channel_steps: torch.Tensor
    tables: tuple[ChannelTable, ...]


@dataclass(frozen=True)
class Codec:
    """A loaded model with its coding tables, ready to compress and decompress."""

    name: str
    sha256: str
    model: Autoencoder
    levels: tuple[Level, ...]
    """Quality levels 1 (smallest files) … ``len(levels)``, in order."""

    @property
    def qualities(self) -> range:
        return range(1, len(self.levels) + 1)

    def level(self, quality: int) -> Level:
        """The coding settings of ``quality``; ValueError unless it is one of :attr:`qualities`."""
        if quality not in self.qualities:
            raise ValueError(f"quality must be between 1 and {len(self.levels)}, got {quality}")
        return self.levels[quality - 1]


def export(
    model: Autoencoder, path: Path, calibration: list[torch.Tensor], steps: tuple[float, ...] = QUALITY_STEPS
) -> None:
    """Write ``model`` with its medians refreshed and, for every quality step, its coding
    tables with context rows counted over the ``calibration`` latents (each (1, C, D, H, W))."""
    bottleneck = model.entropy_bottleneck
    bottleneck.update_medians()
    tables = []
    for step in steps:
        channel_steps = bottleneck.channel_steps(step).detach().cpu().float()
        symbols = [bottleneck.quantize(y.detach().cpu(), channel_steps)[0].numpy().astype(np.int32) for y in calibration]
        channel_tables = with_context_rows(bottleneck.coding_tables(channel_steps), symbols)
        tables.append(
            {
                "channel_steps": channel_steps,
                "offsets": torch.tensor([t.offset for t in channel_tables], dtype=torch.int64),
                "probabilities": [torch.from_numpy(t.probabilities) for t in channel_tables],
            }
        )
    payload = {
        "format": WEIGHTS_FORMAT,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "steps": list(steps),
        "tables": tables,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    Path(path).write_bytes(buffer.getvalue())


def weights_path(name: str) -> Path:
    """Path of the installed weights called ``name`` (package data)."""
    return Path(str(resources.files("mriae.weights") / f"{name}.pt"))


@lru_cache(maxsize=4)
def load_codec(name: str = DEFAULT_WEIGHTS) -> Codec:
    """Load installed weights by name; raises FileNotFoundError if they are not installed."""
    path = weights_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"weights '{name}' are not installed (looked for {path})")
    data = path.read_bytes()
    payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if payload.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"weights '{name}' have format {payload.get('format')}, expected {WEIGHTS_FORMAT}")
    model = Autoencoder(AutoencoderConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    levels = tuple(
        Level(float(step), level["channel_steps"], tuple(
            ChannelTable(int(offset), probabilities.numpy())
            for offset, probabilities in zip(level["offsets"], level["probabilities"])
        ))
        for step, level in zip(payload["steps"], payload["tables"], strict=True)
    )
    return Codec(name, hashlib.sha256(data).hexdigest(), model, levels)
