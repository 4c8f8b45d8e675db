"""The full-precision side of a frozen model: BatchNorm folded into convs, 1×1 convs as GEMMs.

BiDRN keeps some layers in full precision (the 7×7 stems, the Block Residual's 1×1 projections of
Eq. 11, the heads). In a frozen model they cost as much as in Hand4Whole, so they are made cheap
in two exact (up to float rounding) ways:

* :func:`fold_batchnorm_into_conv`: ``bn(conv(x))`` becomes one conv whose weight is scaled per
  output channel and whose bias absorbs the BatchNorm shift (the pairing is proven by
  :func:`bidrn.deploy.freeze.find_foldable_batchnorms`, exactly as for binary layers);
* :class:`PointwiseConv2d`: a 1×1 convolution (any stride, no padding) on a channels-last tensor
  *is* a matrix product of the (strided) pixels with the weight matrix; it runs as one ``addmm``
  instead of torch's conv dispatch, which on CPU picks slow paths for strided and
  non-channels-last 1×1 convs (measured: ``bidrn bench``, docs/deployment.md).

:func:`use_pointwise_convs` swaps every eligible ``nn.Conv2d``; it depends only on the module
tree, so :func:`bidrn.deploy.load` repeats it on the rebuilt skeleton and the state-dict keys stay
those of ``nn.Conv2d``.

Two reduced-precision modes, :func:`set_dense_precision`:

* ``"bf16"``: the full-precision convs (the 7×7 stems, the Block Residual projections of Eq. 11
  and the heads' 1×1 channel reductions, most of the full-precision time) take bfloat16 weights and
  inputs; oneDNN accumulates in float32 and torch rounds the result to bfloat16 once, then the
  float32 bias is added. On CPUs with bfloat16 dot products (AVX512_BF16, AMX, Arm BF16) the GEMMs
  run 2.5–3× and the stems 1.6× faster. On 1000 synthetic test samples it moves every Table 1
  column of the bundled model by at most 0.41 mm (MPVPE ±0.00 mm), though single meshes move by
  56 mm on average: the rounding flips signs that later binary layers see.
* ``"int8"``: as ``"bf16"`` where the CPU has bf16 dot products (else float32), and the convs
  whose input range the network guarantees (:func:`known_input_range`) as uint8 × int8 convs with
  float32 output, through oneDNN (PyTorch's x86 int8 backend; needs VNNI): the Block Residual
  projections, whose input a BiDRB's Hardtanh keeps in [-1, 1] (:class:`Int8PointwiseConv2d`),
  and the stems, which read images in [0, 1] (:class:`Int8Conv2d`).

``"auto"`` picks ``"int8"`` with VNNI, else ``"bf16"`` with bf16 dot products, else ``"fp32"``.
Their effect on accuracy is measured by ``benchmarks/dense_precision.py`` (docs/deployment.md).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bidrn.deploy import kernels
from bidrn.errors import BidrnError
from bidrn.nets.resnet import Stem

__all__ = [
    "DENSE_PRECISIONS",
    "Bf16Conv2d",
    "ChannelsLastMaxPool2d",
    "DensePrecision",
    "Int8Conv2d",
    "Int8PointwiseConv2d",
    "PointwiseConv2d",
    "batchnorm_factors",
    "channels_last_convs",
    "dense_precision",
    "fold_batchnorm_into_conv",
    "is_pointwise",
    "known_input_range",
    "resolve_dense_precision",
    "set_dense_precision",
    "set_input_range",
    "use_channels_last_pools",
    "use_pointwise_convs",
]

#: what :func:`set_dense_precision` accepts; ``"auto"`` is the fastest this CPU has native instructions for
DENSE_PRECISIONS = ("auto", "fp32", "bf16", "int8")
DensePrecision = Literal["auto", "fp32", "bf16", "int8"]
ResolvedPrecision = Literal["fp32", "bf16", "int8"]


class PointwiseConv2d(nn.Conv2d):
    """A 1×1 ``nn.Conv2d`` (groups 1, no padding, no dilation) computed as ``pixels @ weightᵀ + bias``.

    With a bfloat16 weight (:func:`set_dense_precision`) the pixels are rounded to bfloat16 too;
    the product is accumulated in float32, returned in bfloat16 (torch's CPU GEMM has no float32
    output for bf16 operands), and the float32 bias is added as it is widened back to float32.
    """

    def forward(self, x: Tensor) -> Tensor:
        """Same result as ``nn.Conv2d.forward``; the output is a float32 channels-last NCHW tensor."""
        stride_h, stride_w = self.stride
        if (stride_h, stride_w) != (1, 1):
            x = x[:, :, ::stride_h, ::stride_w]
        batch, _, height, width = x.shape
        return self._product(x).view(batch, height, width, self.out_channels).permute(0, 3, 1, 2)

    def _product(self, x: Tensor) -> Tensor:
        """``pixels @ weightᵀ + bias`` for the (already strided) input: (pixels, out_channels), float32."""
        channels = x.shape[1]
        weight = self.weight.reshape(self.out_channels, channels)
        if weight.dtype == torch.bfloat16:
            # One pass gathers the (strided) pixels and rounds them; adding the float32 bias
            # promotes the bf16 product back to float32 in the same pass.
            pixels = x.permute(0, 2, 3, 1).to(torch.bfloat16, memory_format=torch.contiguous_format)
            out = pixels.view(-1, channels) @ weight.t()
            return out.float() if self.bias is None else torch.add(out, self.bias)
        pixels = x.permute(0, 2, 3, 1).reshape(-1, channels)
        return pixels @ weight.t() if self.bias is None else torch.addmm(self.bias, pixels, weight.t())


class Bf16Conv2d(nn.Conv2d):
    """A full-precision conv whose weight was rounded to bfloat16 (:func:`set_dense_precision`).

    Its input is rounded to bfloat16 too; oneDNN accumulates in float32, the result comes back in
    bfloat16 and the float32 bias is added as it is widened to float32.
    """

    def forward(self, x: Tensor) -> Tensor:
        """``nn.Conv2d.forward`` on bf16-rounded operands; the output is float32."""
        out = F.conv2d(
            x.to(torch.bfloat16), self.weight, None, self.stride, self.padding, self.dilation, self.groups
        )
        return out.float() if self.bias is None else torch.add(out, self.bias.view(1, -1, 1, 1))


class ChannelsLastMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` on channels-last activations through the compiled kernels, float32 output.

    Torch's CPU max pooling computes the argmax indices even when nobody asks for them; a stem's
    3×3/2 pooling of 2×64×128×128 took 1.5–1.7 ms, :func:`bidrn.deploy.kernels.max_pool_nhwc` 0.8.
    Same values (a maximum rounds nothing). It also accepts a bfloat16 input (an int8 stem's
    output, :class:`Int8Conv2d`) and returns it widened to float32, which the packed layers read.
    Other inputs (NCHW, other types) run ``nn.MaxPool2d``, widened to float32 as well.
    """

    def forward(self, x: Tensor) -> Tensor:
        """``nn.MaxPool2d.forward(x)`` as float32."""
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        if channels_last and x.dtype in (torch.float32, torch.bfloat16) and x.device.type == "cpu":
            kernel, stride, padding = (kernels.pair(v) for v in (self.kernel_size, self.stride, self.padding))
            return kernels.max_pool_nhwc(x.permute(0, 2, 3, 1), kernel, stride, padding).permute(0, 3, 1, 2)
        return super().forward(x).float()


