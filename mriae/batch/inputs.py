"""What a batch job works on: a folder (recursive; with the files it copies verbatim, see
:mod:`mriae.batch.tree`), a glob, or a manifest file; and where each result goes, checked
before any work: inside the output folder, one output per input.
"""

from __future__ import annotations

import csv
import glob
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from mriae.batch.tree import CODE, COPY, walk
from mriae.formats import MRIAE_SUFFIX
from mriae.io.image import file_stem, output_suffix

MANIFEST_SUFFIXES = (".csv", ".txt", ".lst")


class BatchInputError(ValueError):
    """A job that cannot run as given (colliding outputs, a path leaving its folder); nothing was written."""


@dataclass(frozen=True)
class Item:
    """One input file (absolute path), its path relative to the job's input root (kept in the
    output tree), what the job does with it (CODE, COPY, SKIP or FAIL) and why, if it is not
    coded (its record's reason: a copied image type mriae does not code, a link not followed)."""

    source: Path
    relative: Path
    action: str = CODE
    reason: str = ""


def discover(spec: str | Path, decompress: bool = False, copy_other: bool = False,
             exclude: tuple[Path, ...] = ()) -> list[Item]:
    """Items named by ``spec``: a folder (searched recursively, BIDS trees keep their layout;
    with ``copy_other`` its other files are copied; folders in ``exclude``, the job's own
    output inside it, are left out: :func:`mriae.batch.tree.walk`), a glob pattern, or a
    manifest (.csv with a ``path`` column, or .txt with a path per line). Sources are
    absolute, so that workers started in another folder find them.
    """
    spec = str(spec)
    path = Path(spec)
    if path.is_dir():
        root = path.absolute()
        items = [Item(file, file.relative_to(root), action, reason)
                 for file, action, reason in walk(root, decompress, copy_other, exclude)]
    elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        items = _from_manifest(path)
    else:
        matches = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not matches:
            raise FileNotFoundError(f"{spec}: no such folder, manifest or matching files")
        root = _glob_root(spec)
        items = [Item(p, p.relative_to(root) if p.is_relative_to(root) else Path(p.name)) for p in matches]
    return [Item(item.source.absolute(), item.relative, item.action, item.reason) for item in items]


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob pattern, before its first wildcard."""
    parts = Path(pattern).parts
    for index, part in enumerate(parts):
        if any(char in part for char in "*?["):
            return Path(*parts[:index]) if index else Path(".")
    return Path(pattern).parent


def _from_manifest(manifest: Path) -> list[Item]:
    """Relative entries keep their path (relative to the manifest's folder, which they may
    not leave); absolute entries keep their tree below the common folder of all of them."""
    if manifest.suffix.lower() == ".csv":
        with manifest.open(newline="") as stream:
            rows = list(csv.DictReader(stream))
        if rows and "path" not in rows[0]:
            raise ValueError(f"{manifest}: a CSV manifest needs a 'path' column")
        entries = [row["path"] for row in rows]
    else:
        entries = [line.strip() for line in manifest.read_text().splitlines()]
    listed = [(entry, Path(os.path.normpath(entry))) for entry in entries if entry and not entry.startswith("#")]
    absolute = [path.parent for _, path in listed if path.is_absolute()]
    common = Path(os.path.commonpath(absolute)) if absolute else None
    items = []
    for entry, path in listed:
        if path.is_absolute():
            items.append(Item(path, path.relative_to(common)))
        elif path.parts[0] == "..":
            raise BatchInputError(f"{manifest}: entry '{entry}' leads outside the manifest's folder "
                                  "(list it by its absolute path)")
        else:
            items.append(Item(manifest.parent / path, path))
    return items


def output_path(item: Item, output_root: Path, decompress: bool, restored_suffix: str = "") -> Path:
    """Where ``item``'s result goes under ``output_root``, mirroring its relative path.

    Decompressing, the restored file is the .mriae name's stem plus ``restored_suffix`` (the
    image suffix recorded in the file; without it, the path of the stem alone). A copied
    file keeps its name.
    """
    if item.action == COPY:
        return output_root / item.relative
    stem = file_stem(item.relative) + (restored_suffix if decompress else MRIAE_SUFFIX)
    return output_root / item.relative.parent / stem


def inside(target: Path, output_root: Path, source: Path) -> Path:
    """``target`` if it lies inside ``output_root`` (``..`` resolved as written), else BatchInputError."""
    if not Path(os.path.normpath(target)).is_relative_to(os.path.normpath(output_root)):
        raise BatchInputError(f"{source}: its output {target} would be outside the output folder {output_root}")
    return target


def check_outputs(items: list[Item], output_root: Path, decompress: bool) -> None:
    """Refuse (BatchInputError) a job in which an output would leave ``output_root`` or two
    inputs would share an output. Decompressing, outputs are compared by stem: the suffix of
    a restored name is only known from the file, and names differing only in it would confuse
    (so a copied file with an image suffix is compared by its stem too).
    """
    targets = []
    for item in items:
        if item.action in (CODE, COPY):
            target = inside(output_path(item, output_root, decompress), output_root, item.source)
            if decompress and item.action == COPY and output_suffix(target):
                target = target.with_name(file_stem(target))
            targets.append((item.source, target))
    refuse_shared_outputs(targets, BatchInputError, ".*" if decompress else "")


def refuse_shared_outputs(targets: list[tuple[Path, Path]], error: type[ValueError], shown_suffix: str = "") -> None:
    """Raise ``error`` naming the sources if two (source, output) pairs share an output
    (``..`` resolved as written; shown with ``shown_suffix`` appended); one line, the first
    shared output in full."""
    by_output: dict[Path, list[Path]] = defaultdict(list)
    for source, target in targets:
        by_output[Path(os.path.normpath(target))].append(source)
    shared = [(target, sources) for target, sources in by_output.items() if len(sources) > 1]
    if shared:
        target, sources = shared[0]
        more = f"; {len(shared) - 1} more outputs are shared" if len(shared) > 1 else ""
        raise error(f"{len(sources)} inputs would be written to {target}{shown_suffix}: "
                    f"{', '.join(str(s) for s in sorted(sources))} (rename them or run them as separate jobs){more}")
