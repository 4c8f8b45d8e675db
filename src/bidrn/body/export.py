"""Writing meshes (``.obj`` / ``.ply``) and SMPL-X parameter files in Hand4Whole's demo layout.

Parameter files use the field names of Hand4Whole's ``smplx_param.json`` (docs/design/pipeline.md §5.8):

==============  ======  ===============================================================
field           size    meaning
==============  ======  ===============================================================
``root_pose``   3       global orientation, axis-angle
``body_pose``   63      21 body joints × axis-angle, SMPL-X order
``lhand_pose``  45      15 left-hand joints × axis-angle (offsets from the mean hand unless
                        ``flat_hand_mean``)
``rhand_pose``  45      15 right-hand joints
``jaw_pose``    3       jaw, axis-angle
``shape``       10      shape coefficients β
``expr``        10      expression coefficients ψ
``cam_trans``   3       camera-frame translation in metres (added to the layer's vertices)
==============  ======  ===============================================================

Besides these, every file carries a ``metadata`` record (body model, ``flat_hand_mean``, intrinsics,
...) so that nobody mistakes stand-in meshes for SMPL-X ones or guesses the camera.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bidrn.errors import InputFileError

PARAMETER_SIZES: dict[str, int] = {
    "root_pose": 3,
    "body_pose": 63,
    "lhand_pose": 45,
    "rhand_pose": 45,
    "jaw_pose": 3,
    "shape": 10,
    "expr": 10,
    "cam_trans": 3,
}
"""Hand4Whole's parameter names and their sizes per person."""

LAYER_ARGUMENT: dict[str, str] = {
    "root_pose": "global_orient",
    "body_pose": "body_pose",
    "lhand_pose": "left_hand_pose",
    "rhand_pose": "right_hand_pose",
    "jaw_pose": "jaw_pose",
    "shape": "betas",
    "expr": "expression",
    "cam_trans": "transl",
}
"""Which :class:`~bidrn.body.SMPLXLayer` keyword each parameter feeds."""


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def save_mesh(path: str | Path, vertices: Any, faces: Any) -> Path:
    """Write one mesh as ``.obj`` (text) or ``.ply`` (binary), chosen by the suffix; returns the path.

    ``vertices`` (V, 3) array or tensor in metres, ``faces`` (F, 3) vertex indices. OBJ vertices are
    written to the micrometre, PLY vertices as float64. (Written here rather than through trimesh,
    whose import alone took 39 MB and 0.6 s of every ``bidrn predict``.)
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".obj", ".ply"):
        raise InputFileError(path, "unsupported mesh format; use .obj or .ply")
    vertices = _as_numpy(vertices).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if suffix == ".obj":
        text = ("v %.6f %.6f %.6f\n" * len(vertices)) % tuple(vertices.ravel().tolist())
        text += ("f %d %d %d\n" * len(faces)) % tuple((faces + 1).ravel().tolist())  # OBJ counts from 1
        path.write_text(text, encoding="ascii")
        return path
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(vertices)}\nproperty double x\nproperty double y\nproperty double z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    records = np.zeros(len(faces), dtype=[("count", "u1"), ("indices", "<i4", (3,))])
    records["count"], records["indices"] = 3, faces
    with open(path, "wb") as file:
        file.write(header.encode("ascii"))
        file.write(vertices.astype("<f8").tobytes())
        file.write(records.tobytes())
    return path


def select_parameters(params: Any, index: int = 0) -> dict[str, np.ndarray]:
    """One person's parameters as flat float arrays, from a mapping or an object with those attributes.

    Accepts a network output (``WholeBodyOutput``: batched tensors) or a dict; ``index`` picks the
    person when the values are batched.
    """
    out = {}
    for name, size in PARAMETER_SIZES.items():
        value = params[name] if isinstance(params, Mapping) else getattr(params, name)
        array = _as_numpy(value)
        if array.size != size:
            array = array.reshape(-1, size)[index]
        out[name] = array.reshape(size)
    return out


def save_parameters(
    path: str | Path, params: Any, index: int = 0, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write one person's SMPL-X parameters to ``.npz`` or ``.json`` in Hand4Whole's field names.

    ``metadata`` (JSON-serialisable) is stored alongside, e.g. ``{"body_model": "bidrn-standin-v1",
    "flat_hand_mean": False, "focal": [fx, fy], "princpt": [cx, cy]}``.
    """
    path = Path(path)
    values = select_parameters(params, index)
    meta = dict(metadata or {})
    if path.suffix.lower() == ".json":
        record = {name: value.tolist() for name, value in values.items()}
        record["metadata"] = meta
        path.write_text(json.dumps(record, indent=2))
    elif path.suffix.lower() == ".npz":
        np.savez(
            path, **{k: v.astype(np.float32) for k, v in values.items()}, metadata=np.array(json.dumps(meta))
        )
    else:
        raise InputFileError(path, "unsupported parameter format; use .npz or .json")
    return path


def load_parameters(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`save_parameters`: (parameters, metadata). Never unpickles."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".json":
            record = json.loads(path.read_text())
            meta = record.pop("metadata", {})
            raw = {name: record.get(name) for name in PARAMETER_SIZES}
        elif path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                raw = {name: archive[name] if name in archive.files else None for name in PARAMETER_SIZES}
                meta = json.loads(str(archive["metadata"])) if "metadata" in archive.files else {}
        else:
            raise InputFileError(path, "unsupported parameter format; use .npz or .json")
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputFileError(path, f"cannot read parameters ({' '.join(str(exc).split())})") from None
    params = {}
    for name, size in PARAMETER_SIZES.items():
        if raw[name] is None:
            raise InputFileError(path, f"missing parameter '{name}'")
        value = np.asarray(raw[name], dtype=np.float64).reshape(-1)
        if value.size != size:
            raise InputFileError(path, f"parameter '{name}' has {value.size} values, expected {size}")
        params[name] = value
    return params, meta


def layer_inputs(params: Mapping[str, Any]) -> dict[str, Any]:
    """Map Hand4Whole parameter names to :class:`~bidrn.body.SMPLXLayer` keywords (``cam_trans`` → transl)."""
    return {LAYER_ARGUMENT[name]: value for name, value in params.items() if name in LAYER_ARGUMENT}
