"""The Hand4Whole pipeline as one module (docs/design/pipeline.md §1–§5), full precision or binarized.

``WholeBodyNet(config)(images)`` takes person crops (B, 3, 2·H_b, 2·W_b) in [0, 1] (512×384 at paper
size; no mean/std normalisation) and returns a :class:`WholeBodyOutput`:

1. body image = nearest resize of the crop to ``body_input``; body encoder -> body feature;
2. body PositionNet -> 25 body joints (heatmap cells) and heatmap probabilities;
3. BoxNet (detached heatmaps) -> hand/face centres and sizes; restored to square enlarged boxes
   (detached), scaled ×2 to crop pixels; RoI-align of the two hands and the face from the crop;
4. left-hand crops are mirrored so the hand encoder only sees right hands; hand PositionNet -> 20
   joints per hand, hand RotationNet -> 15 finger rotations (6D) per hand;
5. un-mirroring of the left hand: joints x -> W_h - x, feature maps flipped back, axis-angle
   (x, y, z) -> (x, -y, -z);
6. body RotationNet (body joints and the hands' 4 MCP joints) -> root, 21 body rotations, shape,
   camera; FaceRegressor -> expression and jaw;
7. with a body model attached (:meth:`WholeBodyNet.attach_body_model`): SMPL-X mesh and the 137
   supervision joints, made relative per part, and their projections.

Units. ``joint_img``: body joints in body-heatmap cells (cell ``i`` spans ``[i, i + 1)``: x in [0, W],
y in [0, H], z in [0, D]; 8×8×6 at paper size), hand joints in their own hand-crop heatmap cells (8×8×8),
the units of the data's targets (:mod:`bidrn.nets.geometry` explains why not Hand4Whole's cell indices).
Boxes: ``*_bbox`` are the xyxy boxes actually cropped, in crop pixels (detached);
``*_bbox_center`` / ``*_bbox_size`` are BoxNet's raw outputs in body-heatmap cells (the box loss).
Camera: a virtual pinhole camera of the canonical 256×192 body image (focal 5000 px, principal point
at its centre); ``cam_trans = (t_x, t_y, k·sigmoid(γ))`` in metres with
``k = sqrt(f_x·f_y·2.5² / (256·192))``; ``joint_proj`` are the projected joints in body-heatmap cells.
The camera stays canonical for reduced input sizes, so parameters mean the same at every size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from bidrn.body.joint_sets import (
    BODY_ROOT,
    BODY_SLICE,
    FACE_ROOT,
    FACE_SLICE,
    HAND_MCP_INDICES,
    LHAND_ROOT,
    LHAND_SLICE,
    RHAND_ROOT,
    RHAND_SLICE,
)
from bidrn.nets.bidrn import BiDRNEncoder
from bidrn.nets.binary_resnet import binary_resnet
from bidrn.nets.boxnet import BoxNet
from bidrn.nets.config import EncoderConfig, WholeBodyConfig
from bidrn.nets.geometry import rot6d_to_axis_angles
from bidrn.nets.heads import BodyRotationNet, FaceRegressor, HandRotationNet, PositionNet
from bidrn.nets.resnet import ResNet
from bidrn.nets.roi import restore_boxes, roi_align

__all__ = [
    "CAMERA_DEPTH_RANGE",
    "CANONICAL_BODY_INPUT",
    "FOCAL",
    "WholeBodyNet",
    "WholeBodyOutput",
    "build_encoder",
    "camera_translation",
    "project_joints",
]

CANONICAL_BODY_INPUT = (256, 192)
"""(H, W) of the body image the virtual camera is defined on (Hand4Whole's ``input_body_shape``)."""
FOCAL = (5000.0, 5000.0)
"""Virtual focal length (f_x, f_y) in canonical body-image pixels."""
CAMERA_DEPTH_RANGE = 2.5
"""``camera_3d_size`` (m): scales the depth of the camera translation."""

_BODY_JOINTS = 25
_HAND_JOINTS = 20
_HAND_ROTATIONS = 15
_BODY_ROTATIONS = 21
_FEATURE_STRIDE = 32


@dataclass
class WholeBodyOutput:
    """Predictions of :class:`WholeBodyNet` for a batch of B crops (see the module docstring for units).

    Rotations are axis-angle; hand poses are offsets from the SMPL-X mean hand (``flat_hand_mean=False``).
    ``mesh_cam``, ``joint_cam`` and ``joint_proj`` are ``None`` unless a body model is attached.
    """

    root_pose: torch.Tensor
    """(B, 3) global orientation."""
    body_pose: torch.Tensor
    """(B, 63) 21 body joints."""
    lhand_pose: torch.Tensor
    """(B, 45) 15 left-hand joints."""
    rhand_pose: torch.Tensor
    """(B, 45) 15 right-hand joints."""
    jaw_pose: torch.Tensor
    """(B, 3) jaw."""
    shape: torch.Tensor
    """(B, 10) SMPL-X β."""
    expr: torch.Tensor
    """(B, 10) SMPL-X ψ."""
    cam_trans: torch.Tensor
    """(B, 3) camera translation (m)."""
    joint_img: torch.Tensor
    """(B, 65, 3) PositionNet joints: 25 body (body cells), 20 + 20 hand (hand-crop cells)."""
    lhand_bbox: torch.Tensor
    """(B, 4) left-hand box cropped, xyxy in crop pixels."""
    rhand_bbox: torch.Tensor
    """(B, 4) right-hand box cropped, xyxy in crop pixels."""
    face_bbox: torch.Tensor
    """(B, 4) face box cropped, xyxy in crop pixels."""
    lhand_bbox_center: torch.Tensor
    """(B, 2) BoxNet's left-hand centre in body-heatmap cells."""
    lhand_bbox_size: torch.Tensor
    """(B, 2) BoxNet's left-hand (w, h) in body-heatmap cells."""
    rhand_bbox_center: torch.Tensor
    """(B, 2) right-hand centre."""
    rhand_bbox_size: torch.Tensor
    """(B, 2) right-hand size."""
    face_bbox_center: torch.Tensor
    """(B, 2) face centre."""
    face_bbox_size: torch.Tensor
    """(B, 2) face size."""
    mesh_cam: torch.Tensor | None = None
    """(B, V, 3) SMPL-X vertices plus ``cam_trans`` (m); not computed in training mode."""
    joint_cam: torch.Tensor | None = None
    """(B, 137, 3) supervision joints: body pelvis-relative, hands wrist-relative, face neck-relative."""
    joint_proj: torch.Tensor | None = None
    """(B, 137, 2) projections of the (absolute) supervision joints, body-heatmap cells."""

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The fields that are set, by name (Hand4Whole's output dictionary)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def concatenate(cls, parts: Sequence[WholeBodyOutput]) -> WholeBodyOutput:
        """The outputs of consecutive batches as the output of one batch (fields set in all parts)."""
        values = {}
        for field in fields(cls):
            tensors = [getattr(part, field.name) for part in parts]
            values[field.name] = None if any(t is None for t in tensors) else torch.cat(tensors)
        return cls(**values)


def build_encoder(config: EncoderConfig, width: float) -> nn.Module:
    """The encoder an :class:`EncoderConfig` describes (pruning is applied by the registry)."""
    if config.kind == "resnet":
        return ResNet(config.depth, width)
    if config.kind == "binary_resnet":
        return binary_resnet(config.depth, config.method, width)
    if config.kind == "bidrn":
        return BiDRNEncoder(config, width)
    raise ValueError(f"unknown encoder kind {config.kind!r}")


def camera_translation(camera: torch.Tensor) -> torch.Tensor:
    """(B, 3) camera parameters (t_x, t_y, γ) -> translation (t_x, t_y, k·sigmoid(γ)) in metres."""
    area = CANONICAL_BODY_INPUT[0] * CANONICAL_BODY_INPUT[1]
    k = math.sqrt(FOCAL[0] * FOCAL[1] * CAMERA_DEPTH_RANGE**2 / area)
    return torch.cat((camera[:, :2], k * torch.sigmoid(camera[:, 2:])), dim=1)


def project_joints(
    joints: torch.Tensor, cam_trans: torch.Tensor, heatmap_shape: tuple[int, int]
) -> torch.Tensor:
    """Project (B, J, 3) joints (body-model frame) translated by ``cam_trans`` -> (B, J, 2) heatmap cells."""
    height, width = CANONICAL_BODY_INPUT
    points = joints + cam_trans[:, None, :]
    depth = points[..., 2] + 1e-4
    u = points[..., 0] / depth * FOCAL[0] + width / 2
    v = points[..., 1] / depth * FOCAL[1] + height / 2
    return torch.stack((u * heatmap_shape[1] / width, v * heatmap_shape[0] / height), dim=-1)


def _feature_size(size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of an encoder's output for an input of ``size``: every stride-2 layer rounds up."""
    return (-(-size[0] // _FEATURE_STRIDE), -(-size[1] // _FEATURE_STRIDE))


def _hidden(channels: int, width: float) -> int:
    return max(1, round(channels * width))


class WholeBodyNet(nn.Module):
    """Hand4Whole-style whole-body network (see the module docstring).

    Args:
        config: encoders, BoxNet, width and input sizes.
        body_model: optional SMPL-X layer (``bidrn.body.load_body_model()``) for meshes and joints.
    """

    def __init__(self, config: WholeBodyConfig, body_model: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        width = config.width
        depth = config.heatmap_depth
        if min(*config.body_input, *config.hand_input, *config.face_input) < _FEATURE_STRIDE:
            raise ValueError(
                f"inputs must be at least {_FEATURE_STRIDE} pixels per side; got body {config.body_input}, "
                f"hand {config.hand_input}, face {config.face_input}"
            )
        self.body_heatmap = _feature_size(config.body_input)
        self.hand_heatmap = _feature_size(config.hand_input)

        self.body_encoder = build_encoder(config.body, width)
        self.hand_encoder = build_encoder(config.hand, width)
        self.face_encoder = build_encoder(config.face, width)
        body_channels = self.body_encoder.out_channels
        hand_channels = self.hand_encoder.out_channels
        hidden = _hidden(512, width)

        self.body_position = PositionNet(body_channels, _BODY_JOINTS, depth)
        self.boxnet = BoxNet(body_channels, _BODY_JOINTS * depth, _hidden(256, width), config.boxnet)
        self.hand_position = PositionNet(hand_channels, _HAND_JOINTS, depth)
        self.hand_rotation = HandRotationNet(hand_channels, hidden, _HAND_JOINTS, _HAND_ROTATIONS)
        self.body_rotation = BodyRotationNet(body_channels, hand_channels, hidden, _BODY_JOINTS,
                                             len(HAND_MCP_INDICES), _BODY_ROTATIONS)  # fmt: skip
        self.face_regressor = FaceRegressor(self.face_encoder.out_channels)
        self._body_model: nn.Module | None = None
        if body_model is not None:
            self.attach_body_model(body_model)
        self.inference_batch: int | None = None
        """In eval mode, run larger batches this many crops at a time (``None``: whole). Frozen models
        on CPU use 2 (:func:`bidrn.deploy.freeze`): a batch of 8 paper-size crops has activations of
        67 MB, beyond the caches and beyond glibc's 32 MB limit for reusing freed memory, so every
        call faulted fresh pages in (135 000 page faults, 0.3 s of system time per call)."""

    @property
    def body_model(self) -> nn.Module | None:
        """The attached SMPL-X layer, or ``None``."""
        return self._body_model

    def attach_body_model(self, body_model: nn.Module | None) -> None:
        """Attach an SMPL-X layer so that outputs include ``mesh_cam``, ``joint_cam`` and ``joint_proj``.

        The layer is kept outside the module tree: it is not part of the network's parameters, state
        dict or complexity, and it is moved to the images' device when it runs. ``None`` detaches it.
        """
        object.__setattr__(self, "_body_model", body_model)

    # -- pipeline stages ----------------------------------------------------------------------
    def _crop_boxes(self, centers: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """(B, 3, 4) detached xyxy boxes in crop pixels for left hand, right hand, face."""
        config = self.config
        hand_aspect = config.hand_input[1] / config.hand_input[0]
        face_aspect = config.face_input[1] / config.face_input[0]
        hands = restore_boxes(centers[:, :2], sizes[:, :2], self.body_heatmap, config.body_input,
                              hand_aspect, config.hand_box_scale)  # fmt: skip
        face = restore_boxes(centers[:, 2:], sizes[:, 2:], self.body_heatmap, config.body_input,
                             face_aspect, config.face_box_scale)  # fmt: skip
        return (torch.cat((hands, face), dim=1) * 2.0).detach()  # body input -> crop pixels

    def _unmirror_joints(self, joints: torch.Tensor) -> torch.Tensor:
        """Left-hand joints found on the mirrored crop, back in the un-mirrored crop (x -> W - x)."""
        return torch.cat((self.hand_heatmap[1] - joints[..., :1], joints[..., 1:]), dim=-1)

    def forward(self, images: torch.Tensor, with_mesh: bool | None = None) -> WholeBodyOutput:
        """Run the whole pipeline on person crops (B, 3, 2·H_b, 2·W_b) in [0, 1].

        With a body model attached, ``with_mesh`` chooses whether ``mesh_cam`` is computed (the joints
        always are); by default it is in eval mode and skipped in training mode, where no loss reads it.
        """
        config = self.config
        batch = images.shape[0]
        if tuple(images.shape[1:]) != (3, *config.crop_input):
            raise ValueError(f"expected images (B, 3, {config.crop_input[0]}, {config.crop_input[1]}), "
                             f"got {tuple(images.shape)}")  # fmt: skip
        step = self.inference_batch
        if step is not None and not self.training and batch > step:
            parts = [self(images[start : start + step], with_mesh) for start in range(0, batch, step)]
            return WholeBodyOutput.concatenate(parts)

        body_image = F.interpolate(images, size=config.body_input, mode="nearest")
        body_features = self.body_encoder(body_image)
        body_joints, body_heatmaps = self.body_position(body_features)

        boxes = self.boxnet(body_features, body_heatmaps.detach())
        crop_boxes = self._crop_boxes(boxes.centers, boxes.sizes)
        hand_boxes = torch.cat((crop_boxes[:, 0], crop_boxes[:, 1]), dim=0)
        hand_crops = roi_align(torch.cat((images, images), dim=0), hand_boxes, config.hand_input)
        hand_crops = torch.cat((hand_crops[:batch].flip(3), hand_crops[batch:]), dim=0)
        face_crop = roi_align(images, crop_boxes[:, 2], config.face_input)

        hand_features = self.hand_encoder(hand_crops)
        hand_joints, _ = self.hand_position(hand_features)
        hand_rot6d = self.hand_rotation(hand_features, hand_joints.detach())
        lhand_joints = self._unmirror_joints(hand_joints[:batch])
        rhand_joints = hand_joints[batch:]
        lhand_features = hand_features[:batch].flip(3)
        rhand_features = hand_features[batch:]

        mcp = list(HAND_MCP_INDICES)
        root6d, body6d, shape, camera = self.body_rotation(
            body_features, body_joints.detach(),
            lhand_features, lhand_joints[:, mcp].detach(),
            rhand_features, rhand_joints[:, mcp].detach(),
        )  # fmt: skip
        expr, jaw6d = self.face_regressor(self.face_encoder(face_crop))
        hand_pose, root_pose, body_pose, jaw_pose = rot6d_to_axis_angles(hand_rot6d, root6d, body6d, jaw6d)
        lhand_pose = hand_pose[:batch] * hand_pose.new_tensor([1.0, -1.0, -1.0])  # un-mirrored

        output = WholeBodyOutput(
            root_pose=root_pose,
            body_pose=body_pose.flatten(1),
            lhand_pose=lhand_pose.flatten(1),
            rhand_pose=hand_pose[batch:].flatten(1),
            jaw_pose=jaw_pose,
            shape=shape,
            expr=expr,
            cam_trans=camera_translation(camera),
            joint_img=torch.cat((body_joints, lhand_joints, rhand_joints), dim=1),
            lhand_bbox=crop_boxes[:, 0],
            rhand_bbox=crop_boxes[:, 1],
            face_bbox=crop_boxes[:, 2],
            lhand_bbox_center=boxes.centers[:, 0],
            lhand_bbox_size=boxes.sizes[:, 0],
            rhand_bbox_center=boxes.centers[:, 1],
            rhand_bbox_size=boxes.sizes[:, 1],
            face_bbox_center=boxes.centers[:, 2],
            face_bbox_size=boxes.sizes[:, 2],
        )
        if self.body_model is not None:
            self._add_mesh(output, with_mesh=not self.training if with_mesh is None else with_mesh)
        return output

    def _add_mesh(self, output: WholeBodyOutput, with_mesh: bool) -> None:
        """Body model -> ``joint_cam``, ``joint_proj`` and, ``with_mesh``, ``mesh_cam``.

        See docs/design/pipeline.md §5. Without the mesh only the joints' vertices are skinned
        (:class:`bidrn.body.SMPLXLayer`).
        """
        assert self._body_model is not None
        body_model = self._body_model.to(output.shape.device)
        zeros = torch.zeros_like(output.jaw_pose)
        smplx = body_model(
            with_vertices=with_mesh,
            betas=output.shape,
            global_orient=output.root_pose,
            body_pose=output.body_pose,
            left_hand_pose=output.lhand_pose,
            right_hand_pose=output.rhand_pose,
            jaw_pose=output.jaw_pose,
            leye_pose=zeros,
            reye_pose=zeros,
            expression=output.expr,
        )
        joints = smplx.supervision_joints
        output.joint_proj = project_joints(joints, output.cam_trans, self.body_heatmap)
        if smplx.vertices is not None:
            output.mesh_cam = smplx.vertices + output.cam_trans[:, None, :]
        relative = joints - joints[:, BODY_ROOT : BODY_ROOT + 1]
        parts = (
            relative[:, BODY_SLICE],
            relative[:, LHAND_SLICE] - relative[:, LHAND_ROOT : LHAND_ROOT + 1],
            relative[:, RHAND_SLICE] - relative[:, RHAND_ROOT : RHAND_ROOT + 1],
            relative[:, FACE_SLICE] - relative[:, FACE_ROOT : FACE_ROOT + 1],
        )
        output.joint_cam = torch.cat(parts, dim=1)
