"""Frozen BoxNet upsampling units: one packed transposed conv whose epilogue finishes the unit.

A binarized BoxNet upsampling unit (:class:`bidrn.nets.boxnet.BinarizedUpsampling`, paper §3.2,
Fig. 6) computes ``BN(RPReLU(deconv(a)) + up2(R(a)))`` with ``R`` the identity or a 1×1 projection
and ``up2`` ×2 nearest upsampling. The kernels run the stride-2 transposed conv as four phases
(:class:`bidrn.deploy.layers.PackedBinaryConvTranspose2d`), each a stride-1 conv whose output
``(q, r)`` lands at ``(2q + i, 2r + j)``; nearest upsampling reads ``R(a)`` at ``(q, r)`` for every
phase, so ``R(a)`` itself is each phase's residual map, and the unit is one extension call: RPReLU,
the residual and the BatchNorm are its post-ops (csrc/bitconv.hpp), as in
:class:`bidrn.deploy.fusion.FusedLocalConvResidual`. Unfused, the same math ran as six torch passes
over the 64×48×256 output (5 ms of BoxNet's 11 at paper size).

Fusing swaps the class in place and keeps every submodule, so the state dict is unchanged and
:func:`bidrn.deploy.freeze.fuse_units` repeats it when a frozen file is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bidrn.deploy import kernels
from bidrn.deploy.dense import batchnorm_factors
from bidrn.deploy.kernels import PostOps
from bidrn.deploy.layers import PackedBinaryConvTranspose2d
from bidrn.nets.boxnet import BinarizedUpsampling

__all__ = ["FusedUpsampling", "can_fuse_upsampling", "fuse_upsampling"]


def can_fuse_upsampling(module: nn.Module) -> bool:
    """Whether ``module`` is a frozen upsampling unit with a residual whose deconv the kernels run."""
    if type(module) is not BinarizedUpsampling or module.rprelu is None or module.projection is None:
        return False
    deconv = module.deconv
    return (
        isinstance(deconv, PackedBinaryConvTranspose2d)
        and not deconv.input_scale
        and deconv.stride == (2, 2)
        and deconv.dilation == (1, 1)
        and isinstance(module.bn, nn.BatchNorm2d)
        and all(k >= s for k, s in zip(deconv.kernel_size, deconv.stride, strict=True))  # taps in every phase
    )


def fuse_upsampling(model: nn.Module) -> int:
    """Fuse every fusable BoxNet upsampling unit of a frozen model in place; returns how many."""
    units = [module for module in model.modules() if can_fuse_upsampling(module)]
    for unit in units:
        unit.__class__ = FusedUpsampling
        unit._plans = {}
        unit.register_load_state_dict_post_hook(lambda module, _keys: module._plans.clear())
    return len(units)


@dataclass(frozen=True)
class _Plan:
    """The packing pass and the four phase convs for one input shape, and where each phase writes."""

    out_shape: tuple[int, int, int, int]
    pack: kernels.PackPlan
    convs: tuple[kernels.ConvArgs, ...]
    out_offsets: tuple[int, ...]  # bytes from the output's start to each phase's first element
    operands: tuple[object, ...]  # the weights and epilogue vectors the argument structs point to


class FusedUpsampling(BinarizedUpsampling):
    """:class:`~bidrn.nets.boxnet.BinarizedUpsampling` run as one packed conv with fused post-ops."""

    _plans: dict[tuple, _Plan]

    def _apply(self, fn, recurse=True):
        # Moving or converting the module rebuilds the deconv's kernel operands, which the plans
        # point to (as FusedLocalConvResidual.invalidate).
        self._plans.clear()
        return super()._apply(fn, recurse)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, 2H, 2W), as the unfused unit up to float rounding."""
        a = self.preactivation(x)
        if not self.deconv._use_kernels(a):
            return super().forward(x)
        a_nhwc = a.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        residual = self.projection(a).contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        key = (a_nhwc.shape, a_nhwc.stride(), residual.stride(), kernels.generation())
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(a_nhwc, residual)
        out = torch.empty(plan.out_shape, dtype=torch.float32)
        buffer = plan.pack.buffer()
        plan.pack.args.input, plan.pack.args.packed = a_nhwc.data_ptr(), buffer.data_ptr()
        for conv, offset in zip(plan.convs, plan.out_offsets, strict=True):
            conv.packed, conv.residual = buffer.data_ptr(), residual.data_ptr()
            conv.out = out.data_ptr() + offset
        kernels.run([plan.pack.args, *plan.convs])
        return out.permute(0, 3, 1, 2)

    @torch.no_grad()
    def _plan(self, a_nhwc: Tensor, residual: Tensor) -> _Plan:
        deconv, rprelu = self.deconv, self.rprelu
        phases, multiplier, addend = deconv._kernel_operands()
        batch, height, width, _ = a_nhwc.shape
        out_shape = (batch, 2 * height, 2 * width, deconv.out_channels)
        if tuple(residual.shape) != (batch, height, width, deconv.out_channels):
            raise ValueError("the residual must have the deconv's input size and output channels")
        # BN(prelu(o - s_in) + s_out + r) = scale * (prelu(o') + r) + (scale * s_out + shift).
        scale, shift = batchnorm_factors(self.bn)
        count = deconv.out_channels
        shifted_addend = addend.clone()
        shifted_addend[:count] -= rprelu.shift_in.float()
        post = PostOps(
            slope=kernels.padded_like(rprelu.slope, multiplier),
            residual=residual,
            scale=kernels.padded_like(scale, multiplier),
            shift=kernels.padded_like(scale * rprelu.shift_out.double() + shift, multiplier),
        )
        out = torch.empty(out_shape, dtype=torch.float32)
        threshold = deconv._threshold()
        pack = kernels.plan_pack(a_nhwc, phases, *out_shape[1:3], threshold)
        convs, offsets = [], []
        for phase, size in zip(phases, pack.sizes, strict=True):
            conv = kernels.plan_conv_args(pack, phase, size, out, multiplier, shifted_addend, post)
            convs.append(conv)
            offsets.append(conv.out - out.data_ptr())
        operands = (phases, multiplier, shifted_addend, post.slope, post.scale, post.shift, threshold)
        return _Plan(out_shape, pack, tuple(convs), tuple(offsets), operands)
