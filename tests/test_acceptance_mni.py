"""Acceptance: the default quality on the 1 mm MNI152 T1 template."""

import nibabel as nib
import numpy as np

import mriae
from mriae.codec import psnr

MIN_PSNR_DB = 32.0
MAX_BITS_PER_VOXEL = 0.3


def test_default_quality_on_mni152_t1_template(mni_t1_path, tmp_path):
    data, stats = mriae.compress(mni_t1_path, tmp_path / "mni.mriae")
    original = np.asarray(nib.load(mni_t1_path).dataobj)
    restored = mriae.decompress(tmp_path / "mni.mriae").array
    bits_per_voxel = (tmp_path / "mni.mriae").stat().st_size * 8 / original.size  # whole file, header included
    quality = psnr(original, restored)
    print(f"MNI152 T1 1 mm: {quality:.2f} dB at {bits_per_voxel:.4f} bits/voxel")
    assert quality >= MIN_PSNR_DB
    assert bits_per_voxel <= MAX_BITS_PER_VOXEL
    assert stats.compressed_bytes == len(data)
