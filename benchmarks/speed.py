"""Compress/decompress wall time and peak memory of the CLI on the 1 mm MNI152 T1 template.

Each run is a fresh ``mriae`` process (start-up included, as a user sees it); peak memory
is the child's maximum resident set size. Prints a Markdown table row per step.

    python benchmarks/speed.py [--repeat 3] [--quality 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_measured(args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one child process."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "mriae", *args], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"mriae {' '.join(args)} failed with status {status}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quality", type=int, default=5)
    args = parser.parse_args()
    from mriae.training.synthetic import TEMPLATES, template_dir

    source = template_dir() / TEMPLATES["t1"]
    with tempfile.TemporaryDirectory() as scratch:
        packed, restored = Path(scratch) / "mni.mriae", Path(scratch) / "mni.nii.gz"
        rows = {"compress": [], "decompress": []}
        for _ in range(args.repeat):
            rows["compress"].append(run_measured(["compress", str(source), "-o", str(packed), "-q", str(args.quality), "--force"]))
            rows["decompress"].append(run_measured(["decompress", str(packed), "-o", str(restored), "--force"]))
        print("| step | best wall time (s) | peak RSS (MiB) |")
        print("|---|---|---|")
        for name, samples in rows.items():
            print(f"| {name} | {min(s for s, _ in samples):.2f} | {max(m for _, m in samples):.0f} |")


if __name__ == "__main__":
    main()
