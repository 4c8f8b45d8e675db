"""BiDRN encoders: Binarized Dual Residual Blocks (BiDRB, paper §3.1, Eq. 1–11).

A BiDRB is a chain of :class:`LocalConvResidual` units (one per binarized convolution of the
ResNet block it replaces) plus a :class:`BlockResidual` around the whole block (Eq. 11)::

    a_f = preact(x)                                  # Hardtanh (Eq. 3), or ReLU / PReLU (Table 2b)
    y   = LCR_n(...LCR_2(LCR_1(a_f)))                # every LCR after the first pre-activates its input
    out = y + BR(a_f)                                # Eq. 11; no ReLU after the addition

One Local Convolution Residual unit with input ``a_f`` computes (Eq. 7–10)::

    o_i = BinaryConv_i(a_f,i)                        # k branches, each C -> C (Eq. 1, 4, 5)
    r_i = R(a_f,i)                                   # identity, or 2×2 average pool when strided
    out = BN(merge_i(RPReLU_i(o_i) + r_i))           # merge = the single branch, concat or sum

with the form chosen by the conv's shape change (Fig. 5):

================  =======================  ==========  =============================================
form              shape change             branches    residual and merge
================  =======================  ==========  =============================================
``base``          C -> C                   1           identity (Eq. 7)
``down_scale``    C -> C, stride 2         1           AvgPool (Eq. 8)
``fusion_up``     C -> kC                  k           identity per branch, channel concat (Eq. 9)
``fusion_down``   kC -> C                  k           branch i reads channel group i, sum (Eq. 10)
``down_sample``   C -> kC, stride 2        k           AvgPool per branch, channel concat (§3.1)
================  =======================  ==========  =============================================

k is 2 in the paper's description and 4 for the bottleneck's ×4 expansion ("generalised to four times
channels"). A conv whose form is switched off (Table 2a ablations) or has no form is *plain*:
``BN(BinaryConv(a_f))`` with no residual and no RPReLU — RPReLU is part of the residual unit. This
reading reproduces Table 2a's parameter steps: +0.09 M for Fusion Up (3 RPReLU parameters on each of the
30 208 bottleneck output channels), +0.07 M for Fusion Down, ≈0 for Down Scale and Down Sample.

Pre-activation (Table 2b): the pre-activation's output ``a_f`` is both the input of the sign and the
full-precision signal the residuals carry. With ``relu`` this is honest to the paper and degenerate by
design: ``sign(ReLU(x)) = +1`` everywhere (sign(0) = +1), so the binarized convs see constant input and
only the residuals carry information — the failure mode §3.1 describes. ``prelu`` keeps the sign of x
(positive slope at init) and adds C learnable slopes per unit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bidrn.binary import BinaryConv2d, RPReLU
from bidrn.binary.activations import rprelu
from bidrn.nets.config import LCR_FORMS, BlockResidualKind, EncoderConfig, LCRForm, PreActivation
from bidrn.nets.resnet import BlockPlan, Stem, init_resnet_weights, resnet_plan, stem_width

__all__ = [
    "BiDRBasicBlock",
    "BiDRBottleneck",
    "BiDRNEncoder",
    "BlockResidual",
    "LocalConvResidual",
    "choose_lcr_form",
    "make_preactivation",
]


def make_preactivation(kind: PreActivation, channels: int) -> nn.Module:
    """The activation applied before every sign: Hardtanh (Eq. 3), ReLU, or channel-wise PReLU."""
    if kind == "hardtanh":
        return nn.Hardtanh()
    if kind == "relu":
        return nn.ReLU()
    if kind == "prelu":
        return nn.PReLU(channels)
    raise ValueError(f"unknown pre-activation {kind!r}; choose hardtanh, relu or prelu")


def choose_lcr_form(in_channels: int, out_channels: int, stride: int) -> tuple[LCRForm | None, int]:
    """The LCR form of a conv with this shape change and its branch count k (``None`` = no form fits)."""
    if stride not in (1, 2):
        return None, 1
    if in_channels == out_channels:
        return ("base" if stride == 1 else "down_scale"), 1
    if out_channels % in_channels == 0:
        return ("fusion_up" if stride == 1 else "down_sample"), out_channels // in_channels
    if in_channels % out_channels == 0 and stride == 1:
        return "fusion_down", in_channels // out_channels
    return None, 1


class LocalConvResidual(nn.Module):
    """One binarized convolution with its Local Convolution Residual (Eq. 7–10; see module docstring).

    Args:
        in_channels, out_channels, kernel_size, stride: the shape of the conv being replaced (padding is
            ``kernel_size // 2``).
        enabled_forms: LCR forms that are switched on; if this conv's form is not among them it becomes
            a plain ``BN(BinaryConv(a_f))``.
        method: binarization method of the convs.
        preactivation: module applied to the input first, or ``None`` when the caller already did.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        enabled_forms: tuple[LCRForm, ...] = LCR_FORMS,
        method: str = "bidrn",
        preactivation: nn.Module | None = None,
    ) -> None:
        super().__init__()
        form, branches = choose_lcr_form(in_channels, out_channels, stride)
        self.form: LCRForm | None = form if form in enabled_forms else None
        self.preactivation = preactivation if preactivation is not None else nn.Identity()
        padding = kernel_size // 2
        if self.form is None:
            branches, branch_in, branch_out = 1, in_channels, out_channels
        elif self.form == "fusion_down":
            branch_in = branch_out = out_channels
        else:
            branch_in = branch_out = in_channels
        self.branches = branches
        self.convs = nn.ModuleList(
            BinaryConv2d(branch_in, branch_out, kernel_size, stride=stride, padding=padding, method=method)
            for _ in range(branches)
        )
        self.rprelus = nn.ModuleList(RPReLU(branch_out) for _ in range(branches)) if self.form else None
        strided = self.form in ("down_scale", "down_sample")
        self.residual = (
            nn.AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False) if strided else nn.Identity()
        )
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activate, binarized conv branch(es) with local residual, merge, BatchNorm."""
        a = self.preactivation(x)
        if self.rprelus is None:
            return self.bn(self.convs[0](a))
        if self.training and self.convs[0].method.activation.input_only:
            return self.bn(self._branches_at_once(a))
        return self.bn(self._branch_by_branch(a))

    def _branch_by_branch(self, a: torch.Tensor) -> torch.Tensor:
        """Each branch's binarized conv, RPReLU and local residual in turn, then the merge (Eq. 7-10)."""
        inputs = a.chunk(self.branches, dim=1) if self.form == "fusion_down" else (a,) * self.branches
        outputs = [
            activation(conv(part)) + self.residual(part)
            for conv, activation, part in zip(self.convs, self.rprelus, inputs, strict=True)
        ]
        if self.form == "fusion_down":
            return torch.stack(outputs).sum(dim=0)
        return torch.cat(outputs, dim=1)

    def _branches_at_once(self, a: torch.Tensor) -> torch.Tensor:
        """The k branches as one convolution, one RPReLU and one residual add (same values and gradients).

        When the activation quantizer reads nothing but its input, every branch binarizes the same
        tensor (Fusion Down's branches read channel groups of it): ``a`` is binarized once, the k
        branch weights are stacked into one (grouped, for Fusion Down) convolution, their RPReLUs into
        one with stacked parameters, and the residual is broadcast over the branches. For training,
        that is a quarter of the operations of the branch-by-branch loop on a four-branch unit. In
        eval mode the loop runs instead, so that every binary conv is seen as itself by forward hooks
        (complexity counting) and by freezing.
        """
        first = self.convs[0]
        weight = torch.cat([conv.quantized_weight() for conv in self.convs])
        if self.form == "fusion_down":  # per group: a quantizer may scale by statistics of its input
            parts, groups = a.chunk(self.branches, dim=1), self.branches
        else:
            parts, groups = (a,), 1
        quantized = torch.cat([first.quantize_input(part) for part in parts], dim=1)
        y = F.conv2d(quantized, weight, None, first.stride, first.padding, first.dilation, groups)
        for attribute in ("output_scale", "bias"):
            if getattr(first, attribute) is not None:
                values = torch.cat([getattr(conv, attribute) for conv in self.convs]).view(1, -1, 1, 1)
                y = y * values if attribute == "output_scale" else y + values
        stacked = [
            torch.cat([getattr(r, name) for r in self.rprelus]) for name in ("shift_in", "slope", "shift_out")
        ]
        y = rprelu(y, *stacked)
        batch, channels, height, width = y.shape
        if self.form == "fusion_down":  # branch i reads and adds back channel group i, then the sum
            return (y + self.residual(a)).view(batch, self.branches, -1, height, width).sum(dim=1)
        y = y.view(batch, self.branches, -1, height, width) + self.residual(a).unsqueeze(1)
        return y.view(batch, channels, height, width)


