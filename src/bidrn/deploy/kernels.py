"""The compiled XOR-popcount kernels: loading, CPU dispatch and tensor-level calls.

The extension ``bidrn.deploy._bitkernels`` is built by ``pip install`` when a C++ compiler is
available (see setup.py). At import it picks the best kernel set this CPU supports:
``avx512`` (VPOPCNTQ), ``avx2`` (VPSHUFB nibble popcount), ``popcnt`` (scalar POPCNT), ``neon``
(AArch64) or ``generic`` (portable C++). :func:`set_isa` forces one, and ``"reference"`` selects
the pure-torch path (:mod:`bidrn.deploy.reference`).

Environment variables:

* ``BIDRN_DISABLE_EXTENSION=1`` -- never load the extension (CI uses it to test the reference path);
* ``BIDRN_ISA=<name>`` -- initial kernel set, as :func:`set_isa`.

Without the extension every packed layer still works through the reference path, after a
one-line warning.
"""

from __future__ import annotations

import functools
import importlib
import os
import warnings
from dataclasses import dataclass, replace
from types import ModuleType

import torch
from torch import Tensor

from bidrn.deploy.packing import KernelWeights
from bidrn.errors import BidrnError

#: name of the pure-torch path in :func:`set_isa` / :func:`active_isa`
REFERENCE = "reference"


def _load_extension() -> tuple[ModuleType | None, str]:
    if os.environ.get("BIDRN_DISABLE_EXTENSION", "") not in ("", "0"):
        return None, "disabled by BIDRN_DISABLE_EXTENSION"
    try:
        return importlib.import_module("bidrn.deploy._bitkernels"), ""
    except ImportError as error:
        return None, f"not built ({error})"


_extension, _unavailable_reason = _load_extension()
_use_reference = _extension is None
_warned = False


def extension_available() -> bool:
    """Whether the compiled kernels are loaded."""
    return _extension is not None


def supported_isas() -> tuple[str, ...]:
    """Kernel sets usable here, fastest first; always ends with ``"reference"``."""
    compiled = tuple(_extension.supported_isas()) if _extension is not None else ()
    return (*compiled, REFERENCE)


def active_isa() -> str:
    """Name of the kernel set packed layers use now."""
    return REFERENCE if _use_reference else _extension.get_isa()


def set_isa(name: str) -> None:
    """Select a kernel set: ``avx512``, ``avx2``, ``popcnt``, ``neon``, ``generic`` or ``reference``."""
    global _use_reference
    if name not in supported_isas():
        raise BidrnError(f"instruction set {name!r} is not available here; choose one of {supported_isas()}")
    _use_reference = name == REFERENCE
    if not _use_reference:
        _extension.set_isa(name)


def use_compiled() -> bool:
    """Whether packed layers should call the compiled kernels (warns once when they cannot)."""
    global _warned
    if _extension is None and not _warned and "BIDRN_DISABLE_EXTENSION" not in os.environ:
        warnings.warn(
            f"bidrn: compiled 1-bit kernels {_unavailable_reason}; using the slower pure-torch path",
            RuntimeWarning,
            stacklevel=3,
        )
        _warned = True
    return not _use_reference


