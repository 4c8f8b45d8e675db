"""ReCU's quantizers (Xu et al., "ReCU: Reviving the Dead Weights in Binary Neural Networks", ICCV 2021).

Weights are centred and standardised per filter and clamped to ±Q(τ) before the sign, with τ growing
over training (:func:`bidrn.binary.schedules.recu_tau`); the layer output is multiplied by a learnable
per-output-channel α (``layer.output_scale``). Activations are sign(x), with x divided by its
per-sample standard deviation in training so that the ApproxSign gradient window follows the spread
of the input (docs/design/binarizers.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from bidrn.binary.estimators import SurrogateGradient, binarize, sign
from bidrn.binary.quantizers import ActivationQuantizer, ActivationTerms, WeightQuantizer, WeightTerms
from bidrn.binary.schedules import RECU_TAU_MIN, recu_tau

if TYPE_CHECKING:
    from bidrn.binary.layers import BinaryLayer

__all__ = ["RecuActivation", "RecuWeight"]

_RECU_STD_EPS = 1e-5
_ACTIVATION_STD_FLOOR = 1e-12


@dataclass(frozen=True)
class RecuActivation(ActivationQuantizer):
    """a = sign(x); in training x is first divided by its per-sample std (detached, floored at 1e-12).

    The forward value is that of sign(x); only the gradient window widens or narrows.
    """

    estimator: SurrogateGradient
    input_only: ClassVar[bool] = True

    def __call__(self, x: Tensor, layer: BinaryLayer) -> Tensor:
        """sign(x / σ) forward; derivative(x / σ) / σ backward (σ = 1 in eval mode)."""
        if not layer.training:
            return binarize(x, self.estimator)
        spread = x.detach().std(dim=tuple(range(1, x.dim())), keepdim=True)
        return binarize(x, self.estimator, divisor=spread.clamp_min(_ACTIVATION_STD_FLOOR))

    def inference_terms(self, layer: BinaryLayer) -> ActivationTerms:
        """Threshold 0, no input scale."""
        return ActivationTerms()


@dataclass(frozen=True)
class RecuWeight(WeightQuantizer):
    """w_b = sign(clamp(standardise(w_o), ±Q(τ))), Q(τ) = −E|ŵ|·ln(2 − 2τ), with a learnable output scale.

    The estimator (identity in ReCU) replaces the sign's derivative; the standardisation and the clamp
    keep their own gradients. The layer output is multiplied by a learnable per-channel α.

    Per-layer state: ``output_scale`` (C_out, uniform(0, 1) at init) and the buffer ``recu_tau``.
    """

    estimator: SurrogateGradient

    def build(self, layer: BinaryLayer, out_channels: int, filter_width: int) -> None:
        """Create the learnable output scale α and the τ buffer (τ_min until :meth:`set_progress`)."""
        layer.output_scale = nn.Parameter(torch.rand(out_channels))
        layer.register_buffer("recu_tau", torch.tensor(RECU_TAU_MIN))

    def set_progress(self, layer: BinaryLayer, epoch: int, total_epochs: int) -> None:
        """τ for ``epoch`` (:func:`~bidrn.binary.schedules.recu_tau`)."""
        layer.recu_tau.fill_(recu_tau(epoch, total_epochs))

    @staticmethod
    def clamped(filters: Tensor, layer: BinaryLayer) -> Tensor:
        """Centred, standardised (× 2√2) filters clamped to ±Q(τ) (Q detached)."""
        centred = filters - filters.mean(dim=1, keepdim=True)
        correction = 1 if filters.shape[1] > 1 else 0
        spread = torch.sqrt(centred.var(dim=1, keepdim=True, correction=correction) + _RECU_STD_EPS)
        standard = centred / (spread / (2.0 * math.sqrt(2.0)))
        bound = (-standard.abs().mean() * torch.log(2.0 - 2.0 * layer.recu_tau)).detach()
        return torch.maximum(torch.minimum(standard, bound), -bound)

    def __call__(self, filters: Tensor, layer: BinaryLayer) -> Tensor:
        """Sign of the clamped filters, with the estimator's derivative (no scale: α is the output's)."""
        return binarize(self.clamped(filters, layer), self.estimator)

    def inference_terms(self, filters: Tensor, layer: BinaryLayer) -> WeightTerms:
        """Sign of the clamped filters and a weight scale of 1 (α is ``layer.output_scale``)."""
        ones = torch.ones(filters.shape[0], dtype=filters.dtype, device=filters.device)
        return WeightTerms(weight_sign=sign(self.clamped(filters, layer)), weight_scale=ones)
