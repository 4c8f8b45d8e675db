"""Start a binarized network from a trained full-precision one (the usual two-step recipe).

Binarized networks are commonly trained in two steps (e.g. ReActNet, Real-to-Binary): first a
network with real weights, then the binarized network initialised from it. For the BNN-style
baselines this is a plain copy: their binary layers keep the ``weight`` key of the convolution they
replace. BiDRN splits each convolution of a ResNet block into the branches of its Local Convolution
Residual (paper §3.1, Eq. 9–10), so :func:`transfer_weights` splits the full-precision weight the
same way:

================  ==========================================================================
LCR form          branch ``i`` of ``k`` receives
================  ==========================================================================
base, down scale  the whole weight
fusion up,        output channels ``i·C … (i+1)·C`` (the branches' outputs are concatenated,
down sample       Eq. 9)
fusion down       input channels ``i·C … (i+1)·C`` (the branches read channel groups and are
                  summed, Eq. 10: the sum of the branch convolutions is the original one)
================  ==========================================================================

Each unit's BatchNorm takes the block's ``bn<n>``, the full-precision Block Residual (Eq. 11) the
shortcut projection, and the binarized BoxNet (§3.2) its full-precision counterpart's transposed
convolutions, BatchNorms and MLP layers. Tensors without a counterpart (RPReLU, the BoxNet's
residual projection, learnable thresholds and scales) keep their own initialisation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from bidrn.nets.bidrn import BlockResidual, LocalConvResidual
from bidrn.nets.boxnet import BinarizedSizeHead, BinarizedUpsampling

__all__ = ["transfer_weights"]

_BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _split(weight: torch.Tensor, unit: LocalConvResidual) -> list[torch.Tensor]:
    """The full-precision conv ``weight`` cut into the unit's branch weights (see the module table)."""
    if unit.form in ("fusion_up", "down_sample"):
        return list(weight.chunk(unit.branches, dim=0))
    if unit.form == "fusion_down":
        return list(weight.chunk(unit.branches, dim=1))
    return [weight]


Sourced = dict[str, tuple[str, torch.Tensor]]
"""Target key -> (source key, tensor for the target)."""


def _renamed(source: Mapping[str, torch.Tensor], prefix_from: str, prefix_to: str) -> Sourced:
    return {
        prefix_to + key[len(prefix_from) :]: (key, value)
        for key, value in source.items()
        if key.startswith(prefix_from)
    }


def _counterparts(source: Mapping[str, torch.Tensor], target: nn.Module) -> Sourced:
    """Target keys of BiDRN and binarized-BoxNet modules filled from their full-precision names."""
    found: Sourced = {}
    for name, module in target.named_modules():
        if isinstance(module, LocalConvResidual) and ".units." in name:
            block, index = name.rsplit(".units.", 1)
            key = f"{block}.conv{int(index) + 1}.weight"
            if key in source:
                for branch, part in enumerate(_split(source[key], module)):
                    found[f"{name}.convs.{branch}.weight"] = (key, part)
            found.update(_renamed(source, f"{block}.bn{int(index) + 1}.", f"{name}.bn."))
        elif isinstance(module, BlockResidual) and name.endswith(".block_residual"):
            block = name[: -len(".block_residual")]
            found.update(_renamed(source, f"{block}.shortcut.", f"{name}.projection."))
        elif isinstance(module, BinarizedUpsampling):
            found.update(_renamed(source, f"{name}.0.", f"{name}.deconv."))
            found.update(_renamed(source, f"{name}.1.", f"{name}.bn."))
        elif isinstance(module, BinarizedSizeHead):
            found.update(_renamed(source, f"{name}.0.", f"{name}.hidden."))
            found.update(_renamed(source, f"{name}.2.", f"{name}.out."))
    return found


def transfer_weights(
    source: Mapping[str, torch.Tensor], target: nn.Module
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The tensors of ``source`` (a state dict) that ``target`` can start from, under target's keys.

    Keys present in both with the same shape and dtype are copied; BiDRN encoders and the binarized
    BoxNet take their full-precision counterparts as the module docstring describes.

    Returns:
        ``(state, unused)``: a partial state dict for ``target.load_state_dict(state, strict=False)``
        and the source keys that were used nowhere.
    """
    own = target.state_dict()
    candidates = {**_counterparts(source, target), **{k: (k, v) for k, v in source.items() if k in own}}
    accepted = {
        key: (origin, value)
        for key, (origin, value) in candidates.items()
        if key in own and own[key].shape == value.shape and own[key].dtype == value.dtype
    }
    used = {origin for origin, _ in accepted.values()}
    return {key: value for key, (_, value) in accepted.items()}, sorted(set(source) - used)
