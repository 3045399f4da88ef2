"""Synthetic whole heads (issue 13): the atlas's tissue classes, the acquisition effects, the
training mixture. A phantom head stands in for the cached 2009c templates (tests never fetch)."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from mriae.training import artifacts
from mriae.training.atlas import CLASSES, HeadAtlas, classify
from mriae.training.config import TrainConfig
from mriae.training.heads import SyntheticHeads
from mriae.training.synthetic import SyntheticVolumes
from mriae.training.train import drop_rows_after

SHAPE = (48, 56, 48)


def ellipsoid(shape, centre, radii):
    grid = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1


def phantom():
    """T1, PD, brain mask and GM/WM/CSF maps of a layered head: brain, dark bone, bright fat,
    skin, two fluid-filled eyes, air outside (template-like background of 0.04)."""
    centre = [n / 2 for n in SHAPE]
    head = ellipsoid(SHAPE, centre, (20, 25, 20))
    fat = head & ~ellipsoid(SHAPE, centre, (18, 23, 18))
    bone = ellipsoid(SHAPE, centre, (18, 23, 18)) & ~ellipsoid(SHAPE, centre, (15, 20, 15))
    brain = ellipsoid(SHAPE, centre, (15, 20, 15))
    eyes = ellipsoid(SHAPE, (24, 46, 16), (3, 3, 3)) | ellipsoid(SHAPE, (24, 46, 32), (3, 3, 3))
    t1 = np.full(SHAPE, 0.04, np.float32)
    pd = np.full(SHAPE, 0.04, np.float32)
    t1[head], pd[head] = 0.4, 0.5  # skin and muscle
    t1[fat], pd[fat] = 0.9, 0.8
    t1[bone], pd[bone] = 0.05, 0.05
    t1[eyes & ~brain], pd[eyes & ~brain] = 0.15, 0.9
    t1[brain], pd[brain] = 0.7, 0.7
    inner = ellipsoid(SHAPE, centre, (8, 10, 8))
    tissue = np.stack([brain & ~inner, inner, np.zeros(SHAPE, bool)]).astype(np.float32)
    return t1, pd, brain, tissue, {"fat": fat & ~eyes, "bone_air": bone & ~eyes, "fluid": eyes & ~brain, "wm": inner}


def atlas() -> HeadAtlas:
    t1, pd, brain, tissue, _ = phantom()
    return HeadAtlas(classify(t1, pd, brain, tissue), np.zeros(SHAPE, np.float32), {"t1": t1}, 2.0)


def test_classes_follow_the_layers_of_the_head():
    t1, pd, brain, tissue, regions = phantom()
    memberships = classify(t1, pd, brain, tissue)
    assert memberships.shape == (len(CLASSES), *SHAPE)
    np.testing.assert_allclose(memberships.sum(axis=0), 1.0, atol=1e-5)
    winner = memberships.argmax(axis=0)
    for name, region in regions.items():
        core = region & (memberships.max(axis=0) > 0.9)
        assert core.sum() > 20, name
        assert np.all(winner[core] == CLASSES.index(name)), name
    assert winner[0, 0, 0] == CLASSES.index("air")


def test_missing_templates_name_the_folder_and_the_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: no whole-head templates; run python "
                                                 "pipelines/training/fetch_templates.py"):
        HeadAtlas.from_templates(tmp_path)
    config = tmp_path / "heads.yaml"
    config.write_text(f"head_fraction: 0.5\ntemplates: {tmp_path / 'absent'}\ntotal_steps: 1\n")
    result = subprocess.run([sys.executable, "-m", "mriae", "train", str(config)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: ") and "no whole-head templates" in result.stderr
    assert "Traceback" not in result.stderr
    assert TrainConfig(head_fraction=0.0, templates=str(tmp_path / "absent")).atlas() is None


def test_heads_are_seeded_scaled_and_at_least_the_crop():
    drawn = [SyntheticHeads(atlas(), seed=5, min_size=40)() for _ in range(2)]
    assert torch.equal(drawn[0], drawn[1])
    heads = SyntheticHeads(atlas(), seed=7, min_size=40)
    volumes = [heads() for _ in range(12)]
    for volume in volumes:
        assert volume.dtype == torch.float32 and volume.shape[0] == 1
        assert min(volume.shape[1:]) >= 40
        assert float(volume.min()) == 0.0 and float(volume.max()) == pytest.approx(1.0)
    corners = [float(v[0, :4, :4, :4].std()) for v in volumes]
    assert sum(c > 1e-3 for c in corners) >= 6  # most draws have a noisy background, as real scans do


def test_mixture_draws_heads_at_the_configured_fraction():
    volumes = SyntheticVolumes(seed=1, min_size=40, atlas=atlas(), head_fraction=1.0)
    assert volumes.heads is not None
    torch.testing.assert_close(volumes(), SyntheticHeads(atlas(), seed=4, min_size=40)())
    assert SyntheticVolumes(seed=1, atlas=None, head_fraction=1.0).head_fraction == 0.0


def test_noise_magnitude_is_rician_or_noncentral_chi():
    rng = np.random.default_rng(0)
    zero = torch.zeros((40, 40, 40), dtype=torch.complex64)
    sigma = 0.05
    rayleigh = artifacts.noisy_magnitude(zero, rng, sigma, channels=1)
    assert float(rayleigh.mean()) == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.02)
    chi = artifacts.noisy_magnitude(zero, rng, sigma, channels=4)  # χ with 8 degrees of freedom
    expected = sigma * math.sqrt(2) * math.gamma(4.5) / math.gamma(4)
    assert float(chi.mean()) == pytest.approx(expected, rel=0.02)
    bright = artifacts.noisy_magnitude(zero + 1.0, rng, sigma, channels=1)
    assert float(bright.mean()) == pytest.approx(1.0 + sigma**2 / 2, abs=2e-3)


def test_ghost_and_motion_move_signal_along_the_phase_encoding_axis():
    image = torch.zeros((8, 16, 8), dtype=torch.complex64)
    image[4, 2, 4] = 1.0
    ghosted = artifacts.nyquist_ghost(image, axis=1, level=0.1, phase=0.0)
    assert float(ghosted[4, 10, 4].real) == pytest.approx(0.1)
    still = artifacts.motion(image, np.random.default_rng(0), axis=1, shift=0.0, fraction=0.5)
    torch.testing.assert_close(still, image, atol=1e-6, rtol=0)
    moved = artifacts.motion(image, np.random.default_rng(0), axis=1, shift=2.0, fraction=0.5).abs()
    assert float(moved[4, 2, 4]) < 0.9 and float(moved[4].sum()) > float(moved[4, 2, 4])
    field = artifacts.bias_field(torch.ones((8, 8, 8)), np.random.default_rng(0), 0.3)
    assert float(field.min()) > 0 and float(field.std()) > 0.01


def test_resume_drops_log_rows_after_the_checkpoint(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("step,loss\n1,0.5\n2,0.4\n3,0.3\n")
    drop_rows_after(log, 2)
    assert log.read_text().splitlines() == ["step,loss", "1,0.5", "2,0.4"]
    drop_rows_after(tmp_path / "absent.csv", 2)
    assert not (tmp_path / "absent.csv").exists()
