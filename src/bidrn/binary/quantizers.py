"""Quantizers: the objects that turn a binary layer's input and latent weight into ±1 values.

As in Larq, a quantizer is one object that owns its forward value and its pseudo-gradient; here it
also owns any schedule it follows and the terms a frozen 1-bit engine needs from it. A binary layer
(:mod:`bidrn.binary.layers`) holds one :class:`ActivationQuantizer` and one :class:`WeightQuantizer`
(a :class:`~bidrn.binary.methods.BinarizationMethod`) and only asks them:

============================  ===========================================================
``build(layer, ...)``         create the per-layer state the quantizer needs, on ``layer``
``quantizer(x, layer)``       the quantized value, with the pseudo-gradient attached
``set_progress(layer, e, T)`` advance its schedules to epoch ``e`` of ``T``
``inference_terms(...)``      what a frozen engine needs (:class:`ActivationTerms`, :class:`WeightTerms`)
``input_only``                (activations) the value depends on the input alone, so layers with
                              equal quantizers reading one tensor may share one quantized copy
============================  ===========================================================

Quantizers are immutable (frozen dataclasses), so one instance serves every layer of a method. The
state a quantizer needs in a layer (parameters, buffers, submodules) it creates in ``build`` under
names it chooses and reads back from the layer when called; the names stay those of the original
layers (``input_threshold``, ``output_scale``, ``recu_tau``, ...), so checkpoints keep loading.
Two slots are common to every binary layer and start as ``None``: ``layer.input_threshold`` (C_in)
and ``layer.output_scale`` (C_out, a learnable multiplier of the layer output that the layer applies).

This module holds the interfaces and the sign quantizers of BNN, XNOR-Net, DoReFa, Bi-Real, ReActNet
and BiDRN; ReCU's and FDA's live in :mod:`bidrn.binary.recu` and :mod:`bidrn.binary.fda`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from torch import Tensor, nn

from bidrn.binary.estimators import SurrogateGradient, binarize, sign

if TYPE_CHECKING:
    from bidrn.binary.layers import BinaryLayer

__all__ = [
    "ActivationQuantizer",
    "ActivationTerms",
    "ScaledSignActivation",
    "SignActivation",
    "SignWeight",
    "ThresholdSignActivation",
    "WeightQuantizer",
    "WeightTerms",
]

WeightScale = Literal["none", "channel_mean_abs", "layer_mean_abs"]


@dataclass(frozen=True)
class ActivationTerms:
    """Eval-mode activation terms for a frozen engine.

    Attributes:
        input_threshold: (C_in,) the activation bit is +1 where x >= threshold, −1 elsewhere; ``None``
            means threshold 0.
        input_scale: ``"per_sample_mean_abs"`` when the output is multiplied by β = mean|x| over all
            non-batch dimensions of the layer input (XNOR), else ``None``.
    """

    input_threshold: Tensor | None = None
    input_scale: Literal["per_sample_mean_abs"] | None = None


@dataclass(frozen=True)
class WeightTerms:
    """Eval-mode weight terms for a frozen engine: effective filters ``weight_scale[o]·weight_sign[o]``.

    Attributes:
        weight_sign: ±1 filters (C_out, d).
        weight_scale: (C_out,) multiplier of the ±1 accumulator.
    """

    weight_sign: Tensor
    weight_scale: Tensor


class ActivationQuantizer(ABC):
    """Turns a binary layer's real input into ±1 (or ±β) values; subclass as a frozen dataclass.

    Subclasses define :meth:`__call__` and :meth:`inference_terms`, and :meth:`build` and
    :meth:`set_progress` when they keep per-layer state or follow a schedule.
    """

    #: The value depends on the input (and the layer's training flag) alone: no per-layer parameters
    #: or buffers. Layers whose activation quantizers are equal and ``input_only`` may then share one
    #: quantized copy of an input they all read (see :meth:`BinaryLayer.forward_quantized`).
    input_only: ClassVar[bool] = False

    def build(self, layer: BinaryLayer, in_channels: int) -> None:  # noqa: B027 (optional hook)
        """Create the per-layer state this quantizer needs on ``layer`` (default: none)."""

    def set_progress(self, layer: BinaryLayer, epoch: int, total_epochs: int) -> None:  # noqa: B027
        """Advance this quantizer's schedules in ``layer`` to ``epoch`` (0-based; default: none)."""

    @abstractmethod
    def __call__(self, x: Tensor, layer: BinaryLayer) -> Tensor:
        """The binarized input as the layer's forward pass uses it, carrying the pseudo-gradient."""

    @abstractmethod
    def inference_terms(self, layer: BinaryLayer) -> ActivationTerms:
        """The eval-mode terms (must reproduce ``self(x, layer)`` of an eval-mode layer exactly)."""


