"""The compiled XOR-popcount kernels: loading, CPU dispatch, the argument structs and call plans.

The extension ``bidrn.deploy._bitkernels`` is built by ``pip install`` when a C++ compiler is
available (see setup.py). At import it picks the best kernel set this CPU supports:
``avx512`` (VPOPCNTQ), ``avx2`` (VPSHUFB nibble popcount), ``popcnt`` (scalar POPCNT), ``neon``
(AArch64) or ``generic`` (portable C++). :func:`set_isa` forces one, and ``"reference"`` selects
the pure-torch path (:mod:`bidrn.deploy.reference`).

The kernels take named argument structs, :class:`PackArgs`, :class:`ConvArgs`,
:class:`QuantizeArgs` and :class:`PoolArgs` (the ctypes mirrors of ``csrc/bitconv.hpp``); at import
every field's offset is checked against the compiled extension's, and an extension built for another
ABI version is not used. One extension call, :func:`run`, executes a sequence of them (pack, then one
or more convolutions; a uint8 quantization pass for the int8 GEMMs of :mod:`bidrn.deploy.dense`; or
a max-pooling pass, :func:`max_pool_nhwc`) with the GIL released.

Environment variables:

* ``BIDRN_DISABLE_EXTENSION=1`` -- never load the extension (CI uses it to test the reference path);
* ``BIDRN_ISA=<name>`` -- initial kernel set, as :func:`set_isa`.

Without the extension every packed layer still works through the reference path, after a
one-line warning.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType

import torch
from torch import Tensor

from bidrn.deploy.packing import OUT_CHANNEL_CHUNK, KernelWeights
from bidrn.errors import BidrnError

#: name of the pure-torch path in :func:`set_isa` / :func:`active_isa`
REFERENCE = "reference"
#: branches one conv sums in registers at most (``kMaxBranches`` in csrc/bitconv.hpp)
MAX_BRANCHES = 4
#: ABI version of the argument structs (``kAbiVersion`` in csrc/bitconv.hpp)
ABI_VERSION = 6

_U32, _I64, _F32, _POINTER = ctypes.c_uint32, ctypes.c_int64, ctypes.c_float, ctypes.c_void_p


def _integers(*names: str) -> list[tuple[str, type]]:
    return [(name, _I64) for name in names]


def _pointers(*names: str) -> list[tuple[str, type]]:
    return [(name, _POINTER) for name in names]


class PackArgs(ctypes.Structure):
    """Arguments of one packing pass (``PackArgs`` in csrc/bitconv.hpp; strides in floats)."""

    _fields_ = [
        ("abi_version", _U32),
        ("struct_size", _U32),
        *_pointers("input", "threshold", "packed", "sample_mean_abs"),
        *_integers("batch", "in_h", "in_w", "channels", "buf_h", "buf_w", "buf_top", "buf_left"),
        *_integers("pixel_words", "in_stride_n", "in_stride_h", "in_stride_w"),
    ]


class ConvArgs(ctypes.Structure):
    """Arguments of one packed convolution and its post-ops (``ConvArgs`` in csrc/bitconv.hpp)."""

    _fields_ = [
        ("abi_version", _U32),
        ("struct_size", _U32),
        *_pointers("packed", "weights", "tap_sums", "multiplier", "addend", "sample_scale", "out"),
        *_integers("batch", "in_h", "in_w", "buf_h", "buf_w", "buf_top", "buf_left"),
        *_integers("pixel_words", "word_offset", "words", "channels"),
        *_integers("kernel_h", "kernel_w", "stride_h", "stride_w", "dilation_h", "dilation_w"),
        *_integers("offset_h", "offset_w", "out_h", "out_w", "out_channels", "out_channels_padded"),
        *_integers("out_stride_n", "out_stride_h", "out_stride_w"),
        *_pointers("post_slope", "post_scale", "post_shift", "residual"),
        *_integers("res_stride_n", "res_stride_h", "res_stride_w", "res_h", "res_w"),
        *_integers("res_pool", "res_channels"),
        *_pointers("accumulate_from"),
        *_integers("acc_stride_n", "acc_stride_h", "acc_stride_w", "clamp"),
        ("clamp_lo", _F32),
        ("clamp_hi", _F32),
        *_integers("joins_previous", "branches", "branch_words", "branch_residual"),
    ]


class QuantizeArgs(ctypes.Structure):
    """Arguments of one float -> uint8 quantization pass (``QuantizeArgs`` in csrc/bitconv.hpp)."""

    _fields_ = [
        ("abi_version", _U32),
        ("struct_size", _U32),
        *_pointers("input", "out"),
        *_integers("batch", "in_h", "in_w", "channels", "in_stride_n", "in_stride_h", "in_stride_w"),
        ("inverse_scale", _F32),
        ("zero_point", _F32),
    ]


class PoolArgs(ctypes.Structure):
    """Arguments of one channels-last max-pooling pass (``PoolArgs`` in csrc/bitconv.hpp)."""

    _fields_ = [
        ("abi_version", _U32),
        ("struct_size", _U32),
        *_pointers("input", "out"),
        *_integers("batch", "in_h", "in_w", "channels", "in_stride_n", "in_stride_h", "in_stride_w"),
        *_integers("out_h", "out_w", "kernel_h", "kernel_w", "stride_h", "stride_w"),
        *_integers("padding_h", "padding_w", "bf16_input"),
    ]


def _new(struct: type[ctypes.Structure], **fields: int | float) -> ctypes.Structure:
    return struct(abi_version=ABI_VERSION, struct_size=ctypes.sizeof(struct), **fields)


def _abi_problem(extension: ModuleType) -> str:
    """Why the extension's structs differ from the mirrors above ('' when they agree)."""
    try:
        layout = extension.abi_layout()
    except AttributeError:
        return "built for an older ABI"
    if layout["version"] != ABI_VERSION:
        return f"built for ABI version {layout['version']}, this code needs {ABI_VERSION}"
    for struct in (PackArgs, ConvArgs, QuantizeArgs, PoolArgs):
        size, fields = layout[struct.__name__]
        ours = tuple((name, getattr(struct, name).offset) for name, _ in struct._fields_)
        if size != ctypes.sizeof(struct) or tuple(fields) != ours:
            return f"its {struct.__name__} differs from bidrn.deploy.kernels.{struct.__name__}"
    return ""