@dataclass(frozen=True)
class ConvPhase:
    """One ordinary (correlation) convolution that the kernels run over the packed input.

    A conv layer is one phase. A stride-s transposed conv is s·s phases, one per output
    residue (sub-pixel decomposition), each a stride-1 conv with a sub-kernel whose outputs land
    on every s-th output row and column starting at ``out_start``.
    """

    weights: KernelWeights
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    offset: tuple[int, int]  # input coordinate of output (0, 0) at tap (0, 0), e.g. -padding
    out_start: tuple[int, int] = (0, 0)
    out_step: tuple[int, int] = (1, 1)

    @functools.cached_property
    def geometry(self) -> tuple[tuple[int, int], ...]:
        """Everything but the weights, hashable: the key of the per-shape layout cache."""
        return (self.kernel_size, self.stride, self.dilation, self.offset, self.out_start, self.out_step)

    def out_size(self, out_h: int, out_w: int) -> tuple[int, int]:
        """Number of output rows and columns this phase fills in a ``out_h x out_w`` output."""
        rows = max(0, -(-(out_h - self.out_start[0]) // self.out_step[0]))
        cols = max(0, -(-(out_w - self.out_start[1]) // self.out_step[1]))
        return rows, cols

    def input_margins(self, in_h: int, in_w: int, rows: int, cols: int) -> tuple[int, int, int, int]:
        """Zero rows/columns (top, bottom, left, right) the packed input needs around it."""
        first_h, first_w = self.offset
        last_h = (rows - 1) * self.stride[0] + first_h + (self.kernel_size[0] - 1) * self.dilation[0]
        last_w = (cols - 1) * self.stride[1] + first_w + (self.kernel_size[1] - 1) * self.dilation[1]
        return max(0, -first_h), max(0, last_h - in_h + 1), max(0, -first_w), max(0, last_w - in_w + 1)


@dataclass(frozen=True)
class PostOps:
    """Element-wise operations fused after the conv epilogue (see csrc/bitconv.hpp), in this order.

    ``v = prelu(v, slope)``; ``v = v + residual``; ``v = v * scale + shift``; ``out = out + v`` when
    ``accumulate`` else ``out = v``; ``out = clamp(out, *clamp)``. Vectors are float32 padded like the
    multiplier; ``residual`` is a float32 ``(N, OH, OW, O)`` view with unit channel stride; ``clamp``
    is a float32 tensor ``(lower, upper)``.
    """

    slope: Tensor | None = None
    residual: Tensor | None = None
    scale: Tensor | None = None
    shift: Tensor | None = None
    accumulate: bool = False
    clamp: Tensor | None = None


def _unit_channel_stride(t: Tensor, what: str) -> None:
    if (
        t.dtype != torch.float32
        or t.device.type != "cpu"
        or t.dim() != 4
        or (t.stride(3) != 1 and t.shape[3] > 1)
    ):
        raise ValueError(f"{what} must be a float32 CPU (N, H, W, C) view with unit channel stride")


def _address(t: Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


@dataclass(frozen=True)
class PackedInput:
    """Sign bits of a float input, packed once into a zero-bordered buffer for some conv phases.

    ``buffer`` is ``(N, H + top + bottom, W + left + right, words)`` int64; ``scale`` holds
    XNOR-Net's per-sample mean ``|x|`` when it was requested. ``pointers`` and ``dims`` are the
    packing call's arguments (``dims`` starts with N, H, W, C, buffer H and W, top, left, words).
    """

    buffer: Tensor
    scale: Tensor | None
    pointers: tuple[int, ...]
    dims: tuple[int, ...]


@functools.lru_cache(maxsize=4096)
def _buffer_layout(
    geometries: tuple[tuple[tuple[int, int], ...], ...], in_h: int, in_w: int, out_h: int, out_w: int
) -> tuple[tuple[tuple[int, int], ...], tuple[int, int, int, int]]:
    """Per-phase output sizes and the packed buffer's zero margins (top, bottom, left, right)."""
    phases = [ConvPhase(None, *geometry) for geometry in geometries]  # geometry only, no weights
    sizes = tuple(phase.out_size(out_h, out_w) for phase in phases)
    margins = [p.input_margins(in_h, in_w, r, c) for p, (r, c) in zip(phases, sizes, strict=True) if r and c]
    top, bottom, left, right = (max((m[i] for m in margins), default=0) for i in range(4))
    return sizes, (top, bottom, left, right)


def _packed_input(
    x_nhwc: Tensor,
    phases: list[ConvPhase],
    out_h: int,
    out_w: int,
    threshold: Tensor | None,
    input_scale: bool,
) -> PackedInput:
    """Allocate the packed buffer (not yet filled) for ``x_nhwc`` as the input of ``phases``."""
    _unit_channel_stride(x_nhwc, "the packed conv input")
    batch, in_h, in_w, channels = x_nhwc.shape
    words = phases[0].weights.weights.shape[2]
    geometries = tuple(phase.geometry for phase in phases)
    _, (top, bottom, left, right) = _buffer_layout(geometries, in_h, in_w, out_h, out_w)
    buf_h, buf_w = in_h + top + bottom, in_w + left + right
    buffer = torch.empty((batch, buf_h, buf_w, words), dtype=torch.int64)
    scale = torch.empty(batch, dtype=torch.float32) if input_scale else None
    pointers = (x_nhwc.data_ptr(), _address(threshold), buffer.data_ptr(), _address(scale))
    dims = (batch, in_h, in_w, channels, buf_h, buf_w, top, left, words, *x_nhwc.stride()[:3])
    return PackedInput(buffer, scale, pointers, dims)


def _conv_pointers(
    buffer: int, phase: ConvPhase, multiplier: Tensor, addend: Tensor, scale: int, out: int, post: PostOps
) -> tuple[int, ...]:
    """Addresses for ``_extension.conv``; ``out`` is the address of the phase's first output."""
    return (
        buffer, phase.weights.weights.data_ptr(), phase.weights.tap_sums.data_ptr(),
        multiplier.data_ptr(), addend.data_ptr(), scale, out,
        _address(post.slope), _address(post.residual), _address(post.scale), _address(post.shift),
        _address(post.clamp),
    )  # fmt: skip


def _conv_dims(
    packed: tuple[int, ...],
    phase: ConvPhase,
    rows: int,
    cols: int,
    out_channels: int,
    out_strides: tuple[int, int, int],
    residual_strides: tuple[int, int, int],
    accumulate: bool,
) -> tuple[int, ...]:
    """Sizes and strides for ``_extension.conv``; ``packed`` is the packing call's dims tuple."""
    batch, in_h, in_w, channels, buf_h, buf_w, top, left, words = packed[:9]
    return (
        batch, in_h, in_w, buf_h, buf_w, top, left, words, channels,
        *phase.kernel_size, *phase.stride, *phase.dilation, *phase.offset,
        rows, cols, out_channels, phase.weights.out_channels_padded,
        out_strides[0], phase.out_step[0] * out_strides[1], phase.out_step[1] * out_strides[2],
        *residual_strides, int(accumulate),
    )  # fmt: skip


_NO_POST = PostOps()


# Slots of ``_conv_pointers``' tuple that a :class:`ConvPlan` fills in per call.
_BUFFER_SLOT, _OUT_SLOT, _RESIDUAL_SLOT = 0, 6, 8


@dataclass(frozen=True)
class ConvPlan:
    """A single-phase packed conv (with its post-ops) planned for fixed shapes, strides and operands.

    :func:`plan_conv` computes everything :func:`packed_conv` computes per call except the addresses
    of the input, the packed buffer, the output and the residual; :func:`run_conv` fills those in
    and makes one call into the extension. The plan holds its operand tensors, so their addresses
    stay valid.
    """

    out_shape: tuple[int, int, int, int]
    buffer_shape: tuple[int, int, int, int]
    pack_dims: tuple[int, ...]
    conv_dims: tuple[int, ...]
    conv_pointers: tuple[int, ...]  # buffer, output and residual addresses zeroed
    threshold_address: int
    has_residual: bool
    operands: tuple[ConvPhase | Tensor | PostOps | None, ...]


def plan_conv(
    x_nhwc: Tensor,
    phase: ConvPhase,
    out: Tensor,
    multiplier: Tensor,
    addend: Tensor,
    threshold: Tensor | None = None,
    post: PostOps | None = None,
) -> ConvPlan:
    """Plan the single-phase packed conv of ``x_nhwc`` into ``out``, then ``post``; nothing runs yet.

    The result is :func:`packed_conv`'s followed by the :class:`PostOps`, written into ``out``. The
    plan is valid for tensors shaped and strided like these (views with unit channel stride, e.g.
    channel slices) and for these operands.
    """
    if phase.out_start != (0, 0) or phase.out_step != (1, 1):
        raise ValueError("call plans cover ordinary (single-phase) convolutions only")
    post = post or _NO_POST
    _unit_channel_stride(out, "the packed conv output")
    if post.residual is not None:
        _unit_channel_stride(post.residual, "the residual")
    out_h, out_w = out.shape[1:3]
    packed = _packed_input(x_nhwc, [phase], out_h, out_w, threshold, input_scale=False)
    ((rows, cols),), _ = _buffer_layout((phase.geometry,), *x_nhwc.shape[1:3], out_h, out_w)
    residual_strides = post.residual.stride()[:3] if post.residual is not None else (0, 0, 0)
    dims = _conv_dims(
        packed.dims, phase, rows, cols, out.shape[3], out.stride()[:3], residual_strides, post.accumulate
    )
    static_post = replace(post, residual=None)
    return ConvPlan(
        tuple(out.shape),
        tuple(packed.buffer.shape),
        packed.dims,
        dims,
        _conv_pointers(0, phase, multiplier, addend, 0, 0, static_post),
        _address(threshold),
        post.residual is not None,
        (phase, multiplier, addend, threshold, static_post),
    )


def pack_for_plan(plan: ConvPlan, x_address: int) -> Tensor:
    """Pack the input at ``x_address`` once, into a buffer for :func:`run_conv`.

    Every plan run on the buffer must read the same input through the same geometry and threshold.
    """
    buffer = torch.empty(plan.buffer_shape, dtype=torch.int64)
    pointers = (x_address, plan.threshold_address, buffer.data_ptr(), 0)
    _extension.pack(pointers, plan.pack_dims, torch.get_num_threads())
    return buffer


def run_conv(
    plan: ConvPlan, x_address: int, out_address: int, residual_address: int = 0, buffer: Tensor | None = None
) -> None:
    """Run ``plan`` on tensors at these addresses, shaped and strided as planned.

    Packs the input and convolves in one fused call, or only convolves when ``buffer`` (from
    :func:`pack_for_plan`) is given. The caller keeps the tensors alive during the call.
    """
    if plan.has_residual != bool(residual_address):
        raise ValueError("the residual address must be given exactly when the plan has a residual")
    threads = torch.get_num_threads()
    pointers = list(plan.conv_pointers)
    pointers[_OUT_SLOT], pointers[_RESIDUAL_SLOT] = out_address, residual_address
    if buffer is not None:
        pointers[_BUFFER_SLOT] = buffer.data_ptr()
        _extension.conv(tuple(pointers), plan.conv_dims, threads)
        return
    buffer = torch.empty(plan.buffer_shape, dtype=torch.int64)
    pointers[_BUFFER_SLOT] = buffer.data_ptr()
    pack_pointers = (x_address, plan.threshold_address, pointers[_BUFFER_SLOT], 0)
    _extension.pack_conv(pack_pointers, plan.pack_dims, tuple(pointers), plan.conv_dims, threads)


def packed_conv(
    x_nhwc: Tensor,
    phases: list[ConvPhase],
    out_h: int,
    out_w: int,
    out_channels: int,
    multiplier: Tensor,
    addend: Tensor,
    threshold: Tensor | None = None,
    input_scale: bool = False,
) -> Tensor:
    """Binary convolution of float32 input ``(N, H, W, C)`` -> ``(N, out_h, out_w, O)``.

    ``out = (conv(sign bits of x, weight bits) * multiplier[o] * s[n]) + addend[o]`` where ``s[n]`` is
    the mean of ``|x|`` over a sample when ``input_scale`` (XNOR-Net) and 1 otherwise;
    ``multiplier`` and ``addend`` are float32 padded to the kernels' channel chunk. ``x_nhwc`` may
    be a strided view as long as channels are contiguous. A single-phase conv packs and convolves in
    one fused call; repeated calls with fixed shapes and post-ops go through :func:`plan_conv`.
    """
    sizes, _ = _buffer_layout(tuple(phase.geometry for phase in phases), *x_nhwc.shape[1:3], out_h, out_w)
    out = torch.empty((x_nhwc.shape[0], out_h, out_w, out_channels), dtype=torch.float32)
    packed = _packed_input(x_nhwc, phases, out_h, out_w, threshold, input_scale)
    out_strides = out.stride()[:3]

    def conv_pointers(phase: ConvPhase) -> tuple[int, ...]:
        first = phase.out_start[0] * out_strides[1] + phase.out_start[1] * out_strides[2]
        out_address = out.data_ptr() + first * out.element_size()
        buffer, scale = packed.buffer.data_ptr(), _address(packed.scale)
        return _conv_pointers(buffer, phase, multiplier, addend, scale, out_address, _NO_POST)

    def conv_dims(phase: ConvPhase, rows: int, cols: int) -> tuple[int, ...]:
        return _conv_dims(packed.dims, phase, rows, cols, out_channels, out_strides, (0, 0, 0), False)

    threads = torch.get_num_threads()
    if len(phases) == 1:
        (phase,) = phases
        _extension.pack_conv(
            packed.pointers, packed.dims, conv_pointers(phase), conv_dims(phase, *sizes[0]), threads
        )
        return out
    _extension.pack(packed.pointers, packed.dims, threads)
    for phase, (rows, cols) in zip(phases, sizes, strict=True):
        if rows == 0 or cols == 0:
            continue
        if phase.kernel_size[0] * phase.kernel_size[1] == 0:  # no tap reaches these outputs
            view = out[:, phase.out_start[0] :: phase.out_step[0], phase.out_start[1] :: phase.out_step[1]]
            view.copy_(addend[:out_channels].expand_as(view))
            continue
        _extension.conv(conv_pointers(phase), conv_dims(phase, rows, cols), threads)
    return out


def _apply_isa_environment() -> None:
    requested = os.environ.get("BIDRN_ISA", "")
    if not requested:
        return
    try:
        set_isa(requested)
    except BidrnError as error:
        warnings.warn(f"bidrn: BIDRN_ISA ignored: {error}", RuntimeWarning, stacklevel=2)


_apply_isa_environment()
