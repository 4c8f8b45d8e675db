"""The whole-body training loss of Hand4Whole, which BiDRN keeps (docs/design/pipeline.md §6).

Every term is an L1 distance multiplied by a validity mask and averaged over **all** of its
elements (masked elements count as zeros in the mean, as in the released code); the weighted terms
are summed (default weights 1). The terms, their inputs and masks:

========================  =================================  ====================================
term                      prediction (``WholeBodyOutput``)   target / mask (sample dict)
========================  =================================  ====================================
``smplx_pose``            root|body|lhand|rhand|jaw (159)    ``smplx_pose`` / ``smplx_pose_valid``
``smplx_shape``           ``shape`` (10)                     ``smplx_shape`` / ``smplx_shape_valid``
``smplx_expr``            ``expr`` (10)                      ``smplx_expr`` / ``smplx_expr_valid``
``joint_cam``             ``joint_cam`` (137×3)              ``joint_cam`` / ``joint_valid``·``is_3D``
``smplx_joint_cam``       ``joint_cam``                      ``smplx_joint_cam`` / ``smplx_joint_valid``
``{l,r}hand_bbox``,       ``*_bbox_center`` + ``*_bbox_size``  ``*_bbox_center`` + ``*_bbox_size`` /
``face_bbox``             (8×6 heatmap units)                ``*_bbox_valid``
``joint_proj``            ``joint_proj`` (137×2)             ``joint_img[..., :2]`` / ``joint_trunc``
``joint_img``             ``joint_img`` (65×3)               ``joint_img[:, :65]`` / ``joint_trunc``,
                                                             z only where ``is_3D``
``smplx_joint_img``       ``joint_img``                      ``smplx_joint_img[:, :65]`` /
                                                             ``smplx_joint_trunc``
========================  =================================  ====================================

Before the image-space terms, the hand joints of ``joint_img``/``smplx_joint_img`` targets and of
the projected joints are re-expressed in the **predicted, detached** hand crops (the
``lhand_bbox``/``rhand_bbox`` outputs, xyxy in input-crop pixels) so they live in the hand
heatmap's 8×8 units, and their truncation flags drop joints outside the crop. The projected hand
and face joints are then translated per sample by the mean offset to their targets over the valid
joints (the projection loss is translation-invariant for hands and face).

Masks may be given as ``(B, J)`` or ``(B, J, 1)``; per-sample flags as ``(B,)`` or ``(B, 1)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
from torch import nn

from bidrn.body import joint_sets
from bidrn.body.rotations import axis_angle_to_matrix

POSE_PARTS = ("root_pose", "body_pose", "lhand_pose", "rhand_pose", "jaw_pose")
"""The output fields whose concatenation is the 159-value SMPL-X pose target ``smplx_pose``."""
_BOX_PARTS = ("lhand", "rhand", "face")


@dataclass(frozen=True)
class LossWeights:
    """Weight of each loss term; the paper (and Hand4Whole) use 1 for all of them."""

    smplx_pose: float = 1.0
    smplx_shape: float = 1.0
    smplx_expr: float = 1.0
    joint_cam: float = 1.0
    smplx_joint_cam: float = 1.0
    lhand_bbox: float = 1.0
    rhand_bbox: float = 1.0
    face_bbox: float = 1.0
    joint_proj: float = 1.0
    joint_img: float = 1.0
    smplx_joint_img: float = 1.0

    def as_dict(self) -> dict[str, float]:
        """Term name -> weight."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class HeatmapGeometry:
    """Resolutions that define the image-space units of the targets (docs/design/pipeline.md §2).

    Attributes:
        box_frame_shape: (H, W) of the image whose pixels the predicted crop boxes use: the model's
            input crop (512×384 at paper size).
        body_heatmap_shape: (D, H, W) of the body heatmap, the unit of body joints and boxes.
        hand_heatmap_shape: (D, H, W) of the hand heatmap, the unit of hand joints in their crop.
    """

    box_frame_shape: tuple[int, int] = (512, 384)
    body_heatmap_shape: tuple[int, int, int] = (8, 8, 6)
    hand_heatmap_shape: tuple[int, int, int] = (8, 8, 8)

    @classmethod
    def of_model(cls, model: nn.Module) -> HeatmapGeometry:
        """The geometry of a :class:`bidrn.nets.wholebody.WholeBodyNet` (paper defaults otherwise)."""
        config = getattr(model, "config", None)
        body_heatmap = getattr(model, "body_heatmap", None)
        hand_heatmap = getattr(model, "hand_heatmap", None)
        if config is None or body_heatmap is None or hand_heatmap is None:
            return cls()
        depth = config.heatmap_depth
        return cls(
            box_frame_shape=tuple(config.crop_input),
            body_heatmap_shape=(depth, *body_heatmap),
            hand_heatmap_shape=(depth, *hand_heatmap),
        )


