"""Where the network runs (issue 14): ``device=`` / ``--device``, the CPU unless asked.

A file's latents are integers, so a file made on any device decodes on any other; the
network's floats (and so a GPU-made file's bytes, and voxels) may differ from a CPU's by
rounding. The tests that need a GPU run only where torch sees one.
"""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO

import mriae
from mriae.parallel import available_cores, network_device, ordered_map, using, worker_count

SAMPLE = REPO / "sample_data" / "mni152_t1_2mm.nii.gz"
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="auto picks the GPU here")


def test_units_of_work_see_the_device_their_caller_chose():
    with using(2, "cuda:1"):
        assert list(ordered_map(lambda _: network_device(), range(5))) == ["cuda:1"] * 5
    assert network_device() == "cpu"


@pytest.mark.parametrize("word", ["gpu", "cuda:", "CPU", "", 0])
def test_an_unknown_device_is_refused(word):
    with pytest.raises(ValueError, match=r"^device must be auto, cpu, cuda or cuda:N \(got "):
        mriae.compress(SAMPLE, device=word)


@cpu_only
def test_auto_on_a_machine_without_a_gpu_is_the_cpu_byte_for_byte():
    assert mriae.compress(SAMPLE, device="auto")[0] == mriae.compress(SAMPLE)[0]


@cpu_only
def test_a_gpu_that_torch_does_not_see_is_refused_and_nothing_is_written(tmp_path):
    target = tmp_path / "out.mriae"
    with pytest.raises(ValueError, match=r"^device cuda: torch .* sees no CUDA device$"):
        mriae.compress(SAMPLE, target, device="cuda")
    assert not target.exists()
    data, _ = mriae.compress(SAMPLE)
    with pytest.raises(ValueError, match="sees no CUDA device"):
        mriae.decompress(data, device="cuda:0")
    with pytest.raises(ValueError, match="sees no CUDA device"):  # before any work: the input is not read
        mriae.compress(tmp_path / "missing.nii.gz", device="cuda")


def test_the_cli_refuses_an_unknown_device_as_a_usage_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mriae", "compress", str(SAMPLE), "-o", str(tmp_path / "x.mriae"),
                             "--device", "gpu"], capture_output=True, text=True, cwd=REPO, check=False)
    assert result.returncode == 2
    assert result.stderr == "error: --device: device must be auto, cpu, cuda or cuda:N (got 'gpu')\n"
    assert not (tmp_path / "x.mriae").exists()


@needs_gpu
def test_a_file_made_on_the_gpu_decodes_on_the_cpu_to_float_rounding():
    data, stats = mriae.compress(SAMPLE, device="cuda")
    on_cpu = mriae.decompress(data).array.astype(np.float64)
    on_gpu = mriae.decompress(data, device="cuda").array.astype(np.float64)
    assert np.abs(on_cpu - on_gpu).max() <= 1  # uint8 voxels: a rounding boundary at most
    original = np.asarray(mriae.decompress(mriae.compress(SAMPLE, lossless=True)[0]).array, dtype=np.float64)
    psnr = 10 * np.log10(np.ptp(original) ** 2 / np.mean((on_cpu - original) ** 2))
    assert abs(psnr - stats.psnr) < 0.01


def test_a_batch_job_plans_its_device_and_refuses_an_unknown_one(tmp_path):
    from mriae.batch import BatchJob
    from mriae.batch.job import plan

    (tmp_path / "in").mkdir()
    shutil.copy(SAMPLE, tmp_path / "in" / "t1.nii.gz")
    assert plan(BatchJob(str(tmp_path / "in"), str(tmp_path / "out"), device="cuda:1"))[1].device == "cuda:1"
    assert plan(BatchJob(str(tmp_path / "in"), str(tmp_path / "out")))[1].device == "cpu"
    with pytest.raises(ValueError, match=r"^device must be auto, cpu, cuda or cuda:N \(got 'gpu'\)$"):
        BatchJob(str(tmp_path / "in"), str(tmp_path / "out"), device="gpu")
    result = subprocess.run([sys.executable, "-m", "mriae", "batch", str(tmp_path / "in"), str(tmp_path / "out"),
                             "--device", "gpu"], capture_output=True, text=True, cwd=REPO, check=False)
    assert (result.returncode, result.stderr) == (2, ("error: --device: device must be auto, cpu, cuda or cuda:N "
                                                      "(got 'gpu')\n"))
    assert not (tmp_path / "out").exists()


@cpu_only
def test_a_batch_task_runs_the_network_on_the_jobs_device(tmp_path):
    from mriae.batch import BatchJob
    from mriae.batch.job import plan
    from mriae.batch.task import run_task

    (tmp_path / "in").mkdir()
    shutil.copy(SAMPLE, tmp_path / "in" / "t1.nii.gz")
    items, settings = plan(BatchJob(str(tmp_path / "in"), str(tmp_path / "out"), device="cuda"))
    record = run_task(items[0], settings)
    assert record.status == "failed" and "device cuda: torch" in record.error and "sees no CUDA device" in record.error
    assert not (tmp_path / "out" / "t1.mriae").exists()


def test_a_refused_device_leaves_the_settings_as_they_were(tmp_path):
    with pytest.raises(ValueError, match="device must be"), using(5, "gpu"):
        pass
    assert (worker_count(), network_device()) == (available_cores(), "cpu")
    with pytest.raises(ValueError, match="device must be"):  # refused before the input is even looked for
        mriae.compress(tmp_path / "missing.nii.gz", device="gpu")
