"""Binarization methods: named pairs of quantizers, and their registry.

A method is an immutable :class:`BinarizationMethod`: an activation quantizer and a weight quantizer
(:mod:`bidrn.binary.quantizers`; each owns its forward value, pseudo-gradient, schedule, per-layer
state and inference terms) plus documentation. Binary layers take a method by name. A new method is
one file outside this package: define its quantizers, then register a factory::

    from bidrn.binary import BinarizationMethod, register_method

    @register_method
    def my_method() -> BinarizationMethod:
        '''Author et al., "Title", Venue Year: what it does and where it departs from the paper.'''
        return BinarizationMethod("", MyActivation(...), MyWeight(...))

    BinaryConv2d(64, 64, 3, method="my-method")

Where a method's original paper and the BiBench re-implementation (Qin et al., ICML 2023) differ, the
registry follows BiBench: its first author co-wrote BiDRN, so BiBench's per-conv definitions are the
most likely ones behind the paper's Table 1 (docs/design/binarizers.md §2). Each entry's docstring says where
it departs from the original paper. ``dorefa-layerscale`` keeps the original DoReFa weight scale for
comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bidrn.binary.estimators import GradientEstimator
from bidrn.binary.fda import FdaActivation, FdaWeight
from bidrn.binary.quantizers import (
    ActivationQuantizer,
    ScaledSignActivation,
    SignActivation,
    SignWeight,
    ThresholdSignActivation,
    WeightQuantizer,
)
from bidrn.binary.recu import RecuActivation, RecuWeight

__all__ = [
    "BinarizationMethod",
    "get_method",
    "list_methods",
    "register_method",
    "unregister_method",
]


@dataclass(frozen=True)
class BinarizationMethod:
    """One binarization method: an activation quantizer, a weight quantizer and documentation.

    Attributes:
        name: registry name (:func:`get_method` fills it in).
        activation: activation quantizer.
        weight: weight quantizer.
        description: the method's source paper and its departures from it (the factory's docstring).
        block_extras: block-level parts the method's paper adds around the conv (informational; the
            networks in :mod:`bidrn.nets` decide where to place them), e.g. ``("rprelu",)``.
    """

    name: str
    activation: ActivationQuantizer
    weight: WeightQuantizer
    description: str = field(default="", compare=False)
    block_extras: tuple[str, ...] = ()


_REGISTRY: dict[str, Callable[[], BinarizationMethod]] = {}

_IDENTITY = GradientEstimator("identity")
_CLIPPED = GradientEstimator("clipped")
_APPROX_SIGN = GradientEstimator("approx_sign")


def register_method(factory: Callable[[], BinarizationMethod]) -> Callable[[], BinarizationMethod]:
    """Register a method factory under its function name (underscores become hyphens).

    The factory returns a :class:`BinarizationMethod` (its ``name`` may be empty) and its docstring
    becomes the method's description. Use as a decorator; returns ``factory`` unchanged.
    """
    name = factory.__name__.replace("_", "-")
    if name in _REGISTRY:
        raise ValueError(f"binarization method {name!r} is already registered")
    _REGISTRY[name] = factory
    return factory


def unregister_method(name: str) -> None:
    """Remove a registered method (for tests and interactive sessions that registered their own)."""
    if _REGISTRY.pop(name, None) is None:
        raise ValueError(f"binarization method {name!r} is not registered")


def list_methods() -> list[str]:
    """Names of all registered binarization methods, in registration order."""
    return list(_REGISTRY)


def get_method(name: str | BinarizationMethod) -> BinarizationMethod:
    """Return the immutable spec of a registered method (a spec passes through unchanged)."""
    if isinstance(name, BinarizationMethod):
        return name
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown binarization method {name!r}; choose from {', '.join(list_methods())}"
        ) from None
    spec = factory()
    return BinarizationMethod(
        name=name,
        activation=spec.activation,
        weight=spec.weight,
        description=(factory.__doc__ or "").strip(),
        block_extras=spec.block_extras,
    )


def _spec(activation: ActivationQuantizer, weight: WeightQuantizer, *extras: str) -> BinarizationMethod:
    return BinarizationMethod(name="", activation=activation, weight=weight, block_extras=extras)


@register_method
def bnn() -> BinarizationMethod:
    """BNN: Hubara, Courbariaux et al., "Binarized Neural Networks", NeurIPS 2016.

    a = sign(x), w_b = sign(w), no scale; clipped STE for both. Departure (BiBench): the weight
    gradient goes through clamp(w, −1, 1) instead of an identity STE plus clipping the latent weights
    after every optimizer step.
    """
    return _spec(SignActivation(_CLIPPED), SignWeight(_CLIPPED, scale="none"))


@register_method
def xnor() -> BinarizationMethod:
    """XNOR-Net: Rastegari et al., "XNOR-Net: ImageNet Classification Using Binary CNNs", ECCV 2016.

    w_b = α_o·sign(w) with α_o = mean|w_o|; a = β·sign(x) with β = mean|x| per sample (detached);
    clipped STE for both. Departure (BiBench): β is one scalar per sample instead of the paper's
    spatial scaling map K, and the weight gradient is the plain clamp STE.
    """
    return _spec(
        ScaledSignActivation(_CLIPPED),
        SignWeight(_CLIPPED, scale="channel_mean_abs"),
    )


@register_method
def dorefa() -> BinarizationMethod:
    """DoReFa-Net (1-bit): Zhou et al., "DoReFa-Net: Training Low Bitwidth CNNs...", arXiv 2016.

    BiBench's 1-bit setting: a = sign(x) with clipped STE; w_b = α_o·sign(w) with per-output-channel
    α_o = mean|w_o| and the clamp gradient. Departures from the paper: the paper's 1-bit activations
    are {0, 1} and its weight scale is one scalar per layer (see ``dorefa-layerscale``).
    """
    return _spec(SignActivation(_CLIPPED), SignWeight(_CLIPPED, scale="channel_mean_abs"))


@register_method
def dorefa_layerscale() -> BinarizationMethod:
    """DoReFa-Net weights as in the paper: Zhou et al., arXiv 2016 (not in BiBench).

    w_b = E·sign(w) with one scalar E = mean|w| per layer and an identity STE; a = sign(x) with the
    clipped STE (±1 activations, so the layer stays XNOR-popcount friendly).
    """
    return _spec(SignActivation(_CLIPPED), SignWeight(_IDENTITY, scale="layer_mean_abs"))


@register_method
def bireal() -> BinarizationMethod:
    """Bi-Real Net: Liu et al., "Bi-Real Net: Enhancing the Performance of 1-bit CNNs...", ECCV 2018.

    a = sign(x) with the piecewise-quadratic ApproxSign gradient 2 − 2|x|; w_b = α_o·sign(w),
    α_o = mean|w_o| detached, clamp gradient (the official code's form of the paper's
    magnitude-aware gradient). The real-valued block shortcut is the network's business.
    """
    return _spec(SignActivation(_APPROX_SIGN), SignWeight(_CLIPPED, scale="channel_mean_abs"))


@register_method
def reactnet() -> BinarizationMethod:
    """ReActNet: Liu et al., "ReActNet: Towards Precise Binary Neural Network...", ECCV 2020.

    RSign a = sign(x − θ_c) with a learnable threshold per input channel and ApproxSign gradient;
    weights as Bi-Real. Departure (BiBench): only the RSign threshold lives in the conv; the paper's
    RPReLU is block-level (listed in ``block_extras``) and is not part of the baseline convs.
    """
    return _spec(
        ThresholdSignActivation(_APPROX_SIGN),
        SignWeight(_CLIPPED, scale="channel_mean_abs"),
        "rprelu",
    )


@register_method
def recu() -> BinarizationMethod:
    """ReCU: Xu et al., "ReCU: Reviving the Dead Weights in Binary Neural Networks", ICCV 2021.

    Weights are centred and standardised per filter, clamped to ±Q(τ) = ±(−E|w1|·ln(2 − 2τ)) with τ
    growing 0.85 → 0.99 over training, then w_b = sign(·) with an identity STE; the layer output is
    multiplied by a learnable per-output-channel α (no mean|w| scale). Activations: a = sign(x), with x
    divided by its per-sample std in training, ApproxSign gradient.
    """
    return _spec(RecuActivation(_APPROX_SIGN), RecuWeight(_IDENTITY))


@register_method
def fda() -> BinarizationMethod:
    """FDA: Xu et al., "Learning Frequency Domain Approximation for Binary Neural Networks", NeurIPS 2021.

    a = sign(x), w_b = α_o·sign(w) in the forward pass; both use the Fourier-series gradient
    (ω = 0.1, 10 → 18 cosine terms over training) and, during training, a noise-adaptation term
    λ·(MLP + 0.1·sin) with λ decaying 0.1 → 0 (exactly 0 in the last epoch). Follows BiBench's
    PyTorch port (the official code is MindSpore evaluation code only).
    """
    return _spec(FdaActivation(), FdaWeight())


@register_method
def bidrn() -> BinarizationMethod:
    """BiDRN: Li et al., "Binarized 3D Whole-body Human Mesh Recovery", 2023 (§3.1, Eq. 1–5).

    a = sign(x) with the piecewise-quadratic ApproxSign gradient (Eq. 2); w_b = α_o·sign(w) with
    α_o = mean|w_o| (Eq. 4), detached, clamp gradient. The Hardtanh pre-activation, BatchNorm, RPReLU
    (Eq. 6) and the local and block residuals belong to the BiDRB block in :mod:`bidrn.nets`.
    """
    return _spec(
        SignActivation(_APPROX_SIGN),
        SignWeight(_CLIPPED, scale="channel_mean_abs"),
        "hardtanh",
        "batchnorm",
        "rprelu",
    )
