from __future__ import annotations

import numpy as np
import torch

from bidrn.body import joint_sets as js


def test_set_sizes_and_unique_names():
    assert len(js.SMPLX_JOINT_NAMES) == js.NUM_SMPLX_JOINTS == 144
    assert len(set(js.SMPLX_JOINT_NAMES)) == 144
    assert len(js.JOINT_NAMES) == len(js.JOINT_TO_SMPLX) == js.NUM_JOINTS == 137
    assert len(set(js.JOINT_NAMES)) == 137
    assert len(js.POS_JOINT_NAMES) == 65 and len(js.ROTATION_JOINT_NAMES) == 53
    assert len(js.SMPLX_EXTRA_VERTEX_IDS) == len(js.SMPLX_EXTRA_NAMES) == 21


def test_supervision_map_points_at_the_same_anatomy():
    smplx = js.SMPLX_JOINT_NAMES
    assert smplx[js.JOINT_TO_SMPLX[js.JOINT_NAMES.index("L_Hip")]] == "left_hip"
    assert smplx[js.JOINT_TO_SMPLX[js.JOINT_NAMES.index("R_Ear")]] == "right_ear"
    assert smplx[js.JOINT_TO_SMPLX[js.JOINT_NAMES.index("L_Thumb_4")]] == "left_thumb"
    assert smplx[js.JOINT_TO_SMPLX[js.JOINT_NAMES.index("R_Pinky_1")]] == "right_pinky1"
    assert smplx[js.JOINT_TO_SMPLX[js.JOINT_NAMES.index("Face_1")]] == "jaw"
    assert smplx[js.JOINT_TO_SMPLX[js.JOINT_NAMES.index("Face_56")]] == "right_contour_1"
    for name, idx in zip(js.LHAND_JOINT_NAMES, js.LHAND_TO_SMPLX, strict=True):
        finger, k = name[2:].split("_")
        expected = f"left_{finger.lower()}" + ("" if k == "4" else k)
        assert smplx[idx] == expected


def test_flip_tables_are_involutions_and_pair_left_with_right():
    for perm in (js.FLIP_PERMUTATION, js.SMPLX_FLIP_PERMUTATION, js.ROTATION_FLIP_PERMUTATION):
        perm = np.array(perm)
        assert np.array_equal(perm[perm], np.arange(len(perm)))
    for a, b in js.SMPLX_FLIP_PAIRS:
        na, nb = js.SMPLX_JOINT_NAMES[a], js.SMPLX_JOINT_NAMES[b]
        assert na.replace("left", "X").replace("right", "X") == nb.replace("left", "X").replace("right", "X")
    for a, b in js.FLIP_PAIRS:
        sa, sb = js.JOINT_TO_SMPLX[a], js.JOINT_TO_SMPLX[b]
        assert js.SMPLX_FLIP_PERMUTATION[sa] == sb


def test_roots_and_mcp():
    assert [js.JOINT_NAMES[i] for i in (js.BODY_ROOT, js.LHAND_ROOT, js.RHAND_ROOT, js.FACE_ROOT)] == [
        "Pelvis", "L_Wrist", "R_Wrist", "Neck",
    ]  # fmt: skip
    hand = js.LHAND_JOINT_NAMES
    assert [hand[i] for i in js.HAND_MCP_INDICES] == ["L_Index_1", "L_Middle_1", "L_Ring_1", "L_Pinky_1"]


def test_flip_rotation_pose_mirrors_left_and_right():
    pose = torch.zeros(2, 53, 3)
    pose[:, js.ROTATION_JOINT_NAMES.index("left_elbow")] = torch.tensor([0.1, 0.2, 0.3])
    flipped = js.flip_rotation_pose(pose.reshape(2, 159)).reshape(2, 53, 3)
    assert torch.allclose(
        flipped[:, js.ROTATION_JOINT_NAMES.index("right_elbow")], torch.tensor([0.1, -0.2, -0.3])
    )
    assert flipped[:, js.ROTATION_JOINT_NAMES.index("left_elbow")].abs().sum() == 0
    rng = np.random.default_rng(0)
    arr = rng.normal(size=(4, 53, 3))
    assert np.allclose(js.flip_rotation_pose(js.flip_rotation_pose(arr)), arr)
