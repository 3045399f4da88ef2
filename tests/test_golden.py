"""Every container version that was ever on main still decodes, to the same voxels.

tests/golden holds files written by each version's own code (tests/golden/make_golden.py,
run once per version) and the SHA-256 of what they decode to. The files never change. The
voxels of network-coded files also depend on the float arithmetic of the synthesis, which is
not part of the format (their latents are, checked by a CRC-32 on every decode): when that
arithmetic changes on purpose, their voxel hashes are re-recorded and the largest change is
written in the commit (issue 14's channels-last network: ≤ 1 level in ≤ 22 integer voxels of
a volume, ≤ 7·10⁻⁷ of the range in float32).
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
