"""Where fetched public data lives: a cache outside the repository (issue 13). Standard library
only: benchmark child processes import it."""

from __future__ import annotations

import os
from pathlib import Path

TEMPLATE_NAME = "mni_icbm152_nlin_asym_09c"
"""Folder of the MNI ICBM152 2009c whole-head templates under ``<cache>/templates``."""


def cache_root(cache: str | Path | None = None) -> Path:
    """The data cache: ``cache`` if given, else ``$MRIAE_CACHE``, else ``~/.cache/mriae``."""
    if cache:
        return Path(cache).expanduser()
    return Path(os.environ.get("MRIAE_CACHE") or Path.home() / ".cache" / "mriae").expanduser()


def templates_folder(cache: str | Path | None = None) -> Path:
    """Where fetch_templates.py puts the 2009c whole-head templates."""
    return cache_root(cache) / "templates" / TEMPLATE_NAME
