"""Safe output: checked before the work, staged beside the target, moved into place whole.

One rule for every output (images, .mriae files, reports): an existing file is never
replaced unless the caller asks (``overwrite``, the CLI's ``--force``), and that includes
every file of a multi-file output such as a MetaImage header and its raw data file.

:func:`check_targets` refuses existing targets and an unwritable folder before any work
starts. The writer then fills a scratch folder ``.mriae-XXXXXXXX`` beside the targets
(:func:`staging_folder`); when it is done, every file moves into place, all or none. Without
``overwrite`` a file moves by ``os.link``, which fails if the target exists, so a file that
appeared while the output was being made is kept too. On file systems without hard links
(FAT, some network mounts) the file is copied into a target opened with ``O_EXCL`` instead:
just as strict about existing files, but a hard kill (SIGKILL, power loss) during that copy
can leave a partial file (any exception or handled signal removes it). With ``overwrite``,
files move by ``os.replace``. If the writer or a move fails, or is interrupted by an
exception (the CLI turns SIGTERM and SIGHUP into one), the scratch folder is removed and no
target is left half-written.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

STAGING_PREFIX = ".mriae-"
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}
"""``os.link`` errors that mean the file system has no hard links."""


class UnwritableOutput(OSError):
    """An output folder that cannot be made or written; the message names it."""


FORCE = "use --force to replace"
"""How the command line (and batch) lets an existing output be replaced."""


def exists_error(path: Path, remedy: str = FORCE) -> FileExistsError:
    """The error for an output that already exists; ``remedy`` says how to replace it."""
    return FileExistsError(f"{path} already exists ({remedy})")


def check_targets(targets: Iterable[str | os.PathLike], overwrite: bool = False, remedy: str = FORCE) -> None:
    """Refuse, before any work, outputs that exist (unless ``overwrite``; the error names
    ``remedy``) and folders that cannot be written (:func:`check_writable`)."""
    targets = [Path(target) for target in targets]
    if not overwrite:
        _refuse_existing(targets, remedy)
    for folder in dict.fromkeys(target.parent for target in targets):
        check_writable(folder)


def _refuse_existing(targets: list[Path], remedy: str = FORCE) -> None:
    for target in targets:
        if os.path.lexists(target):
            raise exists_error(target, remedy)


def check_writable(folder: Path) -> None:
    """Raise UnwritableOutput unless files can be made in ``folder``, or, if it does not exist
    yet, in its nearest existing ancestor (where it will be created): a probe file is made
    and removed, which also catches read-only mounts and permissions that do not stop root."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UnwritableOutput(f"cannot write to {existing} (it is not a folder)")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=STAGING_PREFIX)
    except OSError as error:
        raise UnwritableOutput(f"cannot write to {existing} ({error.strerror or error})") from error
    os.close(handle)
    os.unlink(probe)


@contextmanager
def staging_folder(folder: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a scratch folder inside ``folder`` (creating ``folder`` if need be); when the
    body succeeds, every file it left there moves into ``folder`` (:func:`publish`).

    If the body or a move fails, the scratch folder is removed and nothing was placed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=STAGING_PREFIX) as scratch:
        yield Path(scratch)
        publish(sorted(Path(scratch).iterdir()), folder, overwrite)


def publish(files: list[Path], folder: Path, overwrite: bool = False) -> None:
    """Move ``files`` into ``folder``, all or none.

    With ``overwrite`` they replace what is there. Otherwise every target is checked before
    the first move, each move refuses to replace a file, and if one fails (a target appeared
    meanwhile), or is interrupted, the files already placed are taken back.
    """
    targets = [folder / file.name for file in files]
    if overwrite:
        for file, target in zip(files, targets):
            os.replace(file, target)
        return
    _refuse_existing(targets)
    placed: list[Path] = []
    try:
        for file, target in zip(files, targets):
            _place(file, target)
            placed.append(target)
    except BaseException:
        for target in placed:
            target.unlink(missing_ok=True)
        raise


def _place(file: Path, target: Path) -> None:
    """Give ``file`` the name ``target`` without ever replacing an existing ``target``: a hard
    link, or an exclusive copy where the file system has no hard links."""
    try:
        try:
            os.link(file, target)
        except OSError as error:
            if error.errno not in _NO_HARD_LINKS:
                raise
            _copy_exclusive(file, target)
    except FileExistsError:
        raise exists_error(target) from None


def _copy_exclusive(file: Path, target: Path) -> None:
    """Copy ``file`` to a new ``target`` (FileExistsError if there is one); a copy that does
    not finish is removed."""
    with open(target, "xb") as out:
        try:
            with open(file, "rb") as source:
                shutil.copyfileobj(source, out)
        except BaseException:
            target.unlink()
            raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` whole or not at all; FileExistsError if ``path`` exists
    (unless ``overwrite``)."""
    path = Path(path)
    check_targets([path], overwrite)
    with staging_folder(path.parent, overwrite) as scratch:
        (scratch / path.name).write_bytes(data)
