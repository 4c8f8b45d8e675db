from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from bidrn.body.export import (
    PARAMETER_SIZES,
    layer_inputs,
    load_parameters,
    save_mesh,
    save_parameters,
)
from bidrn.errors import InputFileError


@pytest.mark.parametrize("suffix", [".obj", ".ply"])
def test_mesh_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    vertices = torch.tensor(rng.normal(size=(50, 3)))
    faces = rng.integers(0, 50, (80, 3))
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    path = save_mesh(tmp_path / f"person{suffix}", vertices, faces)
    mesh = trimesh.load(path, process=False)
    assert np.allclose(mesh.vertices, vertices.numpy(), atol=1e-6)
    assert np.array_equal(mesh.faces, faces)


def test_mesh_rejects_unknown_format(tmp_path):
    with pytest.raises(InputFileError, match=r"use \.obj or \.ply"):
        save_mesh(tmp_path / "x.stl", np.zeros((3, 3)), np.array([[0, 1, 2]]))


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_parameter_round_trip_from_batched_output(tmp_path, suffix):
    batch = {name: torch.randn(3, size) for name, size in PARAMETER_SIZES.items()}
    meta = {"body_model": "bidrn-standin-v1", "flat_hand_mean": False, "focal": [5000.0, 5000.0]}
    path = save_parameters(tmp_path / f"smplx_param{suffix}", batch, index=1, metadata=meta)
    params, loaded_meta = load_parameters(path)
    assert loaded_meta == meta
    for name in PARAMETER_SIZES:
        assert np.allclose(params[name], batch[name][1].numpy(), atol=1e-6)


def test_parameter_errors(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"root_pose": [0, 0, 0]}')
    with pytest.raises(InputFileError, match="missing parameter 'body_pose'"):
        load_parameters(path)
    values = {name: np.zeros(size) for name, size in PARAMETER_SIZES.items()}
    values["shape"] = np.zeros(7)
    np.savez(tmp_path / "p.npz", **values)
    with pytest.raises(InputFileError, match="'shape' has 7 values"):
        load_parameters(tmp_path / "p.npz")


def test_layer_inputs_names():
    params = {name: np.zeros(size) for name, size in PARAMETER_SIZES.items()}
    assert set(layer_inputs(params)) == {
        "global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose", "betas", "expression",
        "transl",
    }  # fmt: skip
