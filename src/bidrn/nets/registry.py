"""Named whole-body models: Hand4Whole, the seven binarized baselines, BiDRN and its ablations.

Every entry is the base :class:`~bidrn.nets.config.WholeBodyConfig` plus the overrides that make it a
paper variant, with the paper's Params/OPs where the paper reports them::

    import bidrn
    model = bidrn.create_model("bidrn")                                  # paper size
    tiny = bidrn.create_model("bidrn", width=0.25, body_input=(128, 96))  # CPU experiments

Size overrides (any of ``width``, ``body_input``, ``hand_input``, ``face_input``, ``heatmap_depth``,
``hand_box_scale``, ``face_box_scale``) apply on top of the entry; the input crop is always twice
``body_input``. ``body_model=`` attaches an SMPL-X layer.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from torch import nn

from bidrn.errors import BidrnError
from bidrn.nets.config import LCR_FORMS, BoxNetConfig, EncoderConfig, WholeBodyConfig
from bidrn.nets.pruning import prune_convolutions
from bidrn.nets.wholebody import WholeBodyNet

__all__ = [
    "SIZE_OVERRIDES",
    "ModelEntry",
    "PaperComplexity",
    "create_model",
    "get_entry",
    "list_models",
    "model_config",
]

SIZE_OVERRIDES: tuple[str, ...] = tuple(
    f.name for f in fields(WholeBodyConfig) if f.name not in ("body", "hand", "face", "boxnet")
)
"""Keyword overrides :func:`create_model` accepts on top of a registered configuration."""


@dataclass(frozen=True)
class PaperComplexity:
    """Params (M) and OPs (G) the paper reports for a variant, and where (e.g. ``"Table 1"``)."""

    params_m: float
    ops_g: float
    table: str


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: name, one-line description, configuration and the paper's complexity."""

    name: str
    description: str
    config: WholeBodyConfig
    paper: PaperComplexity | None = None


_ENTRIES: dict[str, ModelEntry] = {}


def _register(name: str, description: str, config: WholeBodyConfig, paper: PaperComplexity | None) -> None:
    _ENTRIES[name] = ModelEntry(name, description, config, paper)


