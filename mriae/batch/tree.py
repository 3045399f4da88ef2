"""What a batch job does with each file of an input folder: code it, copy it verbatim (a
BIDS dataset's sidecars, tables, README, and image types mriae does not code), or only
report it, with the reason. A file whose suffix is an image type's but whose first bytes are
not (FSL motion parameters ``.par``, an ENVI ``.hdr`` and its ``.img``) is an other file.

Symbolic links are followed only to files inside the folder: a link leading out of it, a
broken link and a link to a folder are reported, never followed. Version-control folders
(``.git``…), mriae's own files (a job's state log and reports, scratch folders left by a
killed job) and the job's own output and report folders (when they lie inside the input)
are left out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from mriae.batch.state import STATE_FILE
from mriae.formats import MRIAE_SUFFIX, refusal
from mriae.io.atomic import STAGING_PREFIX
from mriae.io.image import content_mismatch, output_suffix, source_files

CODE, COPY, SKIP, FAIL = "code", "copy", "skip", "fail"
"""What a job does with a file: (de)compress it, copy it verbatim, or only report it
(``skipped`` or ``failed``, with its reason)."""

VCS_FOLDERS = frozenset({".git", ".hg", ".svn"})
REPORT_NAMES = frozenset({"batch_report.csv", "batch_report.json"})
"""Reports that jobs of earlier versions wrote at the top of their output folder."""


def coded(path: Path, decompress: bool) -> bool:
    """True for a file the job codes: a .mriae file to decompress, an image to compress (not
    a file whose suffix only looks like one: FSL motion parameters .par, an ENVI .hdr, by
    :func:`mriae.io.image.content_mismatch`)."""
    if decompress:
        return path.name.endswith(MRIAE_SUFFIX)
    return bool(output_suffix(path)) and refusal(path) is None and content_mismatch(path) is None


def walk(root: Path, decompress: bool, copy_other: bool,
         exclude: tuple[Path, ...] = ()) -> list[tuple[Path, str, str]]:
    """(path, action, reason) of every file under the absolute folder ``root`` the job deals
    with, sorted: the files it codes; with ``copy_other`` every other file (and what it leaves
    out, with the reason); without, image types it does not code (skipped). Folders in
    ``exclude`` (inside ``root``) are not searched."""
    excluded = {os.path.normpath(folder) for folder in exclude}
    found = sorted(_walk(root, root.resolve(), decompress, copy_other, excluded))
    return [(root / relative, action, reason) for relative, action, reason in found]


def _walk(root: Path, real_root: Path, decompress: bool, copy_other: bool,
          excluded: set[str]) -> Iterator[tuple[Path, str, str]]:
    """(relative path, action, reason) of what :func:`walk` finds, in any order."""
    for folder, folders, files in os.walk(root):
        here = Path(folder)
        for name in list(folders):
            path = here / name
            if os.path.normpath(path) in excluded:
                folders.remove(name)
                continue
            outcome = _folder(path, real_root)
            if outcome is not None:
                folders.remove(name)
                if copy_other:
                    yield (path.relative_to(root), *outcome)
        to_code = {name for name in files if coded(here / name, decompress)}
        belonging: set[str] = set()  # the data files of coded pairs (x.img of x.hdr, x.raw of x.mhd)
        foreign: set[str] = set()  # those of a header that is no image (an ENVI .hdr's .img): other files
        if not decompress:
            for name in files:
                data = {file.name for file in source_files(here / name)[1:]}
                (belonging if name in to_code else foreign).update(data)
        for name in files:
            if name in belonging:
                continue
            path = here / name
            outcome = _file(path, path.relative_to(root), real_root, decompress, copy_other, name in to_code,
                            name in foreign)
            if outcome is not None:
                yield (path.relative_to(root), *outcome)


def _folder(path: Path, real_root: Path) -> tuple[str, str] | None:
    """What becomes of a folder the walk does not enter (None: the walk enters it)."""
    if path.name in VCS_FOLDERS:
        return SKIP, "a version-control folder, not copied"
    if path.name.startswith(STAGING_PREFIX):
        return SKIP, "a scratch folder left by mriae, not copied"
    if path.is_symlink():
        return _link_problem(path, real_root) or (SKIP, "a symbolic link to a folder, not followed")
    return None


def _file(path: Path, relative: Path, real_root: Path, decompress: bool, copy_other: bool, to_code: bool,
          foreign: bool) -> tuple[str, str] | None:
    """What becomes of a file (None: the job does not deal with it): ``to_code`` if
    :func:`coded`, ``foreign`` for the data file of a header that is no image."""
    uncoded = None if decompress or foreign else refusal(path)
    if not (copy_other or uncoded or to_code):
        return None
    if path.name == STATE_FILE or path.name.startswith(STAGING_PREFIX) or (
            len(relative.parts) == 1 and path.name in REPORT_NAMES):
        return SKIP, "a batch job's state, report or scratch file, not copied"
    problem = _link_problem(path, real_root) if path.is_symlink() else None
    if problem:
        return problem
    if not path.is_file():
        return FAIL, "not a regular file, not copied"
    if uncoded:
        return (COPY, f"{uncoded} (copied unchanged)") if copy_other else (SKIP, f"{uncoded} (not copied)")
    return (CODE, "") if to_code else (COPY, "")


def _link_problem(path: Path, real_root: Path) -> tuple[str, str] | None:
    """FAIL and why for a symbolic link that is broken or leads out of the input folder."""
    target = path.resolve()
    if not target.exists():
        return FAIL, f"a broken symbolic link (to {target}), not followed"
    if not target.is_relative_to(real_root):
        return FAIL, f"a symbolic link to {target}, outside the input folder, not followed"
    return None
