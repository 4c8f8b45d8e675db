"""The dataset-independent person record every loader produces, and its horizontal mirror.

A :class:`PersonRecord` holds one person of one image in the *original* image's pixels and the
camera frame, before any cropping or augmentation. Every loader (synthetic shards, Human3.6M,
COCO-WholeBody, MPII, EHF, AGORA) turns its own files into these records; :mod:`bidrn.data.targets`
turns a record plus an :class:`~bidrn.data.augment.Augmentation` into the network's
``inputs`` / ``targets`` / ``meta_info`` dictionaries.

Joint arrays always use the 137-joint supervision set of :mod:`bidrn.body.joint_sets`
(``JOINT_NAMES``); a dataset with fewer joints fills the rest and marks them invalid. SMPL-X
parameters are axis-angle, in the camera frame, with ``flat_hand_mean=False`` (docs/design/body-model.md §2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bidrn.body import joint_sets

NUM_JOINTS = joint_sets.NUM_JOINTS
NUM_ROTATIONS = joint_sets.NUM_ROTATION_JOINTS


@dataclass
class SMPLXParams:
    """SMPL-X parameters of one person, camera frame, axis-angle (``flat_hand_mean=False``)."""

    root_pose: np.ndarray = field(default_factory=lambda: np.zeros(3))
    body_pose: np.ndarray = field(default_factory=lambda: np.zeros(63))
    lhand_pose: np.ndarray = field(default_factory=lambda: np.zeros(45))
    rhand_pose: np.ndarray = field(default_factory=lambda: np.zeros(45))
    jaw_pose: np.ndarray = field(default_factory=lambda: np.zeros(3))
    shape: np.ndarray = field(default_factory=lambda: np.zeros(10))
    expr: np.ndarray = field(default_factory=lambda: np.zeros(10))
    trans: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def __post_init__(self) -> None:
        sizes = {"root_pose": 3, "body_pose": 63, "lhand_pose": 45, "rhand_pose": 45, "jaw_pose": 3,
                 "shape": 10, "expr": 10, "trans": 3}  # fmt: skip
        for name, size in sizes.items():
            value = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
            if name in ("shape", "expr"):  # files may hold more coefficients; the model uses 10
                value = np.pad(value[:size], (0, max(0, size - value.size)))
            if value.shape != (size,):
                raise ValueError(f"SMPL-X {name} must have {size} values, got {value.size}")
            setattr(self, name, value)

    def pose(self) -> np.ndarray:
        """The 159-d pose vector ``root | body 21 | left hand 15 | right hand 15 | jaw``."""
        return np.concatenate(
            [self.root_pose, self.body_pose, self.lhand_pose, self.rhand_pose, self.jaw_pose]
        )

    @classmethod
    def from_pose(
        cls, pose: np.ndarray, shape: np.ndarray, expr: np.ndarray, trans: np.ndarray
    ) -> SMPLXParams:
        """Inverse of :meth:`pose` (plus the non-pose parameters)."""
        pose = np.asarray(pose, dtype=np.float64).reshape(-1)
        return cls(pose[0:3], pose[3:66], pose[66:111], pose[111:156], pose[156:159], shape, expr, trans)

    def as_dict(self) -> dict[str, list[float]]:
        """Plain-list form for JSON files."""
        return {f.name: getattr(self, f.name).tolist() for f in dataclasses.fields(self)}

    def mirrored(self) -> SMPLXParams:
        """Parameters of the body mirrored across the camera's X = 0 plane (horizontal flip).

        Rotations follow :func:`bidrn.body.joint_sets.flip_rotation_pose`. The translation's x is
        negated, which is exact when the model's rest-pose pelvis has x = 0 (true for SMPL-X and
        the stand-in to well under a millimetre); records carry mirrored joints, so no target
        depends on this approximation.
        """
        pose = joint_sets.flip_rotation_pose(self.pose().copy())
        return SMPLXParams.from_pose(pose, self.shape, self.expr, self.trans * np.array([-1.0, 1.0, 1.0]))


@dataclass
class PersonRecord:
    """One annotated person, in original-image pixels and the camera frame.

    Attributes:
        image_path: the image file this person appears in.
        image_size: ``(height, width)`` of that image in pixels.
        bbox: person box ``xywh`` as annotated (sanitised later, see :mod:`bidrn.data.geometry`).
        joints_2d: ``(137, 2)`` pixel coordinates of the dataset's own joints, mapped by name.
        joints_2d_valid: ``(137,)`` bool, which of them are annotated.
        joints_3d: ``(137, 3)`` camera-frame metres, or ``None`` for 2D-only datasets.
        joints_3d_valid: ``(137,)`` bool.
        smplx: SMPL-X parameters (camera frame) or ``None``.
        smplx_pose_valid: ``(53,)`` bool per rotated joint (pose-vector order).
        smplx_shape_valid / smplx_expr_valid: whether β / ψ may be supervised.
        smplx_joints_2d / smplx_joints_3d: ``(137, 2)`` pixels / ``(137, 3)`` camera-frame metres of the
            joints of the SMPL-X body given by ``smplx`` (``None`` until a body model computed them).
        smplx_joints_valid: ``(137,)`` bool.
        focal / princpt: intrinsics of the image ``(2,)`` each, pixels; ``None`` if unknown.
        lhand_box / rhand_box / face_box: ``xyxy`` pixels or ``None`` when not annotated.
        visibility: ``(137,)`` bool, which joints can be seen in the image (synthetic data), or ``None``.
        is_3d: whether ``joints_3d`` may supervise 3D coordinates.
        joints_from_smplx: the dataset's joints *are* the SMPL-X joints (AGORA, synthetic data):
            once a body model computes them they fill ``joints_*`` too.
        dataset: short dataset name; ``ann_id``: the annotation's id in its file.
    """

    image_path: Path
    image_size: tuple[int, int]
    bbox: np.ndarray
    joints_2d: np.ndarray
    joints_2d_valid: np.ndarray
    joints_3d: np.ndarray | None = None
    joints_3d_valid: np.ndarray | None = None
    smplx: SMPLXParams | None = None
    smplx_pose_valid: np.ndarray = field(default_factory=lambda: np.zeros(NUM_ROTATIONS, dtype=bool))
    smplx_shape_valid: bool = False
    smplx_expr_valid: bool = False
    smplx_joints_2d: np.ndarray | None = None
    smplx_joints_3d: np.ndarray | None = None
    smplx_joints_valid: np.ndarray = field(default_factory=lambda: np.zeros(NUM_JOINTS, dtype=bool))
    focal: np.ndarray | None = None
    princpt: np.ndarray | None = None
    lhand_box: np.ndarray | None = None
    rhand_box: np.ndarray | None = None
    face_box: np.ndarray | None = None
    visibility: np.ndarray | None = None
    is_3d: bool = False
    joints_from_smplx: bool = False
    dataset: str = ""
    ann_id: int | str = 0

    def mirrored(self) -> PersonRecord:
        """The same person after a horizontal flip of the image (``x -> W - 1 - x``).

        Joints are mirrored and their left/right names swapped (``FLIP_PERMUTATION``), the
        left-hand and right-hand boxes swap, 3D points get ``X -> -X`` and the principal point
        ``c_x -> W - 1 - c_x``, which keeps projection of the mirrored 3D joints exactly equal to
        the mirrored 2D joints. The person box is mirrored as the continuous interval
        ``[x, x + w]`` so that its centre maps like a joint. Mirroring twice returns the original.
        """
        width = self.image_size[1]
        perm = list(joint_sets.FLIP_PERMUTATION)

        def flip_2d(points: np.ndarray | None) -> np.ndarray | None:
            if points is None:
                return None
            out = points[perm].copy()
            out[:, 0] = width - 1 - out[:, 0]
            return out

        def flip_3d(points: np.ndarray | None) -> np.ndarray | None:
            if points is None:
                return None
            out = points[perm].copy()
            out[:, 0] = -out[:, 0]
            return out

        def flip_box(box: np.ndarray | None) -> np.ndarray | None:
            return None if box is None else np.array([width - 1 - box[2], box[1], width - 1 - box[0], box[3]])

        x, y, w, h = self.bbox
        return dataclasses.replace(
            self,
            bbox=np.array([width - 1 - x - w, y, w, h], dtype=np.float64),
            joints_2d=flip_2d(self.joints_2d),
            joints_2d_valid=self.joints_2d_valid[perm],
            joints_3d=flip_3d(self.joints_3d),
            joints_3d_valid=None if self.joints_3d_valid is None else self.joints_3d_valid[perm],
            smplx=None if self.smplx is None else self.smplx.mirrored(),
            smplx_pose_valid=self.smplx_pose_valid[list(joint_sets.ROTATION_FLIP_PERMUTATION)],
            smplx_joints_2d=flip_2d(self.smplx_joints_2d),
            smplx_joints_3d=flip_3d(self.smplx_joints_3d),
            smplx_joints_valid=self.smplx_joints_valid[perm],
            princpt=None
            if self.princpt is None
            else np.array([width - 1 - self.princpt[0], self.princpt[1]]),
            lhand_box=flip_box(self.rhand_box),
            rhand_box=flip_box(self.lhand_box),
            face_box=flip_box(self.face_box),
            visibility=None if self.visibility is None else self.visibility[perm],
        )


def empty_joints(dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero ``(137, dims)`` coordinates and an all-False ``(137,)`` validity mask."""
    return np.zeros((NUM_JOINTS, dims)), np.zeros(NUM_JOINTS, dtype=bool)


def map_joints_by_name(
    names: list[str] | tuple[str, ...], coords: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Scatter a dataset's joints into the 137 set by name; unknown names are dropped."""
    coords = np.asarray(coords, dtype=np.float64)
    out, out_valid = empty_joints(coords.shape[1])
    for source, name in enumerate(names):
        if name in _JOINT_INDEX:
            target = _JOINT_INDEX[name]
            out[target] = coords[source]
            out_valid[target] = bool(valid[source])
    return out, out_valid


_JOINT_INDEX = {name: i for i, name in enumerate(joint_sets.JOINT_NAMES)}