def predicted_pose(output: Any) -> torch.Tensor:
    """``(B, 159)`` axis-angle pose of an output, in the order of the ``smplx_pose`` target."""
    return torch.cat([getattr(output, name).float() for name in POSE_PARTS], dim=1)


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over all elements of ``|prediction - target| * valid`` (masked elements count as 0)."""
    return ((prediction - target).abs() * valid).mean()


def coordinate_l1(
    prediction: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    is_3d: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`masked_l1` on ``(B, J, C)`` coordinates; with ``is_3d`` (B,), z counts only where it is 1."""
    error = (prediction - target).abs() * valid
    if is_3d is not None and prediction.shape[-1] == 3:
        error = torch.cat([error[..., :2], error[..., 2:] * is_3d.reshape(-1, 1, 1)], dim=-1)
    return error.mean()


RotationLoss = Literal["matrix", "axis_angle"]


def rotation_l1(
    prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, representation: RotationLoss
) -> torch.Tensor:
    """L1 between ``(B, 3·R)`` axis-angle poses, on their rotation matrices or on the vectors themselves.

    ``valid`` is ``(B, 3·R)`` (one flag per value, as the dataset gives it). Hand4Whole compares the
    axis-angle vectors; that target jumps between opposite vectors of length ≈ π for nearly equal
    rotations, which is where a camera-frame root sits (an upright body seen by a y-down camera is a
    half turn about x), so ``"matrix"`` compares the 3×3 matrices instead: continuous everywhere.
    """
    if representation == "axis_angle":
        return masked_l1(prediction, target, valid)
    batch = prediction.shape[0]
    predicted = axis_angle_to_matrix(prediction.reshape(batch, -1, 3))
    wanted = axis_angle_to_matrix(target.reshape(batch, -1, 3))
    per_rotation = valid.reshape(batch, -1, 3)[..., :1, None]
    return masked_l1(predicted, wanted, per_rotation)


def _joint_mask(mask: torch.Tensor) -> torch.Tensor:
    return mask.unsqueeze(-1) if mask.dim() == 2 else mask


