"""Reading SMPL-X model files (``SMPLX_*.npz`` and legacy ``.pkl``) into validated numpy arrays.

The official SMPL-X release stores one dictionary of arrays per model (keys and shapes in
docs/design/body-model.md §1). :func:`read_model_file` reads such a file without executing
anything from it:

* ``.npz`` archives are opened with ``allow_pickle=False``; only the keys the layer needs are read,
  so the pickled ``joint2num`` / ``part2num`` entries of the official file are never touched.
* ``.pkl`` files go through :class:`RestrictedUnpickler`, which resolves only numpy's array
  reconstruction helpers and two inert placeholders: one for ``chumpy`` arrays (their ``x`` value is
  kept, so chumpy itself is not needed) and one for ``scipy.sparse`` matrices (rebuilt as dense
  arrays here from their index arrays, without scipy). Any other global — a function, a class from
  any other module — stops the load with an error before it is called.

Sizes are checked before anything is allocated: an array header that claims more bytes than its
archive member holds, or more than :data:`MAX_ARRAY_BYTES`, and a sparse matrix whose shape,
index pointers and indices disagree (or whose dense form would exceed that limit) are refused.
Only regular files are read (a FIFO would block forever).

Every problem is raised as :class:`bidrn.errors.InputFileError` with one line naming the file and the
key. Missing *optional* keys get these defaults:

* ``hands_componentsl/r`` → identity (45, 45) (PCA coefficients are then plain axis-angle values);
* ``hands_meanl/r`` → zeros (45,) (``flat_hand_mean`` then makes no difference);
* ``dynamic_lmk_faces_idx/bary_coords`` → absent; the layer then puts the 17 contour joints on the
  jaw joint and reports ``has_face_contour = False``;
* ``lhand_vertex_ids`` / ``rhand_vertex_ids`` / ``face_vertex_ids`` (bidrn's own extra keys, present
  in the stand-in) → taken from the official side files ``MANO_SMPLX_vertex_ids.pkl`` and
  ``SMPL-X__FLAME_vertex_ids.npy`` when they sit next to the model file, else derived from the
  skinning weights (see :func:`part_vertex_ids_from_weights`).
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from bidrn.body.joint_sets import NUM_SMPLX_SKELETON_JOINTS, SMPLX_PARENTS
from bidrn.errors import InputFileError, one_line, require_regular_file

NUM_HAND_POSE = 45
NUM_CONTOUR_ANGLES = 79
NUM_CONTOUR_POINTS = 17
MIN_SHAPE_COLUMNS = 20
"""Fewest shape-space columns a file may have: 10 shape + 10 expression directions (v1.0 layout)."""
MAX_ARRAY_BYTES = 2**30
"""Largest array a model file may hold (1 GiB; the official SMPL-X v1.1 ``posedirs`` is 122 MB)."""
READ_CHUNK_BYTES = 1 << 22
"""Arrays are read in pieces of this size (4 MiB)."""

REQUIRED_KEYS = (
    "v_template",
    "f",
    "shapedirs",
    "posedirs",
    "J_regressor",
    "weights",
    "kintree_table",
    "lmk_faces_idx",
    "lmk_bary_coords",
)
OPTIONAL_KEYS = (
    "hands_componentsl",
    "hands_componentsr",
    "hands_meanl",
    "hands_meanr",
    "dynamic_lmk_faces_idx",
    "dynamic_lmk_bary_coords",
    "lhand_vertex_ids",
    "rhand_vertex_ids",
    "face_vertex_ids",
    "bidrn_metadata",
)


@dataclass(frozen=True)
class BodyModelArrays:
    """The validated contents of one SMPL-X model file (numpy arrays, file dtypes kept).

    Shapes use V vertices, F triangles, J = 55 joints, S shape-space columns, L static landmarks.
    ``shapedirs`` holds both the shape directions and the expression directions (columns 0:300 and
    300:400 in the v1.1 layout, 0:10 and 10:20 in the v1.0 layout).
    """

    path: str
    v_template: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3) int64
    shapedirs: np.ndarray  # (V, 3, S)
    posedirs: np.ndarray  # (V, 3, 9 (J - 1))
    J_regressor: np.ndarray  # (J, V) dense
    weights: np.ndarray  # (V, J)
    parents: np.ndarray  # (J,) int64, parents[0] == -1
    hands_components_left: np.ndarray  # (K, 45)
    hands_components_right: np.ndarray  # (K, 45)
    hands_mean_left: np.ndarray  # (45,)
    hands_mean_right: np.ndarray  # (45,)
    lmk_faces_idx: np.ndarray  # (L,) int64
    lmk_bary_coords: np.ndarray  # (L, 3)
    dynamic_lmk_faces_idx: np.ndarray | None  # (79, 17) int64
    dynamic_lmk_bary_coords: np.ndarray | None  # (79, 17, 3)
    lhand_vertex_ids: np.ndarray  # (n,) int64
    rhand_vertex_ids: np.ndarray  # (n,) int64
    face_vertex_ids: np.ndarray  # (n,) int64
    metadata: str  # free text (JSON for the stand-in), "" when absent

    @property
    def num_vertices(self) -> int:
        """Number of mesh vertices V."""
        return int(self.v_template.shape[0])


# ----------------------------------------------------------------------------------------------
# Restricted unpickling of legacy .pkl model files.
# ----------------------------------------------------------------------------------------------


class _ChumpyPlaceholder:
    """Stands in for a pickled ``chumpy`` array; keeps only the plain value ``x`` of its state."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _SparsePlaceholder:
    """Stands in for a pickled ``scipy.sparse`` matrix; keeps its state (index arrays, shape)."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _reconstruct_placeholder(cls: type, base: type, state: Any) -> object:
    """Safe replacement for ``copyreg._reconstructor``: only builds bidrn's inert placeholders."""
    if cls not in (_ChumpyPlaceholder, _SparsePlaceholder) or base is not object or state is not None:
        raise pickle.UnpicklingError(f"refusing to reconstruct {getattr(cls, '__name__', cls)!r}")
    return object.__new__(cls)


