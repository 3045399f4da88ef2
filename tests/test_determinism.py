"""Same input → same bytes; decoding is identical across runs and thread counts."""

import numpy as np
import pytest
import torch

import mriae
from conftest import NIBABEL_DATA


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
