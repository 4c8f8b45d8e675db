"""Binarization library: quantizers, binary layers and the method registry.

A binarization method (:class:`BinarizationMethod`) is a named pair of quantizer objects: an
:class:`ActivationQuantizer` and a :class:`WeightQuantizer`, each owning its forward value,
pseudo-gradient, schedule, per-layer state and inference terms. Binary layers take a method by name
and only ask its quantizers::

    from bidrn.binary import BinaryConv2d, list_methods
    conv = BinaryConv2d(64, 64, 3, padding=1, method="reactnet")

Registered methods: ``bnn, xnor, dorefa, dorefa-layerscale, bireal, reactnet, recu, fda, bidrn``; add
one with :func:`register_method` (see :mod:`bidrn.binary.methods`).
"""

from bidrn.binary.activations import RPReLU
from bidrn.binary.estimators import GradientEstimator, SurrogateGradient, binarize, sign
from bidrn.binary.layers import (
    BinaryConv2d,
    BinaryConvTranspose2d,
    BinaryLayer,
    BinaryLinear,
    InferenceTerms,
    set_progress,
)
from bidrn.binary.methods import (
    BinarizationMethod,
    get_method,
    list_methods,
    register_method,
    unregister_method,
)
from bidrn.binary.noise import NoiseAdaptation
from bidrn.binary.quantizers import (
    ActivationQuantizer,
    ActivationTerms,
    ScaledSignActivation,
    SignActivation,
    SignWeight,
    ThresholdSignActivation,
    WeightQuantizer,
    WeightTerms,
)

__all__ = [
    "ActivationQuantizer",
    "ActivationTerms",
    "BinarizationMethod",
    "BinaryConv2d",
    "BinaryConvTranspose2d",
    "BinaryLayer",
    "BinaryLinear",
    "GradientEstimator",
    "InferenceTerms",
    "NoiseAdaptation",
    "RPReLU",
    "ScaledSignActivation",
    "SignActivation",
    "SignWeight",
    "SurrogateGradient",
    "ThresholdSignActivation",
    "WeightQuantizer",
    "WeightTerms",
    "binarize",
    "get_method",
    "list_methods",
    "register_method",
    "set_progress",
    "sign",
    "unregister_method",
]
