"""Checkpoints that cannot execute code when loaded, and that a crash can never leave half-written.

A checkpoint with stem ``run/checkpoints/last`` is **one file**, ``last.safetensors``:

* the model's state dict under its plain keys (any safetensors reader can load it into the model);
* training-only tensors under ``training_state/``: Adam moments (``training_state/optimizer.<i>.<name>``)
  and the torch CPU/CUDA RNG states (``training_state/rng.torch``, ...). Absent in weight-only files;
* metadata: ``format`` (``bidrn-checkpoint``), ``version`` (2), ``model``, ``info`` (a JSON document:
  model name and overrides, training configuration, epoch/step counters, optimizer hyper-parameters,
  AMP scaler, Python/NumPy RNG states) and ``sha256``, a digest of every tensor's name, dtype, shape
  and bytes.

:func:`save_checkpoint` writes a temporary file beside the destination, fsyncs it, renames it over the
destination in one step and fsyncs the directory, so a reader sees either the old checkpoint or the
new one, never a mixture; :func:`load_checkpoint` recomputes the digest and refuses a file whose
tensors do not match it. Version 1 checkpoints (weights, ``.json`` and ``.state.safetensors`` as
three files, written before this format) still load for evaluation and ``--init-from``, but cannot be
resumed: nothing ties their three files together.

Nothing here unpickles: JSON and safetensors only.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from bidrn.errors import InputFileError

FORMAT_TAG = "bidrn-checkpoint"
FORMAT_VERSION = 2
STATE_PREFIX = "training_state/"
_WEIGHTS_SUFFIX = ".safetensors"
_LEGACY_STATE_SUFFIX = ".state.safetensors"
_LEGACY_INFO_SUFFIX = ".json"


@dataclass
class Checkpoint:
    """A checkpoint read back from disk.

    Attributes:
        weights: the model state dict.
        info: the JSON document (model name, overrides, counters, ...).
        state: training tensors (optimizer moments, RNG states); empty for weight-only files.
        verified: True when the file carried a digest and its tensors matched it (version 2).
    """

    weights: dict[str, torch.Tensor]
    info: dict[str, Any]
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    verified: bool = False

    @property
    def model_name(self) -> str | None:
        """Registry name of the model that produced the weights, if recorded."""
        name = self.info.get("model")
        return name if isinstance(name, str) else None

    @property
    def model_overrides(self) -> dict[str, Any]:
        """Keyword overrides the model was built with."""
        overrides = self.info.get("model_overrides", {})
        return dict(overrides) if isinstance(overrides, dict) else {}


def checkpoint_stem(path: str | Path) -> Path:
    """The common stem of a checkpoint's files, given any one of them or the stem itself."""
    text = str(path)
    for suffix in (_LEGACY_STATE_SUFFIX, _WEIGHTS_SUFFIX, _LEGACY_INFO_SUFFIX):
        if text.endswith(suffix):
            return Path(text[: -len(suffix)])
    return Path(text)