_NUMPY_HELPERS = {
    # (module suffix after "numpy.core." / "numpy._core.", name): what numpy pickles reference
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numeric", "_frombuffer"),
}


def _numpy_global(module: str, name: str) -> Any:
    """Numpy's own array/dtype reconstruction helpers (for numpy 1.x and 2.x pickles), else None."""
    if module == "numpy" and name in ("ndarray", "dtype"):
        return getattr(np, name)
    prefix, _, suffix = module.rpartition(".")
    if prefix in ("numpy.core", "numpy._core") and (suffix, name) in _NUMPY_HELPERS:
        import importlib

        return getattr(importlib.import_module(f"numpy._core.{suffix}"), name)
    return None


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``codecs.encode`` restricted to the latin-1 round trip protocol-2 pickles use for bytes."""
    if encoding.replace("_", "-").lower() not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"refusing to decode bytes with codec {encoding!r}")
    return text.encode("latin-1")


_PLAIN_BUILTINS = {"object": object, "set": set, "frozenset": frozenset}
"""Builtins a pickle may name: ``object`` (for ``copyreg._reconstructor``) and set containers."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and plain containers, and nothing else.

    ``find_class`` answers only numpy's array and dtype reconstruction helpers, the placeholders for
    chumpy arrays and scipy sparse matrices, and a safe ``copyreg._reconstructor``. Any other
    global name raises :class:`pickle.UnpicklingError` before it can be called, so a pickle cannot
    run code through this class.
    """

    def find_class(self, module: str, name: str) -> Any:
        """Resolve a global referenced by the pickle, refusing everything outside the allow-list."""
        numpy_global = _numpy_global(module, name)
        if numpy_global is not None:
            return numpy_global
        if module.split(".")[0] == "chumpy":
            return _ChumpyPlaceholder
        if module.startswith("scipy.sparse") and name.endswith(("_matrix", "_array")):
            return _SparsePlaceholder
        if (module, name) in (("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")):
            return _reconstruct_placeholder
        if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles store bytes
            return _latin1_encode
        if module in ("__builtin__", "builtins") and name in _PLAIN_BUILTINS:
            return _PLAIN_BUILTINS[name]
        raise pickle.UnpicklingError(
            f"it references {module}.{name}; only numpy arrays and plain containers are allowed"
        )


def _sparse_shape(state: dict[str, Any], path: str, key: str) -> tuple[int, int]:
    """The ``(rows, cols)`` of a pickled sparse matrix, checked against :data:`MAX_ARRAY_BYTES`."""
    shape = state.get("_shape", state.get("shape"))
    if (
        not isinstance(shape, tuple | list)
        or len(shape) != 2
        or not all(isinstance(n, int | np.integer) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise InputFileError(path, f"key '{key}': sparse matrix shape must be two non-negative integers")
    rows, cols = int(shape[0]), int(shape[1])
    if rows * cols * 8 > MAX_ARRAY_BYTES:
        raise InputFileError(
            path,
            f"key '{key}': a {rows}x{cols} sparse matrix is too large to expand (limit {MAX_ARRAY_BYTES} B)",
        )
    return rows, cols


def _sparse_to_dense(state: Any, path: str, key: str) -> np.ndarray:
    """Rebuild a CSC/CSR matrix from its pickled state, without scipy, after checking its tables."""
    if not isinstance(state, dict):
        raise InputFileError(path, f"key '{key}': unreadable sparse matrix")
    rows, cols = _sparse_shape(state, path, key)
    arrays = [state.get(k) for k in ("data", "indices", "indptr")]
    if not all(isinstance(a, np.ndarray) and a.ndim == 1 for a in arrays):
        raise InputFileError(path, f"key '{key}': sparse matrix needs 1-D arrays data, indices and indptr")
    data, indices, indptr = arrays
    fmt = state.get("format") or ("csc" if len(indptr) == cols + 1 else "csr")
    if fmt not in ("csc", "csr") or data.dtype.kind not in "fiu" or indices.dtype.kind not in "iu":
        raise InputFileError(
            path, f"key '{key}': unsupported sparse matrix (format {fmt!r}, data {data.dtype})"
        )
    major, minor = (cols, rows) if fmt == "csc" else (rows, cols)
    if (
        indptr.dtype.kind not in "iu"
        or len(indptr) != major + 1
        or len(indices) != len(data)
        or (len(indptr) and (indptr[0] != 0 or indptr[-1] != len(data)))
        or np.any(np.diff(indptr.astype(np.int64)) < 0)
        or (len(indices) and (indices.min() < 0 or indices.max() >= minor))
    ):
        raise InputFileError(
            path, f"key '{key}': inconsistent sparse matrix (shape, indptr and indices disagree)"
        )
    dense = np.zeros((rows, cols), dtype=np.float64)
    outer = np.repeat(np.arange(major), np.diff(indptr.astype(np.int64)))
    row_index, col_index = (indices, outer) if fmt == "csc" else (outer, indices)
    np.add.at(dense, (row_index, col_index), data)
    return dense


def _plain_value(value: Any, path: str, key: str) -> Any:
    """Turn placeholders into arrays; leave arrays, numbers and strings as they are."""
    if isinstance(value, _ChumpyPlaceholder):
        state = value.state
        if not isinstance(state, dict) or not isinstance(state.get("x"), np.ndarray):
            raise InputFileError(path, f"key '{key}': chumpy object without a plain array value")
        return state["x"]
    if isinstance(value, _SparsePlaceholder):
        return _sparse_to_dense(value.state, path, key)
    return value


def _read_pickle(path: Path) -> dict[str, Any]:
    require_regular_file(path, "pickle file")
    try:
        raw = path.read_bytes()
        payload = RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise InputFileError(path, f"refusing to unpickle: {one_line(exc)}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as exc:
        raise InputFileError(path, f"truncated or corrupt pickle ({one_line(exc)})") from None
    except RecursionError:
        raise InputFileError(path, "corrupt pickle (nested too deeply)") from None
    if not isinstance(payload, dict):
        raise InputFileError(path, f"pickle holds a {type(payload).__name__}, expected a dict of arrays")
    return {str(k): _plain_value(v, str(path), str(k)) for k, v in payload.items()}


def read_npy(handle: IO[bytes], available: int, path: str | Path, key: str) -> np.ndarray:
    """One ``.npy`` array from ``handle``, its header checked before any allocation.

    Args:
        handle: positioned at the start of the ``.npy`` data.
        available: how many bytes the member or file holds (the header's claim must fit).
        path: the file, for messages.
        key: the array's name, for messages.

    Raises:
        InputFileError: a pickled object array, a header claiming more than ``available`` bytes
            or more than :data:`MAX_ARRAY_BYTES`, or data that is truncated or corrupt.
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(handle)
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran_order, dtype = reader(handle)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise InputFileError(path, f"key '{key}' is truncated or corrupt ({one_line(exc)})") from None
    except (ValueError, SyntaxError) as exc:
        raise InputFileError(path, f"key '{key}' has an unreadable array header ({one_line(exc)})") from None
    if dtype.hasobject:
        raise InputFileError(path, f"key '{key}' is a pickled object array; refusing to unpickle it")
    count = 1
    for size in shape:
        count *= int(size)
    claimed = count * dtype.itemsize
    if claimed > MAX_ARRAY_BYTES:
        raise InputFileError(
            path,
            f"key '{key}' claims a {claimed}-byte array {tuple(shape)}, above the limit of {MAX_ARRAY_BYTES}",
        )
    if claimed > available:
        raise InputFileError(
            path,
            f"key '{key}' claims shape {tuple(shape)} ({claimed} bytes) but holds at most {available} bytes",
        )
    # Read in chunks and allocate the array only at its first non-zero byte: an all-zero array (the
    # stand-in's 80 MB of pose correctives) becomes np.zeros, whose pages are never made resident.
    chunk = bytearray(min(claimed, READ_CHUNK_BYTES))
    data: bytearray | None = None
    filled = 0
    try:
        while filled < claimed and (got := handle.readinto(memoryview(chunk)[: claimed - filled])):
            if data is None and chunk.count(0, 0, got) != got:
                data = bytearray(claimed)
            if data is not None:
                data[filled : filled + got] = memoryview(chunk)[:got]
            filled += got
        handle.read(1)  # reach the member's end, where zipfile checks its CRC
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
        raise InputFileError(path, f"key '{key}' is truncated or corrupt ({one_line(exc)})") from None
    if filled != claimed:
        raise InputFileError(path, f"key '{key}' is truncated ({filled} of {claimed} bytes)")
    array = np.frombuffer(data, dtype=dtype) if data is not None else np.zeros(count, dtype=dtype)
    if fortran_order:
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)


