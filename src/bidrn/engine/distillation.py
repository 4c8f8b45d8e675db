"""Knowledge distillation from a full-precision teacher (beyond the paper).

A binarized student learns faster and further when, besides the ground truth, it matches the
outputs of a trained full-precision model on the same images: the teacher's predictions are
smooth, always available (also for joints a dataset does not label) and reachable by a network of
the same architecture. :class:`Distillation` gives the trainer extra loss terms (``extra_terms``),
each an L1 distance between student and teacher outputs with the ground-truth terms' units:

=====================  ===========================================================================
term                   compared outputs
=====================  ===========================================================================
``distill_pose``       every rotation (root, body, hands, jaw) as 3×3 matrices
``distill_shape``      SMPL-X shape β and expression ψ
``distill_joint_cam``  the 137 part-relative 3-D supervision joints (metres)
``distill_joint_img``  PositionNet's 25 body joints (body-heatmap cells; the hand joints live in each
                       model's own hand crop, so they are not comparable)
=====================  ===========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bidrn.body.joint_sets import POS_BODY_SLICE
from bidrn.body.rotations import axis_angle_to_matrix
from bidrn.engine.losses import predicted_pose


def _rotations(output: Any) -> torch.Tensor:
    pose = predicted_pose(output)
    return axis_angle_to_matrix(pose.reshape(pose.shape[0], -1, 3))


@dataclass(frozen=True)
class DistillationWeights:
    """Weight of each distillation term (0 switches a term off)."""

    pose: float = 1.0
    shape: float = 1.0
    joint_cam: float = 1.0
    joint_img: float = 1.0


class Distillation:
    """Loss terms towards a frozen teacher's outputs on the same images.

    Args:
        teacher: a trained whole-body model (full precision in the usual recipe); it is put in eval mode
            and never updated. It must have a body model attached for ``joint_cam``.
        weights: term weights.
    """

    def __init__(self, teacher: nn.Module, weights: DistillationWeights | None = None) -> None:
        self.teacher = teacher.eval()
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.weights = weights or DistillationWeights()

    def __call__(self, images: torch.Tensor, output: Any) -> dict[str, torch.Tensor]:
        """``{term: weighted scalar}`` for the student ``output`` computed on ``images``."""
        with torch.no_grad():
            teacher = self.teacher(images, with_mesh=False)
        weights = self.weights
        terms: dict[str, torch.Tensor] = {}
        if weights.pose:
            terms["distill_pose"] = weights.pose * (_rotations(output) - _rotations(teacher)).abs().mean()
        if weights.shape:
            difference = torch.cat(
                ((output.shape - teacher.shape).abs(), (output.expr - teacher.expr).abs()), dim=1
            )
            terms["distill_shape"] = weights.shape * difference.float().mean()
        if weights.joint_cam and output.joint_cam is not None and teacher.joint_cam is not None:
            terms["distill_joint_cam"] = (
                weights.joint_cam * (output.joint_cam - teacher.joint_cam).abs().float().mean()
            )
        if weights.joint_img:
            difference = output.joint_img[:, POS_BODY_SLICE] - teacher.joint_img[:, POS_BODY_SLICE]
            terms["distill_joint_img"] = weights.joint_img * difference.abs().float().mean()
        return terms
