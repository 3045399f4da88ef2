"""Batch throughput: volumes per minute with 1 and 2 embedded Dask workers.

The job is N copies of sample_data/mni152_t1_2mm.nii.gz (99×117×95 uint8), each with a
different intensity scaling so that every file is distinct. Wall time includes starting the
embedded LocalCluster and loading the model once per worker.

    python benchmarks/batch.py [--files 24] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from mriae.batch import BatchJob, run_batch

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "mni152_t1_2mm.nii.gz"


def make_dataset(root: Path, count: int) -> None:
    source = nib.load(SAMPLE)
    data = np.asarray(source.dataobj).astype(np.int16)
    for index in range(count):
        folder = root / f"sub-{index:03d}" / "anat"
        folder.mkdir(parents=True)
        scaled = (data * (4 + index % 7)).astype(np.int16)
        nib.save(nib.Nifti1Image(scaled, source.affine), folder / f"sub-{index:03d}_T1w.nii.gz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        inputs = Path(scratch) / "in"
        make_dataset(inputs, args.files)
        print("| workers | files | wall time (s) | volumes/min | mean s/file in a task |")
        print("|---|---|---|---|---|")
        for workers in args.workers:
            summary = run_batch(BatchJob(str(inputs), str(Path(scratch) / f"out{workers}"), workers=workers))
            assert summary.count("done") == args.files, summary.line()
            per_file = np.mean([r.seconds for r in summary.records])
            rate = args.files / summary.seconds * 60
            print(f"| {workers} | {args.files} | {summary.seconds:.1f} | {rate:.1f} | {per_file:.2f} |")


if __name__ == "__main__":
    main()