def list_models() -> list[str]:
    """Names of every registered model, in registration order (the paper's tables)."""
    return list(_ENTRIES)


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; unknown names raise :class:`~bidrn.errors.BidrnError`."""
    try:
        return _ENTRIES[name]
    except KeyError:
        raise BidrnError(f"unknown model {name!r}; choose from {', '.join(_ENTRIES)}") from None


def model_config(name: str, **overrides: Any) -> WholeBodyConfig:
    """The configuration of a registered model with size ``overrides`` applied."""
    unknown = sorted(set(overrides) - set(SIZE_OVERRIDES))
    if unknown:
        raise BidrnError(
            f"unknown model override(s) {', '.join(unknown)}; allowed: {', '.join(SIZE_OVERRIDES)}"
        )
    for key in ("body_input", "hand_input", "face_input"):
        if key in overrides:
            overrides[key] = tuple(int(v) for v in overrides[key])
    return replace(get_entry(name).config, **overrides)


def create_model(name: str, *, body_model: nn.Module | None = None, **overrides: Any) -> WholeBodyNet:
    """Build the registered model ``name`` (see :func:`list_models`) with size ``overrides``."""
    config = model_config(name, **overrides)
    try:
        model = WholeBodyNet(config, body_model=body_model)
    except ValueError as error:
        raise BidrnError(f"cannot build {name!r}: {error}") from None
    for encoder_config, encoder in (
        (config.body, model.body_encoder),
        (config.hand, model.hand_encoder),
        (config.face, model.face_encoder),
    ):
        if encoder_config.prune_amount > 0:
            prune_convolutions(encoder, encoder_config.prune_amount)
    return model


# ---------------------------------------------------------------------------------------------
# The paper's variants (docs/design/paper-tables.md).
# ---------------------------------------------------------------------------------------------

HAND4WHOLE = WholeBodyConfig()
_BIDRN_ENCODER = EncoderConfig(kind="bidrn", method="bidrn")
BIDRN = replace(
    HAND4WHOLE,
    body=replace(_BIDRN_ENCODER, depth=50),
    hand=replace(_BIDRN_ENCODER, depth=50),
    face=replace(_BIDRN_ENCODER, depth=18),
    boxnet=BoxNetConfig(binarized=True, method="bidrn"),
)

_register(
    "hand4whole",
    "full-precision Hand4Whole (ResNet-50 body/hand, ResNet-18 face)",
    HAND4WHOLE,
    PaperComplexity(77.84, 16.85, "Table 1"),
)
_register(
    "hand4whole-r18",
    "full-precision Hand4Whole with ResNet-18 body and hand encoders",
    replace(HAND4WHOLE, body=EncoderConfig(depth=18), hand=EncoderConfig(depth=18)),
    PaperComplexity(49.46, 8.55, "Table 4"),
)
_register(
    "hand4whole-l1prune",
    "Hand4Whole, 90% unstructured L1 pruning of every encoder conv",
    HAND4WHOLE.with_encoders(prune_amount=0.9),
    PaperComplexity(25.51, 2.76, "Table 4"),
)

_BASELINE_PAPER = {
    "bnn": PaperComplexity(21.61, 2.63, "Table 1"),
    "xnor": PaperComplexity(21.61, 2.63, "Table 1"),
    "dorefa": PaperComplexity(21.61, 2.63, "Table 1"),
    "bireal": PaperComplexity(21.61, 2.63, "Table 1"),
    "reactnet": PaperComplexity(21.66, 2.63, "Table 1"),
    "recu": PaperComplexity(21.71, 2.65, "Table 1"),
    "fda": PaperComplexity(32.06, 2.81, "Table 1"),
}
for _method, _paper in _BASELINE_PAPER.items():
    _register(
        _method,
        f"BNN-style binarized encoders with the {_method} binarizer, full-precision heads",
        HAND4WHOLE.with_encoders(kind="binary_resnet", method=_method),
        _paper,
    )

_register(
    "bidrn",
    "BiDRN: BiDRB encoders (all LCR forms, full-precision Block Residual), binarized BoxNet",
    BIDRN,
    PaperComplexity(17.22, 2.50, "Table 1"),
)

_LCR_STEPS = {
    "bidrn-base-lcr": (1, "base LCR only", PaperComplexity(17.05, 2.48, "Table 2a")),
    "bidrn-dscr": (2, "base LCR + Down Scale Residual", PaperComplexity(17.05, 2.48, "Table 2a")),
    "bidrn-fur": (3, "... + Fusion Up Residual", PaperComplexity(17.14, 2.49, "Table 2a")),
    "bidrn-fdr": (
        4,
        "... + Fusion Down Residual (no Down Sample Residual)",
        PaperComplexity(17.21, 2.50, "Table 2a"),
    ),
}
for _name, (_count, _what, _paper) in _LCR_STEPS.items():
    _register(_name, f"BiDRN ablation: {_what}", BIDRN.with_encoders(lcr_forms=LCR_FORMS[:_count]), _paper)

_register(
    "bidrn-relu",
    "BiDRN ablation: ReLU pre-activation (signs all +1; residuals carry everything)",
    replace(BIDRN.with_encoders(preactivation="relu"), boxnet=replace(BIDRN.boxnet, preactivation="relu")),
    None,
)
_register(
    "bidrn-prelu",
    "BiDRN ablation: PReLU pre-activation",
    replace(BIDRN.with_encoders(preactivation="prelu"), boxnet=replace(BIDRN.boxnet, preactivation="prelu")),
    None,
)
_register(
    "bidrn-no-br",
    "BiDRN ablation: no Block Residual",
    BIDRN.with_encoders(block_residual="none"),
    PaperComplexity(11.51, 1.25, "Table 2c"),
)
_BINARY_BR = BIDRN.with_encoders(block_residual="binary")
_register(
    "bidrn-binary-br",
    "BiDRN ablation: binarized Block Residual",
    _BINARY_BR,
    PaperComplexity(11.68, 1.28, "Table 2c"),
)
_register(
    "bidrn-body-only",
    "BiDRN body encoder, full-precision hand and face encoders",
    replace(BIDRN, hand=HAND4WHOLE.hand, face=HAND4WHOLE.face),
    PaperComplexity(47.78, 7.45, "Table 2d"),
)
_register(
    "bidrn-hand-only",
    "BiDRN hand encoder, full-precision body and face encoders",
    replace(BIDRN, body=HAND4WHOLE.body, face=HAND4WHOLE.face),
    PaperComplexity(47.78, 7.45, "Table 2d"),
)
_register(
    "bidrn-face-only",
    "BiDRN face encoder, full-precision body and hand encoders",
    replace(BIDRN, body=HAND4WHOLE.body, hand=HAND4WHOLE.hand),
    PaperComplexity(57.08, 9.94, "Table 2d"),
)
_register(
    "bidrn-fp-boxnet",
    "BiDRN with binarized Block Residual and full-precision BoxNet (Table 3)",
    replace(_BINARY_BR, boxnet=BoxNetConfig(binarized=False)),
    PaperComplexity(21.81, 1.87, "Table 3"),
)
