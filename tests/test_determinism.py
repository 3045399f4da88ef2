"""Same input → same bytes; decoding is identical across runs and thread counts."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import NIBABEL_DATA, REPO

import mriae


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_compressing_twice_gives_identical_bytes(tmp_path):
    first, _ = mriae.compress(NIBABEL_DATA / "example4d.nii.gz")
    second, _ = mriae.compress(NIBABEL_DATA / "example4d.nii.gz")
    assert first == second


def test_decoding_is_identical_across_runs_and_thread_counts(threads):
    data, _ = mriae.compress(NIBABEL_DATA / "example4d.nii.gz")
    threads(1)
    single = mriae.decompress(data).array
    threads(2)
    double = mriae.decompress(data).array
    again = mriae.decompress(data).array
    assert np.array_equal(single, double)
    assert np.array_equal(double, again)


def test_encoding_is_identical_across_thread_counts(threads):
    threads(1)
    single, _ = mriae.compress(NIBABEL_DATA / "anatomical.nii")
    threads(2)
    double, _ = mriae.compress(NIBABEL_DATA / "anatomical.nii")
    assert single == double


def test_tiles_code_and_decode_identically_across_thread_counts(threads, mni_t1):
    from conftest import anatomy

    from mriae.codec import compress_image, decompress_image
    from mriae.io import Image

    image = Image(anatomy(mni_t1, (40, 36, 33), np.float32, 0, 1), np.eye(4))
    threads(1)
    single, _ = compress_image(image, 5, tile_size=16)
    decoded = decompress_image(single).array
    threads(2)
    double, _ = compress_image(image, 5, tile_size=16)
    assert single == double
    assert decompress_image(double).array.tobytes() == decoded.tobytes()


def test_tiles_run_at_once_give_the_bytes_and_voxels_of_one_at_a_time(mni_t1):
    """Worker counts 1, 2 and 3 over 2×2×2 tiles (and a region): same file, same voxels."""
    from conftest import anatomy

    from mriae.codec import compress_image, decompress_image
    from mriae.io import Image
    from mriae.parallel import using

    image = Image(anatomy(mni_t1, (40, 36, 33), np.float32, 0, 1), np.eye(4))
    before = torch.get_num_threads()
    files, volumes, regions = [], [], []
    for workers in (1, 2, 3):
        with using(workers):
            files.append(compress_image(image, 5, tile_size=16)[0])
            volumes.append(decompress_image(files[-1]).array.tobytes())
            regions.append(decompress_image(files[-1], roi=(slice(5, 30), slice(0, 36), slice(10, 20))).array.tobytes())
    assert len(set(files)) == len(set(volumes)) == len(set(regions)) == 1
    assert torch.get_num_threads() == before  # the intra-op count is restored after the tiles


def test_threads_must_be_a_positive_whole_number():
    from mriae.parallel import using

    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=f"threads must be a positive whole number, got {bad!r}"), using(bad):
            pass


PSNR_FILE_DIGEST = """
import hashlib, sys
import numpy as np
import mriae
grid = np.meshgrid(*[np.linspace(0, 3, n) for n in (40, 36, 30)], indexing="ij")
noise = np.random.default_rng(2).normal(0, 1, grid[0].shape)
volume = np.clip((300 * np.sin(grid[0]) * np.cos(grid[1]) + 50 * grid[2] + noise) / 4 + 100, 0, 255).astype(np.uint8)
sys.stdout.write(hashlib.sha256(mriae.compress(volume, psnr=55.0)[0]).hexdigest())
"""


def test_a_psnr_target_gives_the_same_file_whatever_blas_threads():
    """The PSNR search steps by the PSNR it measures: its sums must not depend on BLAS's threads."""
    digests = set()
    for count in ("1", "2"):
        result = subprocess.run([sys.executable, "-c", PSNR_FILE_DIGEST], capture_output=True, text=True, cwd=REPO,
                                env={**os.environ, "OPENBLAS_NUM_THREADS": count, "OMP_NUM_THREADS": count},
                                timeout=300, check=False)
        assert result.returncode == 0, result.stderr
        digests.add(result.stdout)
    assert len(digests) == 1


def test_a_psnr_target_gives_the_same_file_with_one_worker_or_several(mni_t1):
    """The file a PSNR search finds does not depend on the workers: here once the context
    coder's (after the network's levels were tried on tiles in parallel), once the wavelet
    coder's (which makes the dead zones not worth trying)."""
    grid = np.meshgrid(*[np.linspace(0, 3, n) for n in (40, 36, 30)], indexing="ij")
    smooth = (300 * np.sin(grid[0]) * np.cos(grid[1]) + 50 * grid[2]).astype(np.float32)
    coders = []
    for volume in (mni_t1[::4, ::4, ::4], smooth):
        single, stats = mriae.compress(volume, psnr=38.0, threads=1)
        assert mriae.compress(volume, psnr=38.0, threads=3)[0] == single
        coders.append(stats.coder)
    assert coders == ["context", "wavelet"]
