"""Write the training set list of weights: ``mriae/weights/NAME.volumes.json`` (mriae.evaluation.splits).

It belongs to the weights file it is written for (their SHA-256 is in it): write it again after
every export. ``training`` lists the voxel checksum of every 3D volume of every image the
training (pipelines/training/default.yaml) draws from or calibrates on, and of the sample made
from one: nilearn's MNI152 2009a templates (T1, GM, WM), every image of the MNI ICBM152 2009c
whole-head templates (fetch_templates.py; the 2 mm copies and the masks included), and
sample_data/mni152_t1_2mm.nii.gz. ``validation`` lists the benchmarks' validation volumes
(benchmarks/sources.py, the skull-on heads of benchmarks/datacache.py included, every volume of
their files) and sample_data/example4d.nii.gz. Both caches must be filled first:

    python pipelines/training/fetch_templates.py && python benchmarks/datacache.py
    python pipelines/training/volume_list.py [--weights NAME]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import sources

from mriae.codec import volumes_of
from mriae.evaluation.splits import LIST_FORMAT, VolumeList, list_path, voxel_checksum
from mriae.io import ImageError, read_image
from mriae.models.weights import DEFAULT_WEIGHTS, weights_path
from mriae.training.cache import cache_root, templates_folder
from mriae.training.synthetic import TEMPLATES, template_dir

SAMPLE_TRAINING = ("mni152_t1_2mm.nii.gz",)
SAMPLE_VALIDATION = ("example4d.nii.gz",)


def training_files() -> list[Path]:
    """Every image the training draws from, and the samples made from one."""
    folder = templates_folder()
    if not (folder / "NOTICE.MNI").is_file():
        raise FileNotFoundError(f"{folder}: no whole-head templates; run python pipelines/training/fetch_templates.py")
    return ([template_dir() / name for name in TEMPLATES.values()] + sorted(folder.glob("*.nii.gz"))
            + [REPO / "sample_data" / name for name in SAMPLE_TRAINING])


def validation_files() -> list[Path]:
    """The files of the benchmarks' validation volumes (the heads must be in the cache) and the samples."""
    volumes = sources.validation_heads() | sources.volumes()
    paths = [Path(volume.source.path) for volume in volumes.values() if volume.split == "validation"]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: not in the cache; run python benchmarks/datacache.py")
    return list(dict.fromkeys(paths)) + [REPO / "sample_data" / name for name in SAMPLE_VALIDATION]


def describe(path: Path) -> str:
    """``path`` from the folder a reader knows: site-packages (even in a virtual environment
    inside the repository), the repository or the cache."""
    parts = path.parts
    if "site-packages" in parts:
        return "/".join(parts[parts.index("site-packages") + 1:])
    for root, prefix in ((REPO, ""), (cache_root(), "<cache>/")):
        if path.is_relative_to(root):
            return prefix + str(path.relative_to(root))
    return str(path)


def stored_volumes(path: Path) -> np.ndarray:
    """The 3D volumes (x, y, z, n) of the voxels as stored, as ``mriae evaluate`` reads them."""
    try:
        array = read_image(path).array
    except ImageError:  # PAR/REC, which mriae does not read: its stored integers
        array = np.asarray(nib.load(path).dataobj.get_unscaled())
    return volumes_of(array)


def entries(paths: list[Path]) -> list[dict]:
    """One entry per 3D volume of ``paths``: name, shape and voxel checksum, each checksum once."""
    listed: dict[str, dict] = {}
    for path in paths:
        volumes = stored_volumes(path)
        for index in range(volumes.shape[3]):
            name = describe(path) + (f" volume {index + 1}" if volumes.shape[3] > 1 else "")
            checksum = voxel_checksum(volumes[..., index])
            listed.setdefault(checksum, {"name": name, "shape": list(volumes.shape[:3]), "sha256": checksum})
    return list(listed.values())


def as_json(listed: dict) -> str:
    """``listed`` as JSON, one volume a line."""
    lines = [f' "{key}": {json.dumps(listed[key])},' for key in ("format", "weights_sha256")]
    for key in ("training", "validation"):
        rows = ",\n".join(f"  {json.dumps(entry)}" for entry in listed[key])
        lines.append(f' "{key}": [\n{rows}\n ],')
    return "{\n" + "\n".join(lines).removesuffix(",") + "\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS, help="installed weights name or weights file")
    args = parser.parse_args(argv)
    try:
        sha = hashlib.sha256(weights_path(args.weights).read_bytes()).hexdigest()
        listed = {"format": LIST_FORMAT, "weights_sha256": sha, "training": entries(training_files()),
                  "validation": entries(validation_files())}
        target = list_path(args.weights)
        target.write_text(as_json(listed), encoding="utf-8")
        VolumeList.read(target)  # the lists are disjoint
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {target}: {len(listed['training'])} training and {len(listed['validation'])} validation volumes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
