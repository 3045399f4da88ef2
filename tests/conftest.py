"""Shared fixtures: real volumes that ship inside installed wheels, and MR-like test arrays."""

from __future__ import annotations

import locale
import signal
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


INITIAL_LOCALE = locale.setlocale(locale.LC_ALL)


@pytest.fixture(autouse=True)
def locale_as_at_start():
    """The process's C locale as the session began, after every test: GDCM sets it to "C"
    whenever SimpleITK reads or writes DICOM files (the tests write series with it), which
    would leave Python's preferred encoding ASCII for the tests after (subprocess output read
    as text). mriae's own reading undoes it (tests/test_dicom.py checks)."""
    yield
    locale.setlocale(locale.LC_ALL, INITIAL_LOCALE)


@pytest.fixture(scope="session")
def mni_t1_path() -> Path:
    """nilearn's 1 mm MNI152 2009a T1 template (197×233×189 uint8)."""
    from mriae.training.synthetic import TEMPLATES, template_dir

    return template_dir() / TEMPLATES["t1"]


@pytest.fixture(scope="session")
def mni_t1(mni_t1_path: Path) -> np.ndarray:
    return np.asarray(nib.load(mni_t1_path).dataobj)


def anatomy(mni: np.ndarray, shape: tuple[int, ...], dtype: np.dtype, low: float, high: float) -> np.ndarray:
    """An MR-like array of ``shape``: the MNI head resampled onto its first three axes
    (a central slab for axes under 8 voxels), scaled to [low, high]; further axes hold
    copies with a slightly different contrast and noise, like an fMRI or DWI series."""
    from scipy.ndimage import zoom

    spatial = (tuple(shape) + (1, 1, 1))[:3]
    head = mni[20:-20, 20:-20, 30:-30].astype(np.float64)
    for axis, n in enumerate(spatial):
        if n < 8:
            start = head.shape[axis] // 2 - n // 2
            head = np.take(head, range(start, start + n), axis=axis)
    factors = [n / c for n, c in zip(spatial, head.shape)]
    volume = zoom(head, factors, order=1)[: spatial[0], : spatial[1], : spatial[2]] / 255.0
    count = int(np.prod(shape[3:], dtype=int))
    rng = np.random.default_rng(0)
    series = [volume ** (1 + 0.1 * t) + rng.normal(0, 0.005, volume.shape) * (t > 0) for t in range(count)]
    values = low + (high - low) * np.clip(np.stack(series, axis=-1), 0, 1)
    if np.dtype(dtype).kind in "iu":
        values = np.rint(values)
    return values.astype(dtype).reshape(shape, order="F")


@pytest.fixture
def in_process(monkeypatch):
    """Batch jobs run on an in-process Dask cluster (threads), so that monkeypatches reach the tasks."""
    from distributed import Client, LocalCluster

    import mriae.batch.job

    def start(job: mriae.batch.job.BatchJob) -> Client:
        return Client(LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                   dashboard_address=mriae.batch.job.DASHBOARD))

    monkeypatch.setattr(mriae.batch.job, "start_client", start)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def run_mriae(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``mriae ARGS`` in this process: (exit code, stdout, stderr)."""
    import sys

    from mriae import cli

    monkeypatch.setattr(sys, "argv", ["mriae", *args])
    with pytest.raises(SystemExit) as stop:
        cli.main()
    out, err = capsys.readouterr()
    return stop.value.code, out, err


def as_from_a_terminal() -> None:
    """``preexec_fn`` of a child that will be sent SIGINT: SIGINT at its default disposition
    and not blocked, as when started from a terminal, whatever the pytest process (and the
    Dask threads it has started) left it at."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
