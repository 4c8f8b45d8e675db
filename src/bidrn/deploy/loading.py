"""One way from a file to a ready model: frozen 1-bit files and training checkpoints alike.

Every command that runs a model (``bidrn predict``, ``bidrn demo``, ``bidrn eval``, ``bidrn export``)
loads it with :func:`load_model`::

    from bidrn.deploy import load_model
    model, info = load_model("model.bidrn.safetensors")                  # frozen 1-bit file
    model, info = load_model("runs/bidrn/checkpoints/last", frozen=False)  # training checkpoint, as trained
    model, info = load_model("runs/bidrn/checkpoints/last", frozen=True)   # ... frozen on load

A frozen file is rebuilt without ever materialising the float latent weights of its binary
layers (:func:`bidrn.deploy.serialization.load` builds the skeleton on the meta device). A
training checkpoint is rebuilt by :func:`bidrn.engine.loading.model_from_checkpoint`, then frozen
on request. The recorded architecture and the weights are checked before use: anything that is
not one of our files, a malformed record, a tensor whose dtype differs from the model's or that
holds NaN or infinite values is refused with one line naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from bidrn.binary import BinaryLayer
from bidrn.deploy.dense import DensePrecision, resolve_dense_precision, set_dense_precision
from bidrn.deploy.freeze import freeze
from bidrn.deploy.serialization import FORMAT_TAG as FROZEN_FORMAT
from bidrn.deploy.serialization import load as load_frozen
from bidrn.deploy.serialization import read_metadata
from bidrn.engine.checkpoint import FORMAT_TAG as CHECKPOINT_FORMAT
from bidrn.engine.checkpoint import checkpoint_stem
from bidrn.engine.loading import check_finite, model_from_checkpoint
from bidrn.errors import BidrnError, InputFileError, one_line, require_regular_file

__all__ = ["FreezeError", "ModelInfo", "is_frozen_file", "load_model", "weights_file"]


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
        training_statistics: the mean training parameters the file records (``bidrn eval
            --baseline mean-pose``), or ``None``.
    """

    path: Path
    file_format: Literal["frozen", "training"]
    name: str
    overrides: dict[str, Any]
    frozen: bool
    body_model: str | None = None
    binarized: bool = True
    training_statistics: dict[str, Any] | None = None


class FreezeError(InputFileError):
    """A training checkpoint whose model cannot be frozen to packed layers (it can still run simulated)."""


_NOT_OURS = (
    "not a bidrn checkpoint (expected a frozen *.bidrn.safetensors from `bidrn export` "
    "or a training checkpoint from `bidrn train`)"
)


