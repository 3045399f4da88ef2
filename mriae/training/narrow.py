"""A narrower network started from trained weights: the hidden channels that matter most, kept.

Issue 14's speed target asks for a network with about a third of the multiply-adds; halving the
hidden width (64 → 32) is one: this is how such a run starts from the shipped weights instead of
from scratch (pipelines/training/narrow-32.yaml; what it measured: docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from mriae.models.autoencoder import Autoencoder, Strides, stage_strides
from mriae.models.gdn import GDN3d
from mriae.models.weights import QUALITY_STEPS

IMPORTANCE_STEP = QUALITY_STEPS[4]
"""The nominal step the latents are quantized at while the synthesis channels are weighed
(quality 5, the default)."""


def _most_important(activity: torch.Tensor, outgoing: torch.Tensor, hidden: int) -> torch.Tensor:
    """Indices (ascending) of the ``hidden`` channels with the largest mean |activation| times
    the norm of their outgoing weights (one row per channel)."""
    importance = activity * outgoing.flatten(1).norm(dim=1)
    return importance.argsort(descending=True)[:hidden].sort().values


def _copy_gdn(target: GDN3d, source: GDN3d, kept: torch.Tensor) -> None:
    target.beta_root.copy_(source.beta_root[kept])
    target.gamma_root.copy_(source.gamma_root[kept][:, kept])


@torch.no_grad()
def narrowed(model: Autoencoder, hidden: int, volume: torch.Tensor, strides: Strides) -> Autoencoder:
    """A copy of ``model`` with ``hidden`` channels in each hidden stage, weighed on ``volume``
    (1, 1, D, H, W, on a grid its ``strides`` divide): every layer's weights and each GDN's
    coefficients among the kept channels; the latents and the entropy model as they were."""
    if not 0 < hidden <= model.config.hidden_channels:
        raise ValueError(f"hidden channels must be in 1..{model.config.hidden_channels}, got {hidden}")
    analysis_activity, synthesis_activity = [], []
    x = volume
    for stage, conv in enumerate(model.analysis):
        x = conv(x, stage_strides(strides, stage))
        if stage < len(model.analysis_gdn):
            x = model.analysis_gdn[stage](x)
            analysis_activity.append(x.abs().mean(dim=(0, 2, 3, 4)))
    bottleneck = model.entropy_bottleneck
    steps = bottleneck.channel_steps(IMPORTANCE_STEP)
    x = bottleneck.dequantize(bottleneck.quantize(x, steps), steps)
    for i, deconv in enumerate(model.synthesis):
        x = deconv(x, stage_strides(strides, model.config.levels - 1 - i))
        if i < len(model.synthesis_gdn):
            x = model.synthesis_gdn[i](x)
            synthesis_activity.append(x.abs().mean(dim=(0, 2, 3, 4)))
    analysis_kept = [_most_important(activity, model.analysis[stage + 1].weight.transpose(0, 1), hidden)
                     for stage, activity in enumerate(analysis_activity)]
    synthesis_kept = [_most_important(activity, model.synthesis[i + 1].weight, hidden)
                      for i, activity in enumerate(synthesis_activity)]

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
    narrow.entropy_bottleneck.load_state_dict(bottleneck.state_dict())
    return narrow
