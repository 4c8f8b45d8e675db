"""Frozen model files: safetensors tensors plus a JSON description in the header metadata.

A frozen file (``*.bidrn.safetensors``) holds the frozen model's state dict: packed layers'
``weight_bits`` (int64 words), ``multiplier`` / ``addend`` / ``input_threshold`` (float32), and
every full-precision tensor in float32 or, with ``fp16=True``, float16 (converted back to float32
when loaded). The safetensors metadata (string -> string) carries:

* ``format``: ``"bidrn-frozen"``, ``version``: ``"1"``, ``fp_dtype``: ``"float32"`` / ``"float16"``;
* ``architecture``: JSON ``{"name": registry name, "overrides": {...}}`` from which
  :func:`load` rebuilds the module skeleton with :func:`bidrn.create_model` (absent for custom
  models: pass ``skeleton=`` to :func:`load`);
* ``layout``: JSON from :func:`bidrn.deploy.freeze.frozen_layout`: each packed layer's name and
  constructor arguments, the BatchNorms folded away, the full-precision convs that gained a bias
  from folding, and the fused BiDRN units (``biased_convs`` is absent in files written before
  full-precision folding existed; they load unchanged).

Loading never unpickles anything.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from bidrn.deploy.dense import dense_precision, use_pointwise_convs
from bidrn.deploy.freeze import cpu_inference_settings, frozen_layout, fuse_units
from bidrn.deploy.layers import (
    PackedBinaryConv2d,
    PackedBinaryConvTranspose2d,
    PackedBinaryLayer,
    PackedBinaryLinear,
)
from bidrn.engine.checkpoint import current_umask, read_safetensors
from bidrn.errors import BidrnError, InputFileError

__all__ = ["FORMAT_TAG", "load", "read_metadata", "save"]

FORMAT_TAG = "bidrn-frozen"
FORMAT_VERSION = "1"
_PACKED_KINDS: dict[str, type[PackedBinaryLayer]] = {
    PackedBinaryConv2d.kind: PackedBinaryConv2d,
    PackedBinaryConvTranspose2d.kind: PackedBinaryConvTranspose2d,
    PackedBinaryLinear.kind: PackedBinaryLinear,
}
_FLOAT_TYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _packed_epilogue_keys(model: nn.Module) -> set[str]:
    """State-dict keys that stay float32 whatever ``fp16`` says (small and precision-critical)."""
    keys = set()
    for name, module in model.named_modules():
        if isinstance(module, PackedBinaryLayer):
            prefix = f"{name}." if name else ""
            keys.update(f"{prefix}{key}" for key in ("multiplier", "addend", "input_threshold"))
    return keys


def save(
    model: nn.Module, path: str | Path, fp16: bool = False, architecture: dict[str, Any] | None = None
) -> Path:
    """Write a frozen model (from :func:`bidrn.deploy.freeze`) to ``path``; returns the path.

    Args:
        model: the frozen model.
        path: output file, conventionally ``*.bidrn.safetensors``.
        fp16: store full-precision tensors as float16 (packed layers' epilogues stay float32).
        architecture: ``{"name": ..., "overrides": {...}}`` for :func:`bidrn.create_model`, so that
            :func:`load` can rebuild the model without a skeleton.
    """
    layout = frozen_layout(model)
    if not layout["packed_layers"]:
        raise BidrnError("the model has no packed binary layers; call bidrn.deploy.freeze(model) first")
    precision = dense_precision(model)
    if precision != "fp32":
        raise BidrnError(
            f"the model's conv weights were rounded to {precision} (set_dense_precision); "
            "save a model frozen or loaded with dense precision fp32"
        )
    keep_fp32 = _packed_epilogue_keys(model)
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if value.dtype in _FLOAT_TYPES and key not in keep_fp32:
            value = value.to(torch.float16 if fp16 else torch.float32)
        tensors[key] = value.contiguous().clone()  # clones break memory sharing safetensors refuses
    metadata = {
        "format": FORMAT_TAG,
        "version": FORMAT_VERSION,
        "fp_dtype": "float16" if fp16 else "float32",
        "layout": json.dumps(layout),
    }
    if architecture is not None:
        metadata["architecture"] = json.dumps(architecture)
    path = Path(path)
    save_file(tensors, str(path), metadata=metadata)
    os.chmod(path, 0o666 & ~current_umask())  # as any new file, e.g. 0644 (safetensors makes it 0600)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The decoded metadata of a frozen file (``layout`` and ``architecture`` as JSON objects)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "frozen model file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise InputFileError(path, f"not a readable safetensors file ({error})") from error
    if metadata.get("format") != FORMAT_TAG:
        raise InputFileError(path, "not a bidrn frozen model (use `bidrn export` to make one)")
    if metadata.get("version") != FORMAT_VERSION:
        raise InputFileError(path, f"unsupported frozen format version {metadata.get('version')!r}")
    try:
        decoded = dict(metadata)
        decoded["layout"] = json.loads(metadata["layout"])
        decoded["architecture"] = json.loads(metadata["architecture"]) if "architecture" in metadata else None
    except (KeyError, json.JSONDecodeError) as error:
        raise InputFileError(path, f"malformed frozen-model metadata ({error})") from error
    return decoded


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _packed_layer(config: dict[str, Any]) -> PackedBinaryLayer:
    options = dict(config)
    kind = options.pop("kind")
    if kind not in _PACKED_KINDS:
        raise BidrnError(f"unknown packed layer kind {kind!r}")
    if kind == PackedBinaryLinear.kind:
        options["in_features"] = options.pop("in_channels")
        options["out_features"] = options.pop("out_channels")
    return _PACKED_KINDS[kind](**options)


def load(path: str | Path, skeleton: nn.Module | None = None) -> nn.Module:
    """Load a frozen model file into an inference-ready module (eval mode, float32).

    Without ``skeleton`` the model is rebuilt from the file's ``architecture`` on the meta device
    (no memory, no float latent weights), its binary layers are replaced by packed ones straight
    from the layout, and the file's tensors become its parameters and buffers. Every tensor must
    have the model's dtype (float16 for full-precision tensors of an ``fp16`` file): nothing is
    cast silently, so packed words stay int64 and a float64 tensor is refused.

    Args:
        path: a file written by :func:`save` / ``bidrn export``.
        skeleton: the unfrozen model to fill (any weights, any device); by default it is rebuilt
            from the file's ``architecture`` with :func:`bidrn.create_model`.
    """
    path = Path(path)
    metadata = read_metadata(path)
    layout = metadata["layout"]
    if skeleton is None:
        architecture = metadata["architecture"]
        if architecture is None:
            raise InputFileError(
                path, "no architecture recorded; pass the model skeleton to bidrn.deploy.load"
            )
        import bidrn

        with torch.device("meta"):
            skeleton = bidrn.create_model(architecture["name"], **architecture.get("overrides", {}))
    model = skeleton.eval()
    on_meta = any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers()))
    try:
        with torch.device("meta") if on_meta else contextlib.nullcontext():
            for name, config in layout["packed_layers"].items():
                _replace(model, name, _packed_layer(config))
            for name in layout["folded_batchnorms"]:
                _replace(model, name, nn.Identity())
            for name in layout.get("biased_convs", []):
                conv = model.get_submodule(name)
                conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
        use_pointwise_convs(model)
        fused = fuse_units(model) if layout.get("fused_units") else []
        if sorted(fused) != sorted(layout.get("fused_units", [])):
            raise BidrnError("the fused units differ from the file's")
    except (AttributeError, TypeError, ValueError, BidrnError) as error:
        raise InputFileError(path, f"frozen layout does not fit the model: {error}") from error
    model.bidrn_folded_batchnorms = list(layout["folded_batchnorms"])
    model.bidrn_biased_convs = list(layout.get("biased_convs", []))
    model.bidrn_fused_units = fused
    expected = model.state_dict()
    half = metadata.get("fp_dtype") == "float16"
    tensors = read_safetensors(path)[0]
    for key, value in tensors.items():
        if key in expected and value.dtype != expected[key].dtype:
            if not (half and value.dtype == torch.float16 and expected[key].dtype in _FLOAT_TYPES):
                raise InputFileError(
                    path, f"tensor '{key}' is {value.dtype} where the model holds {expected[key].dtype}"
                )
            tensors[key] = value.to(expected[key].dtype)
    try:
        model.load_state_dict(tensors, strict=True, assign=on_meta)
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:300]
        raise InputFileError(path, f"weights do not fit the model: {detail}") from error
    missing = [
        name for name, t in itertools.chain(model.named_parameters(), model.named_buffers()) if t.is_meta
    ]
    if missing:
        raise InputFileError(path, f"the file does not hold {', '.join(missing[:3])}")
    return cpu_inference_settings(model)
