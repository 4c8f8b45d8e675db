"""Binary layers: convolution, transposed convolution and linear with 1-bit weights and activations.

Like Larq's ``QuantConv2D(input_quantizer=..., kernel_quantizer=...)``, each layer is its PyTorch
counterpart (same constructor arguments, latent real weight in ``.weight``, same state-dict keys)
plus a :class:`~bidrn.binary.methods.BinarizationMethod`: an activation quantizer and a weight
quantizer (:mod:`bidrn.binary.quantizers`). The layer knows nothing about any particular method; it
asks its quantizers to build their per-layer state, to quantize, to advance their schedules and for
their inference terms. Two slots are common to every layer and ``None`` unless a quantizer fills
them: ``input_threshold`` (C_in) and ``output_scale`` (C_out, applied by the layer to its output).

In eval mode every registered method computes

    y = conv(sign-bits(x), sign(w)) · weight_scale[o] · output_scale[o] · β(x) + bias[o]

with ``sign(0) = +1``; :meth:`BinaryLayer.inference_terms` returns those terms for freezing.
Zero padding pads the ±1 activations with 0, exactly as in the simulated networks of the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from bidrn.binary.methods import BinarizationMethod, get_method

__all__ = [
    "BinaryConv2d",
    "BinaryConvTranspose2d",
    "BinaryLayer",
    "BinaryLinear",
    "InferenceTerms",
    "set_progress",
]


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
    """Mixin shared by the binary layers: it holds the method and asks its quantizers.

    Subclasses are ``nn.Module`` s that define :meth:`_filters` (the weight as a (C_out, d) matrix),
    :meth:`_unfilters` (its inverse), ``_channel_dim`` (where input channels sit) and ``_real_valued_op``
    (the real-valued operation without bias).
    """

    method: BinarizationMethod
    weight: nn.Parameter
    bias: nn.Parameter | None
    input_threshold: nn.Parameter | None
    output_scale: nn.Parameter | None
    _channel_dim: int

    def _setup_binarization(
        self, method: str | BinarizationMethod, in_channels: int, out_channels: int, filter_width: int
    ) -> None:
        self.method = get_method(method)
        self.register_parameter("input_threshold", None)
        self.register_parameter("output_scale", None)
        self.method.activation.build(self, in_channels)
        self.method.weight.build(self, out_channels, filter_width)

    @property
    def channel_dim(self) -> int:
        """The dimension of the layer input (and output) that holds channels: 1, or -1 for linear."""
        return self._channel_dim

    def channel_view(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A per-channel vector ``values`` (C,) shaped to broadcast along the channels of ``like``."""
        shape = [1] * like.dim()
        shape[self._channel_dim] = -1
        return values.view(shape)

    def set_progress(self, epoch: int, total_epochs: int) -> None:
        """Advance the quantizers' schedules (e.g. ReCU τ, FDA terms and λ) to ``epoch`` (0-based)."""
        self.method.activation.set_progress(self, epoch, total_epochs)
        self.method.weight.set_progress(self, epoch, total_epochs)

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """The binarized activation exactly as the forward pass uses it (±1, or ±β for XNOR).

        When ``self.method.activation.input_only``, the result depends on ``x`` (and the training
        flag) alone, so layers with equal activation quantizers that read the same ``x`` can share it
        through :meth:`forward_quantized`.
        """
        return self.method.activation(x, self)

    def quantized_weight(self) -> torch.Tensor:
        """The effective weight the forward pass uses (e.g. α_o·sign(w), Eq. 4)."""
        return self._unfilters(self.method.weight(self._filters(self.weight), self))

    @torch.no_grad()
    def inference_terms(self) -> InferenceTerms:
        """The eval-mode terms of this layer, for freezing to packed bits (see :class:`InferenceTerms`)."""
        activation = self.method.activation.inference_terms(self)
        weight = self.method.weight.inference_terms(self._filters(self.weight), self)
        return InferenceTerms(
            weight_sign=self._unfilters(weight.weight_sign),
            weight_scale=weight.weight_scale,
            input_threshold=activation.input_threshold,
            input_scale=activation.input_scale,
            output_scale=None if self.output_scale is None else self.output_scale.detach().clone(),
        )

    def forward_quantized(self, quantized_input: torch.Tensor, **kwargs) -> torch.Tensor:
        """The layer's output for an input already passed through :meth:`quantize_input`."""
        y = self._real_valued_op(quantized_input, self.quantized_weight(), **kwargs)
        if self.output_scale is not None:
            y = y * self.channel_view(self.output_scale, y)
        if self.bias is not None:
            y = y + self.channel_view(self.bias, y)
        return y

    def _binary_forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.forward_quantized(self.quantize_input(x), **kwargs)

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
    """Advance every binary layer's quantizer schedules (ReCU τ, FDA terms and λ) to ``epoch`` (0-based).

    Call once at the start of every training epoch. Returns the number of binary layers updated.
    """
    layers = [module for module in model.modules() if isinstance(module, BinaryLayer)]
    for layer in layers:
        layer.set_progress(epoch, total_epochs)
    return len(layers)
