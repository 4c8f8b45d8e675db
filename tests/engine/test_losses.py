import math
from types import SimpleNamespace

import pytest
import torch

from bidrn.body import joint_sets
from bidrn.engine.losses import (
    HeatmapGeometry,
    LossWeights,
    WholeBodyLoss,
    boxes_to_hand_units,
    coordinate_l1,
    masked_l1,
    translation_aligned,
)

B = 2


def test_masked_l1_averages_over_all_elements():
    prediction = torch.tensor([[1.0, 2.0], [3.0, -4.0]])
    target = torch.zeros(2, 2)
    valid = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # (1 + 0 + 3 + 4) / 4
    assert masked_l1(prediction, target, valid).item() == pytest.approx(2.0)


def test_coordinate_l1_masks_depth_of_2d_samples():
    prediction = torch.ones(2, 1, 3)
    target = torch.zeros(2, 1, 3)
    valid = torch.ones(2, 1, 1)
    is_3d = torch.tensor([1.0, 0.0])
    # sample 0: 3 elements of 1; sample 1: x, y only -> 5 / 6
    assert coordinate_l1(prediction, target, valid, is_3d).item() == pytest.approx(5 / 6)


def test_boxes_to_hand_units_maps_box_onto_hand_heatmap():
    geometry = HeatmapGeometry()
    # xyxy in 512x384 crop px = x 2..4, y 1..3 in 8x6 heatmap units; hand heatmap is 8 wide.
    boxes = torch.tensor([[128.0, 64.0, 256.0, 192.0]])
    coords = torch.tensor([[[3.0, 2.0, 5.0], [2.0, 1.0, 0.0], [4.5, 2.0, 1.0]]])
    mapped, inside = boxes_to_hand_units(coords, boxes, geometry)
    assert torch.allclose(mapped[0, 0], torch.tensor([4.0, 4.0, 5.0]))
    assert torch.allclose(mapped[0, 1], torch.tensor([0.0, 0.0, 0.0]))
    assert inside.tolist() == [[True, True, False]]


def test_translation_aligned_uses_valid_joints_only():
    target = torch.zeros(2, 3, 2)
    prediction = torch.ones(2, 3, 2)
    prediction[0, 2] = 100.0  # invalid joint must not move the offset
    valid = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    aligned = translation_aligned(prediction, target, valid)
    assert torch.allclose(aligned[0, :2], torch.zeros(2, 2))
    assert torch.allclose(aligned[1], prediction[1])  # nothing valid: unchanged


def _targets_and_meta():
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(*shape, generator=g)

    targets = {
        "smplx_pose": rand(B, 159),
        "smplx_shape": rand(B, 10),
        "smplx_expr": rand(B, 10),
        "joint_cam": rand(B, 137, 3),
        "smplx_joint_cam": rand(B, 137, 3),
        "joint_img": rand(B, 137, 3) * torch.tensor([6.0, 8.0, 8.0]),
        "smplx_joint_img": rand(B, 137, 3) * torch.tensor([6.0, 8.0, 8.0]),
    }
    meta = {
        "smplx_pose_valid": torch.ones(B, 159),
        "smplx_shape_valid": torch.ones(B),
        "smplx_expr_valid": torch.ones(B),
        "joint_valid": torch.ones(B, 137, 1),
        "smplx_joint_valid": torch.ones(B, 137, 1),
        "joint_trunc": torch.ones(B, 137, 1),
        "smplx_joint_trunc": torch.ones(B, 137),
        "is_3D": torch.ones(B),
    }
    for part in ("lhand", "rhand", "face"):
        targets[f"{part}_bbox_center"] = rand(B, 2) * 6
        targets[f"{part}_bbox_size"] = rand(B, 2) + 0.5
        meta[f"{part}_bbox_valid"] = torch.ones(B)
    return targets, meta


