"""A mutation fuzzer for the .mriae container and header parsers and the decoder behind them.

    python tests/fuzz_container.py --count 100000 --seed 1

Every input is a mutation of a real file (lossy, 4D, with outliers, exact label map,
constant, in tiles, and the golden files of every version), most with a recomputed, valid CRC-32 so
that they reach the header parser and the stream decoders. Each must either decode or be
refused with ContainerError/CodecError (one-line messages); any other exception, a decode
slower than SLOW_SECONDS, or a process that grows past MEMORY_LIMIT is a finding.
tests/test_fuzz.py runs a few thousand in CI; docs/errors.md has the last long run.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import resource
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

import mriae
from mriae import container
from mriae.codec import CodecError, compress_image
from mriae.container import ContainerError
from mriae.header import read_header
from mriae.io import Image

GOLDEN = Path(__file__).parent / "golden"
SLOW_SECONDS = 20.0
MEMORY_LIMIT = 2 << 30
"""Peak RSS (bytes) the whole fuzzing process may reach."""
SEED_VOXELS = 1 << 21
"""Golden files of more voxels (a volume of 2×2×2 tiles) are left out: each decode would take seconds."""
NASTY = [None, True, -1, 0, 1, 2**31, 2**63, -(2**63), 1e308, -1e308, 0.5, float("nan"), float("inf"), "", "x" * 300,
         "../../x.nii", "/etc/passwd", "<i8", "|b1", "O", [], [0], [1] * 8, [2**40, 2**40, 2**40], {}, {"kind": "nifti"}]


def seeds() -> list[bytes]:
    """Small real files of every kind the decoder handles."""
    rng = np.random.default_rng(0)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in (20, 18, 12)), indexing="ij")
    head = np.rint(800 * np.exp(-2 * (x**2 + y**2 + z**2)) + rng.normal(0, 10, x.shape)).astype(np.int16)
    hot = head.copy()
    hot[3, 4, 5] = 32767
    series = np.stack([head, head[::-1]], axis=-1).astype(np.float32)
    files = [
        mriae.compress(head, quality=5)[0],
        mriae.compress(series, quality=1)[0],
        mriae.compress(hot, quality=3)[0],
        mriae.compress((head > 300).astype(np.uint8) * 3)[0],
        mriae.compress(np.full((9, 8, 7), 42.0, np.float32))[0],
        mriae.compress(head, max_error=2)[0],
        mriae.compress(series, lossless=True)[0],
        mriae.compress(series * np.float32(0.37), max_error=0.5)[0],
        compress_image(Image(head, np.eye(4)), 5, tile_size=16)[0],  # 2×2×1 tiles (version 6)
        mriae.compress(np.stack([series[..., 0], np.full(head.shape, 42.5, np.float32)], axis=-1))[0],  # a constant volume
    ]
    golden = (path.read_bytes() for path in sorted(GOLDEN.glob("*.mriae")))
    return files + [data for data in golden if math.prod(read_header(data).image.shape) <= SEED_VOXELS]


def _with_crc(body: bytes) -> bytes:
    import zlib

    return body + zlib.crc32(body).to_bytes(4, "little")


def _paths(node, prefix=()):
    """Every path (tuple of keys/indices) into a JSON tree."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list) and len(node) <= 20:
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


def _mutate_header(header: dict, rng: np.random.Generator) -> dict:
    header = copy.deepcopy(header)
    paths = [p for p in _paths(header) if p]
    path = paths[int(rng.integers(len(paths)))]
    parent = header
    for key in path[:-1]:
        parent = parent[key]
    action = rng.integers(3)
    if action == 0 and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == 1 and isinstance(parent, dict):
        parent["extra" + str(int(rng.integers(9)))] = NASTY[int(rng.integers(len(NASTY)))]
    else:
        parent[path[-1]] = copy.deepcopy(NASTY[int(rng.integers(len(NASTY)))])
    return header


