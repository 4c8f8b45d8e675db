"""Fused BiDRN units: one kernel call per Local Convolution Residual, every element-wise op in the epilogue.

A :class:`bidrn.nets.bidrn.LocalConvResidual` with a residual form computes (paper Eq. 7–10)::

    out = BN(merge_i(RPReLU_i(BinaryConv_i(a_i)) + R(a_i)))

In a frozen model the BatchNorm cannot be folded into the conv (RPReLU and the residual sit
between them), so run unfused every unit would make four extra passes over its output (RPReLU,
residual add, concat / sum, BatchNorm). :class:`FusedLocalConvResidual` runs each branch as one
packed convolution whose epilogue applies all of them (:class:`bidrn.deploy.kernels.PostOps`),
or several branches as one convolution (:attr:`~FusedLocalConvResidual.merges_branches`,
:attr:`~FusedLocalConvResidual.sums_branches`):

* RPReLU's input shift γ goes into the conv's addend, its slope is the PReLU post-op;
* the residual ``R(a_i)`` (identity or 2×2 average pool, read from the unit's own ``residual``
  module) is added straight from the unit's input, pooled in the epilogue when it is a pool;
* BatchNorm (eval) and RPReLU's output shift ζ become one multiply-add:
  ``BN(p + r + ζ) = s·(p + r) + (s·ζ + t)``;
* concat forms write each branch into its channel slice of the output; Fusion Down sums its
  branches (BatchNorm is linear: each branch is scaled, the shift is added once) in registers, or
  one after the other into the output when its channel groups are not whole words;
* within a chain of units, the next unit's Hardtanh (or ReLU) pre-activation becomes a clamp at
  the end of this unit's epilogue (:func:`fuse_preactivations`): the chain hands each unit's output
  only to the next one, so nothing else sees the unclamped values;
* a block's last unit writes its output over the Block Residual tensor it adds when nothing reads
  that tensor again (:class:`FusedBiDRB`; a :class:`bidrn.deploy.stages.FusedStage` hands each
  block's output over).

Fusing does not build a new module: the unit's class becomes :class:`FusedLocalConvResidual`, a
subclass of the network's own ``LocalConvResidual``. Its form, branch count, convs, RPReLUs,
residual and BatchNorm are the unit's own attributes, the state-dict keys are unchanged, and off
the compiled kernels it runs the network's own ``forward``.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from bidrn.deploy import kernels
from bidrn.deploy.dense import PointwiseConv2d, batchnorm_factors, set_input_range
from bidrn.deploy.kernels import PostOps
from bidrn.deploy.layers import PackedBinaryConv2d
from bidrn.deploy.packing import OUT_CHANNEL_CHUNK, KernelWeights, kernel_weights
from bidrn.nets.bidrn import BiDRBasicBlock, BiDRBottleneck, BiDRNEncoder, LocalConvResidual

__all__ = [
    "UNIT_ADDED",
    "UNIT_BUFFERS",
    "UNIT_INPUT",
    "UNIT_OUTPUT",
    "FusedBiDRB",
    "FusedLocalConvResidual",
    "UnitPlan",
    "bound_projection_inputs",
    "can_fuse",
    "can_fuse_block",
    "fuse_preactivations",
    "observed",
    "shares_memory",
]


def residual_pool(residual: nn.Module) -> bool | None:
    """How the epilogue computes a unit's residual module: pooled (``True``) or as is (``False``).

    ``True`` for the 2×2 average pool of Down Scale / Down Sample, ``False`` for the identity,
    ``None`` for anything else (the unit cannot be fused).
    """
    if isinstance(residual, nn.Identity):
        return False
    if (
        isinstance(residual, nn.AvgPool2d)
        and residual.kernel_size in (2, (2, 2))
        and residual.stride in (2, (2, 2))
        and residual.padding in (0, (0, 0))
        and residual.ceil_mode
        and not residual.count_include_pad
        and residual.divisor_override is None
    ):
        return True
    return None


def can_fuse(unit: nn.Module) -> bool:
    """Whether ``unit`` is a residual-form LCR with packed convs, a known residual and an eval BatchNorm."""
    return (
        isinstance(unit, LocalConvResidual)
        and not isinstance(unit, FusedLocalConvResidual)
        and unit.rprelus is not None
        and all(isinstance(conv, PackedBinaryConv2d) and not conv.input_scale for conv in unit.convs)
        and residual_pool(unit.residual) is not None
        and isinstance(unit.bn, nn.BatchNorm2d)
        and unit.bn.running_mean is not None
    )


_EPILOGUE_VECTORS = ("slope", "scale", "shift")  # the per-channel PostOps fields


# The tensors a unit plan's pointer fields point into (``UnitPlan.pointers``): the unit's input,
# its output, the tensor added in the last epilogue; packed buffer ``k`` is base ``UNIT_BUFFERS + k``.
UNIT_INPUT, UNIT_OUTPUT, UNIT_ADDED, UNIT_BUFFERS = range(4)


@dataclass(frozen=True)
class UnitPlan:
    """A fused unit's packing passes and convs for one input shape, output layout and clamp.

    ``pointers`` lists every pointer field of ``steps`` that a call's tensors decide, as
    :data:`bidrn.deploy.kernels.Pointer` s over the bases above. A call fills them in
    (:func:`bidrn.deploy.kernels.fill_addresses`) and runs while holding ``lock``, so that calls
    from several threads never run with each other's addresses.
    """

    out_shape: tuple[int, int, int, int]
    packs: tuple[kernels.PackPlan, ...]
    steps: tuple[ctypes.Structure, ...]
    pointers: tuple[kernels.Pointer, ...]
    operands: tuple[object, ...]
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


class FusedLocalConvResidual(kernels.CallPlanCache, LocalConvResidual):
    """A :class:`~bidrn.nets.bidrn.LocalConvResidual` whose branches run as packed convs with fused epilogues.

    Made by :meth:`fuse` from a unit (in place); see the module docstring.
    """

    output_clamp: tuple[float, float] | None

    @classmethod
    def fuse(cls, unit: LocalConvResidual) -> FusedLocalConvResidual:
        """Turn ``unit`` (frozen: its convs packed) into a fused unit in place and return it."""
        if not can_fuse(unit):
            raise ValueError("only residual-form LocalConvResidual units with packed convs can be fused")
        unit.__class__ = cls
        unit.output_clamp = None  # set by fuse_preactivations
        unit._plans = {}  # (shapes, strides, output layout, clamp, ISA generation) -> plan
        unit.register_load_state_dict_post_hook(lambda module, _keys: module.invalidate())
        return unit

    @property
    def shares_packed_input(self) -> bool:
        """Whether the branches read one packed input.

        Fusion Up and Down Sample branches read the same input; Fusion Down branches read channel
        groups of it, which one packing serves when the groups are whole 64-bit words.
        """
        if len(self.convs) == 1 or any(conv.input_threshold is not None for conv in self.convs):
            return False
        return self.form != "fusion_down" or self.convs[0].in_channels % 64 == 0

    @property
    def merges_branches(self) -> bool:
        """Whether the branches run as one conv over the concatenated output channels.

        Fusion Up and Down Sample branches read one packed input, add the same residual (the input,
        or its 2×2 mean) and write consecutive channel slices: one conv whose residual repeats
        along the channels (``ConvArgs.res_channels``) writes each output pixel whole, instead of
        one slice per branch (a 64 -> 256 unit at 2×64×64: 3.5 -> 3.0 ms; the paper-size model
        0.97×). The slices must be whole chunks of the kernels' output channels.
        """
        return (
            self.form != "fusion_down"
            and self.shares_packed_input
            and self.convs[0].out_channels % OUT_CHANNEL_CHUNK == 0
        )

    @property
    def sums_branches(self) -> bool:
        """Whether the branches run as one conv that sums them in registers (``ConvArgs.branches``).

        Fusion Down branches read word-aligned channel groups of one packed input and are summed
        into one output. One branch per conv wrote the output once per branch and read it back
        for each later one (three extra stores and loads per output value); one conv of four
        branches writes it once, with the same operations in the same order (bit-identical):
        Fusion Down units 0.77-0.83x the time on Zen 4 (docs/deployment.md).
        """
        fits = len(self.convs) <= kernels.MAX_BRANCHES
        return self.form == "fusion_down" and self.shares_packed_input and fits

    def _kernel_branches(self) -> list[tuple[kernels.ConvPhase, Tensor, Tensor, PostOps]]:
        """(phase, multiplier, addend, post-ops) of each conv the kernels run: per branch, or merged.

        Merged branches (:attr:`merges_branches`, :attr:`sums_branches`) are one conv whose weights,
        tap sums and per-channel vectors are the branches' one after the other.
        """
        branches = []
        for conv, (addend, post) in zip(self.convs, self._branch_terms(), strict=True):
            (phase,), multiplier, _ = conv._kernel_operands()
            branches.append((phase, multiplier, addend, post))
        if not (self.merges_branches or self.sums_branches):
            return branches
        phases, multipliers, addends, posts = zip(*branches, strict=True)
        if self.merges_branches:
            bits = torch.cat([conv.weight_bits.cpu() for conv in self.convs])
            weights = kernel_weights(bits, self.convs[0].in_channels)
        else:
            weights = KernelWeights(
                torch.cat([phase.weights.weights for phase in phases]),
                torch.cat([phase.weights.tap_sums for phase in phases]),
                phases[0].weights.out_channels_padded,
            )
        post = PostOps(**{name: torch.cat([getattr(p, name) for p in posts]) for name in _EPILOGUE_VECTORS})
        return [(replace(phases[0], weights=weights), torch.cat(multipliers), torch.cat(addends), post)]

    def invalidate(self) -> None:
        """Forget the call plans, which hold the derived epilogue vectors (after parameters change)."""
        self._plans = {}

    def _apply(self, fn, recurse=True):
        self.invalidate()
        return super()._apply(fn, recurse)

    @torch.no_grad()
    def _branch_terms(self) -> list[tuple[Tensor, PostOps]]:
        """Per branch: the conv's addend with γ folded in, and the post-ops (float32, padded)."""
        scale, shift = batchnorm_factors(self.bn)
        summed = self.form == "fusion_down"
        terms = []
        for index, (conv, rprelu) in enumerate(zip(self.convs, self.rprelus, strict=True)):
            _, multiplier, addend = conv._kernel_operands()
            width = conv.out_channels
            channels = slice(0, width) if summed else slice(index * width, (index + 1) * width)
            branch_scale, branch_shift = scale[channels], scale[channels] * rprelu.shift_out.double()
            if not summed or index == 0:
                branch_shift = branch_shift + shift[channels]
            shifted_addend = addend.clone()
            shifted_addend[:width] -= rprelu.shift_in.float()
            post = PostOps(
                slope=kernels.padded_like(rprelu.slope, multiplier),
                scale=kernels.padded_like(branch_scale, multiplier),
                shift=kernels.padded_like(branch_shift, multiplier),
            )
            terms.append((shifted_addend, post))
        return terms

    def forward(
        self,
        x: Tensor,
        add: Tensor | None = None,
        clamp: tuple[float, float] | None = None,
        *,
        into_add: bool = False,
    ) -> Tensor:
        """The unit's output, plus ``add`` when given, clamped to ``clamp`` (default ``output_clamp``).

        Args:
            x: unit input (N, C, H, W).
            add: a tensor of the output's shape added to the output (:class:`FusedBiDRB` passes the
                Block Residual); it is read, not written, unless ``into_add``.
            clamp: bounds applied to the final output instead of ``output_clamp``.
            into_add: the caller will not read ``add`` again: when it is a channels-last float32
                tensor, the output is written over it (each element after its own read), which spares
                the kernels a separate output stream (see :class:`FusedBiDRB`).
        """
        clamp = clamp if clamp is not None else self.output_clamp
        if not self.convs[0]._use_kernels(x):
            # The network's own branch-by-branch math (Eq. 7-10) on the packed layers' reference path;
            # its batched form needs the simulated convs' quantizers, which packed layers do not have.
            out = self.bn(self._branch_by_branch(self.preactivation(x)))
            if add is not None:
                out = out + add
            return out if clamp is None else out.clamp(*clamp)
        a_nhwc = self.preactivation(x).contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        add_nhwc = (
            None if add is None else add.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        )
        plan = self.call_plan(a_nhwc, add_nhwc, clamp)
        if into_add and add_nhwc is not None and add_nhwc.dtype == torch.float32 and add_nhwc.is_contiguous():
            out = add_nhwc  # the plan's offsets into the output and into `add` coincide
        else:
            out = torch.empty(plan.out_shape, dtype=torch.float32)
        buffers = [pack.buffer() for pack in plan.packs]
        bases = (
            a_nhwc.data_ptr(),
            out.data_ptr(),
            0 if add_nhwc is None else add_nhwc.data_ptr(),
            *(buffer.data_ptr() for buffer in buffers),
        )
        with plan.lock:
            kernels.fill_addresses(plan.pointers, bases)
            kernels.run(plan.steps)
        return out.permute(0, 3, 1, 2)

    def call_plan(
        self, a_nhwc: Tensor, add_nhwc: Tensor | None, clamp: tuple[float, float] | None
    ) -> UnitPlan:
        """The (cached) plan for an input, added tensor and clamp shaped and strided like these."""
        key = self.plan_key(a_nhwc, add_nhwc, clamp)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(a_nhwc, add_nhwc, clamp)
            self._plans[key] = plan
        return plan

    @staticmethod
    def plan_key(a_nhwc: Tensor, add_nhwc: Tensor | None, clamp: tuple[float, float] | None) -> tuple:
        """What a plan depends on: shapes, strides, clamp and the kernels' generation."""
        add = None if add_nhwc is None else (add_nhwc.shape, add_nhwc.stride())
        return (a_nhwc.shape, a_nhwc.stride(), add, clamp, kernels.generation())

    def _plan(self, a_nhwc: Tensor, add_nhwc: Tensor | None, clamp: tuple[float, float] | None) -> UnitPlan:
        """Packing passes and convs of every branch for inputs (and output) shaped and strided like these."""
        first = self.convs[0]
        batch = a_nhwc.shape[0]
        out_h, out_w = first.out_size(a_nhwc.shape[1], a_nhwc.shape[2])
        width, in_width = first.out_channels, first.in_channels
        summed = self.form == "fusion_down"
        out_shape = (batch, out_h, out_w, width if summed else width * self.branches)
        if add_nhwc is not None and (tuple(add_nhwc.shape) != out_shape or add_nhwc.stride(3) != 1):
            raise ValueError("add must be a tensor of the unit's output shape")
        out = torch.empty(out_shape, dtype=torch.float32)
        pooled = bool(residual_pool(self.residual))
        shared = self.shares_packed_input
        if self.merges_branches:  # one conv writes every branch's channels
            width = out_shape[3]
        kernel_branches = self._kernel_branches()
        branches_summed = len(self.convs) if self.sums_branches else 1
        packs, steps, pointers, operands = [], [], [], []
        for index, (phase, multiplier, addend, post) in enumerate(kernel_branches):
            threshold = self.convs[index]._threshold()  # one tensor: the pack points to it, operands keep it
            part = a_nhwc[..., index * in_width : (index + 1) * in_width] if summed else a_nhwc
            if not packs or not shared:
                source = a_nhwc if shared else part
                packs.append(kernels.plan_pack(source, [phase], out_h, out_w, threshold))
                steps.append(packs[-1].args)
                pointers += [
                    (packs[-1].args, "input", UNIT_INPUT, source.data_ptr() - a_nhwc.data_ptr()),
                    (packs[-1].args, "packed", UNIT_BUFFERS + len(packs) - 1, 0),
                ]
            branch_out = out if summed else out[..., index * width : (index + 1) * width]
            residual = part if summed else a_nhwc
            added = out if summed and index > 0 else add_nhwc
            if added is not None and not summed:
                added = added[..., index * width : (index + 1) * width]
            last = not summed or index == len(kernel_branches) - 1
            branch_post = PostOps(
                slope=post.slope,
                residual=residual,
                residual_pool=pooled,
                scale=post.scale,
                shift=post.shift,
                accumulate=added,
                clamp=clamp if last else None,
            )
            word_offset = index * in_width // 64 if summed and shared else 0
            args = kernels.plan_conv_args(
                packs[-1],
                phase,
                packs[-1].sizes[0],
                branch_out,
                multiplier,
                addend,
                branch_post,
                word_offset,
                channels=in_width,
                joins_previous=index > 0 and shared,
                branches=branches_summed,
                branch_words=in_width // 64,
            )
            pointers += [
                (args, "packed", UNIT_BUFFERS + len(packs) - 1, 0),
                (args, "out", UNIT_OUTPUT, branch_out.data_ptr() - out.data_ptr()),
                (args, "residual", UNIT_INPUT, residual.data_ptr() - a_nhwc.data_ptr()),
            ]
            if added is not None:
                base, tensor = (
                    (UNIT_OUTPUT, out) if added.data_ptr() == out.data_ptr() else (UNIT_ADDED, add_nhwc)
                )
                pointers.append((args, "accumulate_from", base, added.data_ptr() - tensor.data_ptr()))
            steps.append(args)
            operands.append((phase, multiplier, addend, post, threshold))
        return UnitPlan(out_shape, tuple(packs), tuple(steps), tuple(pointers), tuple(operands))