def _load_extension() -> tuple[ModuleType | None, str]:
    if os.environ.get("BIDRN_DISABLE_EXTENSION", "") not in ("", "0"):
        return None, "disabled by BIDRN_DISABLE_EXTENSION"
    try:
        extension = importlib.import_module("bidrn.deploy._bitkernels")
    except ImportError as error:
        return None, f"not built ({error})"
    problem = _abi_problem(extension)
    if problem:
        return (
            None,
            f"not usable: {problem}; rebuild them (pip install . or python setup.py build_ext --inplace)",
        )
    return extension, ""


_extension, _unavailable_reason = _load_extension()
_use_reference = _extension is None
_warned = False
_generation = 0


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


def generation() -> int:
    """A number that changes whenever :func:`set_isa` runs; call plans are only valid within one."""
    return _generation


def set_isa(name: str) -> None:
    """Select a kernel set: ``avx512``, ``avx2``, ``popcnt``, ``neon``, ``generic`` or ``reference``."""
    global _use_reference, _generation
    if name not in supported_isas():
        raise BidrnError(f"instruction set {name!r} is not available here; choose one of {supported_isas()}")
    _use_reference = name == REFERENCE
    _generation += 1
    if not _use_reference:
        _extension.set_isa(name)


def native_bf16() -> bool:
    """Whether this CPU has bfloat16 dot-product instructions (AVX512_BF16, or BF16 on AArch64).

    ``False`` without the compiled extension (one of another ABI version is never loaded).
    """
    return _extension is not None and bool(_extension.native_bf16())


