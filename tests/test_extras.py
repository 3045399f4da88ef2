"""`pip install mriae` without extras compresses and decompresses NIfTI files, to the same
bytes as a full install; each feature that needs an extra names it in one line.

The commands run in one fresh interpreter in which the optional libraries are made absent
(``sys.modules[name] = None``: importing one raises ModuleNotFoundError and
``importlib.util.find_spec`` finds nothing, as when it is not installed).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO

import mriae
from mriae.extras import EXTRAS
from mriae.io import Image, write_image

OPTIONAL = ("monai", "SimpleITK", "dask", "distributed", "matplotlib", "scipy", "bokeh", "yaml", "nilearn", "fire",
            "jsonschema", "skimage")
"""Every library that ``pip install mriae`` does not install (and that the tests use)."""
CORE = {"torch", "nibabel", "numpy", "constriction", "typer", "rich"}
RUN_WITHOUT_EXTRAS = """
import contextlib, io, json, sys
for name in json.loads(sys.argv[1]):
    sys.modules[name] = None
from mriae.cli import main
runs = []
for args in json.loads(sys.argv[2]):
    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = ["mriae", *args]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exit:
            code = exit.code
    runs.append({"args": args, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
try:
    import mriae.monai
    monai_face = "imported"
except ImportError as error:
    monai_face = f"{type(error).__name__}: {error}"
print(json.dumps({"runs": runs, "monai_face": monai_face}))
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A small T1 (the 2 mm MNI template, cropped), the same as NRRD, and a training config."""
    folder = tmp_path_factory.mktemp("extras")
    small = nib.load(REPO / "sample_data" / "mni152_t1_2mm.nii.gz").slicer[20:52, 24:60, 30:54]
    nib.save(small, folder / "t1.nii.gz")
    write_image(Image(np.asarray(small.dataobj), small.affine, ".nrrd"), folder / "t1.nrrd")
    (folder / "train.yaml").write_text("steps: 1\n")
    return folder


@pytest.fixture(scope="module")
def runs(folder: Path) -> dict:
    """What each command did without the extras, by a short name."""
    commands = {
        "compress": ["compress", "t1.nii.gz", "-o", "core.mriae"],
        "compress lossless": ["compress", "t1.nii.gz", "--lossless", "-o", "core_lossless.mriae"],
        "compress spacing": ["compress", "t1.nii.gz", "--spacing", "3", "-o", "core_spacing.mriae"],
        "decompress": ["decompress", "core.mriae", "-o", "core.nii.gz"],
        "decompress lossless": ["decompress", "core_lossless.mriae", "-o", "core_lossless.nii.gz"],
        "decompress spacing": ["decompress", "core_spacing.mriae", "-o", "core_spacing.nii.gz"],
        "info": ["info", "core.mriae"],
        "compress nrrd": ["compress", "t1.nrrd", "-o", "nrrd.mriae"],
        "decompress to nrrd": ["decompress", "core.mriae", "-o", "out.nrrd"],
        "batch": ["batch", ".", "batch_out"],
        "evaluate": ["evaluate", "t1.nii.gz", "-o", "report"],
        "train": ["train", "train.yaml"],
    }
    result = subprocess.run([sys.executable, "-c", RUN_WITHOUT_EXTRAS, json.dumps(OPTIONAL),
                             json.dumps(list(commands.values()))],
                            capture_output=True, text=True, cwd=folder, timeout=600, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[-1])
    return {"monai face": record["monai_face"], **dict(zip(commands, record["runs"]))}


@pytest.mark.parametrize(("name", "options"), [("", {}), ("_lossless", {"lossless": True}),
                                               ("_spacing", {"spacing": (3.0, 3.0, 3.0)})])
def test_compress_and_decompress_work_without_extras_and_give_the_same_bytes(runs, folder, name, options):
    for command in ("compress", "decompress"):
        run = runs[f"{command} {name[1:]}".strip()]
        assert run["code"] == 0 and run["stderr"] == "", run
    expected, _ = mriae.compress(folder / "t1.nii.gz", **options)
    assert (folder / f"core{name}.mriae").read_bytes() == expected
    mriae.decompress(expected, folder / f"full{name}.nii.gz")
    assert (folder / f"core{name}.nii.gz").read_bytes() == (folder / f"full{name}.nii.gz").read_bytes()
    restored = nib.load(folder / f"core{name}.nii.gz")
    assert restored.shape == (32, 36, 24) and np.array_equal(restored.affine, nib.load(folder / "t1.nii.gz").affine)


def test_info_works_without_extras(runs):
    assert runs["info"]["code"] == 0 and "quality 5" in runs["info"]["stdout"]


@pytest.mark.parametrize(("name", "line"), [
    ("compress nrrd", "error: t1.nrrd: NRRD/MetaImage support needs SimpleITK: pip install 'mriae[itk]'"),
    ("decompress to nrrd", "error: out.nrrd: NRRD/MetaImage support needs SimpleITK: pip install 'mriae[itk]'"),
    ("batch", "error: mriae batch needs dask, distributed and PyYAML: pip install 'mriae[batch]'"),
    ("evaluate", "error: mriae evaluate needs matplotlib and scipy: pip install 'mriae[eval]'"),
    ("train", "error: mriae train needs MONAI, nilearn, scipy and PyYAML: pip install 'mriae[train]'"),
])
def test_a_feature_that_needs_an_extra_names_it_in_one_line(runs, folder, name, line):
    assert (runs[name]["code"], runs[name]["stderr"], runs[name]["stdout"]) == (1, line + "\n", "")
    assert not any((folder / output).exists() for output in ("nrrd.mriae", "out.nrrd", "batch_out", "report"))


def test_the_monai_face_names_its_extra(runs):
    assert runs["monai face"] == "MissingExtra: mriae.monai needs MONAI: pip install 'mriae[monai]'"


def _installed_from_this_checkout() -> bool:
    """True when mriae's installed metadata was built from this checkout: ``pip install -e .``
    leaves it in REPO/mriae.egg-info, ``pip install .`` records REPO in direct_url.json."""
    try:
        distribution = importlib.metadata.distribution("mriae")
    except importlib.metadata.PackageNotFoundError:
        return False
    url = json.loads(distribution.read_text("direct_url.json") or "{}").get("url", "")
    where = Path(url.removeprefix("file://")) if url.startswith("file://") else Path(distribution.locate_file(""))
    return where.resolve() == REPO


needs_this_checkouts_metadata = pytest.mark.skipif(
    not _installed_from_this_checkout(), reason="mriae's installed metadata comes from another checkout")


def _requirements() -> list[tuple[str, set[str], str | None]]:
    """(distribution, its extras in brackets, the extra it is for or None) for each
    requirement of the installed mriae."""
    found = []
    for requirement in importlib.metadata.requires("mriae") or []:
        name, brackets = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(?:\[([^\]]*)\])?", requirement).groups()
        marker = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        found.append((name.lower().replace("_", "-"), {e.strip() for e in (brackets or "").split(",") if e.strip()},
                      marker.group(1) if marker else None))
    return found


@needs_this_checkouts_metadata
def test_pip_install_mriae_requires_only_what_compress_and_decompress_need():
    assert {name for name, _, extra in _requirements() if extra is None} == CORE


@needs_this_checkouts_metadata
@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_each_extra_installs_the_modules_mriae_checks_for(extra):
    names = {name for name, _, of in _requirements() if of == extra}
    distributions = importlib.metadata.packages_distributions()
    for module in EXTRAS[extra]:
        assert {d.lower() for d in distributions[module]} & names, (module, names)


@needs_this_checkouts_metadata
def test_all_brings_every_extra_and_test_brings_all():
    bundled = {of: brackets for name, brackets, of in _requirements() if name == "mriae"}
    assert bundled["all"] >= set(EXTRAS) and bundled["test"] == {"all"}
