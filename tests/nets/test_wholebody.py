from dataclasses import dataclass

import pytest
import torch
from torch import nn

import bidrn
from bidrn.nets.geometry import rot6d_to_axis_angle
from bidrn.nets.roi import roi_align

SMALL = {"width": 0.125, "body_input": (96, 64), "hand_input": (64, 64), "face_input": (64, 64)}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return bidrn.create_model("bidrn", **SMALL).eval()


def test_output_shapes_follow_the_contract(model):
    out = model(torch.rand(3, 3, 192, 128))
    expected = {
        "root_pose": (3, 3), "body_pose": (3, 63), "lhand_pose": (3, 45), "rhand_pose": (3, 45),
        "jaw_pose": (3, 3), "shape": (3, 10), "expr": (3, 10), "cam_trans": (3, 3),
        "joint_img": (3, 65, 3), "lhand_bbox": (3, 4), "rhand_bbox": (3, 4), "face_bbox": (3, 4),
        "lhand_bbox_center": (3, 2), "lhand_bbox_size": (3, 2), "face_bbox_size": (3, 2),
    }  # fmt: skip
    for name, shape in expected.items():
        assert tuple(getattr(out, name).shape) == shape, name
    assert out.mesh_cam is None and out.joint_cam is None and out.joint_proj is None
    assert out.cam_trans[:, 2].gt(0).all()


@pytest.mark.parametrize("body_input", [(96, 64), (64, 48), (100, 70)])
def test_heatmap_grid_is_the_encoder_output_grid(body_input):
    model = bidrn.create_model("hand4whole", **{**SMALL, "body_input": body_input, "hand_input": (80, 80)})
    crop = torch.rand(1, 3, 2 * body_input[0], 2 * body_input[1])
    seen: dict = {}
    hooks = [capture(model.body_encoder, seen, "body"), capture(model.hand_encoder, seen, "hand")]
    model(crop)
    for hook in hooks:
        hook.remove()
    assert tuple(seen["body"][1].shape[-2:]) == model.body_heatmap
    assert tuple(seen["hand"][1].shape[-2:]) == model.hand_heatmap


def test_wrong_image_size_is_refused(model):
    with pytest.raises(ValueError, match="expected images"):
        model(torch.rand(1, 3, 128, 96))


def capture(module: nn.Module, store: dict, key: str, pre: bool = False):
    if pre:
        return module.register_forward_pre_hook(lambda m, args: store.__setitem__(key, args))
    return module.register_forward_hook(lambda m, args, out: store.__setitem__(key, (args, out)))


def test_left_hand_is_mirrored_for_the_hand_network_and_unmirrored_after(model):
    torch.manual_seed(1)
    images = torch.rand(2, 3, 192, 128)
    seen: dict = {}
    hooks = [
        capture(model.hand_encoder, seen, "encoder"),
        capture(model.hand_position, seen, "position"),
        capture(model.hand_rotation, seen, "rotation"),
        capture(model.body_rotation, seen, "body_rotation", pre=True),
    ]
    out = model(images)
    for hook in hooks:
        hook.remove()
    crops = seen["encoder"][0][0]
    expected_left = roi_align(images, out.lhand_bbox, (64, 64)).flip(3)
    expected_right = roi_align(images, out.rhand_bbox, (64, 64))
    torch.testing.assert_close(crops, torch.cat((expected_left, expected_right)))

    hand_joints = seen["position"][1][0]  # (2B, 20, 3) on the crops the network saw
    width = model.hand_heatmap[1]
    torch.testing.assert_close(out.joint_img[:, 25:45, 0], width - hand_joints[:2, :, 0])
    torch.testing.assert_close(out.joint_img[:, 25:45, 1:], hand_joints[:2, :, 1:])
    torch.testing.assert_close(out.joint_img[:, 45:65], hand_joints[2:])

    pose = rot6d_to_axis_angle(seen["rotation"][1]).flatten(1)  # (2B, 45)
    sign = torch.tensor([1.0, -1.0, -1.0]).repeat(15)
    torch.testing.assert_close(out.lhand_pose, pose[:2] * sign)
    torch.testing.assert_close(out.rhand_pose, pose[2:])

    features = seen["encoder"][1]
    args = seen["body_rotation"]
    torch.testing.assert_close(args[2], features[:2].flip(3))  # left features flipped back
    torch.testing.assert_close(args[4], features[2:])
    torch.testing.assert_close(args[3], out.joint_img[:, 25:45][:, [4, 8, 12, 16]])