class BlockResidual(nn.Module):
    """Block Residual (Eq. 11): identity when the block keeps its shape, else a 1×1 (strided) conv + BN.

    ``kind='fp'`` uses a full-precision conv (BiDRN), ``'binary'`` a binarized one (Table 2c).
    """

    def __init__(self, plan: BlockPlan, kind: BlockResidualKind, method: str = "bidrn") -> None:
        super().__init__()
        if kind == "none":
            raise ValueError("BlockResidual of kind 'none' is expressed by not building one")
        if not plan.needs_projection:
            self.projection: nn.Module = nn.Identity()
            return
        conv_type = nn.Conv2d if kind == "fp" else BinaryConv2d
        extra = {} if kind == "fp" else {"method": method}
        self.projection = nn.Sequential(
            conv_type(plan.in_channels, plan.out_channels, 1, stride=plan.stride, bias=False, **extra),
            nn.BatchNorm2d(plan.out_channels),
        )

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """Residual of the pre-activated block input."""
        return self.projection(a)


class _BiDRB(nn.Module):
    """Shared forward of the two BiDRB shapes: pre-activation, LCR chain, optional Block Residual."""

    preactivation: nn.Module
    units: nn.Sequential
    block_residual: BlockResidual | None

    def _build_residual(self, plan: BlockPlan, config: EncoderConfig) -> None:
        self.block_residual = (
            None
            if config.block_residual == "none"
            else BlockResidual(plan, config.block_residual, config.method)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Out = LCR chain(a_f) + BR(a_f), a_f = preact(x) (Eq. 11)."""
        a = self.preactivation(x)
        out = self.units(a)
        return out if self.block_residual is None else out + self.block_residual(a)


def _unit(config: EncoderConfig, in_ch: int, out_ch: int, kernel: int, stride: int, first: bool) -> nn.Module:
    preact = None if first else make_preactivation(config.preactivation, in_ch)
    return LocalConvResidual(in_ch, out_ch, kernel, stride, config.lcr_forms, config.method, preact)


class BiDRBottleneck(_BiDRB):
    """BiDRB replacing a bottleneck: Fusion Down/base 1×1, base/Down Scale 3×3, Fusion Up 1×1 (×4)."""

    def __init__(self, plan: BlockPlan, config: EncoderConfig) -> None:
        super().__init__()
        self.preactivation = make_preactivation(config.preactivation, plan.in_channels)
        self.units = nn.Sequential(
            _unit(config, plan.in_channels, plan.planes, 1, 1, first=True),
            _unit(config, plan.planes, plan.planes, 3, plan.stride, first=False),
            _unit(config, plan.planes, plan.out_channels, 1, 1, first=False),
        )
        self._build_residual(plan, config)


class BiDRBasicBlock(_BiDRB):
    """BiDRB replacing a BasicBlock: base or Down Sample 3×3, then base 3×3 (Eq. 11's example)."""

    def __init__(self, plan: BlockPlan, config: EncoderConfig) -> None:
        super().__init__()
        self.preactivation = make_preactivation(config.preactivation, plan.in_channels)
        self.units = nn.Sequential(
            _unit(config, plan.in_channels, plan.planes, 3, plan.stride, first=True),
            _unit(config, plan.planes, plan.out_channels, 3, 1, first=False),
        )
        self._build_residual(plan, config)


class BiDRNEncoder(nn.Module):
    """BiDRN encoder (Fig. 3): full-precision stem, then the ResNet-``depth`` stages as BiDRBs.

    The stem is conv · BN · max-pool without its ReLU: the first BiDRB's pre-activation takes its
    place (a ReLU there would make the first block's signs all +1).
    """

    def __init__(self, config: EncoderConfig, width: float = 1.0) -> None:
        super().__init__()
        plan = resnet_plan(config.depth, width)
        block = BiDRBottleneck if config.depth == 50 else BiDRBasicBlock
        self.depth = config.depth
        self.stem = Stem(stem_width(width), nn.Identity())
        self.stages = nn.ModuleList(nn.Sequential(*(block(p, config) for p in stage)) for stage in plan)
        self.out_channels = plan[-1][-1].out_channels
        init_resnet_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map of the last stage, (B, out_channels, H/32, W/32)."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x
