"""Rebuild a trained model from its checkpoint (the registry name and overrides it records)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

import bidrn
from bidrn.engine.checkpoint import Checkpoint, load_checkpoint, load_weights_into
from bidrn.errors import BidrnError


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
        ``(model, checkpoint)``; the checkpoint's ``info`` holds e.g. the body model it was trained with.
    """
    checkpoint = load_checkpoint(path, with_state=False)
    name = name or checkpoint.model_name
    if not name:
        raise BidrnError(f"{path}: checkpoint does not record its model name")
    settings = {**checkpoint.model_overrides, **(overrides or {})}
    try:
        model = bidrn.create_model(name, body_model=body_model, **settings)
    except TypeError as error:  # an override the model does not take
        raise BidrnError(f"{path}: cannot rebuild model {name!r} from the checkpoint ({error})") from None
    load_weights_into(model, checkpoint, path)
    return model.eval(), checkpoint