def use_channels_last_pools(model: nn.Module) -> int:
    """Turn every plain max pooling of ``model`` into :class:`ChannelsLastMaxPool2d` (in place); how many.

    Plain: no dilation, floor mode, no indices, padding at most half the kernel.
    """

    def plain(pool: nn.MaxPool2d) -> bool:
        (pad_h, pad_w), (kernel_h, kernel_w) = kernels.pair(pool.padding), kernels.pair(pool.kernel_size)
        windows_reach_input = 2 * pad_h <= kernel_h and 2 * pad_w <= kernel_w
        plain_options = kernels.pair(pool.dilation) == (1, 1) and not (pool.ceil_mode or pool.return_indices)
        return plain_options and windows_reach_input

    pools = [module for module in model.modules() if type(module) is nn.MaxPool2d and plain(module)]
    for pool in pools:
        pool.__class__ = ChannelsLastMaxPool2d
    return len(pools)


def known_input_range(conv: nn.Module) -> tuple[float, float] | None:
    """The range every element of ``conv``'s input lies in, where the network guarantees one.

    Set by :func:`set_input_range` (the frozen model's Block Residual projections read Hardtanh
    outputs, its stems read images in [0, 1]); int8 precision needs it. ``None`` when unknown.
    """
    return getattr(conv, "input_range", None)


def set_input_range(conv: nn.Conv2d, low: float, high: float) -> None:
    """Record that every element of ``conv``'s input lies in ``[low, high]`` (finite, low < high)."""
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"an input range must be finite and non-empty, not [{low}, {high}]")
    conv.input_range = (float(low), float(high))


