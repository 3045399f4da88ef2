"""MriaeReader as MONAI users reach it: registered by ``import mriae.monai``, picked by plain
``LoadImage()`` for .mriae paths, found by name with ``reader="MriaeReader"``; a damaged file
gives its own one-line error, not MONAI's "cannot find a suitable reader"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO
from monai.transforms import Compose, LoadImage, LoadImaged

from mriae.monai import Compress, MriaeReader, MriaeReadError

MNI = REPO / "sample_data" / "mni152_t1_2mm.nii.gz"
CHECKSUM = "cannot decode (checksum mismatch: the file is corrupt or truncated)"


@pytest.fixture(scope="module")
def coded(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reader") / "mni.mriae"
    path.write_bytes(Compress(quality=2)(str(MNI)))
    return path


@pytest.fixture
def corrupt(coded: Path, tmp_path: Path) -> Path:
    """``coded`` with one byte of its bitstream flipped: the file checksum no longer matches."""
    data = bytearray(coded.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "corrupt.mriae"
    path.write_bytes(bytes(data))
    return path


def test_a_fresh_interpreter_loads_mriae_by_name_and_by_suffix_after_import_mriae_monai(coded: Path):
    script = (
        "import sys, numpy as np, mriae.monai\n"
        "from monai.transforms import LoadImage\n"
        "for loader in (LoadImage(image_only=True), LoadImage(reader='MriaeReader', image_only=True)):\n"
        "    image = loader(sys.argv[1])\n"
        "    print(type(loader.readers[-1]).__name__, tuple(image.shape), np.asarray(image.affine).tolist())\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(coded)], capture_output=True, text=True, cwd=REPO,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    original = nib.load(MNI)
    expected = f"MriaeReader {original.shape} {original.affine.tolist()}"
    assert result.stdout.splitlines() == [expected, expected]


def test_plain_loadimage_and_the_reader_name_give_the_original_geometry(coded: Path):
    original = nib.load(MNI)
    for loader in (LoadImage(image_only=True), LoadImage(reader="MriaeReader", image_only=True),
                   LoadImage(reader="mriaereader", image_only=True, ensure_channel_first=True)):
        image = loader(coded)
        assert tuple(image.shape[-3:]) == original.shape
        assert np.array_equal(image.affine.numpy(), original.affine)
        assert image.meta["filename_or_obj"] == str(coded)


def test_the_named_reader_leaves_other_files_to_monai_readers():
    image = LoadImage(reader="MriaeReader", image_only=True)(MNI)
    assert tuple(image.shape) == nib.load(MNI).shape
    assert image.meta["filename_or_obj"] == str(MNI)


@pytest.mark.parametrize("loader", [LoadImage(), LoadImage(reader="MriaeReader"), LoadImage(reader=MriaeReader())],
                         ids=["by-suffix", "by-name", "instance"])
def test_a_corrupt_file_gives_its_own_checksum_error(corrupt: Path, loader: LoadImage):
    with pytest.raises(MriaeReadError) as raised:
        loader(corrupt)
    assert str(raised.value) == f"{corrupt}: {CHECKSUM}"


def test_a_corrupt_file_in_a_compose_keeps_its_error_as_the_cause(corrupt: Path):
    with pytest.raises(RuntimeError) as raised:
        Compose([LoadImaged("image")])({"image": str(corrupt)})
    cause = raised.value.__cause__
    while isinstance(cause, RuntimeError) and cause.__cause__ is not None:
        cause = cause.__cause__
    assert isinstance(cause, MriaeReadError) and str(cause) == f"{corrupt}: {CHECKSUM}"


def test_a_missing_mriae_file_is_named(tmp_path: Path):
    missing = tmp_path / "missing.mriae"
    with pytest.raises(MriaeReadError) as raised:
        LoadImage(reader="MriaeReader")(missing)
    assert str(raised.value) == f"{missing}: no such file"


def test_image_file_reader_loads_an_original_like_its_mriae_file(tmp_path: Path, coded: Path):
    from mriae.io import read_image, write_image
    from mriae.monai import ImageFileReader

    original = read_image(MNI)
    mha = tmp_path / "mni.mha"
    write_image(original, mha)
    for path in (MNI, mha):
        image = LoadImage(reader=ImageFileReader(), image_only=True, dtype=None)(path)
        assert np.array_equal(image.numpy(), original.array)
        assert np.allclose(image.affine.numpy(), original.affine, atol=1e-6)
    decoded = LoadImage(image_only=True, dtype=None)(coded)
    assert tuple(decoded.shape) == original.array.shape and decoded.dtype == image.dtype
    assert np.array_equal(decoded.affine.numpy(), LoadImage(reader=ImageFileReader(), image_only=True)(MNI).affine.numpy())
