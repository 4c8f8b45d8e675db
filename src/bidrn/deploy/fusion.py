"""Fused BiDRN units: one kernel call per branch of a Local Convolution Residual.

A :class:`bidrn.nets.bidrn.LocalConvResidual` with a residual form computes (paper Eq. 7–10)::

    out = BN(merge_i(RPReLU_i(BinaryConv_i(a_i)) + R(a_i)))

In a frozen model the BatchNorm cannot be folded into the conv (RPReLU and the residual sit
between them), so run unfused every unit would make four extra passes over its output (RPReLU,
residual add, concat / sum, BatchNorm). :class:`FusedLocalConvResidual` runs each branch as one
packed convolution whose epilogue applies all of them (:class:`bidrn.deploy.kernels.PostOps`):

* RPReLU's input shift γ goes into the conv's addend, its slope is the PReLU post-op;
* the residual ``R(a_i)`` (identity or 2×2 average pool, computed by torch) is added;
* BatchNorm (eval) and RPReLU's output shift ζ become one multiply-add:
  ``BN(p + r + ζ) = s·(p + r) + (s·ζ + t)``;
* concat forms write each branch into its channel slice of the output; the Fusion Down sum
  accumulates branches into one output (BatchNorm is linear, so its shift is added once);
* within an ``nn.Sequential`` chain of units, the next unit's Hardtanh (or ReLU) pre-activation
  becomes a clamp at the end of this unit's epilogue (:func:`fuse_preactivations`): the chain
  hands each unit's output only to the next one, so nothing else sees the unclamped values.

The module keeps the unit's submodules and names (``convs`` now packed), so state-dict keys are
unchanged; on the reference path (no compiled kernels) it runs the original sequence of torch ops.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bidrn.deploy import kernels
from bidrn.deploy.dense import batchnorm_factors
from bidrn.deploy.kernels import PostOps
from bidrn.deploy.layers import PackedBinaryConv2d
from bidrn.nets.bidrn import BiDRBasicBlock, BiDRBottleneck, BiDRNEncoder, LocalConvResidual

__all__ = ["FusedBiDRB", "FusedLocalConvResidual", "can_fuse", "can_fuse_block", "fuse_preactivations"]


def can_fuse(unit: nn.Module) -> bool:
    """Whether ``unit`` is a residual-form LCR whose convs are packed and whose BatchNorm is eval-able."""
    return (
        isinstance(unit, LocalConvResidual)
        and unit.rprelus is not None
        and all(isinstance(conv, PackedBinaryConv2d) and not conv.input_scale for conv in unit.convs)
        and isinstance(unit.bn, nn.BatchNorm2d)
        and unit.bn.running_mean is not None
    )


def _padded(values: Tensor, like: Tensor) -> Tensor:
    """``values`` as float32, zero-padded to the length of ``like``."""
    out = torch.zeros_like(like)
    out[: values.numel()] = values.float()
    return out


@dataclass(frozen=True)
class _BranchCall:
    """One branch's kernel call plan, and its byte offsets into the unit's input, output, residual."""

    conv: kernels.ConvPlan
    input_offset: int
    out_offset: int
    residual_offset: int


@dataclass(frozen=True)
class _UnitPlan:
    """A fused unit's calls for one input shape, output layout and clamp."""

    out_shape: tuple[int, int, int, int]
    branches: tuple[_BranchCall, ...]


