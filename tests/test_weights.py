"""Weights by installed name or by file path: what a path-loaded file is called in the .mriae
files it writes, and the clear errors around it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from mriae.models.weights import load_codec, weights_path


def other_weights(path: Path, shift: float = 0.01) -> Path:
    """The default weights with one bias shifted: valid weights with other contents."""
    payload = torch.load(weights_path("default"), weights_only=True)
    payload["state_dict"]["synthesis.0.bias"] = payload["state_dict"]["synthesis.0.bias"] + shift
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def test_a_copy_of_installed_weights_keeps_their_name(tmp_path: Path):
    copy = tmp_path / "model.pt"
    shutil.copy(weights_path("default"), copy)
    codec = load_codec(str(copy))
    assert codec.name == "default" and codec.sha256 == load_codec("default").sha256


def test_other_weights_are_named_by_their_file_and_found_by_that_name(tmp_path: Path):
    path = other_weights(tmp_path / "unit-a.pt")
    codec = load_codec(path)
    assert codec.name == "unit-a"
    assert codec.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert weights_path("unit-a") == path
    assert load_codec("unit-a").sha256 == codec.sha256
    assert torch.equal(codec.model.synthesis[0].bias, load_codec("default").model.synthesis[0].bias + 0.01)


def test_clear_errors_for_weights_files(tmp_path: Path):
    with pytest.raises(FileNotFoundError) as missing:
        load_codec(str(tmp_path / "none.pt"))
    assert str(missing.value) == f"{tmp_path / 'none.pt'}: no such weights file"
    with pytest.raises(FileNotFoundError) as not_installed:
        load_codec("unit-none")
    assert str(not_installed.value).startswith("weights 'unit-none' are not installed (looked for ")
    impostor = other_weights(tmp_path / "default.pt")
    with pytest.raises(ValueError) as refused:
        load_codec(str(impostor))
    assert str(refused.value) == f"{impostor}: has the name of the installed weights 'default' but other contents; " \
                                 "rename it"
    spaced = other_weights(tmp_path / "my weights.pt")
    with pytest.raises(ValueError, match="'my weights' is not a weights name"):
        load_codec(str(spaced))
    first, second = other_weights(tmp_path / "a" / "unit-b.pt"), other_weights(tmp_path / "b" / "unit-b.pt", 0.02)
    assert load_codec(str(first)).name == "unit-b"
    with pytest.raises(ValueError) as twice:
        load_codec(str(second))
    assert str(twice.value) == f"{second}: other weights named 'unit-b' ({first}) are in use in this process; rename one"
