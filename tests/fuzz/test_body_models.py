"""Body-model files: bad archives, headers and sparse tables are one line, before any allocation."""

from __future__ import annotations

import io
import os
import pickle
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bidrn.body.joint_sets import SMPLX_PARENTS
from bidrn.body.model_file import MAX_ARRAY_BYTES, read_model_file
from bidrn.errors import InputFileError
from tests.fuzz.helpers import assert_one_line


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    """A small but structurally valid SMPL-X-format model (64 vertices), so each case writes kilobytes."""
    rng = np.random.default_rng(0)
    vertices, faces, joints = 64, 100, len(SMPLX_PARENTS)
    kintree = np.stack([np.asarray(SMPLX_PARENTS), np.arange(joints)]).astype(np.int64)
    kintree[0, 0] = 2**32 - 1
    regressor = rng.random((joints, vertices)) * (rng.random((joints, vertices)) < 0.3)
    regressor[:, 0] += 1.0
    weights = rng.random((vertices, joints))
    return {
        "v_template": rng.normal(0.0, 0.3, (vertices, 3)),
        "f": rng.integers(0, vertices, (faces, 3)).astype(np.uint32),
        "shapedirs": rng.normal(0.0, 1e-2, (vertices, 3, 20)),
        "posedirs": rng.normal(0.0, 1e-3, (vertices, 3, 9 * (joints - 1))),
        "J_regressor": regressor / regressor.sum(axis=1, keepdims=True),
        "weights": weights / weights.sum(axis=1, keepdims=True),
        "kintree_table": kintree,
        "lmk_faces_idx": rng.integers(0, faces, 51),
        "lmk_bary_coords": rng.dirichlet(np.ones(3), 51),
    }


def test_the_small_model_is_valid(arrays, tmp_path):
    np.savez(tmp_path / "SMPLX_small.npz", **arrays)
    assert read_model_file(tmp_path / "SMPLX_small.npz").num_vertices == 64


def npy_bytes(header: dict, data: bytes) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + data


def npz_with(path: Path, arrays: dict[str, np.ndarray], raw: dict[str, bytes], stored: bool = False) -> Path:
    """An .npz of ``arrays`` where the members in ``raw`` are replaced by hand-made .npy bytes."""
    mode = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", mode) as archive:
        for key, value in arrays.items():
            if key in raw:
                archive.writestr(f"{key}.npy", raw[key])
            else:
                buffer = io.BytesIO()
                np.save(buffer, value, allow_pickle=False)
                archive.writestr(f"{key}.npy", buffer.getvalue())
    return path


def test_array_header_claiming_terabytes_is_refused_before_allocation(arrays, tmp_path):
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**12, 3)}
    path = npz_with(tmp_path / "huge.npz", arrays, {"v_template": npy_bytes(header, b"\0" * 64)})
    message = assert_one_line(lambda: read_model_file(path), path, "'v_template'", "above the limit")
    assert str(MAX_ARRAY_BYTES) in message


def test_array_header_claiming_more_than_its_member_holds(arrays, tmp_path):
    header = {"descr": "<f8", "fortran_order": False, "shape": (10475, 3)}
    path = npz_with(tmp_path / "short.npz", arrays, {"v_template": npy_bytes(header, b"\0" * 80)})
    assert_one_line(
        lambda: read_model_file(path), path, "'v_template' claims shape (10475, 3)", "holds at most"
    )


def test_garbage_array_header(arrays, tmp_path):
    path = npz_with(tmp_path / "garbage.npz", arrays, {"f": b"\x93NUMPY\x01\x00\x10\x00{'descr': nope}   \n"})
    assert_one_line(lambda: read_model_file(path), path, "'f' has an unreadable array header")