def test_body_image_is_a_nearest_resize_of_the_crop(model):
    seen: dict = {}
    hook = capture(model.body_encoder, seen, "body")
    images = torch.rand(1, 3, 192, 128)
    model(images)
    hook.remove()
    torch.testing.assert_close(seen["body"][0][0], images[:, :, ::2, ::2])


@dataclass
class FakeSMPLXOutput:
    vertices: torch.Tensor | None
    supervision_joints: torch.Tensor


class FakeBodyModel(nn.Module):
    """Vertices and joints that depend linearly on shape, so gradients can be checked."""

    def forward(self, betas, global_orient, body_pose, left_hand_pose, right_hand_pose, jaw_pose,
                leye_pose, reye_pose, expression, with_vertices=True):  # fmt: skip
        batch = betas.shape[0]
        base = torch.linspace(-0.5, 0.5, 137 * 3).view(1, 137, 3)
        joints = base + betas[:, :1, None] + global_orient[:, None, :]
        vertices = joints[:, :20] * 2 if with_vertices else None
        return FakeSMPLXOutput(vertices=vertices, supervision_joints=joints.expand(batch, -1, -1))


def test_attached_body_model_gives_mesh_and_relative_joints(model):
    model.attach_body_model(FakeBodyModel())
    try:
        out = model(torch.rand(2, 3, 192, 128))
    finally:
        model.attach_body_model(None)
    assert out.mesh_cam.shape == (2, 20, 3) and out.joint_cam.shape == (2, 137, 3)
    assert out.joint_proj.shape == (2, 137, 2)
    assert torch.all(out.joint_cam[:, 0] == 0)  # pelvis-relative body
    assert "mesh_cam" not in dict(model.named_modules()) and not any(
        "body_model" in k for k in model.state_dict()
    )


def test_training_mode_computes_joints_but_not_the_mesh():
    images = torch.rand(2, 3, 192, 128)
    model = bidrn.create_model("hand4whole", **SMALL, body_model=FakeBodyModel())
    evaluated = model.eval()(images)
    trained = model.train()(images)
    assert evaluated.mesh_cam is not None and trained.mesh_cam is None
    assert trained.joint_cam.shape == evaluated.joint_cam.shape == (2, 137, 3)


def test_joint_proj_puts_a_centred_point_at_the_heatmap_centre(model):
    from bidrn.nets.wholebody import project_joints

    joints = torch.zeros(1, 1, 3)
    proj = project_joints(joints, torch.tensor([[0.0, 0.0, 10.0]]), (8, 6))
    torch.testing.assert_close(proj, torch.tensor([[[3.0, 4.0]]]))


def test_standin_body_model_runs_end_to_end():
    body = pytest.importorskip("bidrn.body")
    try:
        layer = body.load_body_model()
    except Exception as error:  # the stand-in asset may not be installed yet
        pytest.skip(f"stand-in body model unavailable: {error}")
    torch.manual_seed(0)
    model = bidrn.create_model("hand4whole", body_model=layer, **SMALL).eval()
    out = model(torch.rand(1, 3, 192, 128))
    assert out.joint_cam.shape == (1, 137, 3) and out.mesh_cam.shape[-1] == 3
    assert torch.isfinite(out.mesh_cam).all() and torch.isfinite(out.joint_proj).all()
