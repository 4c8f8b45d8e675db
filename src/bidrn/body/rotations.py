"""Axis-angle rotations for the SMPL-X layer (Rodrigues' formula)."""

from __future__ import annotations

import torch

_SMALL_ANGLE = 1e-6


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` from axis-angle vectors ``(..., 3)`` (Rodrigues' formula).

    ``R = I + sin(θ)/θ · K + (1 − cos θ)/θ² · K²`` with ``K`` the cross-product matrix of the
    vector and ``θ`` its length. Below ``θ = 1e-6`` the two coefficients use their Taylor series, so
    the function and its gradient are finite at zero.
    """
    theta_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)
    small = theta_sq < _SMALL_ANGLE**2
    theta_sq_safe = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    theta = theta_sq_safe.sqrt()
    sin_coef = torch.where(small, 1.0 - theta_sq / 6.0, torch.sin(theta) / theta)
    cos_coef = torch.where(small, 0.5 - theta_sq / 24.0, (1.0 - torch.cos(theta)) / theta_sq_safe)
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), dim=-1).reshape(*axis_angle.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + sin_coef[..., None] * K + cos_coef[..., None] * (K @ K)
