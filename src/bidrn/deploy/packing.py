"""Bit packing of ±1 tensors into 64-bit words, and the kernels' weight layout.

Format (shared by weights, activations, the reference path and the compiled kernels):

* channels are packed along the **last** dimension (channels-last), 64 per word, channel ``c`` in
  word ``c // 64`` at bit ``c % 64``; words are stored as ``torch.int64`` (same bits as uint64);
* **bit 1 means −1** (the value is negative / below its threshold), bit 0 means +1, so
  sign(0) = +1, as in the binarized layers (docs/design/binarizers.md §1);
* unused high bits of the last word are 0 in both operands, so they never count in
  ``popcount(a XOR w)``.

A binary convolution over ``K`` valid bits is then ``K − 2·popcount(a XOR w)`` (docs/design/binarizers.md §7).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: bits per packed word
WORD_BITS = 64
#: output channels per job of the compiled kernels; kernel-layout tensors are padded to a multiple
OUT_CHANNEL_CHUNK = 32
#: output channels side by side in the kernel weight layout
OUT_CHANNEL_BLOCK = 8

_BIT_SHIFTS = torch.arange(WORD_BITS, dtype=torch.int64)


def words_for(channels: int) -> int:
    """Number of 64-bit words that hold ``channels`` bits."""
    return (channels + WORD_BITS - 1) // WORD_BITS


def pack_bits(negative: Tensor) -> Tensor:
    """Pack a boolean tensor ``(..., C)`` (True = −1) into int64 words ``(..., ceil(C / 64))``."""
    channels = negative.shape[-1]
    words = words_for(channels)
    padded = torch.zeros((*negative.shape[:-1], words * WORD_BITS), dtype=torch.int64, device=negative.device)
    padded[..., :channels] = negative.to(torch.int64)
    bits = padded.view(*negative.shape[:-1], words, WORD_BITS) << _BIT_SHIFTS.to(negative.device)
    # Distinct powers of two: their sum is their bitwise OR (bit 63 wraps to the sign bit).
    return bits.sum(dim=-1)


def unpack_bits(words: Tensor, channels: int) -> Tensor:
    """Inverse of :func:`pack_bits`: int64 words ``(..., W)`` -> boolean ``(..., channels)`` (True = −1)."""
    bits = (words.unsqueeze(-1) >> _BIT_SHIFTS.to(words.device)) & 1
    return bits.flatten(-2)[..., :channels].bool()


def binarize(x: Tensor, threshold: Tensor | None = None) -> Tensor:
    """Boolean "is −1" mask of ``x`` along dim 1 (channels): ``x < threshold`` (0 when None)."""
    if threshold is None:
        return x < 0
    shape = [1] * x.dim()
    shape[1] = -1
    return x < threshold.view(shape)


def pack_weight(weight_sign: Tensor) -> Tensor:
    """Pack a ±1 conv/linear weight ``(O, C, *kernel)`` to ``(O, *kernel, ceil(C / 64))`` words."""
    channels_last = weight_sign.movedim(1, -1)
    return pack_bits(channels_last < 0)


def unpack_weight(weight_bits: Tensor, in_channels: int) -> Tensor:
    """Inverse of :func:`pack_weight`: words ``(O, *kernel, W)`` -> ±1 float32 ``(O, C, *kernel)``."""
    negative = unpack_bits(weight_bits, in_channels)
    signs = 1.0 - 2.0 * negative.to(torch.float32)
    return signs.movedim(-1, 1).contiguous()


@dataclass(frozen=True)
class KernelWeights:
    """Weights of one packed convolution in the compiled kernels' layout.

    Attributes:
        weights: int64 ``(O_pad / 8, taps, words, 8)``: eight output channels side by side per word.
        tap_sums: int32 ``(taps, O_pad)``: ``Σ_c sign(w[o, c, tap])``, the value a tap adds when it
            lands on zero padding (packed as +1), subtracted again at border pixels.
        out_channels_padded: ``O`` rounded up to a multiple of :data:`OUT_CHANNEL_CHUNK`.
    """

    weights: Tensor
    tap_sums: Tensor
    out_channels_padded: int


def padded_out_channels(out_channels: int) -> int:
    """``out_channels`` rounded up to the kernels' chunk of output channels."""
    return -(-out_channels // OUT_CHANNEL_CHUNK) * OUT_CHANNEL_CHUNK


def popcount(words: Tensor) -> Tensor:
    """Set bits of each int64 word (bitwise population count), as int64, without unpacking the bits.

    SWAR on bits 0-62 (the sign bit is counted apart, so no step overflows or shifts in sign copies);
    works on any shape, empty ones included.
    """
    x = words & 0x7FFFFFFFFFFFFFFF
    x = x - ((x >> 1) & 0x5555555555555555)  # 2-bit counts
    x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333)  # 4-bit counts
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0F  # 8-bit counts
    x = x + (x >> 8)
    x = x + (x >> 16)
    x = x + (x >> 32)  # the low byte holds the sum of the eight (at most 63)
    return (x & 0x7F) + (words < 0)


def kernel_weights(weight_bits: Tensor, in_channels: int) -> KernelWeights:
    """Reorder packed weights ``(O, kh, kw, W)`` into the kernels' layout and add tap sums."""
    out_channels, kernel_h, kernel_w, words = weight_bits.shape
    taps = kernel_h * kernel_w
    padded = padded_out_channels(out_channels)
    bits = torch.zeros((padded, taps, words), dtype=torch.int64)
    bits[:out_channels] = weight_bits.reshape(out_channels, taps, words)
    layout = bits.view(padded // OUT_CHANNEL_BLOCK, OUT_CHANNEL_BLOCK, taps, words).permute(0, 2, 3, 1)
    negative = popcount(bits[:out_channels]).sum(dim=-1)  # bit 1 = -1; unused bits are 0
    tap_sums = torch.zeros((taps, padded), dtype=torch.int32)
    tap_sums[:, :out_channels] = (in_channels - 2 * negative).t().to(torch.int32)
    return KernelWeights(layout.contiguous(), tap_sums.contiguous(), padded)
