"""Differentiable geometry of the Hand4Whole heads (docs/design/pipeline.md §5).

* :func:`soft_argmax_3d` / :func:`soft_argmax_2d` — expected position under a softmax over every cell
  of a joint's heatmap (integral regression, Sun et al. 2018), coordinates ordered (x, y[, z]).
* :func:`sample_features` — bilinear feature sampling at joint positions given in cell units.
* :func:`rot6d_to_rotmat` — the 6-D rotation representation (Zhou et al. 2019) to a rotation matrix.
* :func:`rotmat_to_axis_angle` — rotation matrix to axis-angle through a quaternion.

**Cell units.** Cell ``i`` of a grid spans ``[i, i + 1)``, so its centre is ``i + 0.5`` and a grid of
``W`` cells covers ``[0, W]``: exactly the units of the data's targets (pixel position / stride). Hand4Whole's
soft-argmax returns the expected cell *index* instead (the centre of cell ``i`` at ``i``), half a cell off
its own targets and unable to reach the outer half cells; on its 8×6 body heatmap that costs little, but on
the 4×3 body and 2×2 hand heatmaps of the small CPU models the predictable range shrinks by a third to
a half (a 1×1 heatmap could only ever predict 0). Expected positions remove that mismatch at any size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "rot6d_to_axis_angle",
    "rot6d_to_axis_angles",
    "rot6d_to_rotmat",
    "rotmat_to_axis_angle",
    "sample_features",
    "soft_argmax_2d",
    "soft_argmax_3d",
]


def _expected_position(probabilities: torch.Tensor, dim: int) -> torch.Tensor:
    """Expected position along ``dim`` (cell ``i`` centred at ``i + 0.5``) of a probability volume."""
    size = probabilities.shape[dim]
    centres = torch.arange(size, dtype=probabilities.dtype, device=probabilities.device) + 0.5
    shape = [1] * probabilities.dim()
    shape[dim] = size
    weighted = probabilities * centres.view(shape)
    return weighted.flatten(2).sum(dim=2)


def soft_argmax_3d(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-argmax of 3-D heatmaps ``(B, J, D, H, W)``.

    Returns ``(coordinates, probabilities)``: coordinates ``(B, J, 3)`` ordered (x, y, z) in cell units
    (x in [0.5, W - 0.5], y in [0.5, H - 0.5], z in [0.5, D - 0.5]; see the module docstring) and the
    per-joint softmax over all D·H·W cells, in the heatmaps' shape.
    """
    batch, joints = heatmaps.shape[:2]
    probabilities = F.softmax(heatmaps.reshape(batch, joints, -1), dim=2).reshape(heatmaps.shape)
    x = _expected_position(probabilities, 4)
    y = _expected_position(probabilities, 3)
    z = _expected_position(probabilities, 2)
    return torch.stack((x, y, z), dim=2), probabilities


def soft_argmax_2d(heatmaps: torch.Tensor) -> torch.Tensor:
    """Soft-argmax of 2-D heatmaps ``(B, J, H, W)``: ``(B, J, 2)`` positions (x, y) in pixel units."""
    batch, joints = heatmaps.shape[:2]
    probabilities = F.softmax(heatmaps.reshape(batch, joints, -1), dim=2).reshape(heatmaps.shape)
    return torch.stack((_expected_position(probabilities, 3), _expected_position(probabilities, 2)), dim=2)


def sample_features(features: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample ``features (B, C, H, W)`` at ``xy (B, J, 2)`` given in cell units -> ``(B, J, C)``.

    Cell ``i``'s value sits at its centre ``i + 0.5`` (``grid_sample`` with ``align_corners=False``);
    positions beyond the outer centres read the border cells.
    """
    height, width = features.shape[-2:]
    grid = (2.0 * xy / xy.new_tensor([width, height]) - 1.0).unsqueeze(2)  # (B, J, 1, 2)
    sampled = F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled.squeeze(3).transpose(1, 2)


def rot6d_to_rotmat(rot6d: torch.Tensor) -> torch.Tensor:
    """Convert 6-D rotations ``(..., 6)`` to rotation matrices ``(..., 3, 3)`` (docs/design/pipeline.md §5.5).

    The six numbers are read as a 3×2 matrix in row-major order; its two columns are orthonormalised by
    Gram–Schmidt and completed by their cross product, which become the matrix's columns.
    """
    pairs = rot6d.reshape(*rot6d.shape[:-1], 3, 2)
    first = F.normalize(pairs[..., 0], dim=-1)
    second = pairs[..., 1]
    second = F.normalize(second - (first * second).sum(dim=-1, keepdim=True) * first, dim=-1)
    third = torch.cross(first, second, dim=-1)
    return torch.stack((first, second, third), dim=-1)


def _quaternion_from_rotmat(rotmat: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (w, x, y, z) with w >= 0 from rotation matrices, by Shepperd's stable branches."""
    m = rotmat
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # Four candidate scaled quaternions; the one with the largest diagonal term is numerically safe.
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # Four candidate scaled quaternions; the one with the largest diagonal term is numerically safe.
    candidates = torch.stack(
        (
            torch.stack((1 + trace, m21 - m12, m02 - m20, m10 - m01), dim=-1),
            torch.stack((m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20), dim=-1),
            torch.stack((m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21), dim=-1),
            torch.stack((m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22), dim=-1),
        ),
        dim=-2,
    )
    diagonal = torch.stack((trace, m00, m11, m22), dim=-1)
    best = diagonal.argmax(dim=-1, keepdim=True)
    chosen = torch.gather(candidates, -2, best.unsqueeze(-1).expand(*best.shape, 4)).squeeze(-2)
    quaternion = F.normalize(chosen, dim=-1)
    return torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)


def rotmat_to_axis_angle(rotmat: torch.Tensor) -> torch.Tensor:
    """Convert rotation matrices ``(..., 3, 3)`` to axis-angle vectors ``(..., 3)`` (angle in [0, π]).

    Goes through a unit quaternion (as Hand4Whole does); the identity maps to zero with a finite
    gradient (small-angle series of angle / sin(angle / 2)).
    """
    quaternion = _quaternion_from_rotmat(rotmat)
    vector = quaternion[..., 1:]
    sin_half = vector.norm(dim=-1, keepdim=True)
    cos_half = quaternion[..., :1]
    angle = 2.0 * torch.atan2(sin_half, cos_half)
    small = sin_half < 1e-6
    safe_sin = torch.where(small, torch.ones_like(sin_half), sin_half)
    # angle / sin(angle/2) -> 2 + angle²/12 near zero (series of 2·(θ/2)/sin(θ/2)).
    factor = torch.where(small, 2.0 + angle.square() / 12.0, angle / safe_sin)
    return vector * factor


def rot6d_to_axis_angle(rot6d: torch.Tensor) -> torch.Tensor:
    """Convert 6-D rotations ``(..., 6)`` to axis-angle ``(..., 3)``."""
    return rotmat_to_axis_angle(rot6d_to_rotmat(rot6d))


def rot6d_to_axis_angles(*rot6d: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """:func:`rot6d_to_axis_angle` of each tensor ``(..., 6)``, as one conversion of all of them.

    Every rotation is converted on its own, so the values are those of separate calls; one call
    of about 50 small ops instead of one per tensor (the whole-body heads' four: 0.67 -> 0.21 ms).
    """
    flat = torch.cat([r.reshape(-1, 6) for r in rot6d])
    converted = rot6d_to_axis_angle(flat).split([r[..., 0].numel() for r in rot6d])
    return tuple(c.reshape(*r.shape[:-1], 3) for c, r in zip(converted, rot6d, strict=True))