def mutate(data: bytes, others: list[bytes], rng: np.random.Generator) -> bytes:
    """One mutation of ``data``; most keep a valid CRC so that they reach the parsers."""
    body = data[:-4]
    kind = int(rng.integers(8))
    if kind == 0:  # flipped bits, checksum left as it was
        position = int(rng.integers(len(data)))
        return data[:position] + bytes([data[position] ^ (1 << int(rng.integers(8)))]) + data[position + 1 :]
    if kind == 1:  # flipped bytes anywhere after the magic, CRC recomputed
        mutable = bytearray(body)
        for _ in range(int(rng.integers(1, 4))):
            mutable[int(rng.integers(4, len(mutable)))] = int(rng.integers(256))
        return _with_crc(bytes(mutable))
    if kind == 2:  # cut or extended, CRC recomputed
        cut = int(rng.integers(5, len(body) + 8))
        return _with_crc(body[:cut] + rng.integers(0, 256, max(0, cut - len(body)), dtype=np.uint8).tobytes())
    parsed = container.unpack(data)
    chunks = list(parsed.chunks)
    header = parsed.header
    if kind in (3, 4):  # header fields deleted, added or replaced
        for _ in range(int(rng.integers(1, 3))):
            header = _mutate_header(header, rng)
    elif kind == 5 and chunks:  # chunk bytes replaced or changed
        index = int(rng.integers(len(chunks)))
        chunk = bytearray(chunks[index])
        if chunk and rng.integers(2):
            chunk[int(rng.integers(len(chunk)))] ^= 1 << int(rng.integers(8))
        else:
            chunk = bytearray(rng.integers(0, 256, int(rng.integers(0, 64)) * 4, dtype=np.uint8).tobytes())
        chunks[index] = bytes(chunk)
    elif kind == 6:  # chunks from another file, dropped or duplicated
        other = container.unpack(others[int(rng.integers(len(others)))]).chunks
        choice = int(rng.integers(3))
        if choice == 0 and chunks and other:
            chunks[int(rng.integers(len(chunks)))] = other[int(rng.integers(len(other)))]
        elif choice == 1 and chunks:
            chunks.pop(int(rng.integers(len(chunks))))
        else:
            chunks.append(chunks[0] if chunks else b"")
    else:  # header from another file over these chunks
        header = container.unpack(others[int(rng.integers(len(others)))]).header
    return container.pack(header, chunks)


def run(count: int, seed: int) -> dict:
    """Fuzz ``count`` inputs; returns the outcome counts and any findings."""
    rng = np.random.default_rng(seed)
    files = seeds()
    outcomes: Counter = Counter()
    findings: list[str] = []
    slowest = 0.0
    for index in range(count):
        data = mutate(files[int(rng.integers(len(files)))], files, rng)
        started = time.perf_counter()
        try:
            mriae.decompress(data)
            outcomes["decoded"] += 1
        except (ContainerError, CodecError) as error:
            message = str(error)
            if "\n" in message:
                findings.append(f"#{index}: a multi-line message: {message!r}")
            outcomes[type(error).__name__] += 1
        except Exception as error:  # noqa: BLE001 - any other exception is a finding
            findings.append(f"#{index}: {type(error).__name__}: {error}")
            outcomes["finding"] += 1
        elapsed = time.perf_counter() - started
        slowest = max(slowest, elapsed)
        if elapsed > SLOW_SECONDS:
            findings.append(f"#{index}: took {elapsed:.1f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if peak > MEMORY_LIMIT:
        findings.append(f"peak RSS {peak / 2**20:.0f} MiB is over {MEMORY_LIMIT >> 20} MiB")
    return {"count": count, "seed": seed, "outcomes": dict(outcomes), "slowest_s": round(slowest, 3),
            "peak_rss_mib": math.ceil(peak / 2**20), "findings": findings}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.perf_counter()
    result = run(args.count, args.seed)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))
    return 1 if result["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
