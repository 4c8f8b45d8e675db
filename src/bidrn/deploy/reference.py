"""Pure-torch reference path for packed binary layers (always available; defines exactness).

Each function unpacks the stored sign bits to ±1 float32, binarizes the input the same way the
packed path does (``x < threshold`` -> −1, so sign(0) = +1) and runs the ordinary torch op. With
±1 operands the result is an exact integer (|values| <= C·k·k < 2^24): the same integers the
XOR-popcount kernels compute, zero padding included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bidrn.deploy.packing import binarize, unpack_weight


def signs(x: Tensor, threshold: Tensor | None = None) -> Tensor:
    """±1 float32 activations of ``x`` (channels on dim 1): −1 where ``x < threshold``."""
    return 1.0 - 2.0 * binarize(x, threshold).to(torch.float32)


def binary_conv2d(
    x: Tensor,
    weight_bits: Tensor,
    in_channels: int,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    threshold: Tensor | None = None,
) -> Tensor:
    """Integer-valued ``conv2d(sign(x), sign(w))`` with zero padding, as float32 ``(N, O, OH, OW)``."""
    weight = unpack_weight(weight_bits, in_channels)
    return F.conv2d(signs(x.float(), threshold), weight, stride=stride, padding=padding, dilation=dilation)


def binary_conv_transpose2d(
    x: Tensor,
    weight_bits: Tensor,
    in_channels: int,
    stride: tuple[int, int],
    padding: tuple[int, int],
    output_padding: tuple[int, int],
    dilation: tuple[int, int],
    threshold: Tensor | None = None,
) -> Tensor:
    """Integer-valued ``conv_transpose2d(sign(x), sign(w))``.

    ``weight_bits`` is ``(O, kh, kw, words over C_in)``: the transposed conv's weight
    ``(C_in, O, kh, kw)`` with its output channel first, packed like a conv weight.
    """
    weight = unpack_weight(weight_bits, in_channels).transpose(0, 1)
    return F.conv_transpose2d(
        signs(x.float(), threshold),
        weight,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
    )


def binary_linear(
    x: Tensor, weight_bits: Tensor, in_features: int, threshold: Tensor | None = None
) -> Tensor:
    """Integer-valued ``linear(sign(x), sign(w))`` for ``x`` of shape ``(..., in_features)``."""
    weight = unpack_weight(weight_bits, in_features)
    negative = x.float() < (0.0 if threshold is None else threshold)
    return F.linear(1.0 - 2.0 * negative.to(torch.float32), weight)
