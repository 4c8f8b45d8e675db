"""Invariants of our SMPL-X layer that hold without the official implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bidrn.body import load_body_model
from bidrn.body.joint_sets import JOINT_TO_SMPLX, SMPLX_EXTRA_VERTEX_IDS, SMPLX_PARENTS
from bidrn.body.rotations import axis_angle_to_matrix


def _random_inputs(layer, batch, seed):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    return dict(
        betas=rnd(batch, layer.num_betas),
        expression=rnd(batch, layer.num_expression_coeffs),
        global_orient=rnd(batch, 3, scale=0.5),
        body_pose=rnd(batch, 63, scale=0.3),
        left_hand_pose=rnd(batch, 45, scale=0.3),
        right_hand_pose=rnd(batch, 45, scale=0.3),
        jaw_pose=rnd(batch, 3, scale=0.2),
        leye_pose=rnd(batch, 3, scale=0.1),
        reye_pose=rnd(batch, 3, scale=0.1),
    )


@pytest.fixture(params=["standin", "random"])
def layer(request, standin64, random64):
    return standin64 if request.param == "standin" else random64


def test_zero_pose_and_shape_give_the_template(layer):
    out = layer()
    assert out.vertices.shape == (1, layer.num_vertices, 3)
    assert out.joints.shape == (1, 144, 3) and out.supervision_joints.shape == (1, 137, 3)
    # flat_hand_mean=False: a zero hand pose still applies the mean hand, so compare with flat hands
    flat = load_body_model(layer.source, flat_hand_mean=True, dtype=torch.float64)
    assert torch.allclose(flat().vertices[0], flat.v_template, atol=1e-9)


def test_joint_regression_matches_the_regressor_on_the_shaped_template(layer):
    inputs = _random_inputs(layer, 3, seed=1)
    shape_only = {k: inputs[k] for k in ("betas", "expression")}
    out = load_body_model(layer.source, flat_hand_mean=True, dtype=torch.float64)(**shape_only)
    shaped = (
        layer.v_template
        + torch.einsum("vcs,bs->bvc", layer.shapedirs, inputs["betas"])
        + torch.einsum("vcs,bs->bvc", layer.exprdirs, inputs["expression"])
    )
    assert torch.allclose(out.vertices, shaped, atol=1e-9)
    assert torch.allclose(
        out.joints[:, :55], torch.einsum("jv,bvc->bjc", layer.J_regressor, shaped), atol=1e-9
    )


def test_joints_without_the_mesh_equal_the_joints_of_the_full_model(layer):
    inputs = {**_random_inputs(layer, 3, seed=4), "transl": torch.randn(3, 3, dtype=torch.float64)}
    full = layer(**inputs)
    lean = layer(**inputs, with_vertices=False)
    assert lean.vertices is None
    assert torch.allclose(lean.joints, full.joints, atol=1e-10)
    assert torch.equal(lean.full_pose, full.full_pose)
    # Only the vertices the extra joints and landmarks read are skinned.
    assert layer.landmark_vertex_ids.numel() < layer.num_vertices


def test_root_rotation_rotates_the_whole_mesh_rigidly(layer):
    inputs = _random_inputs(layer, 2, seed=2)
    inputs["global_orient"] = torch.zeros(2, 3, dtype=torch.float64)
    base = layer(**inputs)
    root = torch.tensor([[0.3, -1.1, 0.7], [2.0, 0.1, -0.4]], dtype=torch.float64)
    turned = layer(**{**inputs, "global_orient": root})
    R = axis_angle_to_matrix(root)
    pelvis = base.joints[:, :1]
    expected = torch.einsum("bij,bvj->bvi", R, base.vertices - pelvis) + pelvis
    assert torch.allclose(turned.vertices, expected, atol=1e-6)  # float32 file: weights sum to 1 +- 1e-7
    expected_joints = torch.einsum("bij,bvj->bvi", R, base.joints - pelvis) + pelvis
    # contour landmarks may switch to another row of the yaw table; the rest is rigid
    assert torch.allclose(turned.joints[:, :127], expected_joints[:, :127], atol=1e-6)


def test_kinematic_chain_follows_the_parent_table(layer):
    flat = load_body_model(layer.source, flat_hand_mean=True, dtype=torch.float64)
    rest = flat().joints[0, :55]
    for joint in (4, 16, 20, 27, 22):
        pose = torch.zeros(1, 55, 3, dtype=torch.float64)
        pose[0, joint] = torch.tensor([0.4, -0.3, 0.5])
        posed = flat(
            global_orient=pose[:, 0],
            body_pose=pose[:, 1:22],
            jaw_pose=pose[:, 22],
            left_hand_pose=pose[:, 25:40],
            right_hand_pose=pose[:, 40:55],
        ).joints[0, :55]
        descendants = {joint}
        for j, p in enumerate(SMPLX_PARENTS):
            if p in descendants:
                descendants.add(j)
        moved = set(torch.nonzero((posed - rest).norm(dim=1) > 1e-9).flatten().tolist())
        assert moved == descendants - {joint}
        for child in descendants - {joint}:
            parent = SMPLX_PARENTS[child]
            assert torch.allclose((posed[child] - posed[parent]).norm(), (rest[child] - rest[parent]).norm())


def test_extra_joints_are_vertices_and_supervision_set_is_a_selection(standin64):
    out = standin64(**_random_inputs(standin64, 2, seed=3))
    assert torch.equal(out.joints[:, 55:76], out.vertices[:, list(SMPLX_EXTRA_VERTEX_IDS)])
    assert torch.equal(out.supervision_joints, out.joints[:, list(JOINT_TO_SMPLX)])


def test_translation_batch_and_omitted_inputs(standin64):
    transl = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, -1.0]], dtype=torch.float64)
    moved = standin64(transl=transl)
    still = standin64()
    assert moved.vertices.shape[0] == 2
    assert torch.allclose(moved.vertices - transl[:, None], still.vertices.expand(2, -1, -1))
    with pytest.raises(ValueError, match="body_pose has 60 values"):
        standin64(body_pose=torch.zeros(1, 60))


def test_flat_hand_mean_and_pca_options(random_model_path):
    curled = load_body_model(random_model_path, dtype=torch.float64)
    flat = load_body_model(random_model_path, flat_hand_mean=True, dtype=torch.float64)
    hand = torch.randn(1, 45, dtype=torch.float64)
    a = curled(left_hand_pose=hand)
    b = flat(left_hand_pose=hand + curled.left_hand_mean, right_hand_pose=curled.right_hand_mean[None])
    assert torch.allclose(a.vertices, b.vertices, atol=1e-9)
    pca = load_body_model(
        random_model_path, use_pca=True, num_pca_comps=12, flat_hand_mean=True, dtype=torch.float64
    )
    coeffs = torch.randn(1, 12, dtype=torch.float64)
    c = pca(left_hand_pose=coeffs)
    d = flat(left_hand_pose=coeffs @ pca.left_hand_components)
    assert pca.left_hand_components.shape == (12, 45)
    assert torch.allclose(c.vertices, d.vertices, atol=1e-9)


def test_gradients_and_float32(standin64):
    layer32 = load_body_model()
    assert layer32.v_template.dtype == torch.float32
    pose = torch.zeros(1, 63, requires_grad=True)
    out = layer32(body_pose=pose)
    out.vertices.sum().backward()
    assert pose.grad is not None and pose.grad.abs().sum() > 0
    assert out.vertices.dtype == torch.float32
    assert np.allclose(
        out.vertices.detach().numpy(), standin64(body_pose=pose.detach().double()).vertices.numpy(), atol=1e-5
    )


def test_part_tables_and_faces(standin64):
    for ids in (standin64.lhand_vertex_ids, standin64.rhand_vertex_ids, standin64.face_vertex_ids):
        assert ids.ndim == 1 and ids.size > 100 and ids.max() < standin64.num_vertices
    assert not set(standin64.lhand_vertex_ids) & set(standin64.rhand_vertex_ids)
    assert standin64.faces.shape[1] == 3 and standin64.faces.max() < standin64.num_vertices
    assert standin64.parents == SMPLX_PARENTS
