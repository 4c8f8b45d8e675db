"""Configuration dataclasses of the whole-body networks.

A registered model (:mod:`bidrn.nets.registry`) is one :class:`WholeBodyConfig`: a base configuration
plus the overrides that make it a paper variant. Every switch the paper ablates is a field here:

* which encoders are binarized and how (:class:`EncoderConfig` ``kind``: full-precision ResNet,
  BNN-style binarized ResNet for the Table 1 baselines, or BiDRN built from BiDRBs) — Table 2d;
* which Local Convolution Residual forms are on (``lcr_forms``) — Table 2a;
* the pre-activation before every sign (``preactivation``) — Table 2b;
* the Block Residual kind (``block_residual``) — Table 2c;
* full-precision vs binarized BoxNet (:class:`BoxNetConfig` ``binarized``) — Table 3.

Sizes: ``width`` multiplies every channel count of the encoders and heads (1.0 = the paper); the
input crop is ``2 × body_input`` (Hand4Whole's 512×384 crop for its 256×192 body input), so hand and
face boxes found on the body image map to the crop by a factor of two (docs/design/pipeline.md §1).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

__all__ = [
    "LCR_FORMS",
    "BlockResidualKind",
    "BoxNetConfig",
    "EncoderConfig",
    "EncoderKind",
    "LCRForm",
    "PreActivation",
    "WholeBodyConfig",
]

EncoderKind = Literal["resnet", "binary_resnet", "bidrn"]
PreActivation = Literal["hardtanh", "relu", "prelu"]
BlockResidualKind = Literal["fp", "binary", "none"]
LCRForm = Literal["base", "down_scale", "fusion_up", "fusion_down", "down_sample"]

LCR_FORMS: tuple[LCRForm, ...] = ("base", "down_scale", "fusion_up", "fusion_down", "down_sample")
"""The five Local Convolution Residual forms in the order Table 2a adds them."""


@dataclass(frozen=True)
class EncoderConfig:
    """One image encoder (body, hand or face).

    Attributes:
        kind: ``resnet`` (full precision), ``binary_resnet`` (BNN-style: every block conv and 1×1
            shortcut binarized with ``method``, stem full precision; the Table 1 baselines) or ``bidrn``
            (BiDRBs: Local Convolution Residuals and a Block Residual, §3.1).
        depth: 18 (BasicBlock) or 50 (bottleneck v1.5).
        method: binarization method of the binary layers (see :func:`bidrn.binary.list_methods`).
        lcr_forms: BiDRN only — the LCR forms that are on; a binarized conv whose form is off has no
            local residual (Table 2a).
        preactivation: BiDRN only — activation applied before every sign, whose output is also the
            full-precision signal the local residual carries (Eq. 3, Table 2b).
        block_residual: BiDRN only — ``fp`` 1×1 conv (Eq. 11), ``binary`` 1×1 conv, or ``none``
            (Table 2c).
        prune_amount: fraction of every conv weight zeroed by L1 unstructured pruning (Table 4).
    """

    kind: EncoderKind = "resnet"
    depth: Literal[18, 50] = 50
    method: str = "bidrn"
    lcr_forms: tuple[LCRForm, ...] = LCR_FORMS
    preactivation: PreActivation = "hardtanh"
    block_residual: BlockResidualKind = "fp"
    prune_amount: float = 0.0

    @property
    def binarized(self) -> bool:
        """Whether the encoder's block convolutions are binarized."""
        return self.kind != "resnet"


@dataclass(frozen=True)
class BoxNetConfig:
    """The hand/face box network (docs/design/pipeline.md §4.2; binarized: docs/design/bidrn.md §7).

    Attributes:
        binarized: binarize the three transposed convs and the hidden linear layers of the size MLPs
            (the last layers stay full precision, Fig. 6).
        method: binarization method of those layers.
        preactivation: activation before every sign in the binarized BoxNet.
        first_residual: local residual of the first transposed conv (2248 -> 256 channels, no integer
            channel ratio): ``projection`` = full-precision 1×1 conv on the 8×6 input, then ×2 nearest
            upsampling; ``none`` = no residual there.
    """

    binarized: bool = False
    method: str = "bidrn"
    preactivation: PreActivation = "hardtanh"
    first_residual: Literal["projection", "none"] = "projection"


def _fp_encoder(depth: Literal[18, 50]) -> EncoderConfig:
    return EncoderConfig(kind="resnet", depth=depth)


@dataclass(frozen=True)
class WholeBodyConfig:
    """The whole Hand4Whole-style pipeline: three encoders, BoxNet, heads and input sizes.

    Attributes:
        body: body encoder (ResNet-50 in Hand4Whole).
        hand: hand encoder, run on the two hand crops (ResNet-50).
        face: face encoder (ResNet-18).
        boxnet: box network.
        width: channel multiplier of encoders and heads (1.0 = paper size).
        body_input: (H, W) of the body image; the input crop is twice this size.
        hand_input: (H, W) of each hand crop.
        face_input: (H, W) of the face crop.
        heatmap_depth: depth bins of the 3-D heatmaps (8).
        hand_box_scale: enlargement of the square hand boxes before cropping (2.0).
        face_box_scale: enlargement of the square face box (1.5).
    """

    body: EncoderConfig = field(default_factory=lambda: _fp_encoder(50))
    hand: EncoderConfig = field(default_factory=lambda: _fp_encoder(50))
    face: EncoderConfig = field(default_factory=lambda: _fp_encoder(18))
    boxnet: BoxNetConfig = field(default_factory=BoxNetConfig)
    width: float = 1.0
    body_input: tuple[int, int] = (256, 192)
    hand_input: tuple[int, int] = (256, 256)
    face_input: tuple[int, int] = (192, 192)
    heatmap_depth: int = 8
    hand_box_scale: float = 2.0
    face_box_scale: float = 1.5

    @property
    def crop_input(self) -> tuple[int, int]:
        """(H, W) of the person crop the model takes: twice the body input (512×384 in the paper)."""
        return (2 * self.body_input[0], 2 * self.body_input[1])

    def with_encoders(self, **changes: object) -> WholeBodyConfig:
        """Copy with the same field ``changes`` applied to all three encoders."""
        return replace(
            self,
            body=replace(self.body, **changes),
            hand=replace(self.hand, **changes),
            face=replace(self.face, **changes),
        )
