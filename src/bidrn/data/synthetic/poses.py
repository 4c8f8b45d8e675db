"""Plausible random SMPL-X parameters: body poses, hand grasps, shapes, expressions, orientations.

Body poses are drawn from a small set of everyday archetypes (standing, walking, reaching,
waving, sitting, crouching, ...) chosen independently for the torso, each arm and the legs, then
perturbed by Gaussian noise and clipped to per-joint angle limits. Rotations are built as
``Rz Ry Rx`` Euler angles in each joint's SMPL-X frame (x: flexion for legs/spine, y: arm swing
forward/back, z: arm raise / leg abduction) and stored as axis-angle. Limits and archetypes are
written for the subject's left side; the right side mirrors them (``y, z -> -y, -z``).

Hands are posed from per-finger curl (0 = flat, 1 = fist) and a spread angle drawn from grasp
archetypes (open, relaxed, fist, point, pinch); the stored hand pose is the offset from the
model's mean hand (``flat_hand_mean=False``, architecture.md §3.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bidrn.body import joint_sets
from bidrn.data import geometry
from bidrn.data.sample import SMPLXParams

BODY_JOINTS = joint_sets.SMPLX_BODY_NAMES[1:]
"""The 21 joints of ``body_pose`` (SMPL-X joints 1..21)."""

Range = tuple[float, float]

_LIMITS_LEFT: dict[str, tuple[Range, Range, Range]] = {
    "hip": ((-1.9, 0.5), (-0.6, 0.6), (-0.3, 0.9)),
    "knee": ((0.0, 2.4), (-0.1, 0.1), (-0.1, 0.1)),
    "ankle": ((-0.6, 0.7), (-0.3, 0.3), (-0.3, 0.3)),
    "foot": ((-0.3, 0.3), (-0.05, 0.05), (-0.1, 0.1)),
    "collar": ((-0.2, 0.2), (-0.3, 0.3), (-0.3, 0.3)),
    "shoulder": ((-1.0, 1.0), (-1.6, 0.6), (-1.5, 1.0)),
    "elbow": ((-0.3, 0.3), (-2.4, 0.0), (-0.2, 0.2)),
    "wrist": ((-0.8, 0.8), (-0.4, 0.4), (-1.0, 0.8)),
}
_LIMITS_CENTRE: dict[str, tuple[Range, Range, Range]] = {
    "spine1": ((-0.2, 0.5), (-0.35, 0.35), (-0.25, 0.25)),
    "spine2": ((-0.2, 0.4), (-0.3, 0.3), (-0.2, 0.2)),
    "spine3": ((-0.2, 0.4), (-0.3, 0.3), (-0.2, 0.2)),
    "neck": ((-0.4, 0.5), (-0.6, 0.6), (-0.3, 0.3)),
    "head": ((-0.3, 0.4), (-0.5, 0.5), (-0.25, 0.25)),
}

#: Left-side mean Euler angles (x, y, z) per archetype; unspecified joints are 0.
_ARM_ARCHETYPES: dict[str, dict[str, tuple[float, float, float]]] = {
    "relaxed": {"shoulder": (0.0, -0.1, -1.25), "elbow": (0.0, -0.25, 0.0)},
    "a_pose": {"shoulder": (0.0, 0.0, -0.75), "elbow": (0.0, -0.15, 0.0)},
    "t_pose": {"shoulder": (0.0, 0.0, -0.05), "elbow": (0.0, -0.05, 0.0)},
    "raised": {"shoulder": (0.0, -0.2, 0.75), "elbow": (0.0, -0.4, 0.0)},
    "waving": {"shoulder": (0.0, -0.3, 0.45), "elbow": (0.0, -1.6, 0.0), "wrist": (0.0, 0.0, 0.3)},
    "reaching": {"shoulder": (0.0, -1.25, -0.35), "elbow": (0.0, -0.2, 0.0)},
    "holding": {"shoulder": (0.0, -0.45, -1.15), "elbow": (0.0, -1.7, 0.0)},
    "hand_on_hip": {"shoulder": (0.0, 0.35, -0.95), "elbow": (0.0, -1.7, 0.0), "wrist": (0.0, 0.0, 0.4)},
    "to_face": {"shoulder": (0.3, -0.9, -0.8), "elbow": (0.0, -2.2, 0.0)},
}
_LEG_ARCHETYPES: dict[str, dict[str, tuple[float, float, float]]] = {
    "standing": {"hip": (0.0, 0.0, 0.05)},
    "wide": {"hip": (0.0, 0.1, 0.35)},
    "step_forward": {"hip": (-0.45, 0.0, 0.05), "knee": (0.35, 0.0, 0.0)},
    "step_back": {"hip": (0.3, 0.0, 0.05), "knee": (0.6, 0.0, 0.0), "ankle": (-0.2, 0.0, 0.0)},
    "sitting": {"hip": (-1.5, 0.0, 0.1), "knee": (1.5, 0.0, 0.0)},
    "crouch": {"hip": (-1.7, 0.0, 0.25), "knee": (2.1, 0.0, 0.0), "ankle": (0.4, 0.0, 0.0)},
    "knee_up": {"hip": (-1.2, 0.0, 0.0), "knee": (1.3, 0.0, 0.0)},
}
_TORSO_ARCHETYPES: dict[str, dict[str, tuple[float, float, float]]] = {
    "upright": {},
    "lean_forward": {"spine1": (0.25, 0.0, 0.0), "spine2": (0.15, 0.0, 0.0)},
    "twist": {"spine1": (0.0, 0.2, 0.0), "spine2": (0.0, 0.2, 0.0), "spine3": (0.0, 0.1, 0.0)},
    "side_bend": {"spine1": (0.0, 0.0, 0.15), "spine2": (0.0, 0.0, 0.15)},
    "look_around": {"neck": (0.0, 0.35, 0.0), "head": (0.1, 0.25, 0.0)},
    "look_down": {"neck": (0.35, 0.0, 0.0), "head": (0.2, 0.0, 0.0)},
}
_ARM_WEIGHTS = {"relaxed": 3.0, "a_pose": 1.5, "t_pose": 0.7, "raised": 1.0, "waving": 1.0, "reaching": 1.0,
                "holding": 1.5, "hand_on_hip": 1.0, "to_face": 1.0}  # fmt: skip
_LEG_WEIGHTS = {"standing": 3.0, "wide": 1.5, "step_forward": 1.5, "step_back": 1.0, "sitting": 0.8,
                "crouch": 0.5, "knee_up": 0.5}  # fmt: skip


@dataclass(frozen=True)
class PoseConfig:
    """Spread of the random parameters.

    Attributes:
        body_noise: std (rad) of the Gaussian perturbation around an archetype.
        symmetric_prob: probability that both arms (and both legs) share one archetype.
        frontal_prob: probability of a near-frontal view (yaw ~ N(0, frontal_yaw_std)); otherwise
            the yaw is uniform over the circle.
        frontal_yaw_std: std (rad) of the near-frontal yaw.
        shape_std / shape_max: β ~ N(0, std) clipped to ±max (≤ 3 keeps it a valid target).
        expression_std / expression_max: ψ likewise.
        jaw_open_prob / jaw_max: probability and maximum angle (rad) of an open mouth.
    """

    body_noise: float = 0.12
    symmetric_prob: float = 0.5
    frontal_prob: float = 0.7
    frontal_yaw_std: float = 0.6
    shape_std: float = 1.0
    shape_max: float = 2.5
    expression_std: float = 0.8
    expression_max: float = 2.0
    jaw_open_prob: float = 0.4
    jaw_max: float = 0.35


def euler_to_axis_angle(angles: np.ndarray) -> np.ndarray:
    """``(..., 3)`` Euler (x, y, z) applied as ``Rz Ry Rx`` -> axis-angle."""
    angles = np.asarray(angles, dtype=np.float64)
    rx = geometry.axis_angle_to_matrix(angles[..., 0:1] * np.array([1.0, 0.0, 0.0]))
    ry = geometry.axis_angle_to_matrix(angles[..., 1:2] * np.array([0.0, 1.0, 0.0]))
    rz = geometry.axis_angle_to_matrix(angles[..., 2:3] * np.array([0.0, 0.0, 1.0]))
    return geometry.matrix_to_axis_angle(rz @ ry @ rx)


def _joint_kind(name: str) -> tuple[str, str | None]:
    """("hip", "left") for "left_hip"; ("spine1", None) for centre joints."""
    for side in ("left", "right"):
        if name.startswith(side + "_"):
            return name[len(side) + 1 :], side
    return name, None


def _limits(name: str) -> np.ndarray:
    kind, side = _joint_kind(name)
    table = _LIMITS_CENTRE if side is None else _LIMITS_LEFT
    limits = np.array(table[kind], dtype=np.float64)  # (3 axes, low/high)
    if side == "right":
        limits[1:] = -limits[1:, ::-1]
    return limits


_BODY_LIMITS = np.stack([_limits(name) for name in BODY_JOINTS])  # (21, 3, 2)


def _choose(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    probs = np.array([weights[n] for n in names])
    return names[rng.choice(len(names), p=probs / probs.sum())]


def sample_body_pose(rng: np.random.Generator, config: PoseConfig = PoseConfig()) -> np.ndarray:
    """A plausible ``(63,)`` axis-angle body pose (21 joints)."""
    symmetric = rng.random() < config.symmetric_prob
    left_arm = _choose(rng, _ARM_WEIGHTS)
    right_arm = left_arm if symmetric else _choose(rng, _ARM_WEIGHTS)
    left_leg = _choose(rng, _LEG_WEIGHTS)
    right_leg = left_leg if (symmetric or left_leg in ("sitting", "crouch")) else _choose(rng, _LEG_WEIGHTS)
    if left_leg not in ("sitting", "crouch") and right_leg in ("sitting", "crouch"):
        right_leg = "standing"
    torso = rng.choice(list(_TORSO_ARCHETYPES))
    means = np.zeros((len(BODY_JOINTS), 3))
    for index, name in enumerate(BODY_JOINTS):
        kind, side = _joint_kind(name)
        if side is None:
            table = _TORSO_ARCHETYPES[torso]
        elif kind in ("hip", "knee", "ankle", "foot"):
            table = _LEG_ARCHETYPES[left_leg if side == "left" else right_leg]
        else:
            table = _ARM_ARCHETYPES[left_arm if side == "left" else right_arm]
        mean = np.array(table.get(kind, (0.0, 0.0, 0.0)))
        means[index] = mean * ([1.0, -1.0, -1.0] if side == "right" else 1.0)
    angles = means + rng.normal(scale=config.body_noise, size=means.shape)
    angles = np.clip(angles, _BODY_LIMITS[..., 0], _BODY_LIMITS[..., 1])
    return euler_to_axis_angle(angles).reshape(-1)


# SMPL-X finger order per hand: index, middle, pinky, ring, thumb (three joints each).
_GRASPS: dict[str, tuple[tuple[float, float, float, float, float], float]] = {
    # curls for (index, middle, pinky, ring, thumb), spread (rad)
    "open": ((0.05, 0.05, 0.05, 0.05, 0.05), 0.25),
    "relaxed": ((0.3, 0.35, 0.45, 0.4, 0.2), 0.08),
    "fist": ((0.95, 0.95, 0.95, 0.95, 0.7), 0.0),
    "point": ((0.05, 0.9, 0.9, 0.9, 0.6), 0.0),
    "pinch": ((0.55, 0.3, 0.25, 0.25, 0.6), 0.1),
    "grip": ((0.65, 0.7, 0.75, 0.72, 0.45), 0.03),
}
_GRASP_WEIGHTS = {"open": 1.5, "relaxed": 3.0, "fist": 1.0, "point": 0.7, "pinch": 0.7, "grip": 1.5}
_PHALANX_GAIN = np.array([1.1, 1.4, 0.9])  # full-curl angle of the three joints of a finger
_SPREAD_SIGN = np.array([1.0, 0.25, -1.0, -0.5, 0.4])  # per finger, index..thumb


def sample_hand_pose(rng: np.random.Generator, side: str, hand_mean: np.ndarray | None = None) -> np.ndarray:
    """A ``(45,)`` hand pose for ``side`` ("left"/"right") as the offset from ``hand_mean``.

    Fingers curl about the joint's z axis (towards the palm) and spread about its y axis;
    the thumb curls about a tilted axis. ``hand_mean`` is the model's mean hand (``(45,)``).
    """
    curls, spread = _GRASPS[_choose(rng, _GRASP_WEIGHTS)]
    curls = np.clip(np.array(curls) + rng.normal(scale=0.12, size=5), 0.0, 1.0)
    spread = float(np.clip(spread + rng.normal(scale=0.06), -0.1, 0.4))
    sign = 1.0 if side == "left" else -1.0
    angles = np.zeros((5, 3, 3))
    for finger in range(5):
        bend = curls[finger] * _PHALANX_GAIN
        if finger == 4:  # thumb: curl across the palm
            angles[finger, :, 0] = bend * 0.6
            angles[finger, :, 2] = -sign * bend * 0.5
        else:
            angles[finger, :, 2] = -sign * bend
        angles[finger, 0, 1] = sign * spread * _SPREAD_SIGN[finger]
    pose = euler_to_axis_angle(angles.reshape(15, 3)).reshape(-1)
    return pose - (np.zeros(45) if hand_mean is None else np.asarray(hand_mean).reshape(-1))


def sample_orientation(rng: np.random.Generator, config: PoseConfig = PoseConfig()) -> np.ndarray:
    """Root orientation (axis-angle) in the camera frame: upright, mostly facing the camera."""
    if rng.random() < config.frontal_prob:
        yaw = float(np.clip(rng.normal(scale=config.frontal_yaw_std), -1.3, 1.3))
    else:
        yaw = float(rng.uniform(-np.pi, np.pi))
    lean = rng.normal(scale=0.08, size=2)
    body = geometry.axis_angle_to_matrix(np.array([0.0, yaw, 0.0]))
    body = body @ geometry.axis_angle_to_matrix(np.array([lean[0], 0.0, lean[1]]))
    elevation = geometry.axis_angle_to_matrix(np.array([rng.uniform(-0.25, 0.3), 0.0, 0.0]))
    upside_down_to_camera = geometry.axis_angle_to_matrix(np.array([np.pi, 0.0, 0.0]))
    return geometry.matrix_to_axis_angle(elevation @ upside_down_to_camera @ body)


def sample_params(
    rng: np.random.Generator,
    config: PoseConfig = PoseConfig(),
    left_hand_mean: np.ndarray | None = None,
    right_hand_mean: np.ndarray | None = None,
) -> SMPLXParams:
    """A full random parameter set (translation 0; the camera framing sets it later)."""
    shape = np.clip(rng.normal(scale=config.shape_std, size=10), -config.shape_max, config.shape_max)
    expr = np.clip(
        rng.normal(scale=config.expression_std, size=10), -config.expression_max, config.expression_max
    )
    jaw = np.zeros(3)
    if rng.random() < config.jaw_open_prob:
        jaw[0] = rng.uniform(0.05, config.jaw_max)
    return SMPLXParams(
        root_pose=sample_orientation(rng, config),
        body_pose=sample_body_pose(rng, config),
        lhand_pose=sample_hand_pose(rng, "left", left_hand_mean),
        rhand_pose=sample_hand_pose(rng, "right", right_hand_mean),
        jaw_pose=jaw,
        shape=shape,
        expr=expr,
        trans=np.zeros(3),
    )
