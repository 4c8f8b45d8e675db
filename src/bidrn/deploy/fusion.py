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

import torch
from torch import Tensor, nn

from bidrn.deploy import kernels
from bidrn.deploy.kernels import PostOps
from bidrn.deploy.layers import PackedBinaryConv2d
from bidrn.nets.bidrn import LocalConvResidual

__all__ = ["FusedLocalConvResidual", "can_fuse", "fuse_preactivations"]


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
        self._post: list[tuple[Tensor, PostOps]] | None = None
        self.register_load_state_dict_post_hook(lambda module, _keys: module.invalidate())

    def invalidate(self) -> None:
        """Forget the derived epilogue vectors (after parameters change)."""
        self._post = None

    def _apply(self, fn, recurse=True):
        self.invalidate()
        return super()._apply(fn, recurse)

    @torch.no_grad()
    def _branch_terms(self) -> list[tuple[Tensor, PostOps]]:
        """Per branch: the conv's addend with γ folded in, and the post-ops (float32, padded)."""
        if self._post is not None:
            return self._post
        bn = self.bn
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        shift = bn.bias.double() - bn.running_mean.double() * scale
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
            last = not summed or index == len(self.convs) - 1
            clamp = torch.tensor(self.output_clamp) if self.output_clamp is not None and last else None
            post = PostOps(
                slope=_padded(rprelu.slope, multiplier),
                scale=_padded(branch_scale, multiplier),
                shift=_padded(branch_shift, multiplier),
                accumulate=summed and index > 0,
                clamp=clamp,
            )
            terms.append((shifted_addend, post))
        self._post = terms
        return terms

    def _reference_forward(self, a: Tensor) -> Tensor:
        inputs = a.chunk(self.branches, dim=1) if self.form == "fusion_down" else (a,) * self.branches
        outputs = [
            rprelu(conv(part)) + self.residual(part)
            for conv, rprelu, part in zip(self.convs, self.rprelus, inputs, strict=True)
        ]
        merged = torch.stack(outputs).sum(dim=0) if self.form == "fusion_down" else torch.cat(outputs, dim=1)
        out = self.bn(merged)
        return out if self.output_clamp is None else out.clamp(*self.output_clamp)

    def forward(self, x: Tensor) -> Tensor:
        """Pre-activate, then one fused packed conv per branch (see the module docstring)."""
        a = self.preactivation(x)
        first = self.convs[0]
        if not first._use_kernels(a):
            return self._reference_forward(a)
        a = a.contiguous(memory_format=torch.channels_last)
        residual = self.residual(a).contiguous(memory_format=torch.channels_last)
        a_nhwc, residual_nhwc = a.permute(0, 2, 3, 1), residual.permute(0, 2, 3, 1)
        batch = a.shape[0]
        out_h, out_w = first.out_size(a.shape[2], a.shape[3])
        width = first.out_channels
        summed = self.form == "fusion_down"
        total = width if summed else width * self.branches
        out = torch.empty((batch, out_h, out_w, total), dtype=torch.float32)
        for index, (conv, (addend, post)) in enumerate(zip(self.convs, self._branch_terms(), strict=True)):
            phases, multiplier, _ = conv._kernel_operands()
            if summed:
                part = a_nhwc[..., index * conv.in_channels : (index + 1) * conv.in_channels]
                branch_residual = residual_nhwc[..., index * width : (index + 1) * width]
                target = out
            else:
                part, branch_residual = a_nhwc, residual_nhwc
                target = out[..., index * width : (index + 1) * width]
            branch_post = PostOps(
                post.slope, branch_residual, post.scale, post.shift, post.accumulate, post.clamp
            )
            kernels.packed_conv(
                part,
                phases,
                out_h,
                out_w,
                width,
                multiplier,
                addend,
                conv._threshold(),
                out=target,
                post=branch_post,
            )
        return out.permute(0, 3, 1, 2)


def _clamp_bounds(module: nn.Module) -> tuple[float, float] | None:
    if isinstance(module, nn.Hardtanh):
        return float(module.min_val), float(module.max_val)
    if isinstance(module, nn.ReLU):
        return 0.0, float("inf")
    return None


def fuse_preactivations(model: nn.Module) -> int:
    """Move clamp-like pre-activations of fused units into the previous unit of the same chain.

    For consecutive children ``u, v`` of an ``nn.Sequential`` that are both
    :class:`FusedLocalConvResidual` and ``v`` starts with Hardtanh or ReLU, ``u`` clamps its output
    and ``v``'s pre-activation becomes ``nn.Identity``. Returns the number of moves.
    """
    moved = 0
    for chain in model.modules():
        if not isinstance(chain, nn.Sequential):
            continue
        for current, following in itertools.pairwise(chain):
            if not (
                isinstance(current, FusedLocalConvResidual) and isinstance(following, FusedLocalConvResidual)
            ):
                continue
            bounds = _clamp_bounds(following.preactivation)
            if bounds is None or current.output_clamp is not None:
                continue
            current.output_clamp = bounds
            current.invalidate()
            following.preactivation = nn.Identity()
            moved += 1
    return moved
