"""Frozen binary layers: packed sign bits plus a per-output-channel multiply and add.

A frozen layer computes, in eval-mode semantics of :class:`bidrn.binary.BinaryLayer` (see
docs/design/binarizers.md §7)::

    y[n, o] = (K − 2·popcount(bits(x[n]) XOR bits(w[o]))) · multiplier[o] · β[n] + addend[o]

* ``bits(x)``: bit 1 where ``x < input_threshold`` (ReActNet's RSign; threshold 0 otherwise), so
  sign(0) = +1; zero padding is exact (border correction with per-tap weight sums);
* ``multiplier[o]``: weight scale α_o (× ReCU's learnable output scale) × the BatchNorm factor
  γ_o/√(σ²_o+ε) when a BatchNorm directly follows and was folded;
* ``addend[o]``: the layer bias and the BatchNorm shift, folded the same way;
* ``β[n]``: XNOR-Net's per-sample mean |x| (only when ``input_scale``), computed while packing.

Layers run on the compiled kernels when :func:`bidrn.deploy.kernels.use_compiled` says so and the
input is a float32 CPU tensor; otherwise on the pure-torch reference path, which gives the same
integers. Outputs of convolutions are channels-last tensors.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from bidrn.deploy import kernels, reference
from bidrn.deploy.kernels import ConvPhase
from bidrn.deploy.packing import kernel_weights, padded_out_channels, words_for

__all__ = ["PackedBinaryConv2d", "PackedBinaryConvTranspose2d", "PackedBinaryLayer", "PackedBinaryLinear"]


class PackedBinaryLayer(kernels.CallPlanCache, nn.Module):
    """Base of the frozen layers: packed weight bits, epilogue vectors and kernel preparation.

    Buffers (all in the state dict): ``weight_bits`` int64 ``(O, *kernel, ceil(C_in / 64))``,
    ``multiplier`` and ``addend`` float32 ``(O,)``, and ``input_threshold`` float32 ``(C_in,)`` when
    the method has one. The kernels' own layout is derived from them on first use.
    """

    kind: str = ""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, ...],
        input_scale: bool,
        has_threshold: bool,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.input_scale = input_scale
        self.register_buffer(
            "weight_bits", torch.zeros((out_channels, *kernel, words_for(in_channels)), dtype=torch.int64)
        )
        self.register_buffer("multiplier", torch.ones(out_channels))
        self.register_buffer("addend", torch.zeros(out_channels))
        self.register_buffer("input_threshold", torch.zeros(in_channels) if has_threshold else None)
        self._prepared: tuple[list[ConvPhase], Tensor, Tensor] | None = None
        self._plans: dict[tuple, kernels.ConvPlan] = {}  # (input shape, strides, ISA generation) -> plan
        self.register_load_state_dict_post_hook(lambda module, _keys: module.invalidate())

    def invalidate(self) -> None:
        """Forget the derived kernel layout and call plans (after the buffers change)."""
        self._prepared = None
        self._plans = {}

    def _apply(self, fn, recurse=True):
        self.invalidate()
        return super()._apply(fn, recurse)

    def config(self) -> dict[str, Any]:
        """Constructor arguments, as stored in a frozen file's metadata."""
        return {
            "kind": self.kind,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "input_scale": self.input_scale,
            "has_threshold": self.input_threshold is not None,
        }

    def set_terms(
        self, weight_bits: Tensor, multiplier: Tensor, addend: Tensor, threshold: Tensor | None
    ) -> None:
        """Fill the buffers (shapes as in the class docstring)."""
        self.weight_bits.copy_(weight_bits)
        self.multiplier.copy_(multiplier)
        self.addend.copy_(addend)
        if threshold is not None:
            self.input_threshold.copy_(threshold)
        self.invalidate()

    def _phases(self) -> list[ConvPhase]:
        raise NotImplementedError

    def _kernel_operands(self) -> tuple[list[ConvPhase], Tensor, Tensor]:
        if self._prepared is None:
            padded = padded_out_channels(self.out_channels)
            multiplier = torch.zeros(padded)
            addend = torch.zeros(padded)
            multiplier[: self.out_channels] = self.multiplier.float()
            addend[: self.out_channels] = self.addend.float()
            self._prepared = (self._phases(), multiplier, addend)
        return self._prepared

    def _threshold(self) -> Tensor | None:
        return None if self.input_threshold is None else self.input_threshold.float().contiguous()

    def _use_kernels(self, x: Tensor) -> bool:
        fused_scale_ok = not (self.input_scale and self.input_threshold is not None)
        return (
            fused_scale_ok and x.device.type == "cpu" and x.dtype == torch.float32 and kernels.use_compiled()
        )

    def _sample_scale(self, x: Tensor, channel_dim: int) -> Tensor:
        """β = mean|x − threshold| over every non-batch dimension, shaped to broadcast (reference path)."""
        if self.input_threshold is not None:
            shape = [1] * x.dim()
            shape[channel_dim] = -1
            x = x - self.input_threshold.view(shape)
        return x.abs().mean(dim=tuple(range(1, x.dim())), keepdim=True)

    def _epilogue(self, accumulator: Tensor, x: Tensor, channel_dim: int) -> Tensor:
        shape = [1] * accumulator.dim()
        shape[channel_dim] = -1
        multiplier = self.multiplier.float().view(shape)
        if self.input_scale:
            multiplier = multiplier * self._sample_scale(x.float(), channel_dim)
        return accumulator * multiplier + self.addend.float().view(shape)

    def extra_repr(self) -> str:
        """Describe the layer for ``print(module)``."""
        extras = ", threshold" if self.input_threshold is not None else ""
        extras += ", per-sample scale" if self.input_scale else ""
        return f"{self.in_channels}, {self.out_channels}{extras}"