class FusedBiDRB(nn.Module):
    """Frozen BiDRB (Eq. 11): the Block Residual add happens in the last unit's epilogue.

    ``out = units(a) + BR(a)`` becomes: compute ``BR(a)`` (projection conv + BN, or ``a`` itself),
    then let the last :class:`FusedLocalConvResidual` add it, followed by the next block's Hardtanh
    as a clamp when :func:`fuse_preactivations` moved it here.

    The last unit writes its output over ``BR(a)`` when nothing else reads that tensor afterwards:
    always for a projection's output or a pre-activation's (made in this call), and for the block's
    own input when the caller hands it over (``overwrite_input``; a
    :class:`~bidrn.deploy.stages.FusedStage` run block by block does). A separate output would be one
    more stream of the block's widest map through the caches (a 64 -> 256 unit
    at 2×64×64: 1.9 -> 1.1 ms). Nothing a forward hook was given is overwritten (:func:`observed`).
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        if not can_fuse_block(block):
            raise ValueError("only BiDRBs whose last unit is fused can be fused")
        self.preactivation = block.preactivation
        self.units = block.units
        self.block_residual = block.block_residual
        self.output_clamp: tuple[float, float] | None = None  # set by fuse_preactivations
        self.input_clamp: tuple[float, float] | None = None  # the previous block's, when it took ours

    def forward(self, x: Tensor, *, overwrite_input: bool = False) -> Tensor:
        """``clamp(units(a) + BR(a))`` with ``a = preactivation(x)``, the add fused into the last unit.

        ``overwrite_input``: the caller will not read ``x`` again, so the output may take its memory.
        """
        a = self.preactivation(x)
        *leading, last = self.units
        residual = None if self.block_residual is None else self.block_residual(a)
        out = a
        for unit in leading:
            out = unit(out)
        owned = residual is not None and (overwrite_input or not shares_memory(residual, x))
        into_add = owned and not observed(self.input_readers())
        return last(out, add=residual, clamp=self.output_clamp, into_add=into_add)

    def input_readers(self) -> list[nn.Module]:
        """The modules whose forward hooks would be handed ``x``, ``a`` or ``BR(a)``."""
        modules = self._modules  # read directly: nn.Module.__getattr__ costs ~1 us per name per call
        first = next(iter(modules["units"]._modules.values()))
        readers = [self, modules["preactivation"], first, first._modules["preactivation"]]
        if modules["block_residual"] is not None:
            readers.extend(modules["block_residual"].modules())
        return readers

    def output_readers(self) -> list[nn.Module]:
        """The modules whose forward hooks would be handed the block's output."""
        return [self, next(reversed(self._modules["units"]._modules.values()))]


