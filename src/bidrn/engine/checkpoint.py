"""Checkpoints that cannot execute code when loaded: safetensors plus a small JSON file.

A checkpoint with stem ``run/checkpoints/last`` is up to three files:

* ``last.safetensors`` — the model's state dict under its plain keys (so any safetensors reader
  can load it into the model); metadata ``{"format": "bidrn-checkpoint", "model": NAME}``.
* ``last.json`` — everything small and non-tensor: model name and constructor overrides, the
  training configuration, epoch/step counters, the optimizer's hyper-parameters and per-parameter
  scalars, the AMP scaler, and the Python/NumPy RNG states.
* ``last.state.safetensors`` — training-only tensors: Adam moments (``optimizer.<index>.<name>``)
  and the torch CPU/CUDA RNG states (``rng.torch``, ``rng.cuda.<i>``). Absent in weight-only
  checkpoints (e.g. exported for evaluation).

Nothing here unpickles: JSON and safetensors only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from bidrn.errors import InputFileError

FORMAT_TAG = "bidrn-checkpoint"
_WEIGHTS_SUFFIX = ".safetensors"
_STATE_SUFFIX = ".state.safetensors"
_INFO_SUFFIX = ".json"


@dataclass
class Checkpoint:
    """A checkpoint read back from disk.

    Attributes:
        weights: the model state dict.
        info: the JSON document (model name, overrides, counters, ...).
        state: training tensors (optimizer moments, RNG states); empty for weight-only files.
    """

    weights: dict[str, torch.Tensor]
    info: dict[str, Any]
    state: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def model_name(self) -> str | None:
        """Registry name of the model that produced the weights, if recorded."""
        return self.info.get("model")

    @property
    def model_overrides(self) -> dict[str, Any]:
        """Keyword overrides the model was built with."""
        return dict(self.info.get("model_overrides", {}))


def checkpoint_stem(path: str | Path) -> Path:
    """The common stem of a checkpoint's files, given any one of them or the stem itself."""
    text = str(path)
    for suffix in (_STATE_SUFFIX, _WEIGHTS_SUFFIX, _INFO_SUFFIX):
        if text.endswith(suffix):
            return Path(text[: -len(suffix)])
    return Path(text)


def _paths(stem: Path) -> tuple[Path, Path, Path]:
    return (
        stem.with_name(stem.name + _WEIGHTS_SUFFIX),
        stem.with_name(stem.name + _INFO_SUFFIX),
        stem.with_name(stem.name + _STATE_SUFFIX),
    )


def _detached_copies(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Clones break any memory sharing (tied weights) that safetensors refuses to store.
    return {name: tensor.detach().to("cpu").clone().contiguous() for name, tensor in tensors.items()}


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Split ``optimizer.state_dict()`` into a JSON-able part and named tensors."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state_dict["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return {"param_groups": state_dict["param_groups"], "scalars": scalars}, tensors


def optimizer_from_files(
    optimizer: torch.optim.Optimizer, document: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    """Load what :func:`optimizer_to_files` wrote back into ``optimizer``."""
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = tensor
    for index, scalars in document.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(scalars)
    optimizer.load_state_dict({"state": state, "param_groups": document["param_groups"]})


def save_checkpoint(
    stem: str | Path,
    model: nn.Module,
    info: dict[str, Any],
    state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint atomically enough for resumption (files replaced only when complete).

    Args:
        stem: path without suffix, e.g. ``run/checkpoints/last``.
        model: the (unwrapped) model whose ``state_dict`` is saved.
        info: JSON-able document; should hold ``"model"`` and ``"model_overrides"``.
        state: training tensors (optimizer moments, RNG states), or ``None`` for weights only.

    Returns:
        The path of the weights file.
    """
    stem = checkpoint_stem(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights_path, info_path, state_path = _paths(stem)
    metadata = {"format": FORMAT_TAG, "model": str(info.get("model", ""))}
    writes: list[tuple[Path, Path]] = []

    temporary = weights_path.with_name(weights_path.name + ".tmp")
    save_file(_detached_copies(model.state_dict()), str(temporary), metadata=metadata)
    writes.append((temporary, weights_path))
    if state is not None:
        temporary = state_path.with_name(state_path.name + ".tmp")
        save_file(_detached_copies(state), str(temporary), metadata={"format": FORMAT_TAG})
        writes.append((temporary, state_path))
    temporary = info_path.with_name(info_path.name + ".tmp")
    temporary.write_text(json.dumps(info, indent=1, sort_keys=True))
    writes.append((temporary, info_path))
    for source, destination in writes:
        source.replace(destination)
    if state is None and state_path.exists():
        state_path.unlink()
    return weights_path


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise InputFileError(path, f"not a readable safetensors file ({error})") from error


def load_checkpoint(path: str | Path, with_state: bool = True) -> Checkpoint:
    """Read a checkpoint given its stem or any of its files.

    Args:
        path: ``last``, ``last.safetensors`` or ``last.json``.
        with_state: also read the training tensors when present.

    Raises:
        InputFileError: when the weights file is missing or unreadable, or the JSON is malformed.
    """
    weights_path, info_path, state_path = _paths(checkpoint_stem(path))
    if not weights_path.is_file():
        raise InputFileError(weights_path, "checkpoint weights not found")
    weights = _read_tensors(weights_path)
    info: dict[str, Any] = {}
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputFileError(info_path, f"malformed checkpoint JSON ({error})") from error
    state = _read_tensors(state_path) if with_state and state_path.is_file() else {}
    return Checkpoint(weights=weights, info=info, state=state)


def load_weights_into(
    model: nn.Module, checkpoint: Checkpoint, path: str | Path, strict: bool = True
) -> None:
    """Copy ``checkpoint.weights`` into ``model``, naming ``path`` in any mismatch error."""
    try:
        model.load_state_dict(checkpoint.weights, strict=strict)
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:300]
        raise InputFileError(path, f"weights do not fit this model: {detail}") from error