def _weights_path(stem: Path) -> Path:
    return stem.with_name(stem.name + _WEIGHTS_SUFFIX)


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in sorted name order."""
    hasher = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


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
    # Files hold contiguous tensors; moments take their parameter's memory layout back (channels-last
    # training), so a resumed run computes exactly what an uninterrupted one would.
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            moments = optimizer.state.get(parameter, {})
            for name, value in moments.items():
                if isinstance(value, torch.Tensor) and value.shape == parameter.shape:
                    moments[name] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)


def current_umask() -> int:
    """The process's umask (read by setting and restoring it), for files made 0600 by safetensors."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms without directory handles (Windows): the rename is what we have
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def save_checkpoint(
    stem: str | Path,
    model: nn.Module,
    info: dict[str, Any],
    state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint as one file, atomically (see the module docstring).

    Args:
        stem: path without suffix, e.g. ``run/checkpoints/last``.
        model: the (unwrapped) model whose ``state_dict`` is saved.
        info: JSON-able document; should hold ``"model"`` and ``"model_overrides"``.
        state: training tensors (optimizer moments, RNG states), or ``None`` for weights only.

    Returns:
        The path of the file.
    """
    stem = checkpoint_stem(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    destination = _weights_path(stem)
    tensors = _detached_copies(model.state_dict())
    clashes = [name for name in tensors if name.startswith(STATE_PREFIX)]
    if clashes:
        raise ValueError(f"model state keys may not start with {STATE_PREFIX!r}: {clashes[:3]}")
    tensors.update({STATE_PREFIX + name: value for name, value in _detached_copies(state or {}).items()})
    metadata = {
        "format": FORMAT_TAG,
        "version": str(FORMAT_VERSION),
        "model": str(info.get("model", "")),
        "info": json.dumps(info, sort_keys=True),
        "sha256": tensor_digest(tensors),
    }
    for stale in destination.parent.glob(f".{destination.name}.*.tmp"):
        stale.unlink(missing_ok=True)  # left by a writer that was killed (one writer per run folder)
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(temporary), metadata=metadata)
        os.chmod(temporary, 0o666 & ~current_umask())  # as any new file, e.g. 0644 (safetensors: 0600)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(destination.parent)
    for legacy in (
        stem.with_name(stem.name + _LEGACY_INFO_SUFFIX),
        stem.with_name(stem.name + _LEGACY_STATE_SUFFIX),
    ):
        legacy.unlink(missing_ok=True)  # a version-1 checkpoint of the same name is now stale
    return destination


# safetensors dtype names (the format's header) and the torch dtypes they hold.
_SAFETENSORS_DTYPES = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32,
    "I64": torch.int64, "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32,
    "F64": torch.float64,
}  # fmt: skip


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor of a safetensors file, each in memory of its own, and the file's metadata.

    ``safe_open`` (which checks the header first) maps the whole file, and every tensor it returns
    keeps that mapping alive: once read, all of the file stays resident for as long as any one of
    its tensors lives, even after a frozen model replaced most of them by int8 or bfloat16 copies
    (63 of a 65 MB file, docs/deployment.md "Memory"). Here each tensor is read from the file into
    its own buffer, so what is later replaced is freed.

    Raises:
        InputFileError: a file that is not safetensors, or whose header and size disagree.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:  # validates the header
            metadata = dict(handle.metadata() or {})
        with open(path, "rb") as file:
            header = json.loads(file.read(int.from_bytes(file.read(8), "little")))
            data_start, tensors = file.tell(), {}
            for name in sorted(header.keys() - {"__metadata__"}):  # the order safe_open gives
                tensors[name] = _read_tensor(file, data_start, header[name])
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        raise InputFileError(path, f"not a readable safetensors file ({error})") from None
    return tensors, metadata


def _read_tensor(file: Any, data_start: int, entry: dict[str, Any]) -> torch.Tensor:
    """One tensor described by a safetensors header ``entry``, read from ``file`` into a new buffer."""
    dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
    if dtype is None:
        raise ValueError(f"unsupported dtype {entry['dtype']}")
    begin, end = entry["data_offsets"]
    buffer = torch.empty(end - begin, dtype=torch.uint8)
    file.seek(data_start + begin)
    if file.readinto(buffer.numpy()) != buffer.numel():
        raise ValueError("the file is shorter than its header says")
    return buffer.view(dtype).reshape(entry["shape"])


def _read_legacy_info(stem: Path) -> dict[str, Any]:
    info_path = stem.with_name(stem.name + _LEGACY_INFO_SUFFIX)
    if not info_path.is_file():
        return {}
    try:
        info = json.loads(info_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        raise InputFileError(info_path, f"malformed checkpoint JSON ({error})") from None
    if not isinstance(info, dict):
        raise InputFileError(info_path, "checkpoint JSON must be a JSON object")
    return info


def load_checkpoint(path: str | Path, with_state: bool = True) -> Checkpoint:
    """Read a checkpoint given its stem or its file (or, for version 1, any of its three files).

    Args:
        path: ``last`` or ``last.safetensors`` (version 1 also ``last.json``).
        with_state: also return the training tensors when present.

    Raises:
        InputFileError: when the file is missing, unreadable, fails its digest, or its JSON is malformed.
    """
    stem = checkpoint_stem(path)
    weights_path = _weights_path(stem)
    if not weights_path.is_file():
        raise InputFileError(weights_path, "checkpoint weights not found")
    tensors, metadata = read_safetensors(weights_path)
    if metadata.get("version") != str(FORMAT_VERSION):
        info = _read_legacy_info(stem)
        state_path = stem.with_name(stem.name + _LEGACY_STATE_SUFFIX)
        state = read_safetensors(state_path)[0] if with_state and state_path.is_file() else {}
        return Checkpoint(weights=tensors, info=info, state=state)
    if tensor_digest(tensors) != metadata.get("sha256"):
        raise InputFileError(weights_path, "checkpoint is damaged: its tensors do not match its digest")
    try:
        info = json.loads(metadata.get("info", "{}"))
    except json.JSONDecodeError as error:
        raise InputFileError(weights_path, f"malformed checkpoint metadata ({error})") from None
    if not isinstance(info, dict):
        raise InputFileError(weights_path, "checkpoint metadata 'info' must be a JSON object")
    weights = {name: value for name, value in tensors.items() if not name.startswith(STATE_PREFIX)}
    state = (
        {name[len(STATE_PREFIX) :]: value for name, value in tensors.items() if name.startswith(STATE_PREFIX)}
        if with_state
        else {}
    )
    return Checkpoint(weights=weights, info=info, state=state, verified=True)


def load_weights_into(
    model: nn.Module, checkpoint: Checkpoint, path: str | Path, strict: bool = True
) -> None:
    """Copy ``checkpoint.weights`` into ``model``, naming ``path`` in any mismatch error.

    Tensors must match the model's in shape and dtype: a checkpoint is never silently cast.
    """
    own = model.state_dict()
    for name, value in checkpoint.weights.items():
        if name in own and own[name].dtype != value.dtype:
            raise InputFileError(path, f"tensor {name} is {value.dtype}, the model expects {own[name].dtype}")
    try:
        model.load_state_dict(checkpoint.weights, strict=strict)
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:300]
        raise InputFileError(path, f"weights do not fit this model: {detail}") from None
