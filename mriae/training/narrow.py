"""A narrower network started from trained weights: the hidden channels that matter most, kept.

Issue 14's speed target asks for a network with about a third of the multiply-adds; halving the
hidden width (64 → 32) is one: this is how such a run starts from the shipped weights instead of
from scratch (pipelines/training/narrow-32.yaml; what it measured: docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from mriae.fidelity import DEFAULT_QUALITY
from mriae.models.autoencoder import Autoencoder, Strides
from mriae.models.gdn import GDN3d
from mriae.models.weights import QUALITY_STEPS


def _most_important(activity: torch.Tensor, outgoing: torch.Tensor, hidden: int) -> torch.Tensor:
    """Indices (ascending) of the ``hidden`` channels with the largest mean |activation| times
    the norm of their outgoing weights (one row per channel)."""
    importance = activity * outgoing.flatten(1).norm(dim=1)
    return importance.argsort(descending=True)[:hidden].sort().values


def _copy_gdn(target: GDN3d, source: GDN3d, kept: torch.Tensor) -> None:
    target.beta_root.copy_(source.beta_root[kept])
    target.gamma_root.copy_(source.gamma_root[kept][:, kept])


def _activity(model: Autoencoder, volume: torch.Tensor, strides: Strides) -> dict[GDN3d, torch.Tensor]:
    """Mean |output| of every channel of every GDN of ``model`` coding ``volume``, its latents
    quantized at the default quality's nominal step."""
    activity: dict[GDN3d, torch.Tensor] = {}

    def record(gdn: GDN3d, _: tuple, output: torch.Tensor) -> None:
        activity[gdn] = output.abs().mean(dim=(0, 2, 3, 4))

    hooks = [gdn.register_forward_hook(record) for gdn in (*model.analysis_gdn, *model.synthesis_gdn)]
    try:
        bottleneck = model.entropy_bottleneck
        steps = bottleneck.channel_steps(QUALITY_STEPS[DEFAULT_QUALITY - 1])
        model.decode(bottleneck.dequantize(bottleneck.quantize(model.encode(volume, strides), steps), steps), strides)
    finally:
        for hook in hooks:
            hook.remove()
    return activity


@torch.no_grad()
def narrowed(model: Autoencoder, hidden: int, volume: torch.Tensor, strides: Strides) -> Autoencoder:
    """A copy of ``model`` with ``hidden`` channels in each hidden stage, weighed on ``volume``
    (1, 1, D, H, W, on a grid its ``strides`` divide): every layer's weights and each GDN's
    coefficients among the kept channels; the entropy model as it was."""
    if not 0 < hidden <= model.config.hidden_channels:
        raise ValueError(f"hidden channels must be in 1..{model.config.hidden_channels}, got {hidden}")
    activity = _activity(model, volume, strides)
    analysis_kept = [_most_important(activity[gdn], model.analysis[stage + 1].weight.transpose(0, 1), hidden)
                     for stage, gdn in enumerate(model.analysis_gdn)]
    synthesis_kept = [_most_important(activity[gdn], model.synthesis[i + 1].weight, hidden)
                      for i, gdn in enumerate(model.synthesis_gdn)]

    narrow = Autoencoder(replace(model.config, hidden_channels=hidden))
    for stage, (target, source) in enumerate(zip(narrow.analysis, model.analysis)):
        weight, bias = source.weight, source.bias  # (out, in, 3, 3, 3)
        if stage < len(analysis_kept):
            weight, bias = weight[analysis_kept[stage]], bias[analysis_kept[stage]]
        if stage > 0:
            weight = weight[:, analysis_kept[stage - 1]]
        target.weight.copy_(weight)
        target.bias.copy_(bias)
    for i, (target, source) in enumerate(zip(narrow.synthesis, model.synthesis)):
        weight, bias = source.weight, source.bias  # (in, out, 3, 3, 3)
        if i < len(synthesis_kept):
            weight, bias = weight[:, synthesis_kept[i]], bias[synthesis_kept[i]]
        if i > 0:
            weight = weight[synthesis_kept[i - 1]]
        target.weight.copy_(weight)
        target.bias.copy_(bias)
    for target, source, kept in zip(narrow.analysis_gdn, model.analysis_gdn, analysis_kept):
        _copy_gdn(target, source, kept)
    for target, source, kept in zip(narrow.synthesis_gdn, model.synthesis_gdn, synthesis_kept):
        _copy_gdn(target, source, kept)
    narrow.entropy_bottleneck.load_state_dict(model.entropy_bottleneck.state_dict())
    return narrow
