"""Shipped codec weights: network parameters plus, per quality, the channel quantization steps
and the entropy coder's tables (one row per context of mriae.entropy_coder.context).

A weights file is a plain ``torch.save`` dict of tensors, numbers and strings, loaded with
``weights_only=True``. Its SHA-256 identifies it in every ``.mriae`` file it writes.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from mriae.entropy_coder.stream import ChannelTable, with_context_rows
from mriae.formats import MODEL_NAME
from mriae.models.autoencoder import Autoencoder, AutoencoderConfig

WEIGHTS_FORMAT = 3
DEFAULT_WEIGHTS = "heads-1"
"""The weights new files are made with. Weights once shipped stay installed under their name
(``default``: the first network, brains only), so that the files they made still decode."""
WEIGHTS_SUFFIX = ".pt"
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


_FILES: dict[str, tuple[Path, str]] = {}
"""Weights files loaded by path in this process: (path, SHA-256) by the name their .mriae files record."""


def _installed(name: str) -> Path:
    """Where installed weights called ``name`` are (package data)."""
    return Path(str(resources.files("mriae.weights"))) / f"{name}{WEIGHTS_SUFFIX}"


def is_weights_file(weights: str | os.PathLike) -> bool:
    """True when ``weights`` names a file (a folder in it, or the .pt suffix), not installed weights."""
    text = os.fspath(weights)
    return isinstance(weights, os.PathLike) or "/" in text or os.sep in text or text.endswith(WEIGHTS_SUFFIX)


def weights_path(weights: str | os.PathLike) -> Path:
    """The file of ``weights``: a path to a weights file, the name of installed weights
    (package data), or the name of a file :func:`load_codec` loaded by path in this process."""
    if is_weights_file(weights):
        return Path(weights)
    name = os.fspath(weights)
    installed = _installed(name)
    return installed if installed.is_file() else _FILES.get(name, (installed, ""))[0]


def _name_of_file(path: Path, sha256: str) -> str:
    """What .mriae files made with the weights file ``path`` record: the name of installed
    weights with the same contents, else the file's stem; ValueError if that stem is not a
    valid name, or names other installed weights or another file loaded in this process."""
    for candidate in sorted(_installed("*").parent.glob(f"*{WEIGHTS_SUFFIX}")):
        if hashlib.sha256(candidate.read_bytes()).hexdigest() == sha256:
            return candidate.stem
    name = path.name.removesuffix(WEIGHTS_SUFFIX)
    if _installed(name).is_file():
        raise ValueError(f"{path}: has the name of the installed weights '{name}' but other contents; rename it")
    if not MODEL_NAME.fullmatch(name):
        raise ValueError(f"{path}: '{name}' is not a weights name (letters, digits, '_', '.', '-'; at most 64)")
    other, other_sha256 = _FILES.get(name, (path, sha256))
    if other_sha256 != sha256:
        raise ValueError(f"{path}: other weights named '{name}' ({other}) are in use in this process; rename one")
    return name


@lru_cache(maxsize=4)
def load_codec(weights: str | os.PathLike = DEFAULT_WEIGHTS) -> Codec:
    """Load weights by installed name or from a file path (FileNotFoundError if there are none).

    Weights from a file are known by :func:`_name_of_file` in the .mriae files they write,
    and by that name in this process, so that what they coded decodes here; elsewhere
    ``mriae decompress`` needs them installed under that name (``mriae/weights/NAME.pt``)."""
    path = weights_path(weights)
    if not path.is_file():
        if is_weights_file(weights):
            raise FileNotFoundError(f"{path}: no such weights file")
        raise FileNotFoundError(f"weights '{weights}' are not installed (looked for {path})")
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if payload.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"weights '{weights}' have format {payload.get('format')}, expected {WEIGHTS_FORMAT}")
    name = os.fspath(weights)
    if is_weights_file(weights):
        name = _name_of_file(path, sha256)
        _FILES[name] = (path, sha256)
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
    return Codec(name, sha256, model, levels)
