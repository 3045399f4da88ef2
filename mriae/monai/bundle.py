"""Runners for the MONAI bundle in ``pipelines/bundle/mriae_codec`` (a face, like the CLI).

The bundle's configs build the data pipeline from :mod:`mriae.monai` and MONAI
transforms; the inference and evaluation runners only iterate the MONAI ``Dataset``, measure,
write the reconstructions and the metrics CSV, and log. Like a batch job, they refuse two
inputs that would share an output before any work, and replace no file unless ``overwrite``
is set. The training runner runs mriae's training loop for a number of epochs.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from monai.data import Dataset

from mriae.batch.inputs import refuse_shared_outputs
from mriae.batch.task import failure_reason
from mriae.codec import psnr
from mriae.fidelity import Fidelity
from mriae.formats import restored_suffix
from mriae.io import Image, image_files, output_suffix, read_image, write_image
from mriae.io.atomic import check_targets
from mriae.io.dicom import holds_dicom_files
from mriae.io.image import SUFFIXES, content_mismatch
from mriae.monai.save import OVERWRITE, stem_of
from mriae.training.config import TrainConfig
from mriae.training.train import TrainingVolumes, train

logger = logging.getLogger("mriae.monai.bundle")

INFERENCE_COLUMNS = ("file", "status", "error", "mriae_file", "reconstruction", "shape", "original_bytes",
                     "compressed_bytes", "bits_per_voxel", "psnr_db", "max_error", "quality", "fidelity", "coder",
                     "seconds")
"""Columns of the inference metrics CSV (a failed file fills ``file``, ``status``, ``error``, ``seconds``).
``max_error`` is measured (largest absolute voxel difference, in stored units), ``fidelity``
is what was asked for (``quality 5``, ``max error 2``, ``lossless``, ``PSNR ≥ 40 dB``) and
``coder`` what coded the file (``network``, ``context`` or ``exact``)."""


class BundleInputError(ValueError):
    """A dataset the bundle cannot run on (no such folder, inputs sharing an output); the message names it."""


class BundleRunError(RuntimeError):
    """A run in which some files failed, raised after the others finished and the metrics were written."""


def list_images(dataset_dir: str, suffixes: Sequence[str] = SUFFIXES) -> list[str]:
    """Image files (whose first bytes are of their suffix's type) and DICOM series folders
    directly in ``dataset_dir`` (sorted); a clear error if there are none."""
    folder = Path(dataset_dir)
    if not folder.is_dir():
        raise BundleInputError(f"dataset_dir {folder} is not a folder (override it with --dataset_dir DIR; "
                               "the defaults are relative to bundle_root: run from the bundle folder or give "
                               "--bundle_root)")
    files = sorted(str(p) for p in folder.iterdir()
                   if (p.is_file() and output_suffix(p) in suffixes and not content_mismatch(p)) or holds_dicom_files(p))
    if not files:
        raise BundleInputError(f"dataset_dir {folder} holds no images ({', '.join(suffixes)})")
    return files


def check_distinct_outputs(sources: Sequence[str], output_dir: Path, name: str = "{stem}.mriae") -> None:
    """BundleInputError, before any work, if two ``sources`` would be written to one file
    ``output_dir / name`` (``vol.nii`` and ``vol.nrrd`` both give ``vol.mriae``)."""
    targets = [(Path(source), output_dir / name.format(stem=stem_of(source))) for source in sources]
    refuse_shared_outputs(targets, BundleInputError)


def failure_of(error: BaseException, source: Path) -> str:
    """One line naming ``source`` and the problem: the error a transform raised, out of the
    ``RuntimeError("applying transform ...")`` MONAI wraps it in (once per Compose level)."""
    while isinstance(error, RuntimeError) and str(error).startswith("applying transform") and error.__cause__:
        error = error.__cause__
    return failure_reason(error, source)


def _cast(array: np.ndarray, original: Image) -> np.ndarray:
    dtype = original.array.dtype
    if dtype.kind in "iu" and array.dtype.kind == "f":
        array = np.rint(array)
    return array.reshape(original.array.shape, order="F").astype(dtype)


def _write_csv(path: Path, rows: list[dict], columns: Sequence[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(columns or rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _number(value: float) -> str | float:
    return "inf" if math.isinf(value) else round(float(value), 4)


def _max_error(original: np.ndarray, reconstruction: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(original, np.float64) - np.asarray(reconstruction, np.float64))))


class InferenceRunner:
    """Compress a folder: for each item of ``dataset`` (whose transforms compressed it to
    ``mriae_key``, saved it and decoded it to ``reconstruction_key``) write the reconstruction
    next to the .mriae file in the original format and one metrics row.

    Two inputs that would be saved under one name are refused before any work. A file that
    fails (unreadable, undecodable, an output that exists) gets a row with status ``failed``
    and the reason, and the others go on; once the metrics are written, a run with failed
    files raises :class:`BundleRunError`, so that ``python -m monai.bundle run`` exits non-zero.

    Args:
        dataset: a MONAI ``Dataset`` of dicts with ``image`` (the source path).
        output_dir: where the .mriae files went; reconstructions and ``metrics_file`` go there too.
        save_reconstructions: write ``<name>_recon<suffix>`` files.
        overwrite: replace existing reconstructions (``SaveMriaed`` has its own setting; the
            config sets both from its ``overwrite``).
    """

    def __init__(self, dataset: Dataset, output_dir: str, metrics_file: str = "metrics.csv",
                 image_key: str = "image", mriae_key: str = "mriae", reconstruction_key: str = "reconstruction",
                 save_reconstructions: bool = True, overwrite: bool = False) -> None:
        self.dataset = dataset
        self.output_dir = Path(output_dir)
        self.metrics_file = self.output_dir / metrics_file
        self.image_key, self.mriae_key, self.reconstruction_key = image_key, mriae_key, reconstruction_key
        self.save_reconstructions = save_reconstructions
        self.overwrite = overwrite

    def run(self) -> list[dict]:
        """Process every item (a failing one gets a failed row and the run goes on), write the
        metrics CSV, and raise BundleRunError at the end if any item failed."""
        sources = [Path(item[self.image_key]) for item in self.dataset.data]
        check_distinct_outputs(sources, self.output_dir)
        rows = []
        for index, source in enumerate(sources):
            started = time.perf_counter()
            try:
                row = self.process(self.dataset[index])
                logger.info("%s → %s: %s bits/voxel, PSNR %s dB", row["file"], row["mriae_file"],
                            row["bits_per_voxel"], row["psnr_db"])
            except Exception as error:  # noqa: BLE001 - one file's failure is its row; the others go on
                row = {"file": source.name, "status": "failed", "error": failure_of(error, source)}
                logger.error("failed: %s", row["error"])
            rows.append({**row, "seconds": round(time.perf_counter() - started, 2)})
        _write_csv(self.metrics_file, rows, INFERENCE_COLUMNS)
        logger.info("metrics of %d files written to %s", len(rows), self.metrics_file)
        failed = [row for row in rows if row["status"] == "failed"]
        if failed:
            raise BundleRunError(f"{len(failed)} of {len(rows)} files failed (see {self.metrics_file}): "
                                 f"{failed[0]['error']}")
        return rows

    def process(self, item: dict) -> dict:
        """The metrics row of one transformed ``item``, after writing its reconstruction."""
        source = Path(item[self.image_key])
        original = read_image(source)
        reconstruction = _cast(spatial_array_raw(item[self.reconstruction_key], original), original)
        mriae_path = Path(item[f"{self.mriae_key}_path"])
        row = {
            "file": source.name,
            "status": "done",
            "mriae_file": mriae_path.name,
            "shape": "x".join(str(n) for n in original.array.shape),
            "original_bytes": source.stat().st_size,
            "compressed_bytes": mriae_path.stat().st_size,
            "bits_per_voxel": round(mriae_path.stat().st_size * 8 / original.array.size, 4),
            "psnr_db": _number(psnr(original.array, reconstruction)),
            "max_error": _number(_max_error(original.array, reconstruction)),
        }
        stats = item.get(f"{self.mriae_key}_stats", {})
        row.update({key: "" if stats.get(key) is None else stats[key] for key in ("quality", "fidelity", "coder")})
        if self.save_reconstructions:
            target = self.output_dir / f"{stem_of(source)}_recon{restored_suffix(original.suffix)[0]}"
            check_targets(image_files(target), self.overwrite, OVERWRITE)
            write_image(Image(reconstruction, original.affine, original.suffix, original.source), target,
                        overwrite=self.overwrite)
            row["reconstruction"] = target.name
        return row


def spatial_array_raw(tensor: torch.Tensor, original: Image) -> np.ndarray:
    """Channel-first (C, X, Y, Z) → spatial-first (X, Y, Z[, C]) as numpy."""
    array = tensor.detach().cpu().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)
    return array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)


def _settings(qualities: Sequence[int], max_errors: Sequence[float], psnrs: Sequence[float],
              lossless: bool) -> list[tuple[str, dict]]:
    """(name, Compressd keywords) of each setting: quality levels, then maximum errors,
    PSNR targets and lossless; each checked by :meth:`Fidelity.of` (ValueError before any work)."""
    keywords = [{"quality": int(q)} for q in qualities] + [{"max_error": float(e)} for e in max_errors]
    keywords += [{"psnr": float(p)} for p in psnrs] + ([{"lossless": True}] if lossless else [])
    return [(Fidelity.of(**setting).name, setting) for setting in keywords]


class EvaluationRunner:
    """Rate–distortion of the codec over a folder: for each image and setting (quality levels,
    maximum errors, PSNR targets, lossless), compress with ``compress_factory(**setting)`` (a
    ``Compressd``-built callable; it gets ``quality=``, ``max_error=``, ``psnr=`` or
    ``lossless=``), save the .mriae file, read it back through ``loader`` (``LoadImaged`` with
    ``MriaeReader``) and compare with ``original_loader``'s output.

    Writes ``evaluation.csv`` (one row per file and setting: its ``setting`` name ``q5``,
    ``e2``, ``40dB`` or ``lossless``, ``quality`` for levels, bits/voxel, PSNR and the
    measured ``max_error``) and ``summary.csv`` (means per setting).
    """

    def __init__(self, data: Sequence[dict], qualities: Sequence[int], compress_factory, save, loader,
                 original_loader, output_dir: str, image_key: str = "image", max_errors: Sequence[float] = (),
                 psnrs: Sequence[float] = (), lossless: bool = False) -> None:
        self.data = data
        self.qualities = [int(q) for q in qualities or ()]
        self.settings = _settings(self.qualities, max_errors or (), psnrs or (), bool(lossless))
        if not self.settings:
            raise BundleInputError("evaluate needs at least one setting (qualities, max_errors, psnrs or lossless)")
        self.compress_factory = compress_factory
        self.save = save
        self.loader = loader
        self.original_loader = original_loader
        self.output_dir = Path(output_dir)
        self.image_key = image_key

    def run(self) -> list[dict]:
        """Code every item at every quality, read it back, and write evaluation.csv and summary.csv."""
        sources = [item[self.image_key] for item in self.data]
        check_distinct_outputs(sources, self.output_dir, f"{{stem}}_{self.settings[0][0]}.mriae")
        rows = []
        for item in self.data:
            original = self.original_loader(dict(item))[self.image_key]
            reference = original.detach().cpu().numpy()
            for setting, keywords in self.settings:
                started = time.perf_counter()
                coded = self.compress_factory(**keywords)(dict(item))
                saved = self.save({**coded, "name": f"{stem_of(item[self.image_key])}_{setting}"})
                path = Path(saved["mriae_path"])
                loaded = self.loader({"mriae": str(path)})["mriae"]
                if not np.allclose(loaded.affine.numpy(), original.affine.numpy(), atol=1e-6):
                    raise AssertionError(f"{path}: affine differs from {item[self.image_key]}")
                decoded = loaded.detach().cpu().numpy().reshape(reference.shape)
                rows.append({
                    "file": Path(item[self.image_key]).name,
                    "setting": setting,
                    "quality": keywords.get("quality", ""),
                    "bits_per_voxel": round(path.stat().st_size * 8 / reference.size, 4),
                    "psnr_db": _number(psnr(reference, decoded)),
                    "max_error": _number(_max_error(reference, decoded)),
                    "affine_equal": True,
                    "seconds": round(time.perf_counter() - started, 2),
                })
                logger.info("%s %s: %s bits/voxel, PSNR %s dB, max error %s", rows[-1]["file"], setting,
                            rows[-1]["bits_per_voxel"], rows[-1]["psnr_db"], rows[-1]["max_error"])
        _write_csv(self.output_dir / "evaluation.csv", rows)
        summary = []
        for setting, keywords in self.settings:
            chosen = [r for r in rows if r["setting"] == setting]
            finite = [r["psnr_db"] for r in chosen if r["psnr_db"] != "inf"]
            summary.append({
                "setting": setting, "quality": keywords.get("quality", ""), "files": len(chosen),
                "mean_bits_per_voxel": round(float(np.mean([r["bits_per_voxel"] for r in chosen])), 4),
                "mean_psnr_db": round(float(np.mean(finite)), 4) if finite else "inf",
                "max_error": max(r["max_error"] for r in chosen),
            })
        _write_csv(self.output_dir / "summary.csv", summary)
        logger.info("evaluation of %d files × %d settings written to %s", len(self.data), len(self.settings),
                    self.output_dir)
        return rows


class TrainingRunner:
    """The bundle's trainer: mriae's training loop (:func:`mriae.training.train.train`) for
    ``max_epochs`` epochs of ``epoch_length`` steps, cropping its batches from ``dataset`` on
    ``device``. The training volumes are an endless stream, so an epoch is a number of steps
    (ignite's ``epoch_length``); a run resumes from ``config.checkpoint`` if it exists.

    Args:
        config: the training settings; their ``total_steps`` become ``max_epochs × epoch_length``.
        dataset: the volumes to crop batches from.
        max_epochs: epochs to reach (counted from step 0, so a resumed run trains the rest).
        epoch_length: training steps per epoch.
        device: where the network trains (``None``: the GPU if there is one, else the CPU).
    """

    def __init__(self, config: TrainConfig, dataset: TrainingVolumes, max_epochs: int, epoch_length: int,
                 device: torch.device | str | None = None) -> None:
        for name, value in (("max_epochs", max_epochs), ("epoch_length", epoch_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BundleInputError(f"{name} must be a whole number of at least 1, got {value!r}")
        self.config = config
        self.dataset = dataset
        self.max_epochs = max_epochs
        self.epoch_length = epoch_length
        self.device = device

    def run(self) -> Path:
        """Train to ``max_epochs × epoch_length`` steps (exporting weights if the config says
        where); the checkpoint path."""
        config = replace(self.config, total_steps=self.max_epochs * self.epoch_length)
        return train(config, report=logger.info, volumes=self.dataset, device=self.device)

