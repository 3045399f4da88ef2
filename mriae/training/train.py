"""Rate–distortion training loop: seeded, resumable from one checkpoint, logged to CSV."""

from __future__ import annotations

import csv
import ctypes
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import IterableDataset

from mriae.models.autoencoder import Autoencoder, AutoencoderConfig
from mriae.models.weights import export, load_codec
from mriae.training.config import TrainConfig
from mriae.training.narrow import narrowed
from mriae.training.synthetic import SyntheticVolumes, load_templates
from mriae.transforms.geometry import plan_on, to_network_grid
from mriae.transforms.grid import plan_grid


class TrainingVolumes(IterableDataset):
    """The endless stream of training volumes (1, D, H, W) in [0, 1] that ``config`` describes
    (synthetic brains and heads, the real T1 template): the dataset a run crops its batches from."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def at_step(self, step: int) -> TrainingVolumes:
        """The stream of a run resumed at ``step``: seeded with ``seed + step``, so that it does
        not draw the volumes of the steps before again."""
        return TrainingVolumes(replace(self.config, seed=self.config.seed + step))

    def __iter__(self) -> Iterator[torch.Tensor]:
        config = self.config
        volumes = SyntheticVolumes(config.seed, config.real_fraction, min_size=config.crop, atlas=config.atlas(),
                                   head_fraction=config.head_fraction)
        while True:
            yield volumes()


class BatchSampler:
    """Crops batches from a pool volume of ``volumes`` that is redrawn every ``refresh_every`` batches.

    Most batches are cubes; ``thin_fraction`` of them have one or two short axes (down to a
    single slice), edge-padded as the codec pads them and with the distortion measured on the
    real voxels only, so that padding learns to cost almost nothing.
    """

    def __init__(self, config: TrainConfig, volumes: Iterator[torch.Tensor]) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed + 1000)
        self.volumes = volumes
        self.volume = next(volumes)
        self.drawn = 0

    def crop_shape(self) -> tuple[int, int, int]:
        size = self.config.crop
        if self.rng.random() >= self.config.thin_fraction:
            return (size, size, size)
        shape = [size, size, size]
        for axis in self.rng.choice(3, size=int(self.rng.integers(1, 3)), replace=False):
            shape[axis] = int(self.rng.integers(1, size))
        return tuple(shape)  # type: ignore[return-value]

    def crop(self, shape: tuple[int, int, int]) -> torch.Tensor:
        volume = self.volume[0]
        foreground = volume > 0.05
        if self.rng.random() < 0.85 and foreground.any():
            points = foreground.nonzero()
            centre = points[int(self.rng.integers(len(points)))].tolist()
        else:
            centre = [int(self.rng.integers(n)) for n in volume.shape]
        start = [min(max(c - s // 2, 0), n - s) for c, s, n in zip(centre, shape, volume.shape)]
        return volume[start[0] : start[0] + shape[0], start[1] : start[1] + shape[1], start[2] : start[2] + shape[2]]

    def __call__(self, levels: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int]]:
        """(padded batch (B,1,D,H,W), mask of real voxels, levels per axis)."""
        if self.drawn and self.drawn % self.config.refresh_every == 0:
            self.volume = next(self.volumes)
        self.drawn += 1
        shape = self.crop_shape()
        strides, padded = plan_grid(shape, levels)
        batch = torch.stack([self.crop(shape) for _ in range(self.config.batch_size)])[:, None]
        pad = [p for n, q in zip(reversed(shape), reversed(padded)) for p in (0, q - n)]
        mask = F.pad(torch.ones_like(batch), pad)
        return F.pad(batch, pad, mode="replicate"), mask, strides  # type: ignore[return-value]


def rd_loss(x, x_hat, mask, likelihood, rd_lambda):
    """(loss, bits per real voxel, masked MSE)."""
    voxels = mask.sum()
    bpv = -torch.log2(likelihood).sum() / voxels
    mse = (((x_hat - x) * mask) ** 2).sum() / voxels
    return bpv + rd_lambda * mse, bpv, mse


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory instead of returning it to the OS after each step.

    Without this, every step re-faults its large activation buffers into fresh pages and
    spends about half its time in the kernel (measured here: 0.9 s → 0.25 s per step).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    libc.mallopt(-2, 1 << 30)  # M_TOP_PAD
    libc.mallopt(-3, 1 << 25)  # M_MMAP_THRESHOLD (glibc's maximum)


def train(config: TrainConfig, report: Callable[[str], None] = print, max_seconds: float | None = None,
          volumes: TrainingVolumes | None = None, device: torch.device | str | None = None) -> Path:
    """Run (or resume) training until ``config.total_steps`` on ``device`` (default: the GPU if
    there is one, else the CPU), cropping batches from ``volumes`` (default: those of
    ``config``); returns the checkpoint path.

    Training runs on ``config.threads`` threads with denormals flushed to zero (faster); both
    are process-wide settings, put back afterwards: flushed denormals would change what numpy
    and torch compute on tiny values (a volume's checksum, its coding) for the rest of the
    process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    torch.set_flush_denormal(True)
    try:
        return _train(config, report, max_seconds, volumes, device)
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


def _train(config: TrainConfig, report: Callable[[str], None], max_seconds: float | None,
           volumes: TrainingVolumes | None, device: torch.device | str | None) -> Path:
    """The work of :func:`train`."""
    checkpoint = Path(config.checkpoint)
    start = narrowed_start(config) if config.narrow_from and not checkpoint.is_file() else None
    torch.manual_seed(config.seed)
    keep_freed_memory()
    device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
    model = Autoencoder(AutoencoderConfig(config.hidden_channels, config.latent_channels, config.levels)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    step = 0
    if start is not None:
        model.load_state_dict(start)
        report(f"started from weights '{config.narrow_from}' narrowed to {config.hidden_channels} hidden channels")
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate
        report(f"resumed from {checkpoint} at step {step}")
        drop_rows_after(Path(config.log), step)
    volumes = volumes if volumes is not None else TrainingVolumes(config)
    sampler = BatchSampler(replace(config, seed=config.seed + step), iter(volumes.at_step(step)))
    rng = np.random.default_rng(config.seed + step)
    log_path = Path(config.log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    new_log = not log_path.is_file()
    started = time.monotonic()
    with log_path.open("a", newline="") as log_file:
        log = csv.writer(log_file)
        if new_log:
            log.writerow(["step", "loss", "bpv", "psnr", "quant_step", "seconds"])
        while step < config.total_steps:
            if max_seconds is not None and time.monotonic() - started > max_seconds:
                break
            batch, mask, strides = sampler(config.levels)
            x, mask = batch.to(device), mask.to(device)
            quant_step = float(math.exp(rng.uniform(math.log(config.min_step), math.log(config.max_step))))
            x_hat, likelihood = model(x, strides, quant_step)
            loss, bpv, mse = rd_loss(x, x_hat, mask, likelihood, config.lambda_at(quant_step))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            psnr = -10 * math.log10(max(mse.item(), 1e-12))
            log.writerow([step, f"{loss.item():.5f}", f"{bpv.item():.4f}", f"{psnr:.2f}", f"{quant_step:.3f}",
                          f"{time.monotonic() - started:.1f}"])
            if step % config.checkpoint_every == 0 or step == config.total_steps:
                save_checkpoint(model, optimizer, step, checkpoint)
                log_file.flush()
                report(f"step {step}: loss {loss.item():.4f} bpv {bpv.item():.3f} psnr {psnr:.2f}")
    save_checkpoint(model, optimizer, step, checkpoint)
    if config.export:
        model = model.cpu()
        export(model, Path(config.export), calibration_latents(model, config))
        report(f"exported weights to {config.export}")
    return checkpoint


def drop_rows_after(log: Path, step: int) -> None:
    """Remove the log rows of steps after ``step`` (logged after the last checkpoint of a run
    that was stopped), so that a resumed run logs every step once."""
    if not log.is_file():
        return
    with log.open(newline="") as stream:
        rows = list(csv.reader(stream))
    kept = rows[:1] + [row for row in rows[1:] if int(row[0]) <= step]
    if len(kept) < len(rows):
        temporary = log.with_suffix(".tmp")
        with temporary.open("w", newline="") as stream:
            csv.writer(stream).writerows(kept)
        temporary.replace(log)


def save_checkpoint(model: Autoencoder, optimizer: torch.optim.Optimizer, step: int, path: Path) -> None:
    """Overwrite ``path`` atomically with weights, optimizer state and step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, temporary)
    temporary.replace(path)


def export_checkpoint(config: TrainConfig, output: Path | None = None) -> Path:
    """Export the checkpoint of ``config`` as shipped weights (to ``config.export`` by default)."""
    target = Path(output or config.export)
    state = torch.load(config.checkpoint, map_location="cpu", weights_only=True)
    model = Autoencoder(AutoencoderConfig(config.hidden_channels, config.latent_channels, config.levels))
    model.load_state_dict(state["model"])
    export(model, target, calibration_latents(model, config))
    return target


def narrowed_start(config: TrainConfig) -> dict[str, torch.Tensor]:
    """The network a run narrowed from ``config.narrow_from`` starts with (weighed on the real T1
    template, on its codec grid); ValueError unless those weights are as wide or wider and
    differ from ``config``'s network in the hidden width alone. Made before the run seeds torch."""
    source = load_codec(config.narrow_from).model
    wanted = AutoencoderConfig(config.hidden_channels, config.latent_channels, config.levels)
    if replace(source.config, hidden_channels=config.hidden_channels) != wanted:
        raise ValueError(f"weights '{config.narrow_from}' are {source.config.to_dict()}: "
                         f"only hidden_channels may differ from the config's {wanted.to_dict()}")
    if config.hidden_channels > source.config.hidden_channels:
        raise ValueError(f"weights '{config.narrow_from}' have {source.config.hidden_channels} hidden channels: "
                         f"they cannot be narrowed to {config.hidden_channels}")
    return narrowed(source, config.hidden_channels, *on_codec_grid(load_templates()["t1"][0], config.levels)).state_dict()


def on_codec_grid(volume: torch.Tensor, levels: int) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """``volume`` (D, H, W) padded as the codec would, (1, 1, D', H', W'), and its strides."""
    grid = plan_on(tuple(volume.shape), np.eye(4), levels)
    return to_network_grid(volume.numpy(), grid), grid.levels


@torch.no_grad()
def calibration_latents(model: Autoencoder, config: TrainConfig) -> list[torch.Tensor]:
    """Latents of the real T1 template and of ``config.calibration_volumes`` synthetic volumes
    of the training mixture (heads with noisy backgrounds included), on the grids the codec
    would pad them to: the symbols the context tables are counted over at export."""
    volumes = SyntheticVolumes(config.seed, real_fraction=0.0, min_size=32, atlas=config.atlas(),
                               head_fraction=config.head_fraction)
    drawn = [load_templates()["t1"][0]] + [volumes()[0] for _ in range(config.calibration_volumes)]
    return [model.encode(*on_codec_grid(volume, model.config.levels)) for volume in drawn]
