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


class FusedUpsampling(kernels.CallPlanCache, BinarizedUpsampling):
    """:class:`~bidrn.nets.boxnet.BinarizedUpsampling` run as one packed conv with fused post-ops."""

    _plans: dict[tuple, kernels.ConvPlan]

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
        return plan(a_nhwc, residual).permute(0, 3, 1, 2)

    @torch.no_grad()
    def _plan(self, a_nhwc: Tensor, residual: Tensor) -> kernels.ConvPlan:
        deconv, rprelu = self.deconv, self.rprelu
        phases, multiplier, addend = deconv._kernel_operands()
        batch, height, width, _ = a_nhwc.shape
        out_size = deconv.out_size(height, width)
        doubled = out_size == (2 * height, 2 * width)
        if not doubled or tuple(residual.shape) != (batch, height, width, deconv.out_channels):
            raise ValueError("the deconv must double the size and the residual have its output channels")
        # BN(prelu(o - s_in) + s_out + r) = scale * (prelu(o') + r) + (scale * s_out + shift).
        scale, shift = batchnorm_factors(self.bn)
        shifted_addend = addend.clone()
        shifted_addend[: deconv.out_channels] -= rprelu.shift_in.float()
        post = PostOps(
            slope=kernels.padded_like(rprelu.slope, multiplier),
            residual=residual,
            scale=kernels.padded_like(scale, multiplier),
            shift=kernels.padded_like(scale * rprelu.shift_out.double() + shift, multiplier),
        )
        threshold = deconv._threshold()
        return kernels.plan_conv(
            a_nhwc, phases, deconv.out_channels, out_size, multiplier, shifted_addend, threshold, post
        )