def weights_file(path: str | Path) -> Path:
    """The safetensors file behind a checkpoint argument (the file itself, or a stem's weights)."""
    path = Path(path)
    if path.is_dir():
        raise InputFileError(path, "is a folder; pass the checkpoint file")
    if path.suffix == ".json" or (not os.path.lexists(path) and checkpoint_stem(path) == path):
        stem = checkpoint_stem(path)
        candidate = stem.with_name(stem.name + ".safetensors")
        if os.path.lexists(candidate):
            return require_regular_file(candidate, "checkpoint")
    if not os.path.lexists(path):
        raise InputFileError(path, "checkpoint not found")
    return require_regular_file(path, "checkpoint")


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
    device: torch.device | str = "cpu",
    frozen: bool | None = None,
    *,
    body_model: nn.Module | None = None,
    model_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    dense_precision: DensePrecision = "auto",
) -> tuple[nn.Module, ModelInfo]:
    """Load a frozen file or a training checkpoint as an eval-mode model on ``device``.

    Args:
        path: frozen ``*.bidrn.safetensors``, or a training checkpoint's stem / ``.safetensors`` /
            ``.json``.
        device: where the model runs.
        frozen: for training checkpoints: run packed 1-bit layers (``True``), simulated binary
            layers (``False``), or the default for the device (``None``: frozen on CPU, simulated on
            CUDA, where packed layers have no kernels). A frozen file always runs frozen.
        body_model: an SMPL-X layer (:func:`bidrn.body.load_body_model`) to attach, so that
            outputs include meshes; ``None`` attaches none.
        model_name: registry name for a training checkpoint that does not record its model.
        overrides: constructor overrides applied over the checkpoint's (training checkpoints).
        dense_precision: precision of a frozen model's full-precision convs on CPU
            (:func:`bidrn.deploy.dense.set_dense_precision`): ``"auto"`` (the fastest this CPU
            has native instructions for), ``"fp32"`` (exact), ``"bf16"`` or ``"int8"``.

    Returns:
        The model and a :class:`ModelInfo` describing it.

    Raises:
        InputFileError: missing file, a file that is not one of ours, a malformed record, weights
            that do not fit, or a model without binary layers asked to run frozen.
        FreezeError: a training checkpoint asked to run frozen whose model cannot be frozen.
    """
    path = Path(path)
    device = torch.device(device)
    resolve_dense_precision(dense_precision)  # a misspelt precision fails before any loading
    weights = weights_file(path)
    if _file_format(weights) == FROZEN_FORMAT:
        if frozen is False:
            raise InputFileError(
                path, "is a frozen 1-bit model and runs only frozen; pass the training checkpoint to simulate"
            )
        architecture = read_metadata(weights)["architecture"]
        name, settings = _architecture(architecture, path)
        try:
            model = load_frozen(weights)
        except InputFileError:
            raise
        except BidrnError as error:
            raise InputFileError(path, f"records a model that cannot be built ({error})") from None
        except (TypeError, ValueError, KeyError, AttributeError) as error:
            raise InputFileError(path, f"malformed frozen model file ({one_line(error)})") from None
        check_finite(model.state_dict(), path)
        statistics = architecture.get("training_statistics")
        info = ModelInfo(path, "frozen", name, settings, True, training_statistics=statistics)
        return _ready(model, body_model, device, dense_precision), info

    model, checkpoint = model_from_checkpoint(weights, name=model_name, overrides=overrides)
    name, settings = model_name or checkpoint.model_name, {**checkpoint.model_overrides, **(overrides or {})}
    binarized = any(isinstance(module, BinaryLayer) for module in model.modules())
    if frozen and not binarized:
        raise InputFileError(path, f"model {name!r} has no binary layers to freeze")
    run_frozen = binarized and (device.type == "cpu" if frozen is None else frozen)
    if run_frozen:
        example = torch.zeros(1, 3, *model.config.crop_input)
        try:
            model = freeze(model, example_inputs=(example,))
        except BidrnError as error:
            raise FreezeError(path, f"cannot freeze this model ({error}); it can run simulated") from None
    info = ModelInfo(
        path,
        "training",
        name,
        settings,
        run_frozen,
        checkpoint.info.get("body_model"),
        binarized,
        checkpoint.info.get("training_statistics"),
    )
    return _ready(model, body_model, device, dense_precision if run_frozen else "fp32"), info


def _architecture(architecture: Any, path: Path) -> tuple[str, dict[str, Any]]:
    """``(name, overrides)`` of a frozen file's ``architecture`` record, checked for shape and type."""
    if architecture is None:
        raise InputFileError(path, "no architecture recorded; this file cannot be rebuilt without its code")
    if not isinstance(architecture, dict) or not isinstance(architecture.get("name"), str):
        raise InputFileError(
            path, "malformed metadata: 'architecture' must be an object with a 'name' string"
        )
    overrides = architecture.get("overrides", {})
    if not isinstance(overrides, dict):
        raise InputFileError(path, "malformed metadata: 'architecture.overrides' must be an object")
    return architecture["name"], overrides


def _ready(
    model: nn.Module, body_model: nn.Module | None, device: torch.device, precision: DensePrecision
) -> nn.Module:
    """``model`` on ``device`` in eval mode with ``body_model`` attached (it moves to the images' device).

    On CPU, where packed layers run, its full-precision convs are set to ``precision``.
    """
    model = model.to(device).eval()
    if device.type == "cpu":
        set_dense_precision(model, precision)
    if body_model is not None:
        model.attach_body_model(body_model)
    return model
