"""Atomic output: write next to the target under a temporary name, then rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staging_folder(target: Path) -> Iterator[Path]:
    """Yield a scratch folder beside ``target`` (creating its folder); files left in it are
    renamed into place.

    If the body raises, nothing is moved and the scratch folder is removed, so an
    interrupted write never leaves a partial output.
    """
    directory = target.parent if str(target.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".mriae-") as scratch:
        yield Path(scratch)
        for produced in sorted(Path(scratch).iterdir()):
            os.replace(produced, directory / produced.name)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    path = Path(path)
    with staging_folder(path) as scratch:
        (scratch / path.name).write_bytes(data)