def native_int8() -> bool:
    """Whether this CPU has 8-bit dot-product instructions (AVX512_VNNI or AVX-VNNI).

    oneDNN's u8 x s8 GEMMs need them to be fast and exact; ``False`` without the compiled extension.
    """
    return _extension is not None and bool(_extension.native_int8())


def thread_backend() -> str:
    """Where the kernels run in parallel: ``"openmp"`` (the process's OpenMP team, torch's) or ``"pool"``.

    With an OpenMP runtime loaded (torch's wheels bring one) the kernels run on its team, the same
    threads torch's ops use, so the two never compete for cores (csrc/thread_pool.cpp); ``"pool"``
    is the extension's own threads.
    """
    return _extension.get_threading()


def set_thread_backend(name: str) -> None:
    """Run the kernels on the OpenMP team (``"openmp"``) or on the extension's own threads (``"pool"``)."""
    try:
        _extension.set_threading(name)
    except ValueError as error:
        raise BidrnError(f"thread backend {name!r}: {error}") from None


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


class CallPlanCache:
    """Mixin for modules that cache call plans in ``_plans``.

    Copies (``copy.deepcopy``) leave the plans out, since their argument structs hold the raw
    addresses of one call (ctypes refuses to copy them); a copy plans anew on its first call.
    """

    def __getstate__(self) -> dict:
        """The state without the call plans."""
        return {**self.__dict__, "_plans": {}}


Pointer = tuple[ctypes.Structure, str, int, int]
"""A pointer field of an argument struct as (struct, field name, base index, byte offset): a call
sets it to ``bases[base index] + offset`` (:func:`fill_addresses`)."""


def fill_addresses(pointers: Iterable[Pointer], bases: Sequence[int]) -> None:
    """Point each field at its base address plus offset (a call's tensors, before :func:`run`)."""
    for struct, name, base, offset in pointers:
        setattr(struct, name, bases[base] + offset)


def run(steps: Sequence[ctypes.Structure]) -> None:
    """Execute argument structs in order (PackArgs, QuantizeArgs, PoolArgs and ConvArgs).

    They run on ``torch.get_num_threads()`` threads.

    The structs are copied (and checked) before the kernels start, so a caller may refill them as
    soon as this returns; the tensors they point at must stay alive until then.
    """
    _extension.run(tuple(steps), torch.get_num_threads())


def _input_geometry(x_nhwc: Tensor) -> dict[str, int]:
    """The input fields the argument structs share (all but ConvArgs), for an (N, H, W, C) view."""
    batch, in_h, in_w, channels = x_nhwc.shape
    stride_n, stride_h, stride_w, _ = x_nhwc.stride()
    return dict(
        batch=batch, in_h=in_h, in_w=in_w, channels=channels,
        in_stride_n=stride_n, in_stride_h=stride_h, in_stride_w=stride_w,
    )  # fmt: skip


def quantize_u8(x: Tensor, inverse_scale: float, zero_point: int) -> Tensor:
    """``min(max(floor(x * inverse_scale + zero_point + 0.5), 0), 255)`` as uint8, channels-last.

    Args:
        x: float32 (N, H, W, C) with unit channel stride (any other strides, e.g. a strided or
            permuted view of an NCHW channels-last tensor).
        inverse_scale: 1 / the quantization step.
        zero_point: the uint8 value of 0.

    Returns:
        A contiguous (N, H, W, C) uint8 tensor: one pass of the compiled kernels, or the same formula
        in torch without them (the two round alike and agree exactly).
    """
    if x.dtype != torch.float32 or x.dim() != 4:
        raise ValueError(f"quantize input must be a 4-D float32 tensor, not {x.dim()}-D {x.dtype}")
    if not use_compiled():
        return torch.floor(x * inverse_scale + (zero_point + 0.5)).clamp_(0, 255).to(torch.uint8)
    _unit_channel_stride(x, "quantize input")
    out = torch.empty(x.shape, dtype=torch.uint8)
    args = _new(
        QuantizeArgs,
        input=x.data_ptr(),
        out=out.data_ptr(),
        **_input_geometry(x),
        inverse_scale=inverse_scale,
        zero_point=zero_point,
    )
    run((args,))
    return out