class PackedBinaryConv2d(PackedBinaryLayer):
    """Frozen :class:`bidrn.binary.BinaryConv2d` (groups = 1, zero padding)."""

    kind = "conv2d"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        input_scale: bool = False,
        has_threshold: bool = False,
    ) -> None:
        self.kernel_size = kernels.pair(kernel_size)
        self.stride = kernels.pair(stride)
        self.padding = kernels.pair(padding)
        self.dilation = kernels.pair(dilation)
        super().__init__(in_channels, out_channels, self.kernel_size, input_scale, has_threshold)

    def config(self) -> dict[str, Any]:
        """Constructor arguments, as stored in a frozen file's metadata."""
        geometry = {
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
        }
        return {**super().config(), **geometry}

    def _phases(self) -> list[ConvPhase]:
        weights = kernel_weights(self.weight_bits.cpu(), self.in_channels)
        offset = (-self.padding[0], -self.padding[1])
        return [ConvPhase(weights, self.kernel_size, self.stride, self.dilation, offset)]

    def out_size(self, height: int, width: int) -> tuple[int, int]:
        """Output height and width for an input of ``height x width``."""
        size = []
        for axis, extent in enumerate((height, width)):
            k, s, p, d = self.kernel_size[axis], self.stride[axis], self.padding[axis], self.dilation[axis]
            size.append((extent + 2 * p - d * (k - 1) - 1) // s + 1)
        return size[0], size[1]

    def forward(self, x: Tensor) -> Tensor:
        """Binary convolution of ``x`` (N, C, H, W) with the fused epilogue."""
        if not self._use_kernels(x):
            accumulator = reference.binary_conv2d(
                x,
                self.weight_bits,
                self.in_channels,
                self.stride,
                self.padding,
                self.dilation,
                self._threshold(),
            )
            return self._epilogue(accumulator, x, 1)
        x_nhwc = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        if self.input_scale:
            phases, multiplier, addend = self._kernel_operands()
            out_h, out_w = self.out_size(x.shape[2], x.shape[3])
            out = kernels.packed_conv(
                x_nhwc, phases, out_h, out_w, self.out_channels, multiplier, addend, self._threshold(), True
            )
            return out.permute(0, 3, 1, 2)
        key = (x_nhwc.shape, x_nhwc.stride(), kernels.generation())
        plan = self._plans.get(key)
        if plan is None:
            phases, multiplier, addend = self._kernel_operands()
            out_size = self.out_size(x.shape[2], x.shape[3])
            plan = kernels.plan_conv(
                x_nhwc, phases, self.out_channels, out_size, multiplier, addend, self._threshold()
            )
            self._plans[key] = plan
        out = plan(x_nhwc)
        return out.permute(0, 3, 1, 2)


class PackedBinaryConvTranspose2d(PackedBinaryLayer):
    """Frozen :class:`bidrn.binary.BinaryConvTranspose2d` (groups = 1).

    ``weight_bits`` is ``(O, kh, kw, words over C_in)``. The kernels run a stride-s transposed
    conv as s·s ordinary stride-1 convolutions over the packed input, one per output phase
    (sub-pixel decomposition), so no zeros are inserted and no work is wasted; dilation > 1 runs
    on the reference path.
    """

    kind = "conv_transpose2d"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        output_padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        input_scale: bool = False,
        has_threshold: bool = False,
    ) -> None:
        self.kernel_size = kernels.pair(kernel_size)
        self.stride = kernels.pair(stride)
        self.padding = kernels.pair(padding)
        self.output_padding = kernels.pair(output_padding)
        self.dilation = kernels.pair(dilation)
        super().__init__(in_channels, out_channels, self.kernel_size, input_scale, has_threshold)

    def config(self) -> dict[str, Any]:
        """Constructor arguments, as stored in a frozen file's metadata."""
        geometry = {
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "output_padding": self.output_padding,
            "dilation": self.dilation,
        }
        return {**super().config(), **geometry}

    def _phases(self) -> list[ConvPhase]:
        bits = self.weight_bits.cpu()
        phases = []
        for row in range(self.stride[0]):
            taps_h, first_h = self._phase_taps(row, 0)
            for col in range(self.stride[1]):
                taps_w, first_w = self._phase_taps(col, 1)
                sub = bits[:, taps_h][:, :, taps_w]
                phases.append(
                    ConvPhase(
                        kernel_weights(sub.contiguous(), self.in_channels),
                        (len(taps_h), len(taps_w)),
                        (1, 1),
                        (1, 1),
                        (first_h, first_w),
                        out_start=(row, col),
                        out_step=self.stride,
                    )
                )
        return phases

    def _phase_taps(self, residue: int, axis: int) -> tuple[list[int], int]:
        """Kernel taps that reach outputs ``≡ residue (mod stride)``, in increasing input order.

        Output ``o = s·q + residue`` receives tap ``k`` from input ``q + (residue + p − k)/s`` when
        that is an integer; taps are returned by decreasing ``k`` so the input offset grows by one
        per tap, with the first offset.
        """
        stride, pad = self.stride[axis], self.padding[axis]
        taps = [k for k in range(self.kernel_size[axis] - 1, -1, -1) if (residue + pad - k) % stride == 0]
        first = (residue + pad - taps[0]) // stride if taps else 0
        return taps, first

    def out_size(self, height: int, width: int, output_size: list[int] | None = None) -> tuple[int, int]:
        """Output height and width; ``output_size`` picks among the valid sizes, as in torch."""
        size = []
        for axis, extent in enumerate((height, width)):
            k, s, p, d = self.kernel_size[axis], self.stride[axis], self.padding[axis], self.dilation[axis]
            smallest = (extent - 1) * s - 2 * p + d * (k - 1) + 1
            if output_size is None:
                size.append(smallest + self.output_padding[axis])
            else:
                wanted = int(output_size[-2 + axis])
                if not smallest <= wanted < smallest + max(s, d):
                    raise ValueError(f"output size {wanted} not reachable from input size {extent}")
                size.append(wanted)
        return size[0], size[1]

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        """Binary transposed convolution of ``x`` (N, C, H, W) with the fused epilogue."""
        out_h, out_w = self.out_size(x.shape[2], x.shape[3], output_size)
        if not self._use_kernels(x) or self.dilation != (1, 1):
            default_h, default_w = self.out_size(x.shape[2], x.shape[3])
            extra = (
                out_h - default_h + self.output_padding[0],
                out_w - default_w + self.output_padding[1],
            )
            accumulator = reference.binary_conv_transpose2d(
                x,
                self.weight_bits,
                self.in_channels,
                self.stride,
                self.padding,
                extra,
                self.dilation,
                self._threshold(),
            )
            return self._epilogue(accumulator, x, 1)
        phases, multiplier, addend = self._kernel_operands()
        x_nhwc = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        if self.input_scale or any(phase.kernel_size[0] * phase.kernel_size[1] == 0 for phase in phases):
            out = kernels.packed_conv(
                x_nhwc, phases, out_h, out_w, self.out_channels, multiplier, addend, self._threshold(),
                self.input_scale,
            )  # fmt: skip
            return out.permute(0, 3, 1, 2)
        key = (x_nhwc.shape, x_nhwc.stride(), out_h, out_w, kernels.generation())
        plan = self._plans.get(key)
        if plan is None:
            plan = kernels.plan_conv(
                x_nhwc, phases, self.out_channels, (out_h, out_w), multiplier, addend, self._threshold()
            )
            self._plans[key] = plan
        return plan(x_nhwc).permute(0, 3, 1, 2)