class WeightQuantizer(ABC):
    """Turns a binary layer's latent filters (C_out, d) into the filters it uses.

    Subclass as a frozen dataclass; define :meth:`__call__` and :meth:`inference_terms`, and :meth:`build`
    and :meth:`set_progress` when the quantizer keeps per-layer state or follows a schedule.
    """

    def build(self, layer: BinaryLayer, out_channels: int, filter_width: int) -> None:  # noqa: B027
        """Create the per-layer state this quantizer needs on ``layer`` (default: none)."""

    def set_progress(self, layer: BinaryLayer, epoch: int, total_epochs: int) -> None:  # noqa: B027
        """Advance this quantizer's schedules in ``layer`` to ``epoch`` (0-based; default: none)."""

    @abstractmethod
    def __call__(self, filters: Tensor, layer: BinaryLayer) -> Tensor:
        """The effective filters (C_out, d) the forward pass uses, carrying the pseudo-gradient."""

    @abstractmethod
    def inference_terms(self, filters: Tensor, layer: BinaryLayer) -> WeightTerms:
        """Eval-mode sign and scale of ``filters`` (must reproduce ``self(filters, layer)`` in eval mode)."""


def _sample_dims(x: Tensor) -> tuple[int, ...]:
    return tuple(range(1, x.dim()))


@dataclass(frozen=True)
class SignActivation(ActivationQuantizer):
    """a = sign(x) (sign(0) = +1) with a surrogate gradient: BNN, DoReFa, Bi-Real, BiDRN (Eq. 1–2)."""

    estimator: SurrogateGradient
    input_only: ClassVar[bool] = True

    def __call__(self, x: Tensor, layer: BinaryLayer) -> Tensor:
        """sign(x) forward, the estimator's derivative backward."""
        return binarize(x, self.estimator)

    def inference_terms(self, layer: BinaryLayer) -> ActivationTerms:
        """Threshold 0, no input scale."""
        return ActivationTerms()


@dataclass(frozen=True)
class ScaledSignActivation(ActivationQuantizer):
    """XNOR-Net (BiBench form): a = β·sign(x), β = mean|x| over (C, H, W) per sample, detached."""

    estimator: SurrogateGradient
    input_only: ClassVar[bool] = True

    def __call__(self, x: Tensor, layer: BinaryLayer) -> Tensor:
        """β·sign(x) forward; β times the estimator's derivative backward."""
        return binarize(x, self.estimator, scale=x.detach().abs().mean(dim=_sample_dims(x), keepdim=True))

    def inference_terms(self, layer: BinaryLayer) -> ActivationTerms:
        """Threshold 0; the engine multiplies its output by the per-sample mean |x|."""
        return ActivationTerms(input_scale="per_sample_mean_abs")


@dataclass(frozen=True)
class ThresholdSignActivation(ActivationQuantizer):
    """ReActNet's RSign: a = sign(x − θ_c), one learnable θ per input channel (``layer.input_threshold``)."""

    estimator: SurrogateGradient

    def build(self, layer: BinaryLayer, in_channels: int) -> None:
        """Create the threshold θ (C_in,), initialised to 0."""
        layer.input_threshold = nn.Parameter(torch.zeros(in_channels))

    def __call__(self, x: Tensor, layer: BinaryLayer) -> Tensor:
        """sign(x − θ) forward; the estimator's derivative backward, to x and (negated, summed) to θ."""
        return binarize(x - layer.channel_view(layer.input_threshold, x), self.estimator)

    def inference_terms(self, layer: BinaryLayer) -> ActivationTerms:
        """The threshold θ."""
        return ActivationTerms(input_threshold=layer.input_threshold.detach().clone())


@dataclass(frozen=True)
class SignWeight(WeightQuantizer):
    """w_b = s_o·sign(w_o) with a detached scale s (BiDRN Eq. 4 for α_o).

    s is α_o = mean|w_o| per output channel, one E = mean|w| for the layer (DoReFa), or 1.

    Attributes:
        estimator: surrogate gradient of sign(w) (``clipped`` = the gradient of clamp(w, −1, 1)).
        scale: ``channel_mean_abs``, ``layer_mean_abs`` or ``none``.
    """

    estimator: SurrogateGradient
    scale: WeightScale = "channel_mean_abs"

    def __post_init__(self) -> None:
        if self.scale not in ("none", "channel_mean_abs", "layer_mean_abs"):
            choices = "none, channel_mean_abs, layer_mean_abs"
            raise ValueError(f"unknown weight scale {self.scale!r}; choose {choices}")

    def magnitude(self, filters: Tensor) -> Tensor | None:
        """The detached scale (C_out, 1) of ``filters`` (C_out, d), or ``None`` for no scale."""
        if self.scale == "none":
            return None
        magnitude = filters.detach().abs()
        if self.scale == "channel_mean_abs":
            return magnitude.mean(dim=1, keepdim=True)
        return magnitude.mean().expand(filters.shape[0], 1)

    def __call__(self, filters: Tensor, layer: BinaryLayer) -> Tensor:
        """s·sign(w) forward; s times the estimator's derivative backward."""
        return binarize(filters, self.estimator, scale=self.magnitude(filters))

    def inference_terms(self, filters: Tensor, layer: BinaryLayer) -> WeightTerms:
        """sign(w) and s (ones when there is no scale)."""
        scale = self.magnitude(filters)
        if scale is None:
            scale = torch.ones(filters.shape[0], 1, dtype=filters.dtype, device=filters.device)
        return WeightTerms(weight_sign=sign(filters), weight_scale=scale.flatten().clone())
