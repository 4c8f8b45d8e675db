"""Binary layers: convolution, transposed convolution and linear with 1-bit weights and activations.

Like Larq's ``QuantConv2D(input_quantizer=..., kernel_quantizer=...)``, each layer is its PyTorch
counterpart (same constructor arguments, latent real weight in ``.weight``, same state-dict keys)
plus a :class:`~bidrn.binary.methods.BinarizationMethod` that says how its input and weight are
binarized. Per-layer extras that a method needs are created here:

* ``input_threshold`` (C_in) — ReActNet's RSign threshold;
* ``output_scale`` (C_out) — ReCU's learnable α, initialised uniform(0, 1);
* ``input_noise`` / ``weight_noise`` — FDA's training-time noise-adaptation MLPs;
* buffers ``recu_tau``, ``fourier_terms``, ``noise_scale`` — the schedules advanced by
  :func:`set_progress`.

In eval mode every method computes

    y = conv(sign-bits(x), sign(w)) · weight_scale[o] · output_scale[o] · β(x) + bias[o]

with ``sign(0) = +1``; :meth:`BinaryLayer.inference_terms` returns those terms for freezing.
Zero padding pads the ±1 activations with 0, exactly as in the simulated networks of the paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from bidrn.binary.estimators import binarize, sign
from bidrn.binary.methods import BinarizationMethod, get_method
from bidrn.binary.noise import NoiseAdaptation
from bidrn.binary.schedules import RECU_TAU_MIN, fda_fourier_terms, fda_noise_scale, recu_tau

__all__ = [
    "BinaryConv2d",
    "BinaryConvTranspose2d",
    "BinaryLayer",
    "BinaryLinear",
    "InferenceTerms",
    "set_progress",
]

_RECU_STD_EPS = 1e-5
_ACTIVATION_STD_FLOOR = 1e-12


@dataclass
class InferenceTerms:
    """What a frozen 1-bit engine needs from a binary layer (eval-mode semantics).

    Attributes:
        weight_sign: ±1 tensor of the latent weight's shape.
        weight_scale: (C_out,) multiplier of the ±1 accumulator (α, E, or ones).
        input_threshold: (C_in,) per-input-channel threshold: the activation bit is +1 where
            x >= threshold, −1 elsewhere; ``None`` means threshold 0.
        input_scale: ``"per_sample_mean_abs"`` when the output is multiplied by β = mean|x| over all
            non-batch dimensions of the layer input (XNOR), else ``None``.
        output_scale: (C_out,) learnable output multiplier (ReCU) or ``None``.
    """

    weight_sign: torch.Tensor
    weight_scale: torch.Tensor
    input_threshold: torch.Tensor | None
    input_scale: Literal["per_sample_mean_abs"] | None
    output_scale: torch.Tensor | None


class BinaryLayer:
    """Mixin shared by the binary layers: quantizers, method extras and schedules.

    Subclasses are ``nn.Module`` s that define :meth:`_filters` (the weight as a (C_out, d) matrix),
    :meth:`_unfilters` (its inverse), ``_channel_dim`` (where input channels sit) and ``_real_valued_op``
    (the real-valued operation without bias).
    """

    method: BinarizationMethod
    weight: nn.Parameter
    bias: nn.Parameter | None
    _channel_dim: int

    def _setup_binarization(
        self, method: str | BinarizationMethod, in_channels: int, out_channels: int, filter_width: int
    ) -> None:
        self.method = get_method(method)
        activation, weight = self.method.activation, self.method.weight
        self.register_parameter(
            "input_threshold",
            nn.Parameter(torch.zeros(in_channels)) if activation.learnable_threshold else None,
        )
        self.register_parameter(
            "output_scale", nn.Parameter(torch.rand(out_channels)) if weight.scale == "learnable" else None
        )
        self.input_noise = NoiseAdaptation(in_channels) if activation.noise_adaptation else None
        self.weight_noise = NoiseAdaptation(filter_width) if weight.noise_adaptation else None
        if weight.recu_standardize:
            self.register_buffer("recu_tau", torch.tensor(RECU_TAU_MIN))
        if "fourier" in (activation.estimator.kind, weight.estimator.kind):
            self.register_buffer("fourier_terms", torch.tensor(fda_fourier_terms(0, 1)))
        if activation.noise_adaptation or weight.noise_adaptation:
            self.register_buffer("noise_scale", torch.tensor(0.1))

    # -- schedules ----------------------------------------------------------------------------
    def set_progress(self, epoch: int, total_epochs: int) -> None:
        """Set the epoch-dependent hyper-parameters (ReCU τ, FDA terms and λ) for ``epoch``."""
        if hasattr(self, "recu_tau"):
            self.recu_tau.fill_(recu_tau(epoch, total_epochs))
        if hasattr(self, "fourier_terms"):
            self.fourier_terms.fill_(fda_fourier_terms(epoch, total_epochs))
        if hasattr(self, "noise_scale"):
            self.noise_scale.fill_(fda_noise_scale(epoch, total_epochs))

    def _terms(self) -> int:
        return int(self.fourier_terms) if hasattr(self, "fourier_terms") else 10

    def _noise_active(self) -> bool:
        return self.training and hasattr(self, "noise_scale") and float(self.noise_scale) > 0

    # -- helpers ------------------------------------------------------------------------------
    def _per_input_channel(self, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.dim()
        shape[self._channel_dim] = -1
        return values.view(shape)

    def _per_output_channel(self, values: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._per_input_channel(values, y)

    @staticmethod
    def _sample_dims(x: torch.Tensor) -> tuple[int, ...]:
        return tuple(range(1, x.dim()))

    # -- quantizers ---------------------------------------------------------------------------
    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """The binarized activation exactly as the forward pass uses it (±1, or ±β for XNOR)."""
        spec = self.method.activation
        if self.input_threshold is not None:
            x = x - self._per_input_channel(self.input_threshold, x)
        source = x
        if spec.train_std_normalize and self.training:
            spread = x.detach().std(dim=self._sample_dims(x), keepdim=True)
            source = x / spread.clamp_min(_ACTIVATION_STD_FLOOR)
        binary = binarize(source, spec.estimator, self._terms())
        if self._noise_active() and self.input_noise is not None:
            channels_last = x.movedim(self._channel_dim, -1)
            noise = self.input_noise(channels_last).movedim(-1, self._channel_dim)
            binary = binary + self.noise_scale * noise
        if spec.per_sample_scale:
            binary = binary * x.detach().abs().mean(dim=self._sample_dims(x), keepdim=True)
        return binary

    def _binary_filters(self, filters: torch.Tensor) -> torch.Tensor:
        """±1 filters (C_out, d) with the method's gradient, before scaling and noise."""
        spec = self.method.weight
        source = filters
        if spec.recu_standardize:
            centred = filters - filters.mean(dim=1, keepdim=True)
            correction = 1 if filters.shape[1] > 1 else 0
            spread = torch.sqrt(centred.var(dim=1, keepdim=True, correction=correction) + _RECU_STD_EPS)
            standard = centred / (spread / (2.0 * math.sqrt(2.0)))
            bound = (-standard.abs().mean() * torch.log(2.0 - 2.0 * self.recu_tau)).detach()
            source = torch.maximum(torch.minimum(standard, bound), -bound)
        return binarize(source, spec.estimator, self._terms())

    def _filter_scale(self, filters: torch.Tensor) -> torch.Tensor:
        """Per-output-channel scale (C_out, 1) of the binary weight, detached."""
        scale = self.method.weight.scale
        magnitude = filters.detach().abs()
        if scale == "channel_mean_abs":
            return magnitude.mean(dim=1, keepdim=True)
        if scale == "layer_mean_abs":
            return magnitude.mean().expand(filters.shape[0], 1)
        return torch.ones(filters.shape[0], 1, dtype=filters.dtype, device=filters.device)

    def quantized_weight(self) -> torch.Tensor:
        """The effective weight the forward pass uses (e.g. α_o·sign(w), Eq. 4)."""
        filters = self._filters(self.weight)
        binary = self._binary_filters(filters)
        if self._noise_active() and self.weight_noise is not None:
            binary = binary + self.noise_scale * self.weight_noise(filters)
        return self._unfilters(binary * self._filter_scale(filters))

    @torch.no_grad()
    def inference_terms(self) -> InferenceTerms:
        """The eval-mode terms of this layer, for freezing to packed bits (see :class:`InferenceTerms`)."""
        filters = self._filters(self.weight)
        return InferenceTerms(
            weight_sign=self._unfilters(sign(self._binary_filters(filters))),
            weight_scale=self._filter_scale(filters).flatten().clone(),
            input_threshold=None if self.input_threshold is None else self.input_threshold.detach().clone(),
            input_scale="per_sample_mean_abs" if self.method.activation.per_sample_scale else None,
            output_scale=None if self.output_scale is None else self.output_scale.detach().clone(),
        )

    def _binary_forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        y = self._real_valued_op(self.quantize_input(x), self.quantized_weight(), **kwargs)
        if self.output_scale is not None:
            y = y * self._per_output_channel(self.output_scale, y)
        if self.bias is not None:
            y = y + self._per_output_channel(self.bias, y)
        return y

    def extra_repr(self) -> str:
        """Describe the layer for ``print(module)``: the torch layer's description plus the method."""
        return f"{super().extra_repr()}, method={self.method.name}"


