"""Model files: safe loading of .npz / legacy .pkl, defaults for optional keys, one-line errors."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import torch

from bidrn.body import load_body_model
from bidrn.body.model_file import read_model_file
from bidrn.errors import InputFileError

from .random_model import random_model_arrays


@pytest.fixture(scope="module")
def arrays():
    """A random model with zero pose correctives stored as float16, to keep the files small."""
    values = random_model_arrays(seed=5)
    values["posedirs"] = np.zeros(values["posedirs"].shape, dtype=np.float16)
    return values


def _expect_error(path, *fragments):
    with pytest.raises(InputFileError) as info:
        load_body_model(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_missing_required_key(tmp_path, arrays):
    path = tmp_path / "SMPLX_NEUTRAL.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if k != "weights"})
    _expect_error(path, "missing required key 'weights'")


def test_wrong_shape(tmp_path, arrays):
    path = tmp_path / "SMPLX_NEUTRAL.npz"
    np.savez(path, **{**arrays, "posedirs": arrays["posedirs"][..., :100]})
    _expect_error(path, "'posedirs'", "(10475, 3, 100)", "expected (10475, 3, 486)")


def test_wrong_kinematic_tree_and_bad_indices(tmp_path, arrays):
    tree = arrays["kintree_table"].copy()
    tree[0, 5] = 3
    path = tmp_path / "SMPLX_A.npz"
    np.savez(path, **{**arrays, "kintree_table": tree})
    _expect_error(path, "'kintree_table'", "kinematic tree")
    path = tmp_path / "SMPLX_B.npz"
    np.savez(path, **{**arrays, "lmk_faces_idx": arrays["lmk_faces_idx"] + 10**6})
    _expect_error(path, "'lmk_faces_idx'", "outside")


def test_truncated_archives(tmp_path, arrays):
    good = tmp_path / "good.npz"
    np.savez(good, **arrays)
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 100):
        path = tmp_path / f"SMPLX_cut{cut}.npz"
        path.write_bytes(data[:cut])
        _expect_error(path)
    pkl = tmp_path / "SMPLX_cut.pkl"
    pkl.write_bytes(pickle.dumps(arrays, protocol=2)[:5000])
    _expect_error(pkl, "truncated")


def test_npz_object_array_is_not_unpickled(tmp_path, arrays):
    path = tmp_path / "SMPLX_obj.npz"
    np.savez(path, **{**arrays, "v_template": np.array([{"not": "an array"}], dtype=object)})
    _expect_error(path, "'v_template'", "refusing to unpickle")


class _WritesAFile:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_pickle_with_code_is_refused_and_never_runs(tmp_path, arrays):
    marker = tmp_path / "pwned"
    path = tmp_path / "SMPLX_evil.pkl"
    path.write_bytes(pickle.dumps({**arrays, "weights": _WritesAFile(marker)}))
    _expect_error(path, "refusing to unpickle", "open")
    assert not marker.exists()


def test_non_array_payloads(tmp_path, arrays):
    path = tmp_path / "SMPLX_list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    _expect_error(path, "pickle holds a list")
    path = tmp_path / "SMPLX_str.pkl"
    path.write_bytes(pickle.dumps({**arrays, "v_template": "hello"}))
    _expect_error(path, "'v_template' is a str")


def test_missing_file_and_unknown_suffix(tmp_path):
    _expect_error(tmp_path / "SMPLX_NEUTRAL.npz", "no such file")
    other = tmp_path / "model.txt"
    other.write_text("x")
    _expect_error(other, "expected .npz or .pkl")


def test_legacy_pickle_with_chumpy_and_sparse_regressor(tmp_path, arrays, monkeypatch):
    sparse = pytest.importorskip("scipy.sparse")
    chumpy = types.ModuleType("chumpy")
    chumpy_ch = types.ModuleType("chumpy.ch")

    class Ch:  # stands for chumpy.ch.Ch, which pickles its value as state["x"]
        def __init__(self, x):
            self.x = x

        def __reduce__(self):
            return (Ch, (), {"x": self.x, "_dirty_vars": set()})

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    chumpy_ch.Ch = Ch
    monkeypatch.setitem(sys.modules, "chumpy", chumpy)
    monkeypatch.setitem(sys.modules, "chumpy.ch", chumpy_ch)
    legacy = dict(arrays)
    legacy["shapedirs"] = Ch(arrays["shapedirs"])
    legacy["J_regressor"] = sparse.csc_matrix(arrays["J_regressor"])
    pkl = tmp_path / "SMPLX_NEUTRAL.pkl"
    pkl.write_bytes(pickle.dumps(legacy, protocol=2))
    monkeypatch.delitem(sys.modules, "chumpy.ch")
    monkeypatch.delitem(sys.modules, "chumpy")

    npz = tmp_path / "SMPLX_NEUTRAL.npz"
    np.savez(npz, **arrays)
    params = dict(
        body_pose=0.3 * torch.randn(2, 63, dtype=torch.float64), betas=torch.randn(2, 10, dtype=torch.float64)
    )
    a = load_body_model(pkl, dtype=torch.float64)(**params)
    b = load_body_model(npz, dtype=torch.float64)(**params)
    assert torch.allclose(a.vertices, b.vertices) and torch.allclose(a.joints, b.joints)


def test_optional_keys_get_documented_defaults(tmp_path, arrays):
    optional = ("hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr")
    optional += ("dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords")
    path = tmp_path / "SMPLX_minimal.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if k not in optional})
    contents = read_model_file(path)
    assert np.array_equal(contents.hands_components_left, np.eye(45))
    assert not contents.hands_mean_right.any()
    layer = load_body_model(path, dtype=torch.float64)
    assert not layer.has_face_contour
    out = layer(jaw_pose=torch.tensor([[0.2, 0.0, 0.0]], dtype=torch.float64))
    assert torch.equal(out.joints[:, 127:], out.joints[:, 22:23].expand(-1, 17, -1))
    assert contents.lhand_vertex_ids.size > 0  # derived from the skinning weights


def test_official_side_files_supply_part_tables(tmp_path, arrays):
    path = tmp_path / "SMPLX_NEUTRAL.npz"
    np.savez(path, **arrays)
    left, right = np.arange(778), np.arange(1000, 1778)
    (tmp_path / "MANO_SMPLX_vertex_ids.pkl").write_bytes(
        pickle.dumps({"left_hand": left, "right_hand": right})
    )
    np.save(tmp_path / "SMPL-X__FLAME_vertex_ids.npy", np.arange(5023) + 3000)
    layer = load_body_model(path)
    assert np.array_equal(layer.lhand_vertex_ids, left) and np.array_equal(layer.rhand_vertex_ids, right)
    assert layer.face_vertex_ids.shape == (5023,) and layer.face_vertex_ids[0] == 3000


@pytest.mark.parametrize("nonzero_at", [None, 0, 3_000_000])
def test_npy_members_read_back_exactly_in_chunks(tmp_path, nonzero_at):
    """Arrays are read in 4 MiB pieces and allocated at their first non-zero byte: values must
    survive that, whether the array is all zeros (np.zeros, never made resident), starts non-zero,
    or is non-zero only after several all-zero pieces."""
    from bidrn.body.model_file import READ_CHUNK_BYTES, read_npz

    values = np.zeros((1000, 3, 1200), dtype=np.float32)  # 14.4 MB: several pieces
    assert values.nbytes > 3 * READ_CHUNK_BYTES
    if nonzero_at is not None:
        values.reshape(-1)[nonzero_at] = 2.5
        values.reshape(-1)[-1] = -1.0
    path = tmp_path / "a.npz"
    np.savez_compressed(path, posedirs=values, other=np.arange(7.0))
    read = read_npz(path)
    np.testing.assert_array_equal(read["posedirs"], values)
    np.testing.assert_array_equal(read["other"], np.arange(7.0))
    assert read["posedirs"].dtype == np.float32 and read["posedirs"].flags.writeable


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_found_anywhere(tmp_path, arrays, bad):
    vertices = arrays["v_template"].astype(np.float32).copy()
    vertices[-1, 2] = bad
    path = tmp_path / "SMPLX_NEUTRAL.npz"
    np.savez(path, **{**arrays, "v_template": vertices})
    _expect_error(path, "'v_template'", "NaN or infinite")