class FusedLocalConvResidual(nn.Module):
    """Frozen :class:`~bidrn.nets.bidrn.LocalConvResidual` with RPReLU, residual, merge and BN fused."""

    def __init__(self, unit: nn.Module) -> None:
        super().__init__()
        if not can_fuse(unit):
            raise ValueError("only residual-form LocalConvResidual units with packed convs can be fused")
        self.form = unit.form
        self.branches = unit.branches
        self.preactivation = unit.preactivation
        self.convs = unit.convs
        self.rprelus = unit.rprelus
        self.residual = unit.residual
        self.bn = unit.bn
        self.output_clamp: tuple[float, float] | None = None  # set by fuse_preactivations
        self._plans: dict[tuple, _UnitPlan] = {}  # (shapes, strides, output layout, clamp) -> plan
        # Branches that read the same input through identical convs share one packed input.
        first = self.convs[0].config()
        self.shares_packed_input = (
            self.form != "fusion_down"
            and len(self.convs) > 1
            and not first["has_threshold"]
            and not first["input_scale"]
            and all(conv.config() == first for conv in self.convs)
        )
        self.register_load_state_dict_post_hook(lambda module, _keys: module.invalidate())

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
                slope=_padded(rprelu.slope, multiplier),
                scale=_padded(branch_scale, multiplier),
                shift=_padded(branch_shift, multiplier),
                accumulate=summed and index > 0,
            )
            terms.append((shifted_addend, post))
        return terms

    def _reference_forward(
        self, a: Tensor, accumulate_into: Tensor | None, clamp: tuple[float, float] | None
    ) -> Tensor:
        inputs = a.chunk(self.branches, dim=1) if self.form == "fusion_down" else (a,) * self.branches
        outputs = [
            rprelu(conv(part)) + self.residual(part)
            for conv, rprelu, part in zip(self.convs, self.rprelus, inputs, strict=True)
        ]
        merged = torch.stack(outputs).sum(dim=0) if self.form == "fusion_down" else torch.cat(outputs, dim=1)
        out = self.bn(merged)
        if accumulate_into is not None:
            out = accumulate_into.add_(out)
        return out if clamp is None else out.clamp_(*clamp)

    def forward(
        self, x: Tensor, accumulate_into: Tensor | None = None, clamp: tuple[float, float] | None = None
    ) -> Tensor:
        """Pre-activate, then one fused packed conv per branch (see the module docstring).

        Args:
            x: unit input (N, C, H, W).
            accumulate_into: a channels-last tensor of the output's shape that the unit's output is
                added to in place and returned (:class:`FusedBiDRB` passes the Block Residual).
            clamp: bounds applied to the final output instead of ``output_clamp``.
        """
        clamp = clamp if clamp is not None else self.output_clamp
        a = self.preactivation(x)
        if not self.convs[0]._use_kernels(a):
            return self._reference_forward(a, accumulate_into, clamp)
        a = a.contiguous(memory_format=torch.channels_last)
        residual = self.residual(a).contiguous(memory_format=torch.channels_last)
        a_nhwc, residual_nhwc = a.permute(0, 2, 3, 1), residual.permute(0, 2, 3, 1)
        target = None if accumulate_into is None else accumulate_into.permute(0, 2, 3, 1)
        key = (
            a_nhwc.shape,
            a_nhwc.stride(),
            residual_nhwc.shape,
            residual_nhwc.stride(),
            None if target is None else (target.shape, target.stride()),
            clamp,
        )
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(a_nhwc, residual_nhwc, target, clamp)
            self._plans[key] = plan
        out = torch.empty(plan.out_shape, dtype=torch.float32) if target is None else target
        a_address, out_address, residual_address = a_nhwc.data_ptr(), out.data_ptr(), residual_nhwc.data_ptr()
        buffer = kernels.pack_for_plan(plan.branches[0].conv, a_address) if self.shares_packed_input else None
        for branch in plan.branches:
            kernels.run_conv(
                branch.conv,
                a_address + branch.input_offset,
                out_address + branch.out_offset,
                residual_address + branch.residual_offset,
                buffer,
            )
        return out.permute(0, 3, 1, 2)

    def _plan(
        self, a_nhwc: Tensor, residual_nhwc: Tensor, target: Tensor | None, clamp: tuple[float, float] | None
    ) -> _UnitPlan:
        """Kernel call plans of every branch for inputs (and output) shaped and strided like these."""
        first = self.convs[0]
        batch = a_nhwc.shape[0]
        out_h, out_w = first.out_size(a_nhwc.shape[1], a_nhwc.shape[2])
        width = first.out_channels
        summed = self.form == "fusion_down"
        out_shape = (batch, out_h, out_w, width if summed else width * self.branches)
        if target is None:
            out = torch.empty(out_shape, dtype=torch.float32)
        elif tuple(target.shape) != out_shape or target.stride(3) != 1:
            raise ValueError("accumulate_into must be a channels-last tensor of the unit's output shape")
        else:
            out = target
        clamp_bounds = None if clamp is None else torch.tensor(clamp, dtype=torch.float32)
        branches = []
        for index, (conv, (addend, post)) in enumerate(zip(self.convs, self._branch_terms(), strict=True)):
            (phase,), multiplier, _ = conv._kernel_operands()
            if summed:
                part = a_nhwc[..., index * conv.in_channels : (index + 1) * conv.in_channels]
                branch_residual = residual_nhwc[..., index * width : (index + 1) * width]
                branch_out = out
            else:
                part, branch_residual = a_nhwc, residual_nhwc
                branch_out = out[..., index * width : (index + 1) * width]
            last = not summed or index == len(self.convs) - 1
            branch_post = PostOps(
                post.slope,
                branch_residual,
                post.scale,
                post.shift,
                post.accumulate or target is not None,
                clamp_bounds if last else None,
            )
            threshold = conv._threshold()
            plan = kernels.plan_conv(part, phase, branch_out, multiplier, addend, threshold, branch_post)
            branches.append(
                _BranchCall(
                    plan,
                    part.data_ptr() - a_nhwc.data_ptr(),
                    branch_out.data_ptr() - out.data_ptr(),
                    branch_residual.data_ptr() - residual_nhwc.data_ptr(),
                )
            )
        return _UnitPlan(out_shape, tuple(branches))


class FusedBiDRB(nn.Module):
    """Frozen BiDRB (Eq. 11): the Block Residual add happens in the last unit's epilogue.

    ``out = units(a) + BR(a)`` becomes: compute ``BR(a)`` (projection conv + BN, or a copy of ``a``),
    then let the last :class:`FusedLocalConvResidual` accumulate into it, followed by the next
    block's Hardtanh as a clamp when :func:`fuse_preactivations` moved it here.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        if not can_fuse_block(block):
            raise ValueError("only BiDRBs whose last unit is fused can be fused")
        self.preactivation = block.preactivation
        self.units = block.units
        self.block_residual = block.block_residual
        self.output_clamp: tuple[float, float] | None = None  # set by fuse_preactivations

    def forward(self, x: Tensor) -> Tensor:
        """``clamp(units(a) + BR(a))`` with ``a = preactivation(x)``, the add fused into the last unit."""
        a = self.preactivation(x)
        *leading, last = self.units
        if self.block_residual is None:
            residual = None
        else:
            residual = self.block_residual(a)
            if residual is a or residual is x:  # never write into a tensor the caller may still hold
                residual = residual.clone(memory_format=torch.channels_last)
            else:
                residual = residual.contiguous(memory_format=torch.channels_last)
        out = a
        for unit in leading:
            out = unit(out)
        return last(out, accumulate_into=residual, clamp=self.output_clamp)


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
            moved += 1
    return moved
