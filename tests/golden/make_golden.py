"""Write the golden .mriae files of the current container version (run once per version).

    python tests/golden/make_golden.py

Each file is made from a seeded synthetic volume (and one from sample_data), so nothing else
is needed; the SHA-256 of the file and of its decoded voxels go to ``v<version>.json`` beside
it. A test (tests/test_golden.py) decodes every committed version with the current code and
compares. Files of a version are written once, by the code of that version, and never
regenerated: a run writes only the cases that have no file yet.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

import mriae
from mriae.container import FORMAT_VERSION

HERE = Path(__file__).parent
SAMPLE = HERE.parent.parent / "sample_data" / "mni152_t1_2mm.nii.gz"


def volumes() -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    """(array, affine, keywords of mriae.compress) of each golden case, from a fixed seed."""
    rng = np.random.default_rng(20261130)
    head = blob((23, 19, 11))
    t1 = np.rint(head + rng.normal(0, 12, head.shape)).astype(np.int16)
    oblique = np.array([[0.9, 0.1, 0, -10.5], [-0.1, 0.9, 0, 20.25], [0, 0, 2.5, -7.0], [0, 0, 0, 1]])
    series = np.stack([head * (1 + 0.1 * t) + rng.normal(0, 5, head.shape) for t in range(2)], axis=-1)
    hot = t1.copy()
    hot[5, 6, 7] = 32767  # too few voxels for the outlier rule: coded in the range (version 4)
    marker = np.tile(t1, (2, 2, 2))
    marker[10:13, 10:13, 4:7] = 30000  # a marker, stored exactly beside the code (version 4 on)
    labels = np.digitize(t1, [200, 500, 800]).astype(np.uint8)  # a label map, coded exactly (version 4 on)
    small_series = series[::2, ::2].astype(np.float32)
    tiled = np.rint(blob((136, 132, 130)) + rng.normal(0, 12, (136, 132, 130))).astype(np.int16)
    tiled_series = np.stack([blob((140, 40, 20)) * (1 + 0.1 * t) for t in range(2)], axis=-1).astype(np.float32)
    slab = blob((200, 48, 16)).astype(np.float32)
    smooth = blob((30, 26, 21)) + rng.normal(0, 2, (30, 26, 21))
    return {
        "t1_int16": (t1, oblique, {"quality": 5}),
        "series_float32": (small_series, np.diag([2.0, 2.0, 3.0, 1.0]), {"quality": 2}),
        "hot_voxel_int16": (hot, oblique, {"quality": 3}),
        "labels_uint8": (labels, oblique, {"quality": 5}),
        "marker_outliers_int16": (marker, oblique, {"quality": 4}),
        # version 5 on: the context coder
        "bounded_int16": (marker, oblique, {"max_error": 3}),
        "lossless_int16": (t1, oblique, {"lossless": True}),
        "lossless_float32": (small_series, np.diag([2.0, 2.0, 3.0, 1.0]), {"lossless": True}),
        "bounded_float32": (small_series, np.diag([2.0, 2.0, 3.0, 1.0]), {"max_error": 0.75}),
        "psnr_int16": (t1, oblique, {"psnr": 45.0}),
        "mirror_int16": (np.concatenate([t1, t1[::-1]], axis=0), oblique, {"lossless": True}),
        # version 6 on: tiles of 128 voxels — 2×2×2 of them, a series, a resampled anisotropic grid (200×48×48)
        "tiled_int16": (tiled, oblique, {"quality": 2}),
        "tiled_series_float32": (tiled_series, np.diag([1.0, 1.0, 2.0, 1.0]), {"quality": 4}),
        "tiled_anisotropic_float32": (slab, np.diag([1.0, 1.0, 3.0, 1.0]), {"quality": 3, "spacing": (1.0, 1.0, 1.0)}),
        "constant_volume_float32": (np.stack([small_series[..., 0], np.full(small_series.shape[:3], 42.5, np.float32)],
                                             axis=-1), np.eye(4), {"quality": 5}),  # no tiles, no chunk
        # version 7 on: the wavelet coder, for PSNR targets on smooth volumes
        "wavelet_float32": (smooth.astype(np.float32), oblique, {"psnr": 42.0}),
        "wavelet_int16": (np.rint(smooth).astype(np.int16), oblique, {"psnr": 40.0}),
    }


def blob(shape: tuple[int, int, int]) -> np.ndarray:
    """A smooth head-like volume of ``shape``."""
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    return 900 * np.exp(-(x**2 + y**2 + z**2) * 2) + 80 * np.sin(6 * x) * (x**2 + y**2 < 0.6)


def decoded_checksum(data: bytes) -> str:
    """SHA-256 of the decoded voxels (C order, their own dtype)."""
    return hashlib.sha256(np.ascontiguousarray(mriae.decompress(data).array).tobytes()).hexdigest()


def main() -> int:
    index = HERE / f"v{FORMAT_VERSION}.json"
    record = json.loads(index.read_text()) if index.exists() else {}
    cases: dict = volumes()
    cases["mni152_2mm_nifti"] = (SAMPLE, None, {"quality": 1})  # a real NIfTI header travels too
    cases["mni152_2mm_bounded_nifti"] = (SAMPLE, None, {"max_error": 6})
    for name, (source, affine, fidelity) in cases.items():
        path = HERE / f"v{FORMAT_VERSION}_{name}.mriae"
        if path.exists():
            print(f"{path} exists: kept (golden files are never regenerated)", file=sys.stderr)
            continue
        data = mriae.compress(source, affine=affine, **fidelity)[0]
        path.write_bytes(data)
        image = mriae.decompress(data)
        record[path.name] = {"file_sha256": hashlib.sha256(data).hexdigest(), "voxels_sha256": decoded_checksum(data),
                             "shape": list(image.array.shape), "dtype": image.array.dtype.str}
    index.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