def observed(modules: Iterable[nn.Module]) -> bool:
    """Whether forward hooks (global ones, or on any of ``modules``) are handed tensors.

    A hook may keep the tensors it is handed, so fused blocks never write over those. Global hooks
    are read from torch's module registry; a torch without it counts as observed.
    """
    registry = torch.nn.modules.module
    if any(getattr(registry, name, True) for name in ("_global_forward_hooks", "_global_forward_pre_hooks")):
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def shares_memory(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors are views of one storage."""
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def can_fuse_block(block: nn.Module) -> bool:
    """Whether ``block`` is a BiDRB whose last unit has been fused."""
    return isinstance(block, BiDRBottleneck | BiDRBasicBlock) and isinstance(
        block.units[-1], FusedLocalConvResidual
    )


def _clamp_bounds(module: nn.Module) -> tuple[float, float] | None:
    if isinstance(module, nn.Hardtanh):
        return float(module.min_val), float(module.max_val)
    if isinstance(module, nn.ReLU):
        return 0.0, float("inf")
    return None


def _chains(model: nn.Module) -> list[list[nn.Module]]:
    """Module sequences applied one after the other.

    Each ``nn.Sequential``'s children, and the blocks of every :class:`BiDRNEncoder` across its
    stages (its forward runs them in order, and only the last block's output leaves the encoder).
    """
    chains = [list(module) for module in model.modules() if isinstance(module, nn.Sequential)]
    for encoder in model.modules():
        if isinstance(encoder, BiDRNEncoder):
            chains.append([block for stage in encoder.stages for block in stage])
    return chains


def fuse_preactivations(model: nn.Module) -> int:
    """Move clamp-like pre-activations of fused units into the previous unit of the same chain.

    For consecutive members ``u, v`` of a chain (see :func:`_chains`) that are both
    :class:`FusedLocalConvResidual` (or both :class:`FusedBiDRB`) and ``v`` starts with Hardtanh or
    ReLU, ``u`` clamps its output and ``v``'s pre-activation becomes ``nn.Identity``. Returns the
    number of moves.
    """
    moved = 0
    fused = (FusedLocalConvResidual, FusedBiDRB)
    for chain in _chains(model):
        for current, following in itertools.pairwise(chain):
            if not (isinstance(current, fused) and isinstance(following, type(current))):
                continue
            bounds = _clamp_bounds(following.preactivation)
            if bounds is None or current.output_clamp is not None:
                continue
            current.output_clamp = bounds
            following.preactivation = nn.Identity()
            if isinstance(following, FusedBiDRB):
                following.input_clamp = bounds
            moved += 1
    return moved


def bound_projection_inputs(model: nn.Module) -> int:
    """Record the input range of each fused block's Block Residual projection; returns how many.

    The projection reads ``a = preactivation(x)`` (Eq. 11): with a Hardtanh pre-activation, or with
    the Hardtanh moved into the previous block's clamp (:func:`fuse_preactivations`), every element
    lies in its bounds, so :func:`bidrn.deploy.dense.set_input_range` records them and int8
    precision can quantize that input with a fixed step. ReLU and PReLU bound nothing.
    """
    bounded = 0
    for block in model.modules():
        if not isinstance(block, FusedBiDRB) or block.block_residual is None:
            continue
        bounds = _clamp_bounds(block.preactivation) or block.input_clamp
        projection = block.block_residual.projection
        conv = projection[0] if isinstance(projection, nn.Sequential) else None
        if bounds is None or not isinstance(conv, PointwiseConv2d) or not all(map(math.isfinite, bounds)):
            continue
        set_input_range(conv, *bounds)
        bounded += 1
    return bounded
