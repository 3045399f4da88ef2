"""Optional dependencies: what each extra of ``pip install 'mriae[EXTRA]'`` brings, and a
one-line error naming the extra when a feature needs one that is not installed.

``pip install mriae`` installs what compress and decompress of NIfTI files need (torch,
numpy, nibabel, constriction, typer/rich). The rest is imported only by the features that
use it, each of which first calls :func:`require` (or imports inside :func:`required`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager

EXTRAS: dict[str, tuple[str, ...]] = {
    "itk": ("SimpleITK",),
    "minc": ("h5py",),
    "monai": ("monai",),
    "batch": ("dask", "distributed", "yaml"),
    "eval": ("matplotlib", "scipy"),
    "train": ("monai", "nilearn", "scipy", "yaml"),
}
"""The modules each extra of pyproject.toml installs (tests/test_extras.py checks the two agree)."""

PACKAGES = {"yaml": "PyYAML", "monai": "MONAI"}
"""Package names, where they differ from the module's."""


class MissingExtra(ModuleNotFoundError):
    """A feature needs an optional dependency that is not installed; the message names the
    extra that brings it."""


def require(extra: str, feature: str) -> None:
    """MissingExtra unless every module of ``extra`` is installed (found, not imported);
    ``feature`` is what needs it, as the subject of the message ("mriae batch")."""
    missing = [module for module in EXTRAS[extra] if not _installed(module)]
    if missing:
        names = [PACKAGES.get(module, module) for module in missing]
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        raise MissingExtra(f"{feature} needs {listed}: pip install 'mriae[{extra}]'", name=missing[0])


@contextmanager
def required(extra: str, feature: str) -> Iterator[None]:
    """:func:`require`, as a block around the imports that need ``extra``."""
    require(extra, feature)
    yield


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it, or a module without a spec
        return False
