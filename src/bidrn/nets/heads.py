"""Full-precision prediction heads of Hand4Whole (docs/design/pipeline.md §4.1, §4.3–§4.5).

All heads stay full precision in every variant (Fig. 3 draws them unchanged; the BNN row's 21.61 M
only adds up with full-precision heads, docs/design/complexity.md §5.1). ``hidden`` widths scale with the
model's width multiplier; joint counts and output sizes never change.
"""

from __future__ import annotations

import torch
from torch import nn

from bidrn.nets.geometry import sample_features, soft_argmax_3d

__all__ = [
    "BodyRotationNet",
    "FaceRegressor",
    "HandRotationNet",
    "PositionNet",
    "conv_bn_relu",
    "init_head_weights",
    "init_rotation_bias",
]

IDENTITY_6D = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
"""The identity rotation in the 6-D representation (:func:`bidrn.nets.geometry.rot6d_to_rotmat`)."""
FACING_CAMERA_6D = (1.0, 0.0, 0.0, -1.0, 0.0, 0.0)
"""A half turn about x: an upright body (SMPL-X y up) facing a camera whose y axis points down."""


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """1×1 Conv2d (with bias) · BatchNorm · ReLU, Hand4Whole's feature-reduction layer."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU())


def init_head_weights(module: nn.Module) -> None:
    """Hand4Whole's head init: conv weights N(0, 0.001), Linear N(0, 0.01), biases 0, BN γ = 1, β = 0.

    Meta-device tensors are skipped, as in :func:`bidrn.nets.resnet.init_resnet_weights`.
    """
    for child in module.modules():
        if any(p.is_meta for p in child.parameters(recurse=False)):
            continue
        if isinstance(child, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(child.weight, std=0.001)
            if child.bias is not None:
                nn.init.zeros_(child.bias)
        elif isinstance(child, nn.Linear):
            nn.init.normal_(child.weight, std=0.01)
            if child.bias is not None:
                nn.init.zeros_(child.bias)
        elif isinstance(child, nn.BatchNorm2d):
            nn.init.ones_(child.weight)
            nn.init.zeros_(child.bias)


def init_rotation_bias(layer: nn.Linear, rotation6d: tuple[float, ...]) -> None:
    """Start every 6-D rotation ``layer`` outputs at ``rotation6d`` (its bias, repeated per rotation).

    Hand4Whole's N(0, 0.01) weights and zero biases make the first 6-D outputs tiny random vectors,
    which Gram–Schmidt turns into uniformly random rotations; starting at the rest pose (and the root
    at an upright body facing the camera) spares the network from unlearning that noise.
    """
    if layer.bias.is_meta:
        return  # a skeleton that loading fills (see init_head_weights)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor(rotation6d).repeat(layer.out_features // 6))


class PositionNet(nn.Module):
    """1×1 conv to ``joints × depth`` heatmap channels, then 3-D soft-argmax (docs/design/pipeline.md §4.1).

    ``forward`` returns ``(coordinates (B, J, 3) as (x, y, z) in heatmap cells, probabilities
    (B, J, D, H, W))``; BoxNet consumes the probabilities.
    """

    def __init__(self, in_channels: int, joints: int, depth: int = 8) -> None:
        super().__init__()
        self.joints = joints
        self.depth = depth
        self.conv = nn.Conv2d(in_channels, joints * depth, 1)
        init_head_weights(self)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint coordinates and per-joint heatmap probabilities."""
        heatmaps = self.conv(features)
        batch, _, height, width = heatmaps.shape
        return soft_argmax_3d(heatmaps.view(batch, self.joints, self.depth, height, width))