def _uint8_grid(low: float, high: float) -> tuple[float, int]:
    """(step, zero point) of the uint8 grid for inputs in [low, high].

    Non-negative inputs (images) take 255 steps up from zero point 0; signed ones (Hardtanh
    outputs) 127 steps either side of zero point 128, so that 0 is exact and [-1, 1] fits.
    """
    if low >= 0:
        return high / 255, 0
    return max(-low, high) / 127, 128


def _int8_weight(conv: nn.Conv2d) -> tuple[Tensor, Tensor]:
    """``conv``'s weight per output channel as int8 codes and float32 steps (symmetric, ±127).

    Made 64 output channels at a time, so that loading a paper-size model does not need float
    temporaries as large as its largest weight (8 MB) next to all the others.
    """
    weight = conv.weight.detach().float()
    rows = weight.reshape(weight.shape[0], -1)
    scale = torch.empty(len(rows))
    codes = torch.empty(rows.shape, dtype=torch.int8)
    for start in range(0, len(rows), 64):
        block = slice(start, start + 64)
        scale[block] = rows[block].abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127
        codes[block] = torch.round(rows[block] / scale[block, None])  # whole numbers in [-127, 127]
    return codes.view(weight.shape), scale


class Int8PointwiseConv2d(PointwiseConv2d):
    """A :class:`PointwiseConv2d` with a known input range, run as a uint8 × int8 GEMM (``"int8"`` precision).

    Made in place by :meth:`quantize`. The input is quantized with a fixed step on the grid of its
    range (:func:`bidrn.deploy.kernels.quantize_u8`, one pass that also gathers strided pixels);
    the weight, per output channel, symmetrically to int8 (it replaces the float weight). oneDNN
    (``torch.ops.onednn``, PyTorch's x86 int8 backend) multiplies them with VNNI dot products,
    exact in int32, and returns ``step · weight_step · sum + bias`` in float32. The network
    guarantees the range (:func:`set_input_range`), so no input is clamped.
    """

    @classmethod
    @torch.no_grad()
    def quantize(cls, conv: PointwiseConv2d) -> Int8PointwiseConv2d:
        """Turn ``conv`` (float32 weight, input range set) into an int8 conv in place and return it."""
        bounds = known_input_range(conv)
        if bounds is None or conv.weight.dtype != torch.float32:
            raise ValueError("only float32 pointwise convs with a known input range can run in int8")
        codes, scale = _int8_weight(conv)
        conv.__class__ = cls
        conv.weight = nn.Parameter(codes, requires_grad=False)
        conv.weight_scale = scale
        conv.weight_zero_point = torch.zeros(conv.out_channels, dtype=torch.int64)
        conv.packed_weight = torch.ops.onednn.qlinear_prepack(codes.flatten(1), None)
        conv.input_step, conv.input_zero_point = _uint8_grid(*bounds)
        return conv

    def _product(self, x: Tensor) -> Tensor:
        """The uint8 × int8 product with the bias, (pixels, out_channels) float32 (up to int8 rounding)."""
        step, zero_point = self.input_step, self.input_zero_point
        pixels = kernels.quantize_u8(x.permute(0, 2, 3, 1), 1 / step, zero_point).view(-1, x.shape[1])
        return torch.ops.onednn.qlinear_pointwise(
            pixels, step, zero_point, self.packed_weight, self.weight_scale, self.weight_zero_point,
            self.bias, 1.0, 0, torch.float32, "none", [], "",
        )  # fmt: skip


