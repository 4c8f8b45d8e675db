import math

import numpy as np
import pytest
import torch

from bidrn.engine.metrics import (
    TABLE1_COLUMNS,
    MeshTopology,
    mpvpe,
    pa_mpjpe,
    procrustes_align,
    similarity_procrustes,
    whole_body_errors,
)


def _random_rotation(generator: torch.Generator, batch: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(batch, 3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]
    flip = torch.linalg.det(q) < 0
    q[flip, :, 0] *= -1
    return q


def test_procrustes_recovers_known_similarity_to_1e6():
    g = torch.Generator().manual_seed(0)
    source = torch.randn(5, 40, 3, generator=g, dtype=torch.float64)
    rotation = _random_rotation(g, 5)
    scale = torch.tensor([0.5, 1.0, 2.0, 3.7, 0.01], dtype=torch.float64)
    translation = torch.randn(5, 3, generator=g, dtype=torch.float64)
    target = scale[:, None, None] * source @ rotation.transpose(1, 2) + translation[:, None]

    found_scale, found_rotation, found_translation = similarity_procrustes(source, target)

    assert torch.allclose(found_scale, scale, atol=1e-6)
    assert torch.allclose(found_rotation, rotation, atol=1e-6)
    assert torch.allclose(found_translation, translation, atol=1e-6)
    assert torch.allclose(procrustes_align(source, target), target, atol=1e-6)


def test_procrustes_never_returns_a_reflection():
    g = torch.Generator().manual_seed(1)
    source = torch.randn(3, 30, 3, generator=g, dtype=torch.float64)
    mirrored = source * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)

    _, rotation, _ = similarity_procrustes(source, mirrored)
    aligned = procrustes_align(source, mirrored)

    assert torch.allclose(torch.linalg.det(rotation), torch.ones(3, dtype=torch.float64), atol=1e-9)
    # A mirror image cannot be matched by a proper rotation: the residual must stay positive,
    # and no worse than the identity alignment.
    residual = (aligned - mirrored).norm(dim=-1).mean(dim=-1)
    identity = (source - mirrored).norm(dim=-1).mean(dim=-1)
    assert torch.all(residual > 1e-3)
    assert torch.all(residual <= identity + 1e-9)


def test_procrustes_of_planar_reflection_is_exact_rotation():
    # Planar points mirrored in their own plane's normal are reachable by a proper rotation.
    g = torch.Generator().manual_seed(2)
    source = torch.randn(2, 20, 3, generator=g, dtype=torch.float64)
    source[..., 2] = 0
    mirrored = source * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    assert torch.allclose(procrustes_align(source, mirrored), mirrored, atol=1e-9)


def test_mpvpe_and_pa_mpjpe_units_and_containers():
    gt = np.zeros((2, 4, 3))
    pred = gt.copy()
    pred[0, :, 0] = 0.010  # 1 cm shift of the first sample
    errors = mpvpe(pred, gt)
    assert isinstance(errors, np.ndarray)
    np.testing.assert_allclose(errors, [10.0, 0.0])

    pred_t = torch.tensor(pred, dtype=torch.float32)
    errors_t = mpvpe(pred_t, torch.tensor(gt))
    assert isinstance(errors_t, torch.Tensor) and errors_t.dtype == torch.float32
    assert torch.allclose(errors_t, torch.tensor([10.0, 0.0]))


def test_pa_mpjpe_removes_similarity_but_not_shape():
    g = torch.Generator().manual_seed(3)
    gt = torch.randn(2, 14, 3, generator=g, dtype=torch.float64)
    moved = 1.3 * gt @ _random_rotation(g, 2).transpose(1, 2) + 0.5
    assert torch.allclose(pa_mpjpe(moved, gt), torch.zeros(2, dtype=torch.float64), atol=1e-6)
    bent = gt.clone()
    bent[:, 0] += 0.1
    assert torch.all(pa_mpjpe(bent, gt) > 1.0)


def _toy_topology(vertex_count: int = 12) -> MeshTopology:
    regressor = torch.zeros(4, vertex_count, dtype=torch.float64)
    regressor[0, 0:4] = 0.25  # pelvis
    regressor[1, 4] = 1.0  # left wrist
    regressor[2, 8] = 1.0  # right wrist
    regressor[3, 10:12] = 0.5  # neck
    ids = torch.arange
    return MeshTopology(
        joint_regressor=regressor,
        pelvis=0,
        left_wrist=1,
        right_wrist=2,
        neck=3,
        left_hand_vertices=ids(4, 8),
        right_hand_vertices=ids(8, 12),
        face_vertices=ids(9, 12),
        left_hand_joints=torch.tensor([1, 0, 3]),
        right_hand_joints=torch.tensor([2, 0, 3]),
        left_tip_vertices=torch.tensor([5, 6]),
        right_tip_vertices=torch.tensor([9, 10]),
        body_joint_regressor=regressor,
        body_joint_source="body25",
    )


def test_mesh_shifted_by_constant_is_zero_after_pelvis_alignment():
    g = torch.Generator().manual_seed(4)
    gt = torch.randn(3, 12, 3, generator=g, dtype=torch.float64)
    shifted = gt + torch.tensor([0.3, -2.0, 5.0], dtype=torch.float64)
    errors = whole_body_errors(shifted, gt, _toy_topology())
    assert set(errors) == set(TABLE1_COLUMNS)
    for name, value in errors.items():
        assert value.shape == (3,)
        assert torch.allclose(value, torch.zeros(3, dtype=torch.float64), atol=1e-6), name
    # Unaligned, the same shift is large.
    assert torch.all(mpvpe(shifted, gt) > 1000.0)


