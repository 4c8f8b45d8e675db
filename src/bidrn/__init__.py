"""bidrn: binarized 3D whole-body human mesh recovery.

A reimplementation of "Binarized 3D Whole-body Human Mesh Recovery" (BiDRN): one RGB image in,
an SMPL-X mesh out, computed by networks whose convolutions use 1-bit weights and activations.

The model zoo is reached through :func:`create_model` and :func:`list_models`; the layers of the
package are ``binary`` (quantizers and binary layers), ``body`` (the SMPL-X layer), ``nets``
(networks), ``data``, ``engine`` (training, evaluation, metrics), ``deploy`` (1-bit inference).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from torch import nn

__all__ = ["__version__", "create_model", "list_models"]


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered whole-body model by name (see :func:`list_models`)."""
    from bidrn.nets.registry import create_model as _create

    return _create(name, **overrides)


def list_models() -> list[str]:
    """Names of every registered whole-body model, the paper's variants included."""
    from bidrn.nets.registry import list_models as _list

    return _list()
