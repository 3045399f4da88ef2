"""Every container version that was ever on main still decodes, to the same voxels.

tests/golden holds files written by each version's own code (tests/golden/make_golden.py,
run once per version) and the SHA-256 of what they decoded to then.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import mriae
from mriae.container import READABLE_VERSIONS, unpack
from mriae.header import read_header

GOLDEN = Path(__file__).parent / "golden"
CASES = [(name, record) for version in READABLE_VERSIONS
         for name, record in json.loads((GOLDEN / f"v{version}.json").read_text()).items()]


def test_every_readable_version_has_golden_files():
    assert {unpack((GOLDEN / name).read_bytes()).version for name, _ in CASES} == set(READABLE_VERSIONS)


@pytest.mark.parametrize(("name", "record"), CASES, ids=[name for name, _ in CASES])
def test_a_golden_file_decodes_to_its_recorded_voxels(name, record):
    data = (GOLDEN / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == record["file_sha256"]
    image = mriae.decompress(data)
    assert list(image.array.shape) == record["shape"] and image.array.dtype.str == record["dtype"]
    assert hashlib.sha256(np.ascontiguousarray(image.array).tobytes()).hexdigest() == record["voxels_sha256"]
    assert read_header(data).image.shape == tuple(record["shape"])
