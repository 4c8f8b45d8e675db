"""Shared builders for the data tests: a small scene with a person in front of a pinhole camera."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bidrn.body import joint_sets
from bidrn.data import geometry
from bidrn.data.sample import PersonRecord, SMPLXParams


def random_record(seed: int = 0, height: int = 240, width: int = 320) -> PersonRecord:
    """A person-sized cloud of 137 joints 3 m in front of a camera, with every annotation filled."""
    rng = np.random.default_rng(seed)
    focal = np.array([300.0, 300.0])
    princpt = np.array([width / 2 + 7.0, height / 2 - 5.0])
    joints = rng.normal(scale=[0.25, 0.5, 0.15], size=(joint_sets.NUM_JOINTS, 3)) + np.array([0.1, 0.0, 3.0])
    joints_2d = geometry.project(joints, focal, princpt)
    lo, hi = joints_2d.min(axis=0), joints_2d.max(axis=0)
    valid = rng.random(joint_sets.NUM_JOINTS) > 0.1
    params = SMPLXParams(
        root_pose=rng.normal(scale=0.5, size=3),
        body_pose=rng.normal(scale=0.2, size=63),
        lhand_pose=rng.normal(scale=0.2, size=45),
        rhand_pose=rng.normal(scale=0.2, size=45),
        jaw_pose=rng.normal(scale=0.1, size=3),
        shape=rng.normal(size=10),
        expr=rng.normal(size=10),
        trans=[0.1, 0.2, 3.0],
    )

    def box_around(part: slice) -> np.ndarray:
        pts = joints_2d[part]
        return np.concatenate([pts.min(axis=0) - 2, pts.max(axis=0) + 2])

    return PersonRecord(
        image_path=Path("unused.png"),
        image_size=(height, width),
        bbox=np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]]),
        joints_2d=joints_2d,
        joints_2d_valid=valid,
        joints_3d=joints,
        joints_3d_valid=valid.copy(),
        smplx=params,
        smplx_pose_valid=rng.random(joint_sets.NUM_ROTATION_JOINTS) > 0.2,
        smplx_shape_valid=True,
        smplx_expr_valid=True,
        smplx_joints_2d=joints_2d.copy(),
        smplx_joints_3d=joints.copy(),
        smplx_joints_valid=np.ones(joint_sets.NUM_JOINTS, dtype=bool),
        focal=focal,
        princpt=princpt,
        lhand_box=box_around(joint_sets.LHAND_SLICE),
        rhand_box=box_around(joint_sets.RHAND_SLICE),
        face_box=box_around(joint_sets.FACE_SLICE),
        is_3d=True,
        dataset="test",
        ann_id=1,
    )


def random_image(height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    """A smooth random RGB image (smooth so that bilinear warps are comparable)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3)).astype(np.float64)
    ys, xs = np.linspace(0, small.shape[0] - 1, height), np.linspace(0, small.shape[1] - 1, width)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, small.shape[0] - 1), np.minimum(x0 + 1, small.shape[1] - 1)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = small[y0][:, x0] * (1 - wx) + small[y0][:, x1] * wx
    bottom = small[y1][:, x0] * (1 - wx) + small[y1][:, x1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.uint8)


class RigidBody:
    """A stand-in "body model" with SMPL-X's rigid behaviour: joints = R_root (X - J0) + J0 + transl.

    J0 (the rest pelvis) moves with the shape, so camera-frame conversions that forget it fail.
    """

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.rest = rng.normal(scale=0.3, size=(joint_sets.NUM_JOINTS, 3))

    def __call__(self, betas=None, global_orient=None, transl=None, **_):
        import torch

        shape = np.zeros(10) if betas is None else betas[0].double().numpy()
        rest = self.rest + np.array([0.05 * shape[0], 0.2 + 0.03 * shape[1], -0.02 * shape[2]])
        root = rest[0]
        orient = np.zeros(3) if global_orient is None else global_orient[0].double().numpy()
        trans = np.zeros(3) if transl is None else transl[0].double().numpy()
        posed = (rest - root) @ geometry.axis_angle_to_matrix(orient).T + root + trans
        joints = torch.as_tensor(posed, dtype=torch.float32)[None]

        class Output:
            pass

        out = Output()
        out.joints = joints  # the pelvis is joint 0 in both sets here
        out.supervision_joints = joints
        return out


def write_image(path: Path, height: int, width: int, seed: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(random_image(height, width, seed)).save(path)
