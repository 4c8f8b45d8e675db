import copy

import pytest
import torch

import bidrn
from bidrn.engine.distillation import Distillation, DistillationWeights
from tests.nets.test_wholebody import FakeBodyModel

SIZE = {"width": 0.0625, "body_input": (64, 64), "hand_input": (64, 64), "face_input": (64, 64)}


def test_a_student_equal_to_its_teacher_has_zero_terms_and_only_the_student_learns():
    torch.manual_seed(0)
    teacher = bidrn.create_model("hand4whole", **SIZE, body_model=FakeBodyModel()).eval()
    student = copy.deepcopy(teacher).eval()  # eval: identical BatchNorm behaviour
    images = torch.rand(2, 3, 128, 128)
    distill = Distillation(teacher)
    terms = distill(images, student(images, with_mesh=False))
    assert set(terms) == {"distill_pose", "distill_shape", "distill_joint_cam", "distill_joint_img"}
    assert all(value.item() == pytest.approx(0.0, abs=1e-6) for value in terms.values())

    with torch.no_grad():
        student.body_rotation.root_pose.bias += 0.3
        student.body_rotation.shape.bias += 0.1
    terms = distill(images, student(images, with_mesh=False))
    assert terms["distill_pose"] > 0 and terms["distill_shape"].item() == pytest.approx(
        0.1 * 10 / 20, rel=1e-4
    )
    sum(terms.values()).backward()
    assert student.body_rotation.root_pose.bias.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_weights_scale_and_switch_off_terms():
    torch.manual_seed(0)
    teacher = bidrn.create_model("hand4whole", **SIZE).eval()
    student = bidrn.create_model("hand4whole", **SIZE).eval()
    images = torch.rand(1, 3, 128, 128)
    full = Distillation(teacher)(images, student(images))
    halved = Distillation(teacher, DistillationWeights(pose=0.5, shape=0.0))(images, student(images))
    assert "distill_shape" not in halved and "distill_joint_cam" not in full  # no body model: no joints
    assert halved["distill_pose"].item() == pytest.approx(0.5 * full["distill_pose"].item(), rel=1e-5)
