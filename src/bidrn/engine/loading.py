"""Rebuild a trained model from its checkpoint (the registry name and overrides it records).

This is the one place a training checkpoint becomes a model: ``bidrn train --teacher`` calls it
directly, and :func:`bidrn.deploy.load_model` (``bidrn predict``, ``eval``, ``export``) calls it
before freezing. The checkpoint's JSON and weights are checked before use; every problem is one
:class:`~bidrn.errors.InputFileError` naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from bidrn.engine.checkpoint import Checkpoint, load_checkpoint, load_weights_into
from bidrn.errors import BidrnError, InputFileError

__all__ = ["check_finite", "model_from_checkpoint"]


def model_from_checkpoint(
    path: str | Path,
    body_model: nn.Module | None = None,
    name: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> tuple[nn.Module, Checkpoint]:
    """The model a training checkpoint was saved from, with its weights, in eval mode.

    Args:
        path: checkpoint stem or file (:func:`bidrn.engine.checkpoint.load_checkpoint`).
        body_model: SMPL-X layer to attach (meshes and joints), or ``None``.
        name: registry name when the checkpoint does not record one.
        overrides: constructor overrides applied on top of the recorded ones.

    Returns:
        ``(model, checkpoint)``; the checkpoint's ``info`` holds e.g. the body model it was trained
        with (checked to be a path string).

    Raises:
        InputFileError: a malformed checkpoint JSON, NaN or infinite weights, a model the code
            cannot build, or weights that do not fit it.
    """
    checkpoint = load_checkpoint(path, with_state=False)
    recorded, settings = _recorded_model(checkpoint.info, path)
    name = name or recorded
    if not name:
        raise InputFileError(path, "checkpoint does not record its model name")
    check_finite(checkpoint.weights, path)
    settings = {**settings, **(overrides or {})}
    import bidrn

    try:
        model = bidrn.create_model(name, body_model=body_model, **settings)
    except BidrnError as error:
        raise InputFileError(path, f"records a model that cannot be built ({error})") from None
    except (TypeError, ValueError) as error:  # an override the model does not take
        raise InputFileError(path, f"records model overrides that do not fit {name!r} ({error})") from None
    load_weights_into(model, checkpoint, path)  # refuses tensors of another dtype than the model's
    return model.eval(), checkpoint


def _recorded_model(info: Any, path: str | Path) -> tuple[str | None, dict[str, Any]]:
    """``(model name, overrides)`` from a training checkpoint's JSON, its types checked."""
    if not isinstance(info, dict):
        raise InputFileError(
            path, f"malformed checkpoint JSON: expected an object, got {type(info).__name__}"
        )
    name, overrides, body_model = info.get("model"), info.get("model_overrides", {}), info.get("body_model")
    if name is not None and not isinstance(name, str):
        raise InputFileError(path, "malformed checkpoint JSON: 'model' must be a string")
    if not isinstance(overrides, dict):
        raise InputFileError(path, "malformed checkpoint JSON: 'model_overrides' must be an object")
    if body_model is not None and not isinstance(body_model, str):
        raise InputFileError(path, "malformed checkpoint JSON: 'body_model' must be a path string")
    return name, overrides


def check_finite(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse NaN or infinite weights or statistics, naming the first such tensor.

    Checked a quarter million elements at a time: ``torch.isfinite`` makes float and bool
    temporaries as large as its input, 17 MB more peak memory for a paper-size frozen model.
    """
    for key, tensor in tensors.items():
        if tensor.is_floating_point():
            for chunk in tensor.detach().reshape(-1).split(2**18):
                if not bool(torch.isfinite(chunk).all()):
                    raise InputFileError(path, f"tensor '{key}' holds NaN or infinite values")
