"""``SaveMriae`` / ``SaveMriaed``: write .mriae bytes to a folder, atomically, replacing no file
unless asked (like the command line without ``--force``)."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from pathlib import Path

from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from mriae.formats import MRIAE_SUFFIX
from mriae.io.atomic import check_targets, write_bytes_atomic
from mriae.io.image import file_stem

OVERWRITE = "overwrite=True replaces it"
"""How the MONAI transforms and the bundle let an existing output be replaced."""


class SaveMriae(Transform):
    """Write .mriae bytes atomically to ``output_dir/<name>.mriae``; returns the path written.

    Args:
        output_dir: folder to write to (created if missing).
        overwrite: replace an existing file; by default ``FileExistsError`` (never replaced
            unless asked, like the command line without ``--force``).
    """

    def __init__(self, output_dir: str | os.PathLike, overwrite: bool = False) -> None:
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite

    def __call__(self, data: bytes, name: str) -> str:
        target = self.output_dir / (name if name.endswith(MRIAE_SUFFIX) else name + MRIAE_SUFFIX)
        check_targets([target], self.overwrite, OVERWRITE)
        write_bytes_atomic(target, data, overwrite=self.overwrite)
        return str(target)


class SaveMriaed(MapTransform):
    """Dictionary version of :class:`SaveMriae`: writes ``d[key]`` and puts the path in ``d[f"{key}_{path_key_postfix}"]``.

    The file is named after ``d[name_key]`` (a file path or name: its image suffix is dropped);
    an existing file is kept (``FileExistsError``) unless ``overwrite``.
    """

    def __init__(self, keys: KeysCollection, output_dir: str | os.PathLike, name_key: str = "image",
                 path_key_postfix: str = "path", overwrite: bool = False, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.saver = SaveMriae(output_dir, overwrite)
        self.name_key = name_key
        self.path_key_postfix = path_key_postfix

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[f"{key}_{self.path_key_postfix}"] = self.saver(d[key], stem_of(d[self.name_key]))
        return d


def stem_of(source: str | os.PathLike | MetaTensor) -> str:
    """File name without its image suffix, from a path or a MetaTensor's ``filename_or_obj``."""
    if isinstance(source, MetaTensor):
        source = source.meta.get("filename_or_obj", "image")
    return file_stem(str(source))
