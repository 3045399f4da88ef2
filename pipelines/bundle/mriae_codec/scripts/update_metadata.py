"""Write the measured figures into ``configs/metadata.json``: the mean bits per voxel and PSNR
of the evaluate config at quality 5 over ``dataset_dir`` (default: the repository's
``sample_data``), and the versions of the packages that measured them. Nothing there is typed.

    python scripts/update_metadata.py            # from the bundle folder
    python pipelines/bundle/mriae_codec/scripts/update_metadata.py   # or from anywhere
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from importlib.metadata import version
from pathlib import Path

BUNDLE = Path(__file__).resolve().parents[1]
QUALITY = 5
PACKAGES = ("mriae", "nibabel", "SimpleITK", "constriction")
"""The packages besides MONAI, PyTorch and NumPy whose versions metadata.json names."""


def measure(dataset_dir: Path | None = None, bundle_root: Path = BUNDLE) -> dict[str, float]:
    """``eval_metrics`` of metadata.json: the evaluate config's means at quality ``QUALITY``."""
    from monai.bundle import ConfigWorkflow

    with tempfile.TemporaryDirectory() as output:
        overrides = {"bundle_root": str(bundle_root), "output_dir": output, "qualities": [QUALITY]}
        if dataset_dir is not None:
            overrides["dataset_dir"] = str(dataset_dir)
        workflow = ConfigWorkflow(config_file=str(bundle_root / "configs" / "evaluate.json"), logging_file=False,
                                  workflow_type=None, **overrides)
        workflow.initialize()
        workflow.run()
        with (Path(output) / "summary.csv").open() as stream:
            (summary,) = csv.DictReader(stream)
    return {f"mean_bits_per_voxel_q{QUALITY}": round(float(summary["mean_bits_per_voxel"]), 4),
            f"mean_psnr_db_q{QUALITY}": round(float(summary["mean_psnr_db"]), 2)}


def versions() -> dict:
    """The version fields of metadata.json, from the installed packages."""
    import monai
    import numpy
    import torch

    return {"monai_version": monai.__version__, "pytorch_version": torch.__version__.split("+")[0],
            "numpy_version": numpy.__version__,
            "required_packages_version": {name: version(name) for name in PACKAGES}}


def update(metadata: Path = BUNDLE / "configs" / "metadata.json", dataset_dir: Path | None = None) -> dict:
    """Rewrite ``metadata``'s measured figures and versions; returns the new metadata."""
    content = json.loads(metadata.read_text())
    content.update(versions())
    content["eval_metrics"] = measure(dataset_dir, metadata.parent.parent)
    metadata.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
    return content


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", type=Path, default=None, help="images to measure (default: sample_data)")
    arguments = parser.parse_args()
    content = update(dataset_dir=arguments.dataset_dir)
    print(json.dumps(content["eval_metrics"]))


if __name__ == "__main__":
    main()