def test_member_with_a_bad_crc(arrays, tmp_path):
    path = npz_with(tmp_path / "crc.npz", arrays, {}, stored=True)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("shapedirs.npy")
    data[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF  # inside the member's data
    path.write_bytes(bytes(data))
    assert_one_line(lambda: read_model_file(path), path, "'shapedirs' is truncated or corrupt")


def test_fifo_and_folder_are_refused(tmp_path):
    os.mkfifo(tmp_path / "SMPLX_NEUTRAL.npz")
    assert_one_line(lambda: read_model_file(tmp_path / "SMPLX_NEUTRAL.npz"), "not a regular file")
    (tmp_path / "dir.npz").mkdir()
    assert_one_line(lambda: read_model_file(tmp_path / "dir.npz"), "is a folder")


def _empty_mesh(values):
    values.update(v_template=np.zeros((0, 3)), f=np.zeros((0, 3), np.int64))


def _five_shape_columns(values):
    values["shapedirs"] = values["shapedirs"][:, :, :5]


def _nan_vertex(values):
    values["v_template"] = values["v_template"].copy()
    values["v_template"][5, 1] = np.nan


def _float_faces(values):
    values["f"] = values["f"].astype(np.float64)


def _negative_landmark_face(values):
    values["lmk_faces_idx"] = values["lmk_faces_idx"] - 10**6


INCONSISTENT = {
    "empty mesh": (_empty_mesh, "the mesh is empty"),
    "5 shape columns": (_five_shape_columns, "at least 20"),
    "NaN vertex": (_nan_vertex, "contains NaN or infinite values"),
    "float faces": (_float_faces, "expected integers"),
    "negative landmark face": (_negative_landmark_face, "outside"),
}


@pytest.mark.parametrize("case", INCONSISTENT)
def test_inconsistent_arrays(arrays, tmp_path, case):
    change, fragment = INCONSISTENT[case]
    values = dict(arrays)
    change(values)
    path = tmp_path / "SMPLX_bad.npz"
    np.savez(path, **values)
    assert_one_line(lambda: read_model_file(path), path, fragment, error=InputFileError)


def test_fortran_order_arrays_read_like_numpy(arrays, tmp_path):
    path = tmp_path / "fortran.npz"
    np.savez(path, **{key: np.asfortranarray(value) for key, value in arrays.items()})
    loaded = read_model_file(path)
    np.testing.assert_array_equal(loaded.shapedirs, arrays["shapedirs"])
    np.testing.assert_array_equal(loaded.J_regressor, arrays["J_regressor"])


# -- legacy pickles with sparse matrices -----------------------------------------------------------------
class _CscMatrix:
    """Pickles like ``scipy.sparse.csc_matrix`` (a class global plus a state dict), without scipy."""


_CscMatrix.__module__, _CscMatrix.__qualname__ = "scipy.sparse._csc", "csc_matrix"


@pytest.fixture
def fake_scipy(monkeypatch):
    """Make ``scipy.sparse._csc.csc_matrix`` importable for pickling (scipy itself is not needed)."""
    for name in ("scipy", "scipy.sparse", "scipy.sparse._csc"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["scipy.sparse._csc"].csc_matrix = _CscMatrix


def csc_state(dense: np.ndarray) -> dict:
    indptr, indices, data = [0], [], []
    for column in dense.T:
        rows = np.flatnonzero(column)
        indices.extend(rows.tolist())
        data.extend(column[rows].tolist())
        indptr.append(len(indices))
    return {
        "_shape": dense.shape,
        "data": np.asarray(data),
        "indices": np.asarray(indices, dtype=np.int32),
        "indptr": np.asarray(indptr, dtype=np.int32),
    }


def pickle_with_sparse(path: Path, arrays: dict, state: dict) -> Path:
    matrix = _CscMatrix()
    matrix.__dict__.update(state)
    path.write_bytes(pickle.dumps({**arrays, "J_regressor": matrix}, protocol=2))
    return path


def test_consistent_sparse_regressor_is_expanded(arrays, tmp_path, fake_scipy):
    path = pickle_with_sparse(tmp_path / "SMPLX.pkl", arrays, csc_state(arrays["J_regressor"]))
    np.testing.assert_allclose(read_model_file(path).J_regressor, arrays["J_regressor"])


def _state_changes(state: dict, case: str) -> dict:
    state = dict(state)
    if case == "indptr goes back":
        state["indptr"] = state["indptr"].copy()
        state["indptr"][5] = state["indptr"][7] + 1
    elif case == "row index out of range":
        state["indices"] = state["indices"].copy()
        state["indices"][0] = 10**6
    elif case == "indptr too short":
        state["indptr"] = state["indptr"][:-3]
    elif case == "indices and data differ":
        state["data"] = state["data"][:-1]
    elif case == "shape of strings":
        state["_shape"] = ("55", "10475")
    elif case == "shape of a terabyte":
        state["_shape"] = (10**6, 10**6)
    elif case == "data are objects":
        state["data"] = np.array([{"x": 1}] * len(state["data"]), dtype=object)
    return state


SPARSE_CASES = {
    "indptr goes back": "inconsistent sparse matrix",
    "row index out of range": "inconsistent sparse matrix",
    "indptr too short": "inconsistent sparse matrix",
    "indices and data differ": "inconsistent sparse matrix",
    "shape of strings": "shape must be two non-negative integers",
    "shape of a terabyte": "too large to expand",
    "data are objects": "unsupported sparse matrix",
}


@pytest.mark.parametrize("case", SPARSE_CASES)
def test_malformed_sparse_matrices_are_one_line_errors(case, arrays, tmp_path, fake_scipy):
    state = _state_changes(csc_state(arrays["J_regressor"]), case)
    path = pickle_with_sparse(tmp_path / "SMPLX.pkl", arrays, state)
    assert_one_line(lambda: read_model_file(path), path, SPARSE_CASES[case], error=InputFileError)


def test_side_file_with_a_huge_header_is_refused(arrays, tmp_path):
    model = tmp_path / "SMPLX_NEUTRAL.npz"
    np.savez(model, **arrays)
    header = {"descr": "<i8", "fortran_order": False, "shape": (10**11,)}
    (tmp_path / "SMPL-X__FLAME_vertex_ids.npy").write_bytes(npy_bytes(header, b"\0" * 16))
    assert_one_line(lambda: read_model_file(model), "SMPL-X__FLAME_vertex_ids.npy", "above the limit")