class Int8Conv2d(nn.Conv2d):
    """A k×k conv with a known non-negative input range (a stem reading images in [0, 1]) in uint8 × int8.

    Made in place by :meth:`quantize`: the input is quantized on the 255-step grid of its range,
    the weight per output channel to int8, and oneDNN's int8 conv (zero padding is exact with zero
    point 0) returns float32 with the bias. The range comes from the model's input contract, not
    from its construction, so each call checks it: an input outside it runs the float32 conv (the
    float weight is kept, a stem's is small), never a clamped one.

    ``output_dtype`` may be set to bfloat16 where the next layer reads it
    (:func:`set_dense_precision` does so for a stem whose max pooling widens it back): half the
    bytes written, 0.7 ms of the hand stem's 3.8.
    """

    @classmethod
    @torch.no_grad()
    def quantize(cls, conv: nn.Conv2d) -> Int8Conv2d:
        """Turn ``conv`` (float32 weight, non-negative input range set) into an int8 conv in place."""
        bounds = known_input_range(conv)
        if (
            bounds is None
            or bounds[0] < 0
            or conv.weight.dtype != torch.float32
            or conv.padding_mode != "zeros"
        ):
            raise ValueError("only float32 zero-padded convs with a non-negative input range can run in int8")
        codes, scale = _int8_weight(conv)
        conv.__class__ = cls
        conv.weight_scale = scale
        conv.weight_zero_point = torch.zeros(conv.out_channels, dtype=torch.int64)
        conv.input_step, _ = _uint8_grid(*bounds)
        conv.output_dtype = torch.float32
        conv.packed_weight = torch.ops.onednn.qconv_prepack(
            codes, scale, conv.input_step, 0, list(conv.stride), list(conv.padding), list(conv.dilation),
            conv.groups, None,
        )  # fmt: skip
        return conv

    def forward(self, x: Tensor) -> Tensor:
        """``nn.Conv2d.forward`` up to int8 rounding, in ``output_dtype`` (outside the range: it, float32)."""
        low, high = self.input_range
        seen_low, seen_high = torch.aminmax(x)
        if seen_low < low or seen_high > high:
            return super().forward(x)
        # One step for every element, so the layout does not matter: the whole tensor is quantized as
        # one row (a stem's 3 channels made the pixel loop 10x slower), and only the uint8 codes are
        # made channels-last.
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else None
        elements = (x.permute(0, 2, 3, 1) if layout else x.contiguous()).reshape(1, 1, 1, -1)
        codes = kernels.quantize_u8(elements, 1 / self.input_step, 0)
        if layout:
            codes = codes.view(x.shape[0], *x.shape[2:], x.shape[1]).permute(0, 3, 1, 2)
        else:
            codes = codes.view(x.shape).contiguous(memory_format=torch.channels_last)
        return torch.ops.onednn.qconv2d_pointwise(
            codes, self.input_step, 0, self.packed_weight, self.weight_scale, self.weight_zero_point,
            self.bias, list(self.stride), list(self.padding), list(self.dilation), self.groups,
            1.0, 0, self.output_dtype, "none", [], "",
        )  # fmt: skip


_INT8_CONVS = (Int8PointwiseConv2d, Int8Conv2d)


def _rounds_to_bf16(module: nn.Module) -> bool:
    """Whether :func:`set_dense_precision` rounds ``module``: 1×1 GEMMs and plain zero-padded convs."""
    plain = type(module) is nn.Conv2d and module.padding_mode == "zeros"
    return plain or isinstance(module, PointwiseConv2d | Bf16Conv2d)


