"""One way from a file to a ready model: frozen 1-bit files and training checkpoints alike.

Every command that runs a model (``bidrn predict``, ``bidrn eval``, ``bidrn export``, ``bidrn demo``)
loads it with :func:`load_model`::

    from bidrn.deploy import load_model
    model, info = load_model("model.bidrn.safetensors")                  # frozen 1-bit file
    model, info = load_model("runs/bidrn/checkpoints/last", frozen=False)  # training checkpoint, as trained
    model, info = load_model("runs/bidrn/checkpoints/last", frozen=True)   # ... frozen on load

A frozen file is rebuilt without ever materialising the float latent weights of its binary
layers (:func:`bidrn.deploy.serialization.load` builds the skeleton on the meta device). A
training checkpoint is rebuilt with :func:`bidrn.create_model` and its weights, then frozen on
request. Anything that is not one of our files is refused with one line naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from bidrn.binary import BinaryLayer
from bidrn.deploy.freeze import freeze
from bidrn.deploy.serialization import FORMAT_TAG as FROZEN_FORMAT
from bidrn.deploy.serialization import load as load_frozen
from bidrn.deploy.serialization import read_metadata
from bidrn.engine.checkpoint import FORMAT_TAG as CHECKPOINT_FORMAT
from bidrn.engine.checkpoint import checkpoint_stem, load_checkpoint, load_weights_into
from bidrn.errors import BidrnError, InputFileError

__all__ = ["ModelInfo", "is_frozen_file", "load_model", "weights_file"]


@dataclass(frozen=True)
class ModelInfo:
    """What :func:`load_model` loaded.

    Attributes:
        path: the checkpoint as given.
        file_format: ``"frozen"`` (``bidrn export``) or ``"training"`` (``bidrn train``).
        name: registry name of the model.
        overrides: its constructor overrides.
        frozen: whether the model runs packed 1-bit layers (else simulated binary layers).
        body_model: body-model file the checkpoint records (training checkpoints), or ``None``.
        binarized: whether the model has binary layers at all (``False`` for Hand4Whole).
    """

    path: Path
    file_format: Literal["frozen", "training"]
    name: str
    overrides: dict[str, Any]
    frozen: bool
    body_model: str | None = None
    binarized: bool = True


_NOT_OURS = (
    "not a bidrn checkpoint (expected a frozen *.bidrn.safetensors from `bidrn export` "
    "or a training checkpoint from `bidrn train`)"
)


def weights_file(path: str | Path) -> Path:
    """The safetensors file behind a checkpoint argument (the file itself, or a stem's weights)."""
    path = Path(path)
    if path.is_dir():
        raise InputFileError(path, "is a folder; pass the checkpoint file")
    if path.suffix == ".json" or (not path.is_file() and checkpoint_stem(path) == path):
        stem = checkpoint_stem(path)
        candidate = stem.with_name(stem.name + ".safetensors")
        if candidate.is_file():
            return candidate
    if not path.is_file():
        raise InputFileError(path, "checkpoint not found")
    return path


def _file_format(path: Path) -> str:
    """The ``format`` tag in a safetensors header; one-line error for anything that is not ours."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError):
        raise InputFileError(path, _NOT_OURS) from None
    tag = metadata.get("format")
    if tag not in (FROZEN_FORMAT, CHECKPOINT_FORMAT):
        raise InputFileError(path, _NOT_OURS)
    return tag


def is_frozen_file(path: str | Path) -> bool:
    """Whether ``path`` is a frozen 1-bit model (``False`` for a training checkpoint).

    Raises:
        InputFileError: missing file or a file that is not one of ours.
    """
    return _file_format(weights_file(path)) == FROZEN_FORMAT


def load_model(
    path: str | Path,
    body_model: nn.Module | None = None,
    *,
    frozen: bool | None = None,
    device: torch.device | str = "cpu",
    model_name: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> tuple[nn.Module, ModelInfo]:
    """Load a frozen file or a training checkpoint as an eval-mode model on ``device``.

    Args:
        path: frozen ``*.bidrn.safetensors``, or a training checkpoint's stem / ``.safetensors`` /
            ``.json``.
        body_model: an SMPL-X layer (:func:`bidrn.body.load_body_model`) to attach, so that
            outputs include meshes; ``None`` attaches none.
        frozen: for training checkpoints: run packed 1-bit layers (``True``), simulated binary
            layers (``False``), or the default for the device (``None``: frozen on CPU, simulated on
            CUDA, where packed layers have no kernels). A frozen file always runs frozen.
        device: where the model runs.
        model_name: registry name for a training checkpoint that does not record its model.
        overrides: constructor overrides applied over the checkpoint's (training checkpoints).

    Returns:
        The model and a :class:`ModelInfo` describing it.

    Raises:
        InputFileError: missing file, a file that is not one of ours, weights that do not fit, or a
            model that cannot be frozen as asked.
    """
    path = Path(path)
    device = torch.device(device)
    weights = weights_file(path)
    if _file_format(weights) == FROZEN_FORMAT:
        if frozen is False:
            raise InputFileError(
                path, "is a frozen 1-bit model and runs only frozen; pass the training checkpoint to simulate"
            )
        architecture = read_metadata(weights)["architecture"] or {}
        model = load_frozen(weights)
        info = ModelInfo(
            path, "frozen", architecture.get("name", "?"), architecture.get("overrides", {}), True
        )
        return _ready(model, body_model, device), info

    checkpoint = load_checkpoint(weights, with_state=False)
    name = model_name or checkpoint.model_name
    if not name:
        raise InputFileError(
            path, "checkpoint does not record its model name; pass the registry name (bidrn: --model)"
        )
    model_overrides = {**checkpoint.model_overrides, **(overrides or {})}
    import bidrn

    model = bidrn.create_model(name, **model_overrides).eval()
    load_weights_into(model, checkpoint, path)
    binarized = any(isinstance(module, BinaryLayer) for module in model.modules())
    if frozen and not binarized:
        raise InputFileError(path, f"model {name!r} has no binary layers to freeze")
    run_frozen = binarized and (device.type == "cpu" if frozen is None else frozen)
    if run_frozen:
        example = torch.zeros(1, 3, *model.config.crop_input)
        try:
            model = freeze(model, example_inputs=(example,))
        except BidrnError as error:
            raise InputFileError(path, f"cannot freeze this model ({error})") from None
    info = ModelInfo(
        path, "training", name, model_overrides, run_frozen, checkpoint.info.get("body_model"), binarized
    )
    return _ready(model, body_model, device), info


def _ready(model: nn.Module, body_model: nn.Module | None, device: torch.device) -> nn.Module:
    model = model.to(device).eval()
    if body_model is not None:
        model.attach_body_model(body_model.to(device))
    return model
