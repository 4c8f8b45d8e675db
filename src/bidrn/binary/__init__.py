"""Binarization library: quantizers, binary layers and the method registry.

A binarization method is data (:class:`BinarizationMethod`): an activation quantizer, a weight
quantizer, their gradient estimators and the per-layer extras they need. Binary layers take a
method by name::

    from bidrn.binary import BinaryConv2d, list_methods
    conv = BinaryConv2d(64, 64, 3, padding=1, method="reactnet")

Registered methods: ``bnn, xnor, dorefa, dorefa-layerscale, bireal, reactnet, recu, fda, bidrn``.
"""

from bidrn.binary.activations import RPReLU
from bidrn.binary.estimators import GradientEstimator, binarize, sign
from bidrn.binary.layers import (
    BinaryConv2d,
    BinaryConvTranspose2d,
    BinaryLayer,
    BinaryLinear,
    InferenceTerms,
    set_progress,
)
from bidrn.binary.methods import (
    ActivationQuantizer,
    BinarizationMethod,
    WeightQuantizer,
    get_method,
    list_methods,
    register_method,
)
from bidrn.binary.noise import NoiseAdaptation

__all__ = [
    "ActivationQuantizer",
    "BinarizationMethod",
    "BinaryConv2d",
    "BinaryConvTranspose2d",
    "BinaryLayer",
    "BinaryLinear",
    "GradientEstimator",
    "InferenceTerms",
    "NoiseAdaptation",
    "RPReLU",
    "WeightQuantizer",
    "binarize",
    "get_method",
    "list_methods",
    "register_method",
    "set_progress",
    "sign",
]