def max_pool_nhwc(
    x: Tensor, kernel_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> Tensor:
    """Max pooling of a channels-last (N, H, W, C) float32 or bfloat16 view, as float32 (N, OH, OW, C).

    The result of ``F.max_pool2d`` (floor mode, dilation 1; a NaN in a window wins), without the
    indices torch's CPU pooling always computes: 1.5 -> 0.8 ms on a stem's 2x128x128x64 output (Zen 4,
    one thread). A bfloat16 input is widened exactly. Padding at most half the kernel. Without the
    compiled kernels, ``F.max_pool2d`` itself.
    """
    if x.dtype not in (torch.float32, torch.bfloat16) or x.dim() != 4 or x.device.type != "cpu":
        raise ValueError(f"max pooling needs a 4-D float32 or bfloat16 CPU tensor, not {x.dim()}-D {x.dtype}")
    if x.stride(3) != 1 and x.shape[3] > 1:
        raise ValueError("max pooling needs a (N, H, W, C) view with unit channel stride")
    if not use_compiled():
        pooled = torch.nn.functional.max_pool2d(x.permute(0, 3, 1, 2), kernel_size, stride, padding)
        return pooled.float().permute(0, 2, 3, 1)
    batch, in_h, in_w, channels = x.shape
    out_h = (in_h + 2 * padding[0] - kernel_size[0]) // stride[0] + 1
    out_w = (in_w + 2 * padding[1] - kernel_size[1]) // stride[1] + 1
    out = torch.empty((batch, out_h, out_w, channels), dtype=torch.float32)
    args = _new(
        PoolArgs, input=x.data_ptr(), out=out.data_ptr(), **_input_geometry(x), out_h=out_h, out_w=out_w,
        kernel_h=kernel_size[0], kernel_w=kernel_size[1], stride_h=stride[0], stride_w=stride[1],
        padding_h=padding[0], padding_w=padding[1], bf16_input=int(x.dtype == torch.bfloat16),
    )  # fmt: skip
    run((args,))
    return out


def pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    """A size given as an int or an (h, w) sequence, as an (h, w) tuple of ints (torch's convention)."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


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
    """Element-wise operations fused after the conv epilogue (csrc/bitconv.hpp), in this order.

    ``v = prelu(v, slope)``; ``v = v + residual`` (with ``residual_pool``, the mean of the 2×2
    window at ``(2·oh, 2·ow)`` of the residual map, as ``AvgPool2d(2, 2, ceil_mode=True,
    count_include_pad=False)``); ``v = v * scale + shift``; ``v = v + accumulate`` (which may be the
    output itself); ``out = clamp(v, *clamp)``. Vectors are float32 padded like the multiplier;
    ``residual`` and ``accumulate`` are float32 ``(N, H, W, O)`` views with unit channel stride.
    """

    slope: Tensor | None = None
    residual: Tensor | None = None
    residual_pool: bool = False
    scale: Tensor | None = None
    shift: Tensor | None = None
    accumulate: Tensor | None = None
    clamp: tuple[float, float] | None = None


_NO_POST = PostOps()


def padded_like(values: Tensor, like: Tensor) -> Tensor:
    """A per-channel epilogue vector as float32, zero-padded to the length of ``like`` (the multiplier)."""
    out = torch.zeros_like(like)
    out[: values.numel()] = values.reshape(-1).float()
    return out


def _residual_period(residual_channels: int, out_channels: int) -> int:
    """``ConvArgs.res_channels``: 0 when the residual has the output's channels, else its channel count.

    A residual with fewer channels is repeated along the channels (output channel ``o`` reads
    residual channel ``o mod C_r``), which lets the branches of a unit that add the same residual
    run as one conv; ``C_r`` must divide the output channels and be a multiple of 32 (a kernel's
    channel chunk never straddles a repeat).
    """
    if residual_channels == out_channels:
        return 0
    if out_channels % residual_channels or residual_channels % OUT_CHANNEL_CHUNK:
        raise ValueError(
            f"a residual of {residual_channels} channels cannot repeat over {out_channels} output channels "
            f"(it must divide them and be a multiple of {OUT_CHANNEL_CHUNK})"
        )
    return residual_channels


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


@dataclass(frozen=True)
class PackPlan:
    """A packing pass planned for inputs shaped and strided like one, and its buffer's shape.

    Before each :func:`run`, set ``args.input`` and ``args.packed`` (and ``args.sample_mean_abs``)
    to the current tensors' addresses.
    """

    args: PackArgs
    buffer_shape: tuple[int, int, int, int]
    sizes: tuple[tuple[int, int], ...]  # output rows and columns of each phase

    def buffer(self) -> Tensor:
        """A new (uninitialised) packed buffer for one call."""
        return torch.empty(self.buffer_shape, dtype=torch.int64)


def plan_pack(
    x_nhwc: Tensor, phases: Sequence[ConvPhase], out_h: int, out_w: int, threshold: Tensor | None = None
) -> PackPlan:
    """Plan packing ``x_nhwc`` (float32, channels contiguous) once for every phase in ``phases``."""
    _unit_channel_stride(x_nhwc, "the packed conv input")
    batch, in_h, in_w, channels = x_nhwc.shape
    words = -(-channels // 64)
    sizes, (top, bottom, left, right) = _buffer_layout(
        tuple(phase.geometry for phase in phases), in_h, in_w, out_h, out_w
    )
    buf_h, buf_w = in_h + top + bottom, in_w + left + right
    args = _new(
        PackArgs,
        input=x_nhwc.data_ptr(),
        threshold=_address(threshold),
        **_input_geometry(x_nhwc),
        buf_h=buf_h,
        buf_w=buf_w,
        buf_top=top,
        buf_left=left,
        pixel_words=words,
    )
    return PackPlan(args, (batch, buf_h, buf_w, words * _extension.planes()), sizes)


def _check_branches(
    weights: KernelWeights, multiplier: Tensor, addend: Tensor, post: PostOps, branches: int
) -> None:
    """That the operands hold ``branches`` branches one after the other, and the residual their groups.

    The kernels read branch ``g``'s operands at fixed offsets; a short tensor would be read past
    its end, which the extension cannot see.
    """
    if not 1 <= branches <= MAX_BRANCHES:
        raise ValueError(f"branches must be 1 to {MAX_BRANCHES}, not {branches}")
    padded = weights.out_channels_padded
    taps = weights.weights.shape[1]
    vectors = [multiplier, addend, *(v for v in (post.slope, post.scale, post.shift) if v is not None)]
    if (
        weights.weights.shape[0] * 8 != branches * padded
        or weights.tap_sums.shape != (branches * taps, padded)
        or any(v.numel() != branches * padded for v in vectors)
    ):
        raise ValueError(f"the weights, tap sums and per-channel vectors must hold {branches} branches")
    residual = post.residual
    if branches > 1 and residual is not None:
        first = residual.storage_offset() % residual.stride(2)  # the view's first channel in its pixel
        if first + branches * residual.shape[3] > residual.stride(2):
            raise ValueError("each branch's residual channels must lie inside the residual's pixels")


def plan_conv_args(
    pack: PackPlan,
    phase: ConvPhase,
    size: tuple[int, int],
    out: Tensor,
    multiplier: Tensor,
    addend: Tensor,
    post: PostOps | None = None,
    word_offset: int = 0,
    channels: int | None = None,
    joins_previous: bool = False,
    branches: int = 1,
    branch_words: int = 0,
) -> ConvArgs:
    """The :class:`ConvArgs` of ``phase`` over ``pack``'s buffer, writing ``size`` outputs into ``out``.

    ``out`` is the full (N, H, W, O) output view (any unit-channel-stride view, e.g. a channel
    slice); the phase fills its ``out_start`` / ``out_step`` lattice. The conv reads ``channels``
    input channels (default: all the pack has) from word ``word_offset`` of every packed pixel.
    With ``joins_previous`` it runs row by row together with the previous conv of its :func:`run`
    call (same batch, output rows and padded channels; see ``ConvArgs`` in csrc/bitconv.hpp).
    With ``branches`` > 1 (at most :data:`MAX_BRANCHES`) it sums that many branches in registers:
    ``phase``'s weights and tap sums, the multiplier, addend and post-op vectors hold the branches
    one after the other, branch ``g`` reads ``channels`` from word ``word_offset + g ·
    branch_words`` and adds the ``C`` residual channels after branch ``g - 1``'s, ``C`` those of
    ``post.residual`` (a channel slice of a wider tensor: Fusion Down's input groups).
    Operand addresses come from the tensors given; before each :func:`run` set ``packed``, ``out``,
    ``residual`` and ``accumulate_from`` to the current tensors'.
    """
    post = post or _NO_POST
    _unit_channel_stride(out, "the packed conv output")
    _check_branches(phase.weights, multiplier, addend, post, branches)
    p = pack.args
    channels = p.channels if channels is None else channels
    strides = out.stride()
    first = phase.out_start[0] * strides[1] + phase.out_start[1] * strides[2]
    args = _new(
        ConvArgs,
        packed=0,
        weights=phase.weights.weights.data_ptr(),
        tap_sums=phase.weights.tap_sums.data_ptr(),
        multiplier=multiplier.data_ptr(),
        addend=addend.data_ptr(),
        out=out.data_ptr() + first * out.element_size(),
        batch=p.batch,
        in_h=p.in_h,
        in_w=p.in_w,
        buf_h=p.buf_h,
        buf_w=p.buf_w,
        buf_top=p.buf_top,
        buf_left=p.buf_left,
        pixel_words=p.pixel_words,
        word_offset=word_offset,
        words=phase.weights.weights.shape[2],
        channels=channels,
        kernel_h=phase.kernel_size[0],
        kernel_w=phase.kernel_size[1],
        stride_h=phase.stride[0],
        stride_w=phase.stride[1],
        dilation_h=phase.dilation[0],
        dilation_w=phase.dilation[1],
        offset_h=phase.offset[0],
        offset_w=phase.offset[1],
        out_h=size[0],
        out_w=size[1],
        out_channels=out.shape[3],
        out_channels_padded=phase.weights.out_channels_padded,
        out_stride_n=strides[0],
        out_stride_h=phase.out_step[0] * strides[1],
        out_stride_w=phase.out_step[1] * strides[2],
        post_slope=_address(post.slope),
        post_scale=_address(post.scale),
        post_shift=_address(post.shift),
        joins_previous=int(joins_previous),
        branches=branches,
        branch_words=branch_words,
    )
    if post.residual is not None:
        _unit_channel_stride(post.residual, "the residual")
        residual = post.residual
        args.residual = residual.data_ptr()
        args.res_stride_n, args.res_stride_h, args.res_stride_w = residual.stride()[:3]
        args.res_h, args.res_w = residual.shape[1:3]
        args.res_pool = 2 if post.residual_pool else 0
        args.res_channels = _residual_period(residual.shape[3], out.shape[3])
        args.branch_residual = residual.shape[3]
    if post.accumulate is not None:
        _unit_channel_stride(post.accumulate, "the accumulated tensor")
        args.accumulate_from = post.accumulate.data_ptr()
        args.acc_stride_n, args.acc_stride_h, args.acc_stride_w = post.accumulate.stride()[:3]
    if post.clamp is not None:
        args.clamp, args.clamp_lo, args.clamp_hi = 1, *post.clamp
    return args


@dataclass(frozen=True)
class ConvPlan:
    """A packed conv (all its phases) and its post-ops, planned for fixed shapes, strides and operands.

    :func:`plan_conv` computes the argument structs once; :meth:`__call__` fills in the addresses
    of the input, a new packed buffer, the output and, when planned with one, the residual, and
    makes one extension call. The plan holds its operand tensors, so their addresses stay valid.
    Its ``lock`` keeps calls from several threads from filling in the same structs at once.
    """

    pack: PackPlan
    convs: tuple[ConvArgs, ...]
    out_offsets: tuple[int, ...]  # bytes from the output's start to each phase's first element
    out_shape: tuple[int, int, int, int]
    takes_residual: bool
    operands: tuple[object, ...]
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __call__(self, x_nhwc: Tensor, residual: Tensor | None = None) -> Tensor:
        """Run on ``x_nhwc`` (and ``residual``), shaped and strided as planned; a new output."""
        if (residual is not None) != self.takes_residual:
            raise ValueError("pass the residual exactly when the plan was made with one")
        out = torch.empty(self.out_shape, dtype=torch.float32)
        buffer = self.pack.buffer()
        with self.lock:
            self.pack.args.input, self.pack.args.packed = x_nhwc.data_ptr(), buffer.data_ptr()
            for conv, offset in zip(self.convs, self.out_offsets, strict=True):
                conv.packed, conv.out = buffer.data_ptr(), out.data_ptr() + offset
                if residual is not None:
                    conv.residual = residual.data_ptr()
            run((self.pack.args, *self.convs))
        return out


def plan_conv(
    x_nhwc: Tensor,
    phases: Sequence[ConvPhase],
    out_channels: int,
    out_size: tuple[int, int],
    multiplier: Tensor,
    addend: Tensor,
    threshold: Tensor | None = None,
    post: PostOps | None = None,
) -> ConvPlan:
    """Plan the packed conv of inputs shaped and strided like ``x_nhwc``; nothing runs yet.

    ``phases`` are a conv's one phase or a transposed conv's s² (each needs taps; a phase that no
    tap reaches runs through :func:`packed_conv`). ``post`` may hold a residual, which each call
    then passes (it is read at each phase's own output coordinates).
    """
    if any(phase.kernel_size[0] * phase.kernel_size[1] == 0 for phase in phases):
        raise ValueError("call plans need taps in every phase")
    post = post or _NO_POST
    out_shape = (x_nhwc.shape[0], *out_size, out_channels)
    pack = plan_pack(x_nhwc, phases, *out_size, threshold)
    like = torch.empty(out_shape, dtype=torch.float32)
    convs = [
        plan_conv_args(pack, phase, size, like, multiplier, addend, post)
        for phase, size in zip(phases, pack.sizes, strict=True)
        if size[0] and size[1]
    ]
    offsets = tuple(conv.out - like.data_ptr() for conv in convs)
    vectors = replace(post, residual=None, accumulate=None)  # the epilogue vectors, not activations
    operands = (tuple(phases), multiplier, addend, threshold, vectors)
    return ConvPlan(pack, tuple(convs), offsets, out_shape, post.residual is not None, operands)


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
    be a strided view as long as channels are contiguous. Repeated calls with fixed shapes go
    through :func:`plan_conv` instead.
    """
    out = torch.empty((x_nhwc.shape[0], out_h, out_w, out_channels), dtype=torch.float32)
    pack = plan_pack(x_nhwc, phases, out_h, out_w, threshold)
    buffer = pack.buffer()
    pack.args.packed = buffer.data_ptr()
    scale = torch.empty(x_nhwc.shape[0], dtype=torch.float32) if input_scale else None
    pack.args.sample_mean_abs = _address(scale)
    steps: list[ctypes.Structure] = [pack.args]
    for phase, size in zip(phases, pack.sizes, strict=True):
        if size[0] == 0 or size[1] == 0:
            continue
        if phase.kernel_size[0] * phase.kernel_size[1] == 0:  # no tap reaches these outputs
            view = out[:, phase.out_start[0] :: phase.out_step[0], phase.out_start[1] :: phase.out_step[1]]
            view.copy_(addend[:out_channels].expand_as(view))
            continue
        conv = plan_conv_args(pack, phase, size, out, multiplier, addend)
        conv.packed, conv.sample_scale = buffer.data_ptr(), _address(scale)
        steps.append(conv)
    run(steps)
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