def _joint_tokens(reduce: nn.Module, features: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
    """Reduced features sampled at the joints' (x, y), with the (x, y, z) appended: (B, J, C + 3)."""
    return torch.cat((sample_features(reduce(features), joints[..., :2]), joints), dim=2)


class HandRotationNet(nn.Module):
    """Finger rotations of one (right or mirrored left) hand, 15 × 6D (docs/design/pipeline.md §4.4)."""

    def __init__(self, in_channels: int, hidden: int = 512, joints: int = 20, rotations: int = 15) -> None:
        super().__init__()
        self.rotations = rotations
        self.reduce = conv_bn_relu(in_channels, hidden)
        self.pose = nn.Linear(joints * (hidden + 3), rotations * 6)
        init_head_weights(self)
        init_rotation_bias(self.pose, IDENTITY_6D)

    def forward(self, features: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
        """Hand feature map and (detached) hand joints -> (B, 15, 6) 6-D rotations."""
        tokens = _joint_tokens(self.reduce, features, joints)
        return self.pose(tokens.flatten(1)).view(-1, self.rotations, 6)


class BodyRotationNet(nn.Module):
    """Root and body rotations, shape and camera from body and hand features (docs/design/pipeline.md §4.3).

    Body-joint features plus the two hands' features at their four MCP joints (33 tokens of C+3) feed
    the root (6D) and 21 body-joint (6D) regressors; the globally pooled body feature feeds shape (10)
    and camera (3).
    """

    def __init__(
        self,
        body_channels: int,
        hand_channels: int,
        hidden: int = 512,
        body_joints: int = 25,
        mcp_joints: int = 4,
        body_rotations: int = 21,
        shape_params: int = 10,
    ) -> None:
        super().__init__()
        self.body_rotations = body_rotations
        tokens = (body_joints + 2 * mcp_joints) * (hidden + 3)
        self.shape = nn.Linear(body_channels, shape_params)
        self.camera = nn.Linear(body_channels, 3)
        self.body_reduce = conv_bn_relu(body_channels, hidden)
        self.lhand_reduce = conv_bn_relu(hand_channels, hidden)
        self.rhand_reduce = conv_bn_relu(hand_channels, hidden)
        self.root_pose = nn.Linear(tokens, 6)
        self.body_pose = nn.Linear(tokens, body_rotations * 6)
        init_head_weights(self)
        init_rotation_bias(self.root_pose, FACING_CAMERA_6D)
        init_rotation_bias(self.body_pose, IDENTITY_6D)

    def forward(
        self,
        body_features: torch.Tensor,
        body_joints: torch.Tensor,
        lhand_features: torch.Tensor,
        lhand_mcp: torch.Tensor,
        rhand_features: torch.Tensor,
        rhand_mcp: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns root (B, 6), body (B, 21, 6) 6-D rotations, shape (B, 10) and camera (B, 3) parameters.

        Joints are (detached) coordinates in their own feature map's cells; the left hand's features and
        joints must already be un-mirrored.
        """
        pooled = body_features.mean(dim=(2, 3))
        tokens = torch.cat(
            (
                _joint_tokens(self.body_reduce, body_features, body_joints),
                _joint_tokens(self.lhand_reduce, lhand_features, lhand_mcp),
                _joint_tokens(self.rhand_reduce, rhand_features, rhand_mcp),
            ),
            dim=1,
        ).flatten(1)
        body = self.body_pose(tokens).view(-1, self.body_rotations, 6)
        return self.root_pose(tokens), body, self.shape(pooled), self.camera(pooled)


class FaceRegressor(nn.Module):
    """Expression (10) and jaw rotation (6D) from the pooled face feature (docs/design/pipeline.md §4.5)."""

    def __init__(self, in_channels: int, expression_params: int = 10) -> None:
        super().__init__()
        self.expression = nn.Linear(in_channels, expression_params)
        self.jaw_pose = nn.Linear(in_channels, 6)
        init_head_weights(self)
        init_rotation_bias(self.jaw_pose, IDENTITY_6D)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Face feature map -> (expression (B, 10), jaw (B, 6))."""
        pooled = features.mean(dim=(2, 3))
        return self.expression(pooled), self.jaw_pose(pooled)
