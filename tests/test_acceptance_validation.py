"""Acceptance on a volume the weights never saw: nibabel's example4d EPI (128×96×24×2 int16,
sample_data/, validation only: never used for training or calibration).

The floors are 1 dB under what the shipped weights measure, so a regression fails; they
belong to those weights (WEIGHTS_ID) and are measured again whenever the weights change.
"""

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO

import mriae
from mriae.codec import psnr
from mriae.models.weights import load_codec

EXAMPLE4D = REPO / "sample_data" / "example4d.nii.gz"
WEIGHTS_ID = "9b6322660badd7d7"
MEASURED = {1: (25.80, 0.0181), 5: (31.77, 0.1279), 8: (32.81, 0.3186)}
"""quality: (PSNR dB, whole-file bits/voxel) measured with WEIGHTS_ID."""


def test_the_floors_belong_to_the_installed_weights():
    assert load_codec().sha256[:16] == WEIGHTS_ID, "new weights: measure MEASURED again and update both"


@pytest.mark.parametrize("quality", sorted(MEASURED))
def test_quality_on_a_validation_volume(quality, tmp_path):
    measured_db, measured_bits = MEASURED[quality]
    target = tmp_path / "example4d.mriae"
    _, stats = mriae.compress(EXAMPLE4D, target, quality=quality)
    original = np.asarray(nib.load(EXAMPLE4D).dataobj)
    restored = mriae.decompress(target).array
    bits_per_voxel = target.stat().st_size * 8 / original.size
    assert restored.shape == original.shape and restored.dtype == original.dtype
    assert psnr(original, restored) >= measured_db - 1.0
    assert bits_per_voxel <= measured_bits * 1.05
    assert stats.psnr == pytest.approx(psnr(original, restored), abs=0.005)  # the number reported is the decoder's
