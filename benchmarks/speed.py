"""Speed and memory (issue 14): mriae against SPERR in the same run, as MVoxel/s and peak RSS.

For each volume × thread count, fresh child processes measure (each its own peak RSS, so a
number belongs to one step):

- ``mriae compress``: ``mriae.compress(path, quality=q, threads=n)`` — read, code, and the
  reconstruction compress measures its PSNR on; best of ``--repeat`` after one warm-up call
  (a warm process, as batch jobs and MONAI pipelines run);
- ``mriae decompress``: ``mriae.decompress(data, threads=n)``, same way;
- ``sperr``: reading the NIfTI with nibabel + ``imagecodecs.sperr_encode`` at mriae's bits per
  voxel + ``sperr_decode``, best of ``--repeat`` (OMP_NUM_THREADS = n);
- the CLI as a user runs it: ``mriae compress`` / ``mriae decompress`` / ``mriae info`` as new
  processes (start-up included).

Volumes: the 1 mm MNI152 template (nilearn), and 256³ / 512³ float32 volumes made from it
(trilinear zoom plus Gaussian noise of 1 % of its range, so that they are not smoother than
scans), written as uncompressed NIfTI to a scratch folder.

    PYTHONPATH=. python benchmarks/speed.py [--volumes mni 256 512] [--threads 1 2] [--repeat 3] [--device cuda]

Prints Markdown tables (paste them into docs/benchmarks.md with the commit and machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = "_child"


def mni_path() -> Path:
    from mriae.training.synthetic import TEMPLATES, template_dir

    return template_dir() / TEMPLATES["t1"]


def make_volume(name: str, folder: Path) -> Path:
    """Path of volume ``name`` ("mni", "256", "512"), written to ``folder`` if needed."""
    if name == "mni":
        return mni_path()
    import nibabel as nib
    from scipy import ndimage

    target = folder / f"zoom{name}.nii"
    if not target.exists():
        template = np.asarray(nib.load(mni_path()).dataobj, dtype=np.float32)
        size = int(name)
        zoomed = ndimage.zoom(template, [size / n for n in template.shape], order=1).astype(np.float32)
        noise = np.random.default_rng(0).normal(0, 0.01 * float(np.ptp(template)), zoomed.shape).astype(np.float32)
        nib.save(nib.Nifti1Image(zoomed + noise, np.diag([180 / size] * 3 + [1.0])), target)
    return target


def child(task: dict) -> dict:
    """Run one measurement in this (fresh) process; returns seconds and peak RSS."""
    import resource

    kind, path, threads, repeat = task["kind"], Path(task["path"]), task["threads"], task["repeat"]
    times = []
    if kind == "sperr":
        import imagecodecs
        import nibabel as nib

        for _ in range(repeat):
            start = time.perf_counter()
            array = np.asarray(nib.load(path).dataobj, dtype=np.float64)
            data = imagecodecs.sperr_encode(np.ascontiguousarray(array), mode="bpp", level=task["bpv"])
            imagecodecs.sperr_decode(data)
            times.append(time.perf_counter() - start)
        result = {"bpv": len(data) * 8 / array.size}
    else:
        import mriae

        packed = Path(task["packed"])
        if kind == "compress":
            def step() -> None:
                data, _ = mriae.compress(path, quality=task["quality"], threads=threads, device=task["device"])
                packed.write_bytes(data)
        else:
            data = packed.read_bytes()

            def step() -> None:
                mriae.decompress(data, threads=threads, device=task["device"])
        step()  # warm-up: weights loaded, torch initialised
        for _ in range(repeat):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        result = {"bpv": packed.stat().st_size * 8 / task["voxels"]}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**result, "seconds": min(times), "peak_mib": peak}


def measure(task: dict) -> dict:
    """``task`` run by a fresh child process."""
    env = dict(os.environ, OMP_NUM_THREADS=str(task["threads"]))
    out = subprocess.run([sys.executable, __file__, CHILD, json.dumps(task)], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{task['kind']} on {task['path']} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cli_seconds(args: list[str]) -> float:
    """Wall seconds of one ``mriae`` process."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mriae", *args], capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", nargs="+", default=["mni", "256", "512"], choices=["mni", "256", "512"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quality", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="where mriae's network runs: cpu, cuda or auto")
    parser.add_argument("--scratch", type=Path, help="folder for the generated volumes (default: a temporary one)")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; python "
          f"{platform.python_version()}; mriae's network on {args.device}")
    with tempfile.TemporaryDirectory() as temporary:
        scratch = args.scratch or Path(temporary)
        scratch.mkdir(parents=True, exist_ok=True)
        print("| volume | threads | mriae compress MVox/s (s, MiB) | mriae decompress MVox/s (s, MiB) | "
              "SPERR read+enc+dec MVox/s (s, MiB) | mriae ÷ SPERR time | bits/voxel |")
        print("|---|---|---|---|---|---|---|")
        cli_rows = []
        for name in args.volumes:
            path = make_volume(name, scratch)
            import nibabel as nib

            voxels = int(np.prod(nib.load(path).shape[:3]))
            packed = scratch / f"{name}.mriae"
            for threads in args.threads:
                base = {"path": str(path), "threads": threads, "repeat": args.repeat, "quality": args.quality,
                        "packed": str(packed), "voxels": voxels, "device": args.device}
                coded = measure({**base, "kind": "compress"})
                decoded = measure({**base, "kind": "decompress"})
                sperr = measure({**base, "kind": "sperr", "bpv": coded["bpv"]})
                ratio = (coded["seconds"] + decoded["seconds"]) / sperr["seconds"]
                cells = [f"{voxels / 1e6 / r['seconds']:.2f} ({r['seconds']:.2f} s, {r['peak_mib']:.0f})"
                         for r in (coded, decoded, sperr)]
                print(f"| {name} ({voxels / 1e6:.1f} MVox) | {threads} | " + " | ".join(cells)
                      + f" | {ratio:.1f}× | {coded['bpv']:.3f} (SPERR {sperr['bpv']:.3f}) |", flush=True)
            restored = scratch / f"{name}_restored.nii.gz"
            cli_rows.append((name, min(cli_seconds(["compress", str(path), "-o", str(packed), "-Q", str(args.quality),
                                                    "--device", args.device, "--force"]) for _ in range(args.repeat)),
                             min(cli_seconds(["decompress", str(packed), "-o", str(restored), "--device", args.device,
                                              "--force"])
                                 for _ in range(args.repeat)),
                             min(cli_seconds(["info", str(packed)]) for _ in range(args.repeat))))
        print("\n| volume | `mriae compress` process (s) | `mriae decompress` process (s) | `mriae info` (s) |")
        print("|---|---|---|---|")
        for name, c, d, i in cli_rows:
            print(f"| {name} | {c:.2f} | {d:.2f} | {i:.2f} |")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == CHILD:
        print(json.dumps(child(json.loads(sys.argv[2]))))
    else:
        main()