class PackedBinaryLinear(PackedBinaryLayer):
    """Frozen :class:`bidrn.binary.BinaryLinear`; ``weight_bits`` is ``(O, ceil(C_in / 64))``.

    The kernels treat a batch of feature vectors as a batch of 1x1 images.
    """

    kind = "linear"

    def __init__(
        self, in_features: int, out_features: int, input_scale: bool = False, has_threshold: bool = False
    ) -> None:
        super().__init__(in_features, out_features, (), input_scale, has_threshold)

    def _phases(self) -> list[ConvPhase]:
        bits = self.weight_bits.cpu().view(self.out_channels, 1, 1, -1)
        return [ConvPhase(kernel_weights(bits, self.in_channels), (1, 1), (1, 1), (1, 1), (0, 0))]

    def forward(self, x: Tensor) -> Tensor:
        """Binary matrix product of ``x`` (..., C_in) with the fused epilogue."""
        if not self._use_kernels(x) or (self.input_scale and x.dim() != 2):
            accumulator = reference.binary_linear(x, self.weight_bits, self.in_channels, self._threshold())
            return self._epilogue(accumulator, x, -1)
        phases, multiplier, addend = self._kernel_operands()
        rows = x.reshape(-1, 1, 1, self.in_channels).contiguous()
        out = kernels.packed_conv(
            rows, phases, 1, 1, self.out_channels, multiplier, addend, self._threshold(), self.input_scale
        )
        return out.view(*x.shape[:-1], self.out_channels)
