"""Unstructured L1 pruning of encoder convolutions (the paper's Table 4 compression baseline).

Uses :mod:`torch.nn.utils.prune`: each pruned conv keeps its dense latent weight as ``weight_orig``
and a 0/1 ``weight_mask`` buffer; the forward pass multiplies the two, so pruned weights stay exactly
zero and receive zero gradient. :func:`bidrn.engine.complexity.count_complexity` counts only the
non-zero weights and scales the conv's MACs by its density.

Pruning a freshly initialised model only fixes masks on random weights; to reproduce the paper's
baseline, load a trained dense Hand4Whole first and call :func:`prune_convolutions` again on its
encoders (existing masks are combined with the new ones), then fine-tune.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import prune

__all__ = ["prune_convolutions", "pruned_fraction"]


def prune_convolutions(module: nn.Module, amount: float) -> int:
    """Zero the ``amount`` fraction of smallest-magnitude weights of every ``nn.Conv2d`` in ``module``.

    Each conv is pruned on its own (per-layer L1 unstructured). Returns the number of convs pruned.
    """
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"pruning amount must be in [0, 1), got {amount}")
    convs = [child for child in module.modules() if isinstance(child, nn.Conv2d)]
    for conv in convs:
        prune.l1_unstructured(conv, name="weight", amount=amount)
    return len(convs)


def pruned_fraction(module: nn.Module) -> float:
    """Fraction of conv weights in ``module`` that are masked to zero (0 when nothing is pruned)."""
    total = zeros = 0
    for child in module.modules():
        if isinstance(child, nn.Conv2d):
            mask = getattr(child, "weight_mask", None)
            total += child.weight.numel()
            if mask is not None:
                zeros += int((mask == 0).sum())
    return zeros / total if total else 0.0
