import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import bidrn
from bidrn.body import load_body_model
from bidrn.body.joint_sets import JOINT_NAMES
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


class RandomJointsBodyModel(nn.Module):
    """A body model whose 137 joints are fixed random points 2-12 m in front of the camera."""

    def __init__(self, batch: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(7)
        self.joints = torch.rand(batch, 137, 3, generator=generator) * torch.tensor([2.0, 2.0, 10.0])
        self.joints += torch.tensor([-1.0, -1.0, 2.0])

    def forward(self, betas, with_vertices=True, **pose):
        return FakeSMPLXOutput(vertices=None, supervision_joints=self.joints.clone())


def run_on_random_joints(model: nn.Module) -> tuple:
    """The model's output on two random crops with :class:`RandomJointsBodyModel` attached, and its joints."""
    body_model = RandomJointsBodyModel(batch=2)
    model.attach_body_model(body_model)
    try:
        out = model(torch.rand(2, 3, 192, 128), with_mesh=False)
    finally:
        model.attach_body_model(None)
    return out, body_model.joints


def part_indices(prefixes: tuple[str, ...]) -> list[int]:
    return [i for i, name in enumerate(JOINT_NAMES) if name.startswith(prefixes)]


FINGERS = ("Thumb", "Index", "Middle", "Ring", "Pinky")


def test_joint_cam_is_each_part_relative_to_its_own_root(model):
    """docs/design/pipeline.md §5.8: body pelvis-relative, each hand relative to its own wrist, face
    neck-relative, in the order body 25 | left hand 20 | right hand 20 | face 72, found here by name."""
    out, joints = run_on_random_joints(model)
    left = part_indices(tuple(f"L_{finger}" for finger in FINGERS))
    right = part_indices(tuple(f"R_{finger}" for finger in FINGERS))
    face = part_indices(("Face_",))
    assert (len(left), len(right), len(face)) == (20, 20, 72) and left == list(range(25, 45))

    def root(name: str) -> torch.Tensor:
        return joints[:, JOINT_NAMES.index(name)][:, None]

    torch.testing.assert_close(out.joint_cam[:, :25], joints[:, :25] - root("Pelvis"))
    torch.testing.assert_close(out.joint_cam[:, left], joints[:, left] - root("L_Wrist"))
    torch.testing.assert_close(out.joint_cam[:, right], joints[:, right] - root("R_Wrist"))
    torch.testing.assert_close(out.joint_cam[:, face], joints[:, face] - root("Neck"))


def pinhole(points: torch.Tensor, heatmap: tuple[int, int]) -> torch.Tensor:
    """docs/design/pipeline.md §5.7, written out: focal 5000 px and principal point (96, 128) on the
    256x192 canonical body image (depth guarded by 1e-4), then rescaled to a heatmap of (rows, columns)."""
    depth = points[..., 2] + 1e-4
    u = 5000.0 * points[..., 0] / depth + 96.0
    v = 5000.0 * points[..., 1] / depth + 128.0
    return torch.stack((u * heatmap[1] / 192.0, v * heatmap[0] / 256.0), dim=-1)


def test_project_joints_is_the_pinhole_of_the_canonical_camera():
    from bidrn.nets.wholebody import project_joints

    generator = torch.Generator().manual_seed(3)
    joints = torch.rand(2, 30, 3, generator=generator, dtype=torch.float64) - 0.5
    cam_trans = torch.tensor([[0.1, -0.2, 20.0], [-0.3, 0.05, 40.0]], dtype=torch.float64)
    for heatmap in ((8, 6), (3, 2), (4, 4)):  # (3, 2): rows and columns scale differently
        projected = project_joints(joints, cam_trans, heatmap)
        expected = pinhole(joints + cam_trans[:, None], heatmap)
        torch.testing.assert_close(projected, expected, rtol=1e-9, atol=1e-9)
    # 20 cm to the right at 20 m is 5000 * 0.2 / 20 = 50 canonical pixels, 50 * 6 / 192 cells.
    offset = project_joints(torch.tensor([[[0.2, 0.0, 0.0]]]), torch.tensor([[0.0, 0.0, 20.0]]), (8, 6))
    torch.testing.assert_close(offset, torch.tensor([[[(96.0 + 50.0) * 6 / 192, 4.0]]]), rtol=0, atol=1e-4)


def test_camera_depth_is_k_sigmoid_gamma_with_the_focal_length():
    from bidrn.nets.wholebody import camera_translation

    k = math.sqrt(5000.0 * 5000.0 * 2.5**2 / (256 * 192))  # ≈ 56.38 m (pipeline.md §5.7)
    camera = torch.tensor([[0.3, -0.4, 0.0], [0.0, 0.0, 2.0]])
    expected = torch.tensor([[0.3, -0.4, k / 2], [0.0, 0.0, k / (1 + math.exp(-2.0))]])
    torch.testing.assert_close(camera_translation(camera), expected)


def test_network_joint_proj_projects_the_body_model_joints_with_cam_trans(model):
    out, joints = run_on_random_joints(model)
    expected = pinhole(joints + out.cam_trans[:, None], model.body_heatmap)
    torch.testing.assert_close(out.joint_proj, expected, rtol=1e-4, atol=1e-4)


def test_joint_proj_puts_a_centred_point_at_the_heatmap_centre(model):
    from bidrn.nets.wholebody import project_joints

    joints = torch.zeros(1, 1, 3)
    proj = project_joints(joints, torch.tensor([[0.0, 0.0, 10.0]]), (8, 6))
    torch.testing.assert_close(proj, torch.tensor([[[3.0, 4.0]]]))


def test_standin_body_model_runs_end_to_end():
    # The stand-in ships inside the package and needs nothing optional: any error here is a failure.
    torch.manual_seed(0)
    model = bidrn.create_model("hand4whole", body_model=load_body_model(), **SMALL).eval()
    out = model(torch.rand(1, 3, 192, 128))
    assert out.joint_cam.shape == (1, 137, 3) and out.mesh_cam.shape[-1] == 3
    assert torch.isfinite(out.mesh_cam).all() and torch.isfinite(out.joint_proj).all()


def test_eval_batches_run_in_pieces_of_inference_batch_with_the_same_result():
    torch.manual_seed(0)
    model = bidrn.create_model("hand4whole", **SMALL, body_model=FakeBodyModel()).eval()
    images = torch.rand(5, 3, 192, 128)
    calls = []
    model.body_encoder.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    with torch.no_grad():
        whole = model(images)
        model.inference_batch = 2
        pieces = model(images)
        assert calls == [5, 2, 2, 1]
        for name, value in whole.as_dict().items():
            torch.testing.assert_close(getattr(pieces, name), value, rtol=1e-4, atol=1e-4)  # GEMM blocking
        assert pieces.as_dict().keys() == whole.as_dict().keys()
        model.train()
        calls.clear()
        model(images)  # training batches are never split (BatchNorm statistics)
        assert calls == [5]


def test_outputs_concatenate_field_by_field():
    model = bidrn.create_model("hand4whole", **SMALL).eval()
    with torch.no_grad():
        first, second = model(torch.rand(2, 3, 192, 128)), model(torch.rand(1, 3, 192, 128))
    joined = type(first).concatenate([first, second])
    assert torch.equal(joined.body_pose, torch.cat((first.body_pose, second.body_pose)))
    assert joined.mesh_cam is None and joined.lhand_bbox.shape == (3, 4)
