"""On-disk layout of synthetic data: one folder per shard with an index, plus a manifest.

::

    OUT/manifest.json                 format, version, split, seed, count, image size, shard names
    OUT/train-00000/index.json        split, seed, sample ids and image file names of this shard
    OUT/train-00000/annotations.npz   stacked arrays, one row per sample (keys: ANNOTATION_KEYS)
    OUT/train-00000/00000000.jpg ...  the images

Arrays live in ``.npz`` (read by :func:`bidrn.body.model_file.read_npz`: never unpickled, sizes
checked before allocation, CRCs verified), so reading a shard never executes anything from the
file. Reading checks every document's shape and types, every array's shape, dtype and finiteness,
and that shard and image names are plain names inside the dataset folder (no ``/``, no ``..``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bidrn.body.model_file import read_npz
from bidrn.errors import InputFileError, one_line, require_regular_file

FORMAT = "bidrn-synthetic"
VERSION = 1

ANNOTATION_KEYS: dict[str, tuple[int, ...]] = {
    "bbox": (4,),
    "lhand_box": (4,), "rhand_box": (4,), "face_box": (4,),
    "lhand_valid": (), "rhand_valid": (), "face_valid": (),
    "root_pose": (3,), "body_pose": (63,), "lhand_pose": (45,), "rhand_pose": (45,), "jaw_pose": (3,),
    "shape": (10,), "expr": (10,), "trans": (3,),
    "focal": (2,), "princpt": (2,),
    "joints_2d": (137, 2), "joints_3d": (137, 3), "visible": (137,),
    "image_size": (2,),
}  # fmt: skip
"""Per-sample arrays of a shard's ``annotations.npz`` and their per-sample shapes."""


def shard_name(split: str, number: int) -> str:
    """Folder name of shard ``number`` of ``split``."""
    return f"{split}-{number:05d}"


def image_name(sample_id: int) -> str:
    """File name of a sample's image inside its shard."""
    return f"{sample_id:08d}.jpg"


def write_shard(folder: Path, split: str, seed: int, ids: list[int], rows: list[dict[str, Any]]) -> None:
    """Write ``index.json`` and ``annotations.npz`` for samples whose images are already in ``folder``."""
    arrays = {key: np.stack([np.asarray(row[key]) for row in rows]) for key in ANNOTATION_KEYS}
    np.savez_compressed(folder / "annotations.npz", ids=np.asarray(ids, dtype=np.int64), **arrays)
    index = {
        "split": split,
        "seed": seed,
        "count": len(ids),
        "ids": ids,
        "files": [image_name(i) for i in ids],
    }
    (folder / "index.json").write_text(json.dumps(index))


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Write the top-level ``manifest.json``."""
    (out / "manifest.json").write_text(
        json.dumps({"format": FORMAT, "version": VERSION, **manifest}, indent=2)
    )


MAX_DOCUMENT_BYTES = 64 * 2**20
"""Largest ``manifest.json`` / ``index.json`` read (64 MiB), checked before reading."""


def _read_document(path: Path, missing: str) -> dict[str, Any]:
    """A JSON object from ``path``; ``missing`` is the message when the file does not exist."""
    if not path.exists():
        raise InputFileError(path, missing)
    require_regular_file(path, "JSON file")
    if path.stat().st_size > MAX_DOCUMENT_BYTES:
        raise InputFileError(path, f"larger than {MAX_DOCUMENT_BYTES // 2**20} MiB, not a bidrn synth file")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise InputFileError(path, f"not readable JSON ({one_line(error)})") from None
    if not isinstance(document, dict):
        raise InputFileError(path, f"expected a JSON object, got a {type(document).__name__}")
    return document


def plain_name(value: Any) -> bool:
    """Whether ``value`` is a file or folder name that stays inside its folder (no separator, no ``..``)."""
    return (
        isinstance(value, str)
        and value not in ("", ".", "..")
        and "/" not in value
        and "\\" not in value
        and "\x00" not in value
    )


def read_manifest(out: Path) -> dict[str, Any]:
    """Read and check ``manifest.json``: format, and ``shards`` a list of plain folder names."""
    path = Path(out) / "manifest.json"
    manifest = _read_document(path, "missing: not a folder written by 'bidrn synth'")
    if manifest.get("format") != FORMAT or "shards" not in manifest:
        raise InputFileError(path, f"not a {FORMAT} manifest")
    shards = manifest["shards"]
    if not isinstance(shards, list) or not all(plain_name(name) for name in shards):
        raise InputFileError(path, "'shards' must be a list of folder names inside the dataset folder")
    return manifest


def read_shard(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(index, arrays)`` of one shard, with every key, shape, dtype and file name checked."""
    index_path, arrays_path = folder / "index.json", folder / "annotations.npz"
    index = _read_document(index_path, "shard index is missing")
    files = index.get("files")
    if not isinstance(files, list) or not all(plain_name(name) for name in files):
        raise InputFileError(index_path, "'files' must be a list of image file names inside the shard folder")
    if not arrays_path.exists():
        raise InputFileError(arrays_path, "shard annotations are missing")
    arrays = read_npz(arrays_path)
    count = len(files)
    for key, shape in {"ids": (), **ANNOTATION_KEYS}.items():
        if key not in arrays:
            raise InputFileError(arrays_path, f"missing key '{key}'")
        value = arrays[key]
        if value.shape != (count, *shape):
            raise InputFileError(arrays_path, f"'{key}' has shape {value.shape}, expected {(count, *shape)}")
        if value.dtype.kind not in "biuf" or (key == "ids" and value.dtype.kind not in "iu"):
            raise InputFileError(arrays_path, f"'{key}' has dtype {value.dtype}, expected numbers")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise InputFileError(arrays_path, f"'{key}' holds NaN or infinite values")
    return index, arrays
