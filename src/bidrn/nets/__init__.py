"""Whole-body networks: encoders (ResNet, binarized ResNet, BiDRN), BoxNet, heads and the pipeline.

Entry points: :func:`create_model` and :func:`list_models` (also re-exported as
``bidrn.create_model`` / ``bidrn.list_models``), :class:`WholeBodyNet` and its
:class:`WholeBodyOutput`, and the configuration dataclasses of :mod:`bidrn.nets.config`.
"""

from bidrn.nets.config import BoxNetConfig, EncoderConfig, WholeBodyConfig
from bidrn.nets.registry import create_model, get_entry, list_models, model_config
from bidrn.nets.wholebody import WholeBodyNet, WholeBodyOutput

__all__ = [
    "BoxNetConfig",
    "EncoderConfig",
    "WholeBodyConfig",
    "WholeBodyNet",
    "WholeBodyOutput",
    "create_model",
    "get_entry",
    "list_models",
    "model_config",
]