def _sample_flag(flag: Any, batch: int, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(flag, dtype=like.dtype, device=like.device).reshape(batch)


def boxes_to_hand_units(
    coords: torch.Tensor, boxes: torch.Tensor, geometry: HeatmapGeometry
) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-express body-heatmap coordinates in the hand heatmap of each crop box.

    Args:
        coords: ``(B, J, 2 or 3)`` x, y (and z) in body-heatmap units.
        boxes: ``(B, 4)`` crop boxes, xyxy in input-crop pixels (the model's detached boxes).
        geometry: the resolutions that define both unit systems.

    Returns:
        ``(coords in hand-heatmap units, inside (B, J) bool)`` where ``inside`` marks x, y within
        ``[0, W_hand) x [0, H_hand)``.
    """
    body_depth, body_height, body_width = geometry.body_heatmap_shape
    hand_depth, hand_height, hand_width = geometry.hand_heatmap_shape
    input_height, input_width = geometry.box_frame_shape
    x0 = boxes[:, None, 0] / input_width * body_width
    y0 = boxes[:, None, 1] / input_height * body_height
    width = (boxes[:, None, 2] - boxes[:, None, 0]) / input_width * body_width
    height = (boxes[:, None, 3] - boxes[:, None, 1]) / input_height * body_height
    x = (coords[..., 0] - x0) * (hand_width / width)
    y = (coords[..., 1] - y0) * (hand_height / height)
    columns = [x, y]
    if coords.shape[-1] == 3:
        columns.append(coords[..., 2] * (hand_depth / body_depth))
    inside = (x >= 0) & (x < hand_width) & (y >= 0) & (y < hand_height)
    return torch.stack(columns, dim=-1), inside


def translation_aligned(prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Shift each sample's ``prediction`` (B, J, 2) by its mean offset to ``target`` over valid joints.

    Samples without any valid joint are left unchanged (offset 0), as in Hand4Whole.
    """
    weights = _joint_mask(valid).to(prediction.dtype)
    count = weights.sum(dim=1)
    offset = ((target - prediction) * weights).sum(dim=1) / count.clamp_min(1.0)
    return prediction + offset[:, None, :]


class WholeBodyLoss(nn.Module):
    """Hand4Whole's loss terms (docs/design/pipeline.md §6), weighted by :class:`LossWeights`.

    Calling it returns ``{term: weighted scalar}``; the training objective is their sum.
    ``rotations`` chooses how ``smplx_pose`` compares rotations (:func:`rotation_l1`; ``"axis_angle"``
    is Hand4Whole's exact term).
    """

    def __init__(
        self,
        weights: LossWeights | None = None,
        geometry: HeatmapGeometry | None = None,
        rotations: RotationLoss = "matrix",
    ) -> None:
        super().__init__()
        self.weights = weights or LossWeights()
        self.geometry = geometry or HeatmapGeometry()
        self.rotations = rotations

    def forward(
        self, output: Any, targets: Mapping[str, torch.Tensor], meta_info: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Compute every term with a non-zero weight.

        Args:
            output: a ``WholeBodyOutput`` (attribute access) with the fields listed in the module
                docstring; it must have been produced with a body model attached.
            targets: the batch's ``targets`` dict.
            meta_info: the batch's ``meta_info`` dict.
        """
        weights = self.weights.as_dict()
        joint_cam = output.joint_cam.float()
        batch = joint_cam.shape[0]
        is_3d = _sample_flag(meta_info["is_3D"], batch, joint_cam)
        terms: dict[str, torch.Tensor] = {}

        pose = predicted_pose(output)
        terms["smplx_pose"] = rotation_l1(
            pose, targets["smplx_pose"], meta_info["smplx_pose_valid"], self.rotations
        )
        for name in ("shape", "expr"):
            valid = _sample_flag(meta_info[f"smplx_{name}_valid"], batch, joint_cam)[:, None]
            terms[f"smplx_{name}"] = masked_l1(getattr(output, name).float(), targets[f"smplx_{name}"], valid)

        joint_valid = _joint_mask(meta_info["joint_valid"]) * is_3d.reshape(-1, 1, 1)
        terms["joint_cam"] = coordinate_l1(joint_cam, targets["joint_cam"], joint_valid)
        terms["smplx_joint_cam"] = coordinate_l1(
            joint_cam, targets["smplx_joint_cam"], _joint_mask(meta_info["smplx_joint_valid"])
        )

        for part in _BOX_PARTS:
            valid = _sample_flag(meta_info[f"{part}_bbox_valid"], batch, joint_cam)[:, None]
            terms[f"{part}_bbox"] = sum(
                masked_l1(
                    getattr(output, f"{part}_bbox_{kind}").float(), targets[f"{part}_bbox_{kind}"], valid
                )
                for kind in ("center", "size")
            )

        image_terms = self._image_space_terms(output, targets, meta_info, is_3d)
        terms.update(image_terms)
        return {name: value * weights[name] for name, value in terms.items() if weights[name] != 0}

    def _image_space_terms(
        self,
        output: Any,
        targets: Mapping[str, torch.Tensor],
        meta_info: Mapping[str, torch.Tensor],
        is_3d: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        hand_boxes = (
            (joint_sets.LHAND_SLICE, output.lhand_bbox.detach().float()),
            (joint_sets.RHAND_SLICE, output.rhand_bbox.detach().float()),
        )
        coords = {name: targets[name].clone() for name in ("joint_img", "smplx_joint_img")}
        truncs = {
            "joint_img": _joint_mask(meta_info["joint_trunc"]).clone().float(),
            "smplx_joint_img": _joint_mask(meta_info["smplx_joint_trunc"]).clone().float(),
        }
        projected = output.joint_proj.float().clone()
        for part, boxes in hand_boxes:
            for name in coords:
                in_crop, inside = boxes_to_hand_units(coords[name][:, part], boxes, self.geometry)
                coords[name][:, part] = in_crop
                truncs[name][:, part] = truncs[name][:, part] * inside.unsqueeze(-1)
            projected[:, part], _ = boxes_to_hand_units(projected[:, part], boxes, self.geometry)
        for part in (joint_sets.LHAND_SLICE, joint_sets.RHAND_SLICE, joint_sets.FACE_SLICE):
            projected[:, part] = translation_aligned(
                projected[:, part], coords["joint_img"][:, part, :2], truncs["joint_img"][:, part]
            )

        positions = slice(0, joint_sets.NUM_POS_JOINTS)
        joint_img = output.joint_img.float()
        return {
            "joint_proj": coordinate_l1(projected, coords["joint_img"][..., :2], truncs["joint_img"]),
            "joint_img": coordinate_l1(
                joint_img, coords["joint_img"][:, positions], truncs["joint_img"][:, positions], is_3d
            ),
            "smplx_joint_img": coordinate_l1(
                joint_img, coords["smplx_joint_img"][:, positions], truncs["smplx_joint_img"][:, positions]
            ),
        }