def read_npz(path: str | Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` archive (only ``keys`` when given), never unpickled, sizes checked first.

    Every member goes through :func:`read_npy`; a truncated archive or a member that fails its CRC
    is an :class:`~bidrn.errors.InputFileError` naming the file and the key.
    """
    path = require_regular_file(path, ".npz file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise InputFileError(path, f"not a readable .npz archive ({one_line(exc)})") from None
    values: dict[str, np.ndarray] = {}
    with archive:
        members = {info.filename[: -len(".npy")]: info for info in archive.infolist()
                   if info.filename.endswith(".npy")}  # fmt: skip
        for key in members if keys is None else (k for k in keys if k in members):
            try:
                with archive.open(members[key]) as handle:
                    values[key] = read_npy(handle, members[key].file_size, path, key)
            except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
                raise InputFileError(path, f"key '{key}' is truncated or corrupt ({one_line(exc)})") from None
    return values


# ----------------------------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------------------------


def _array(values: dict[str, Any], key: str, path: str, ndim: int, kind: str = "f") -> np.ndarray:
    if key not in values:
        raise InputFileError(path, f"missing required key '{key}'")
    value = values[key]
    if not isinstance(value, np.ndarray):
        raise InputFileError(path, f"key '{key}' is a {type(value).__name__}, expected a numpy array")
    if value.dtype.kind not in ("f", "i", "u") or (kind == "i" and value.dtype.kind == "f"):
        raise InputFileError(
            path, f"key '{key}' has dtype {value.dtype}, expected {'integers' if kind == 'i' else 'numbers'}"
        )
    if value.ndim != ndim:
        raise InputFileError(path, f"key '{key}' has shape {value.shape}, expected {ndim} dimensions")
    if kind == "f" and value.size and not (np.isfinite(value.min()) and np.isfinite(value.max())):
        raise InputFileError(path, f"key '{key}' contains NaN or infinite values")
    return value


def _expect_shape(value: np.ndarray, expected: tuple[int | None, ...], key: str, path: str) -> None:
    if len(value.shape) != len(expected) or any(
        e is not None and s != e for s, e in zip(value.shape, expected, strict=False)
    ):
        shown = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise InputFileError(path, f"key '{key}' has shape {value.shape}, expected {shown}")


def _index_array(value: np.ndarray, upper: int, key: str, path: str) -> np.ndarray:
    if value.size and (value.min() < 0 or value.max() >= upper):
        raise InputFileError(path, f"key '{key}' has indices outside [0, {upper})")
    return value.astype(np.int64)


def part_vertex_ids_from_weights(weights: np.ndarray, joints: tuple[int, ...]) -> np.ndarray:
    """Vertices whose skinning weights on ``joints`` sum to more than one half (sorted indices).

    The default hand and face vertex-id tables when a model file does not carry them: left hand =
    left wrist and its fingers, right hand likewise, face = head, jaw and eyes.
    """
    return np.flatnonzero(weights[:, list(joints)].sum(axis=1) > 0.5).astype(np.int64)


def _descendants(root: int) -> tuple[int, ...]:
    out = [root]
    for j, p in enumerate(SMPLX_PARENTS):
        if p in out:
            out.append(j)
    return tuple(out)


def validate_arrays(values: dict[str, Any], path: str) -> BodyModelArrays:
    """Check keys, dtypes and shapes of a model file's dictionary and return its typed contents."""
    J = NUM_SMPLX_SKELETON_JOINTS
    v_template = _array(values, "v_template", path, 2)
    _expect_shape(v_template, (None, 3), "v_template", path)
    V = v_template.shape[0]
    faces = _array(values, "f", path, 2, kind="i")
    _expect_shape(faces, (None, 3), "f", path)
    if V == 0 or faces.shape[0] == 0:
        raise InputFileError(
            path, "the mesh is empty (keys 'v_template' and 'f' need vertices and triangles)"
        )
    faces = _index_array(faces, V, "f", path)
    shapedirs = _array(values, "shapedirs", path, 3)
    _expect_shape(shapedirs, (V, 3, None), "shapedirs", path)
    if shapedirs.shape[2] < MIN_SHAPE_COLUMNS:
        raise InputFileError(
            path,
            f"key 'shapedirs' has {shapedirs.shape[2]} columns, expected at least {MIN_SHAPE_COLUMNS} "
            "(10 shape and 10 expression directions)",
        )
    posedirs = _array(values, "posedirs", path, 3)
    _expect_shape(posedirs, (V, 3, 9 * (J - 1)), "posedirs", path)
    J_regressor = _array(values, "J_regressor", path, 2)
    _expect_shape(J_regressor, (J, V), "J_regressor", path)
    weights = _array(values, "weights", path, 2)
    _expect_shape(weights, (V, J), "weights", path)
    kintree = _array(values, "kintree_table", path, 2, kind="i")
    _expect_shape(kintree, (2, J), "kintree_table", path)
    parents = kintree[0].astype(np.int64)
    parents[0] = -1  # the file stores 2**32 - 1 (or -1) for the root
    if tuple(parents.tolist()) != SMPLX_PARENTS:
        raise InputFileError(path, "key 'kintree_table' is not the SMPL-X kinematic tree")

    lmk_faces_idx = _array(values, "lmk_faces_idx", path, 1, kind="i")
    lmk_faces_idx = _index_array(lmk_faces_idx, faces.shape[0], "lmk_faces_idx", path)
    lmk_bary = _array(values, "lmk_bary_coords", path, 2)
    _expect_shape(lmk_bary, (lmk_faces_idx.shape[0], 3), "lmk_bary_coords", path)

    hands = {}
    for side in ("l", "r"):
        key = f"hands_components{side}"
        if key in values:
            comps = _array(values, key, path, 2)
            _expect_shape(comps, (None, NUM_HAND_POSE), key, path)
        else:
            comps = np.eye(NUM_HAND_POSE)
        key = f"hands_mean{side}"
        if key in values:
            mean = _array(values, key, path, 1)
            _expect_shape(mean, (NUM_HAND_POSE,), key, path)
        else:
            mean = np.zeros(NUM_HAND_POSE)
        hands[side] = (comps, mean)

    dyn_idx = dyn_bary = None
    if "dynamic_lmk_faces_idx" in values or "dynamic_lmk_bary_coords" in values:
        dyn_idx = _array(values, "dynamic_lmk_faces_idx", path, 2, kind="i")
        _expect_shape(dyn_idx, (NUM_CONTOUR_ANGLES, NUM_CONTOUR_POINTS), "dynamic_lmk_faces_idx", path)
        dyn_idx = _index_array(dyn_idx, faces.shape[0], "dynamic_lmk_faces_idx", path)
        dyn_bary = _array(values, "dynamic_lmk_bary_coords", path, 3)
        _expect_shape(dyn_bary, (NUM_CONTOUR_ANGLES, NUM_CONTOUR_POINTS, 3), "dynamic_lmk_bary_coords", path)

    part_ids = {}
    default_parts = {
        "lhand_vertex_ids": _descendants(20),
        "rhand_vertex_ids": _descendants(21),
        "face_vertex_ids": _descendants(15),
    }
    for key, joints in default_parts.items():
        if key in values:
            ids = _array(values, key, path, 1, kind="i")
            part_ids[key] = _index_array(ids, V, key, path)
        else:
            part_ids[key] = part_vertex_ids_from_weights(weights, joints)

    metadata = values.get("bidrn_metadata", "")
    metadata = str(metadata.item() if isinstance(metadata, np.ndarray) and metadata.ndim == 0 else metadata)

    return BodyModelArrays(
        path=path,
        v_template=v_template,
        faces=faces,
        shapedirs=shapedirs,
        posedirs=posedirs,
        J_regressor=J_regressor,
        weights=weights,
        parents=parents,
        hands_components_left=hands["l"][0],
        hands_components_right=hands["r"][0],
        hands_mean_left=hands["l"][1],
        hands_mean_right=hands["r"][1],
        lmk_faces_idx=lmk_faces_idx,
        lmk_bary_coords=lmk_bary,
        dynamic_lmk_faces_idx=dyn_idx,
        dynamic_lmk_bary_coords=dyn_bary,
        lhand_vertex_ids=part_ids["lhand_vertex_ids"],
        rhand_vertex_ids=part_ids["rhand_vertex_ids"],
        face_vertex_ids=part_ids["face_vertex_ids"],
        metadata=metadata,
    )


MANO_IDS_FILENAME = "MANO_SMPLX_vertex_ids.pkl"
FLAME_IDS_FILENAME = "SMPL-X__FLAME_vertex_ids.npy"


def _side_file_part_ids(model_path: Path) -> dict[str, np.ndarray]:
    """Hand / face vertex ids from the official side files next to the model file, if present.

    ``MANO_SMPLX_vertex_ids.pkl`` (a dict with ``left_hand`` and ``right_hand``, read with the
    restricted unpickler) and ``SMPL-X__FLAME_vertex_ids.npy`` are where Hand4Whole keeps them
    (docs/design/data-formats.md §2.6); they define the hand and face regions of the paper's metrics.
    """
    found: dict[str, np.ndarray] = {}
    mano = model_path.with_name(MANO_IDS_FILENAME)
    if mano.is_file():
        ids = _read_pickle(mano)
        for side, key in (("left_hand", "lhand_vertex_ids"), ("right_hand", "rhand_vertex_ids")):
            if not isinstance(ids.get(side), np.ndarray):
                raise InputFileError(mano, f"missing array '{side}'")
            found[key] = ids[side]
    flame = model_path.with_name(FLAME_IDS_FILENAME)
    if flame.is_file():
        try:
            with open(require_regular_file(flame, ".npy file"), "rb") as handle:
                found["face_vertex_ids"] = read_npy(handle, flame.stat().st_size, flame, "face_vertex_ids")
        except OSError as exc:
            raise InputFileError(flame, f"not a readable .npy array ({one_line(exc)})") from None
    return found


def read_model_file(path: str | Path) -> BodyModelArrays:
    """Read and validate an SMPL-X model file (``.npz`` or legacy ``.pkl``) without running its code.

    Official side files next to it (``MANO_SMPLX_vertex_ids.pkl``, ``SMPL-X__FLAME_vertex_ids.npy``)
    supply the hand and face vertex-id tables when present.
    """
    path = Path(path)
    if not os.path.lexists(path):
        raise InputFileError(path, "no such file (pass the path of SMPLX_NEUTRAL.npz or .pkl)")
    require_regular_file(path, "body model file")
    if path.suffix.lower() == ".npz":
        values: dict[str, Any] = dict(read_npz(path, (*REQUIRED_KEYS, *OPTIONAL_KEYS)))
    elif path.suffix.lower() == ".pkl":
        values = _read_pickle(path)
    else:
        raise InputFileError(path, "unknown model file type; expected .npz or .pkl")
    values.update(_side_file_part_ids(path))
    return validate_arrays(values, str(path))