def resolve_dense_precision(precision: DensePrecision) -> ResolvedPrecision:
    """``precision`` with ``"auto"`` decided for this CPU: int8 with VNNI, else bf16, else fp32.

    ``"auto"`` takes bf16 where the CPU has bf16 dot products. Raises
    :class:`~bidrn.errors.BidrnError` for ``"int8"`` without VNNI.
    """
    if precision not in DENSE_PRECISIONS:
        raise BidrnError(f"dense precision must be one of {', '.join(DENSE_PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        if kernels.native_int8():
            return "int8"
        return "bf16" if kernels.native_bf16() else "fp32"
    if precision == "int8" and not kernels.native_int8():
        raise BidrnError(
            "dense precision int8 needs a CPU with int8 dot products (AVX512_VNNI or AVX-VNNI) "
            "and the compiled kernels; use bf16 or fp32"
        )
    return precision


def dense_precision(model: nn.Module) -> ResolvedPrecision:
    """The precision ``model``'s full-precision convs run in (fp32 when it has none)."""
    modules = list(model.modules())
    if any(isinstance(m, _INT8_CONVS) for m in modules):
        return "int8"
    rounded = any(_rounds_to_bf16(m) and m.weight.dtype == torch.bfloat16 for m in modules)
    return "bf16" if rounded else "fp32"


@torch.no_grad()
def set_dense_precision(model: nn.Module, precision: DensePrecision = "auto") -> ResolvedPrecision:
    """Run the full-precision convs of a frozen model in ``precision`` (in place); returns what it runs.

    ``"bf16"`` replaces the weight of every :class:`PointwiseConv2d` and plain zero-padded
    ``nn.Conv2d`` (which becomes a :class:`Bf16Conv2d`) by its bfloat16 rounding (half the memory);
    biases, linear layers and the packed layers' epilogues stay float32. ``"int8"`` first turns
    every conv with a known input range (:func:`known_input_range`) into an
    :class:`Int8PointwiseConv2d` or :class:`Int8Conv2d`, then rounds the rest to bfloat16 where the
    CPU has bf16 dot products. The rounding cannot be undone: asking a rounded model for another
    precision raises, and :func:`bidrn.deploy.save` refuses it; load the file again. (The heads' 1×1
    convs read unbounded features and stay bf16: quantizing them per call on their own range was
    measured slower, 144 vs 141 ms for the whole paper-size model; their inputs are 128 pixels.)
    """
    resolved = resolve_dense_precision(precision)
    current = dense_precision(model)
    if resolved == current:
        return resolved
    if current != "fp32":
        raise BidrnError(
            f"this model's conv weights were rounded to {current}; load the file again for {resolved}"
        )
    if resolved == "int8":
        for module in model.modules():
            bounds = known_input_range(module)
            if bounds is None:
                continue
            if isinstance(module, PointwiseConv2d):
                Int8PointwiseConv2d.quantize(module)
            elif type(module) is nn.Conv2d and module.padding_mode == "zeros" and bounds[0] >= 0:
                Int8Conv2d.quantize(module)
        _narrow_stem_outputs(model)
    if resolved == "bf16" or (resolved == "int8" and kernels.native_bf16()):
        for module in model.modules():
            if _rounds_to_bf16(module) and not isinstance(module, _INT8_CONVS):
                if type(module) is nn.Conv2d:
                    module.__class__ = Bf16Conv2d
                module.weight.data = module.weight.data.to(torch.bfloat16)
    return dense_precision(model)


def _narrow_stem_outputs(model: nn.Module) -> None:
    """Let int8 stems write bfloat16 where the stem's max pooling reads it (and widens it back)."""
    for stem in model.modules():
        if (
            isinstance(stem, Stem)
            and isinstance(stem.conv, Int8Conv2d)
            and isinstance(stem.bn, nn.Identity)
            and isinstance(stem.activation, nn.Identity)
            and isinstance(stem.pool, ChannelsLastMaxPool2d)
        ):
            stem.conv.output_dtype = torch.bfloat16


def is_pointwise(module: nn.Module) -> bool:
    """Whether ``module`` is a plain full-precision 1×1 conv that :class:`PointwiseConv2d` can run."""
    return (
        type(module) is nn.Conv2d
        and module.kernel_size == (1, 1)
        and module.padding in ((0, 0), "valid")
        and module.dilation == (1, 1)
        and module.groups == 1
    )


def use_pointwise_convs(model: nn.Module) -> list[str]:
    """Turn every plain 1×1 ``nn.Conv2d`` of ``model`` into a :class:`PointwiseConv2d` (in place).

    The parameters are shared, not copied. Returns the names of the converted convs.
    """
    names = [name for name, module in model.named_modules() if is_pointwise(module)]
    for name in names:
        model.get_submodule(name).__class__ = PointwiseConv2d
    return names


def channels_last_convs(model: nn.Module) -> nn.Module:
    """Store every full-precision conv weight channels-last, in place; returns ``model``.

    Unlike ``model.to(memory_format=torch.channels_last)``, which converts every 4-D tensor, this
    leaves packed layers' bit tensors in their own layout (no copies).
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            weight = module.weight
            if not weight.is_meta and not weight.is_contiguous(memory_format=torch.channels_last):
                weight.data = weight.data.contiguous(memory_format=torch.channels_last)
    return model


def batchnorm_factors(batchnorm: nn.Module) -> tuple[Tensor, Tensor]:
    """(scale, shift) with ``bn(y) = y * scale + shift`` in eval mode, in float64."""
    std = torch.sqrt(batchnorm.running_var.double() + batchnorm.eps)
    gamma = batchnorm.weight.double() if batchnorm.weight is not None else torch.ones_like(std)
    beta = batchnorm.bias.double() if batchnorm.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    return scale, beta - batchnorm.running_mean.double() * scale


@torch.no_grad()
def fold_batchnorm_into_conv(conv: nn.Conv2d, batchnorm: nn.BatchNorm2d) -> None:
    """Make ``conv`` compute ``batchnorm(conv(x))`` (eval-mode statistics), in place.

    The weight is scaled by ``γ / √(σ² + ε)`` per output channel and the bias (created when the
    conv had none) becomes ``b · γ / √(σ² + ε) + β − μ · γ / √(σ² + ε)``, computed in float64.
    """
    scale, shift = batchnorm_factors(batchnorm)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    conv.weight.copy_(conv.weight.double() * scale.view(-1, 1, 1, 1))
    folded_bias = (bias * scale + shift).to(conv.weight.dtype)
    if conv.bias is None:
        conv.bias = nn.Parameter(folded_bias)
    else:
        conv.bias.copy_(folded_bias)