def _perfect_output(targets):
    pose = targets["smplx_pose"]
    box = torch.tensor([[0.0, 0.0, 384.0, 512.0]]).repeat(B, 1)  # whole image: hands keep scale
    fields = {
        "root_pose": pose[:, :3],
        "body_pose": pose[:, 3:66],
        "lhand_pose": pose[:, 66:111],
        "rhand_pose": pose[:, 111:156],
        "jaw_pose": pose[:, 156:],
        "shape": targets["smplx_shape"],
        "expr": targets["smplx_expr"],
        "joint_cam": targets["joint_cam"],
        "joint_proj": targets["joint_img"][..., :2],
        "joint_img": targets["joint_img"][:, :65],
        "lhand_bbox": box,
        "rhand_bbox": box,
        "face_bbox": box,
    }
    for part in ("lhand", "rhand", "face"):
        fields[f"{part}_bbox_center"] = targets[f"{part}_bbox_center"]
        fields[f"{part}_bbox_size"] = targets[f"{part}_bbox_size"]
    fields = {k: v.clone() for k, v in fields.items()}
    for part in (joint_sets.LHAND_SLICE, joint_sets.RHAND_SLICE):  # PositionNet hands live in their crop
        fields["joint_img"][:, part], _ = boxes_to_hand_units(
            targets["joint_img"][:, part], box, HeatmapGeometry()
        )
    return fields


ALL_TERMS = set(LossWeights().as_dict())


def test_perfect_prediction_has_zero_loss_except_terms_against_other_targets():
    targets, meta = _targets_and_meta()
    output = _perfect_output(targets)
    # joint_cam and joint_img predictions match the dataset joints, not the SMPL-X-derived ones:
    targets["smplx_joint_cam"] = targets["joint_cam"].clone()
    targets["smplx_joint_img"] = targets["joint_img"].clone()
    terms = WholeBodyLoss()(SimpleNamespace(**output), targets, meta)
    assert set(terms) == ALL_TERMS
    for name, value in terms.items():
        assert value.item() == pytest.approx(0.0, abs=1e-6), name


@pytest.mark.parametrize(
    ("field", "index", "term", "numel"),
    [
        ("body_pose", (0, 5), "smplx_pose", B * 159),
        ("jaw_pose", (1, 2), "smplx_pose", B * 159),
        ("shape", (0, 3), "smplx_shape", B * 10),
        ("expr", (1, 9), "smplx_expr", B * 10),
        ("lhand_bbox_center", (0, 1), "lhand_bbox", B * 2),
        ("face_bbox_size", (1, 0), "face_bbox", B * 2),
        ("joint_img", (0, 3, 0), "joint_img", B * 65 * 3),
        ("joint_proj", (1, 10, 1), "joint_proj", B * 137 * 2),
    ],
)
def test_each_term_sees_an_error_in_its_own_prediction(field, index, term, numel):
    targets, meta = _targets_and_meta()
    targets["smplx_joint_cam"] = targets["joint_cam"].clone()
    targets["smplx_joint_img"] = targets["joint_img"].clone()
    output = _perfect_output(targets)
    output[field][index] += 0.5
    terms = WholeBodyLoss(rotations="axis_angle")(SimpleNamespace(**output), targets, meta)
    expected = {name: 0.0 for name in ALL_TERMS}
    expected[term] = 0.5 / numel
    if field == "joint_img":
        expected["smplx_joint_img"] = 0.5 / numel
    for name, value in terms.items():
        assert value.item() == pytest.approx(expected[name], abs=1e-6), name


def test_matrix_pose_term_is_continuous_where_axis_angle_jumps():
    """Two roots 0.02 rad apart on either side of a half turn: far apart as vectors, close as matrices."""
    targets, meta = _targets_and_meta()
    targets["smplx_pose"][:, :3] = torch.tensor([math.pi - 0.01, 0.0, 0.0])
    output = _perfect_output(targets)
    output["root_pose"] = torch.tensor([[-(math.pi - 0.01), 0.0, 0.0]]).repeat(B, 1)
    as_vectors = WholeBodyLoss(rotations="axis_angle")(SimpleNamespace(**output), targets, meta)
    as_matrices = WholeBodyLoss(rotations="matrix")(SimpleNamespace(**output), targets, meta)
    assert as_vectors["smplx_pose"].item() == pytest.approx(2 * (math.pi - 0.01) / 159, rel=1e-4)
    # Rx(a) and Rx(-a) differ only in the sign of their two off-diagonal sin(a) entries.
    expected = 4 * math.sin(0.01) / (53 * 9)
    assert as_matrices["smplx_pose"].item() == pytest.approx(expected, rel=1e-3)


def test_matrix_pose_term_counts_only_valid_rotations():
    targets, meta = _targets_and_meta()
    output = _perfect_output(targets)
    output["jaw_pose"] = output["jaw_pose"] + 0.3
    meta["smplx_pose_valid"][:, 156:159] = 0.0
    terms = WholeBodyLoss(rotations="matrix")(SimpleNamespace(**output), targets, meta)
    assert terms["smplx_pose"].item() == pytest.approx(0.0, abs=1e-7)