class BinaryConv2d(BinaryLayer, nn.Conv2d):
    """2-D convolution with binarized weights and activations (drop-in for ``nn.Conv2d``).

    ``bias`` defaults to False, as binary convs are followed by BatchNorm.
    """

    _channel_dim = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = False,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        method: str | BinarizationMethod = "bidrn",
    ) -> None:
        nn.Conv2d.__init__(
            self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device, dtype,
        )  # fmt: skip
        filter_width = (in_channels // groups) * self.kernel_size[0] * self.kernel_size[1]
        self._setup_binarization(method, in_channels, out_channels, filter_width)

    def _filters(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.reshape(weight.shape[0], -1)

    def _unfilters(self, filters: torch.Tensor) -> torch.Tensor:
        return filters.reshape(self.weight.shape)

    def _real_valued_op(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, weight, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Binarize input and weight, convolve, then apply output scale and bias."""
        return self._binary_forward(x)


class BinaryConvTranspose2d(BinaryLayer, nn.ConvTranspose2d):
    """2-D transposed convolution with binarized weights and activations (``nn.ConvTranspose2d``).

    The latent weight has PyTorch's (C_in, C_out, k, k) layout; scales are per output channel
    (dim 1). Only ``groups=1`` is supported.
    """

    _channel_dim = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        output_padding: int | tuple[int, int] = 0,
        groups: int = 1,
        bias: bool = False,
        dilation: int | tuple[int, int] = 1,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        method: str | BinarizationMethod = "bidrn",
    ) -> None:
        if groups != 1:
            raise ValueError(f"BinaryConvTranspose2d supports groups=1 only, got groups={groups}")
        nn.ConvTranspose2d.__init__(
            self, in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
            dilation, padding_mode, device, dtype,
        )  # fmt: skip
        filter_width = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self._setup_binarization(method, in_channels, out_channels, filter_width)

    def _filters(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.transpose(0, 1).reshape(weight.shape[1], -1)

    def _unfilters(self, filters: torch.Tensor) -> torch.Tensor:
        in_channels, out_channels, *kernel = self.weight.shape
        return filters.reshape(out_channels, in_channels, *kernel).transpose(0, 1)

    def _real_valued_op(
        self, x: torch.Tensor, weight: torch.Tensor, output_size: list[int] | None = None
    ) -> torch.Tensor:
        output_padding = self._output_padding(
            x, output_size, list(self.stride), list(self.padding), list(self.kernel_size), 2,
            list(self.dilation),
        )  # fmt: skip
        return F.conv_transpose2d(
            x, weight, None, self.stride, self.padding, output_padding, self.groups, self.dilation
        )

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        """Binarize input and weight, transpose-convolve, then apply output scale and bias."""
        return self._binary_forward(x, output_size=output_size)


class BinaryLinear(BinaryLayer, nn.Linear):
    """Linear layer with binarized weights and activations (drop-in for ``nn.Linear``)."""

    _channel_dim = -1

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        method: str | BinarizationMethod = "bidrn",
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias, device, dtype)
        self._setup_binarization(method, in_features, out_features, in_features)

    def _filters(self, weight: torch.Tensor) -> torch.Tensor:
        return weight

    def _unfilters(self, filters: torch.Tensor) -> torch.Tensor:
        return filters

    def _real_valued_op(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Binarize input and weight, multiply, then apply output scale and bias."""
        return self._binary_forward(x)


def set_progress(model: nn.Module, epoch: int, total_epochs: int) -> int:
    """Advance every binary layer's schedules (ReCU τ, FDA terms and λ) to ``epoch`` (0-based).

    Call once at the start of every training epoch. Returns the number of binary layers updated.
    """
    layers = [module for module in model.modules() if isinstance(module, BinaryLayer)]
    for layer in layers:
        layer.set_progress(epoch, total_epochs)
    return len(layers)
