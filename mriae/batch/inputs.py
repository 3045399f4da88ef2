"""What a batch job works on: a folder (recursive), a glob, or a manifest file."""

from __future__ import annotations

import csv
import glob
from dataclasses import dataclass
from pathlib import Path

from mriae.io.image import output_suffix

MRIAE_SUFFIX = ".mriae"
MANIFEST_SUFFIXES = (".csv", ".txt", ".lst")


@dataclass(frozen=True)
class Item:
    """One input file and its path relative to the job's input root (kept in the output tree)."""

    source: Path
    relative: Path


def wanted(path: Path, decompress: bool) -> bool:
    return path.name.endswith(MRIAE_SUFFIX) if decompress else bool(output_suffix(path))


def discover(spec: str | Path, decompress: bool = False) -> list[Item]:
    """Items named by ``spec``: a folder (searched recursively, BIDS trees keep their layout),
    a glob pattern, or a manifest (.csv with a ``path`` column, or .txt with a path per line).
    """
    spec = str(spec)
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and wanted(p, decompress))
        return [Item(p, p.relative_to(path)) for p in files]
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return _from_manifest(path)
    matches = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
    if not matches:
        raise FileNotFoundError(f"{spec}: no such folder, manifest or matching files")
    root = _glob_root(spec)
    return [Item(p, p.relative_to(root) if p.is_relative_to(root) else Path(p.name)) for p in matches]


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob pattern, before its first wildcard."""
    parts = Path(pattern).parts
    for index, part in enumerate(parts):
        if any(char in part for char in "*?["):
            return Path(*parts[:index]) if index else Path(".")
    return Path(pattern).parent


def _from_manifest(manifest: Path) -> list[Item]:
    base = manifest.parent
    if manifest.suffix.lower() == ".csv":
        with manifest.open(newline="") as stream:
            rows = list(csv.DictReader(stream))
        if rows and "path" not in rows[0]:
            raise ValueError(f"{manifest}: a CSV manifest needs a 'path' column")
        entries = [row["path"] for row in rows]
    else:
        entries = [line.strip() for line in manifest.read_text().splitlines()]
    items = []
    for entry in entries:
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry)
        source = path if path.is_absolute() else base / path
        items.append(Item(source, Path(path.name) if path.is_absolute() else path))
    return items


def output_path(item: Item, output_root: Path, decompress: bool, restored_suffix: str = ".nii.gz") -> Path:
    """Where ``item``'s result goes under ``output_root``, mirroring its relative path."""
    name = item.relative.name
    if decompress:
        stem = name[: -len(MRIAE_SUFFIX)] if name.endswith(MRIAE_SUFFIX) else name
        return output_root / item.relative.parent / (stem + restored_suffix)
    suffix = output_suffix(item.relative) or item.relative.suffix
    return output_root / item.relative.parent / (name[: len(name) - len(suffix)] + MRIAE_SUFFIX)