def test_joint_cam_error_counts_in_both_3d_terms():
    targets, meta = _targets_and_meta()
    targets["smplx_joint_cam"] = targets["joint_cam"].clone()
    output = _perfect_output(targets)
    output["joint_cam"][0, 7, 2] -= 2.0
    terms = WholeBodyLoss()(SimpleNamespace(**output), targets, meta)
    assert terms["joint_cam"].item() == pytest.approx(2.0 / (B * 137 * 3))
    assert terms["smplx_joint_cam"].item() == pytest.approx(2.0 / (B * 137 * 3))


def test_masked_elements_contribute_nothing():
    targets, meta = _targets_and_meta()
    targets["smplx_joint_cam"] = targets["joint_cam"].clone()
    targets["smplx_joint_img"] = targets["joint_img"].clone()
    output = _perfect_output(targets)
    # Corrupt predictions exactly where masks are zero.
    meta["smplx_pose_valid"][0, :3] = 0
    output["root_pose"][0] += 9.0
    meta["smplx_shape_valid"][1] = 0
    output["shape"][1] += 9.0
    meta["smplx_expr_valid"][0] = 0
    output["expr"][0] += 9.0
    meta["joint_valid"][1, 3] = 0
    meta["smplx_joint_valid"][1, 3] = 0
    output["joint_cam"][1, 3] += 9.0
    meta["is_3D"][0] = 0  # sample 0: joint_cam off entirely, joint_img depth off
    meta["smplx_joint_valid"][0] = 0
    output["joint_cam"][0] += 9.0
    output["joint_img"][0, :, 2] += 9.0
    targets["smplx_joint_img"][0, :65, 2] += 9.0  # smplx_joint_img has no is_3D mask
    meta["rhand_bbox_valid"][0] = 0
    output["rhand_bbox_center"][0] += 9.0
    meta["joint_trunc"][1, 20] = 0
    meta["smplx_joint_trunc"][1, 20] = 0
    output["joint_img"][1, 20] += 9.0
    output["joint_proj"][1, 20] += 9.0
    terms = WholeBodyLoss()(SimpleNamespace(**output), targets, meta)
    for name, value in terms.items():
        assert value.item() == pytest.approx(0.0, abs=1e-6), name


def test_hand_projection_is_translation_invariant_but_body_is_not():
    targets, meta = _targets_and_meta()
    output = _perfect_output(targets)
    output["joint_proj"][:, joint_sets.LHAND_SLICE] += torch.tensor([0.7, -0.3])
    output["joint_proj"][:, joint_sets.FACE_SLICE] += torch.tensor([-1.0, 2.0])
    loss = WholeBodyLoss()
    assert loss(SimpleNamespace(**output), targets, meta)["joint_proj"].item() == pytest.approx(0.0, abs=1e-5)
    output["joint_proj"][:, joint_sets.BODY_SLICE] += torch.tensor([0.7, 0.0])
    expected = 0.7 * B * 25 / (B * 137 * 2)
    assert loss(SimpleNamespace(**output), targets, meta)["joint_proj"].item() == pytest.approx(expected)


def test_hand_targets_outside_predicted_crop_are_truncated():
    targets, meta = _targets_and_meta()
    output = _perfect_output(targets)
    # A tiny left-hand crop at the top-left corner: every left-hand target falls outside it,
    # so a wrong left-hand PositionNet prediction costs nothing.
    output["lhand_bbox"] = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(B, 1)
    targets["joint_img"][:, joint_sets.LHAND_SLICE, :2] += 3.0
    targets["smplx_joint_img"] = targets["joint_img"].clone()
    output["joint_proj"] = targets["joint_img"][..., :2].clone()
    output["joint_img"][:, joint_sets.LHAND_SLICE] += 5.0
    terms = WholeBodyLoss()(SimpleNamespace(**output), targets, meta)
    assert terms["joint_img"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["smplx_joint_img"].item() == pytest.approx(0.0, abs=1e-6)


def test_weights_scale_and_disable_terms():
    targets, meta = _targets_and_meta()
    output = _perfect_output(targets)
    output["shape"] += 1.0
    terms = WholeBodyLoss(LossWeights(smplx_shape=3.0, face_bbox=0.0))(
        SimpleNamespace(**output), targets, meta
    )
    assert "face_bbox" not in terms
    assert terms["smplx_shape"].item() == pytest.approx(3.0)