def test_hand_and_face_alignments_use_their_own_roots():
    gt = torch.zeros(1, 12, 3, dtype=torch.float64)
    gt[0, :, 0] = torch.arange(12, dtype=torch.float64) * 0.01
    pred = gt.clone()
    pred[0, 4:8] += torch.tensor([0.0, 0.02, 0.0], dtype=torch.float64)  # left hand moved rigidly
    errors = whole_body_errors(pred, gt, _toy_topology())
    # The left hand moved with its wrist (vertex 4): zero hand error after wrist alignment,
    # but the whole mesh (pelvis-aligned) sees 4 of 12 vertices off by 2 cm.
    assert errors["mpvpe_hand"].item() == pytest.approx(0.0, abs=1e-9)
    assert errors["mpvpe_all"].item() == pytest.approx(20.0 * 4 / 12, abs=1e-6)
    assert errors["mpvpe_face"].item() == pytest.approx(0.0, abs=1e-9)
    assert not math.isnan(errors["pa_mpjpe_hand"].item())


def test_topology_of_the_embedded_body_model():
    from bidrn.body import load_body_model
    from bidrn.engine.metrics import mesh_topology

    body = load_body_model()
    topology = mesh_topology(body)
    assert topology.body_joint_source == "body25"
    assert topology.body_joint_regressor.shape == (25, body.num_vertices)
    assert torch.allclose(topology.body_joint_regressor.sum(dim=1), torch.ones(25, dtype=torch.float64))
    g = torch.Generator().manual_seed(5)
    output = body(betas=torch.randn(2, 10, generator=g), body_pose=0.2 * torch.randn(2, 63, generator=g))
    # The 25-joint regressor reproduces the layer's own body supervision joints.
    regressed = torch.einsum("jv,bvc->bjc", topology.body_joint_regressor.float(), output.vertices)
    assert torch.allclose(regressed[:, 14:], output.supervision_joints[:, 14:25], atol=1e-5)
    shifted = output.vertices + torch.tensor([0.5, -1.0, 3.0])
    for name, value in whole_body_errors(shifted, output.vertices, topology).items():
        assert value.abs().max().item() < 1e-2, name  # float32 meshes: < 10 micrometres


def test_whole_mesh_error_is_aligned_at_the_pelvis_not_another_root():
    gt = torch.zeros(1, 12, 3, dtype=torch.float64)
    gt[0, :, 0] = torch.arange(12, dtype=torch.float64) * 0.01
    pred = gt.clone()
    pred[0, 0:4] += torch.tensor([0.0, 0.0, 0.03], dtype=torch.float64)  # the pelvis region moves 3 cm
    errors = whole_body_errors(pred, gt, _toy_topology())
    # Aligned at the pelvis, the 8 vertices that did not move are 3 cm off (a neck alignment: the 4 that did).
    assert errors["mpvpe_all"].item() == pytest.approx(30.0 * 8 / 12, abs=1e-9)


def test_hand_errors_align_each_hand_at_its_own_wrist_and_average_both():
    gt = torch.zeros(1, 12, 3, dtype=torch.float64)
    gt[0, :, 0] = torch.arange(12, dtype=torch.float64) * 0.01
    pred = gt.clone()
    pred[0, 8:12] += torch.tensor([0.0, 0.05, 0.0], dtype=torch.float64)  # right hand moved with its wrist
    pred[0, 9, 2] += 0.02  # and one of its vertices bent by 2 cm
    errors = whole_body_errors(pred, gt, _toy_topology())
    # Right hand: 1 of 4 vertices 2 cm off after its wrist (vertex 8) alignment; left hand: 0.
    assert errors["mpvpe_hand"].item() == pytest.approx((0.0 + 20.0 / 4) / 2, abs=1e-9)


def _moved_similarly(points: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    rotation = _random_rotation(generator, 1)[0]
    return 1.7 * points @ rotation.T + torch.tensor([0.4, -0.2, 1.0], dtype=torch.float64)


def test_part_procrustes_aligns_each_part_alone():
    """PA-MPVPE hand / face and PA-MPJPE hand: a similarity applied to one part alone costs nothing."""
    g = torch.Generator().manual_seed(6)
    gt = torch.randn(1, 12, 3, generator=g, dtype=torch.float64)
    topology = _toy_topology()
    pred = gt.clone()
    pred[0, 4:8] = _moved_similarly(gt[0, 4:8], g)  # the left hand's vertices only
    errors = whole_body_errors(pred, gt, topology)
    assert errors["pa_mpvpe_hand"].item() == pytest.approx(0.0, abs=1e-6)
    assert errors["pa_mpvpe_all"].item() > 1.0  # one Procrustes for the whole mesh cannot undo it

    pred = gt.clone()
    pred[0, 9] += torch.tensor([0.0, 0.0, 0.05], dtype=torch.float64)  # a right finger tip bends
    errors = whole_body_errors(pred, gt, topology)
    right = torch.cat([gt[:, [8]], gt[:, 0:4].mean(1, keepdim=True), gt[:, 10:12].mean(1, keepdim=True),
                       gt[:, [9, 10]]], dim=1)  # fmt: skip
    moved = right.clone()
    moved[0, 3] += torch.tensor([0.0, 0.0, 0.05], dtype=torch.float64)
    # Left hand unchanged (0 mm); the right hand's 5 joints after their own Procrustes, averaged.
    expected = pa_mpjpe(moved, right).item() / 2
    assert expected > 1.0
    assert errors["pa_mpjpe_hand"].item() == pytest.approx(expected, rel=1e-9)
