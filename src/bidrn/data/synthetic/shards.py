"""On-disk layout of synthetic data: one folder per shard with an index, plus a manifest.

::

    OUT/manifest.json                 format, version, split, seed, count, image size, shard names
    OUT/train-00000/index.json        split, seed, sample ids and image file names of this shard
    OUT/train-00000/annotations.npz   stacked arrays, one row per sample (keys: ANNOTATION_KEYS)
    OUT/train-00000/00000000.jpg ...  the images

Arrays live in ``.npz`` (read with ``allow_pickle=False``), so reading a shard never executes
anything from the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bidrn.errors import InputFileError

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


def read_manifest(out: Path) -> dict[str, Any]:
    """Read and check ``manifest.json``."""
    path = Path(out) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputFileError(path, "missing: not a folder written by 'bidrn synth'") from None
    except (OSError, json.JSONDecodeError) as error:
        raise InputFileError(path, f"not a readable manifest ({error})") from None
    if manifest.get("format") != FORMAT or "shards" not in manifest:
        raise InputFileError(path, f"not a {FORMAT} manifest")
    return manifest


def read_shard(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(index, arrays)`` of one shard, with every key checked."""
    index_path, arrays_path = folder / "index.json", folder / "annotations.npz"
    try:
        index = json.loads(index_path.read_text())
    except FileNotFoundError:
        raise InputFileError(index_path, "shard index is missing") from None
    except (OSError, json.JSONDecodeError) as error:
        raise InputFileError(index_path, f"not a readable shard index ({error})") from None
    try:
        with np.load(arrays_path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise InputFileError(arrays_path, "shard annotations are missing") from None
    except (OSError, ValueError) as error:
        raise InputFileError(arrays_path, f"not readable ({error})") from None
    count = len(index.get("files", []))
    for key, shape in {"ids": (), **ANNOTATION_KEYS}.items():
        if key not in arrays:
            raise InputFileError(arrays_path, f"missing key '{key}'")
        if arrays[key].shape != (count, *shape):
            raise InputFileError(
                arrays_path, f"'{key}' has shape {arrays[key].shape}, expected {(count, *shape)}"
            )
    return index, arrays
