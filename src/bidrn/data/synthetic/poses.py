"""Plausible random SMPL-X parameters: body poses, hand grasps, shapes, expressions, orientations.

No motion-capture data reaches this project through its package registries (PyPI, Debian, npm:
no package ships CMU or other openly licensed mocap clips; AMASS and VPoser are non-commercial),
so body poses come from a hand-written prior. A pose is one of sixteen *activities* —
standing, walking and running (a continuous gait cycle), sitting on a chair or on the floor,
squatting, kneeling, lunging, bending over, lying, jumping, kicking, throwing, balancing on one
leg, stretching, dancing — each giving per-joint mean Euler angles for the legs and torso, a
tilt of the whole body (bending over, lying) and either its own arm pose or free arms drawn per
side from arm archetypes (relaxed, raised, waving, reaching, holding, hands on hips, behind the
head or back, phone to the ear, crossed, ...). The result is randomly mirrored, perturbed by
Gaussian noise and clipped to per-joint angle limits.

Rotations are built as ``Rz Ry Rx`` Euler angles in each joint's SMPL-X frame and stored as
axis-angle. Conventions for the subject's left side (the right side mirrors them,
``y, z -> -y, -z``): hip/knee/ankle x: flexion (hip < 0 lifts the thigh forward, knee > 0 bends
it), hip z > 0: abduction; spine/neck x > 0: bend forward; shoulder z: raise (-1.25 hangs down,
0 horizontal, 1.4 overhead), shoulder y < 0: swing forward, shoulder x: twist of the upper arm
(x < 0 turns a bent forearm up), elbow y < 0: flexion.

Hands are posed from per-finger curl (0 = flat, 1 = fist) and a spread angle drawn from grasp
archetypes (open, relaxed, fist, point, pinch); the stored hand pose is the offset from the
model's mean hand (``flat_hand_mean=False``, docs/design/body-model.md §2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bidrn.body import joint_sets
from bidrn.data import geometry
from bidrn.data.sample import SMPLXParams

BODY_JOINTS = joint_sets.SMPLX_BODY_NAMES[1:]
"""The 21 joints of ``body_pose`` (SMPL-X joints 1..21)."""

Range = tuple[float, float]
Euler = tuple[float, float, float]
Part = dict[str, Euler]

_LIMITS_LEFT: dict[str, tuple[Range, Range, Range]] = {
    "hip": ((-2.4, 0.7), (-0.8, 1.05), (-0.7, 1.2)),
    "knee": ((0.0, 2.5), (-0.1, 0.1), (-0.1, 0.1)),
    "ankle": ((-0.7, 0.8), (-0.3, 0.3), (-0.3, 0.3)),
    "foot": ((-0.4, 0.4), (-0.05, 0.05), (-0.1, 0.1)),
    "collar": ((-0.3, 0.3), (-0.4, 0.3), (-0.3, 0.5)),
    "shoulder": ((-1.7, 1.6), (-1.7, 0.9), (-1.5, 1.5)),
    "elbow": ((-0.3, 0.3), (-2.5, 0.0), (-0.2, 0.2)),
    "wrist": ((-0.9, 0.9), (-0.5, 0.5), (-1.0, 0.9)),
}
_LIMITS_CENTRE: dict[str, tuple[Range, Range, Range]] = {
    "spine1": ((-0.3, 0.6), (-0.4, 0.4), (-0.3, 0.3)),
    "spine2": ((-0.25, 0.5), (-0.35, 0.35), (-0.25, 0.25)),
    "spine3": ((-0.25, 0.5), (-0.35, 0.35), (-0.25, 0.25)),
    "neck": ((-0.5, 0.6), (-0.7, 0.7), (-0.35, 0.35)),
    "head": ((-0.4, 0.5), (-0.6, 0.6), (-0.3, 0.3)),
}

#: One arm, left-side Euler means (x, y, z) per joint kind; unspecified joints are 0.
ARMS: dict[str, Part] = {
    "relaxed": {"shoulder": (0.0, -0.1, -1.25), "elbow": (0.0, -0.25, 0.0)},
    "a_pose": {"shoulder": (0.0, 0.0, -0.75), "elbow": (0.0, -0.15, 0.0)},
    "t_pose": {"shoulder": (0.0, 0.0, -0.05), "elbow": (0.0, -0.05, 0.0)},
    "raised": {"collar": (0.0, 0.0, 0.2), "shoulder": (0.0, -0.2, 0.75), "elbow": (0.0, -0.3, 0.0)},
    "overhead": {"collar": (0.0, 0.0, 0.35), "shoulder": (0.0, -0.15, 1.2), "elbow": (0.0, -0.2, 0.0)},
    "waving": {"shoulder": (-1.4, 0.0, 0.3), "elbow": (0.0, -1.4, 0.0), "wrist": (0.0, 0.0, 0.3)},
    "fist_up": {"shoulder": (-1.4, -0.3, -0.1), "elbow": (0.0, -2.0, 0.0)},
    "reaching": {"shoulder": (0.0, -1.25, -0.35), "elbow": (0.0, -0.2, 0.0)},
    "pointing": {"shoulder": (0.0, -0.9, -0.1), "elbow": (0.0, -0.1, 0.0)},
    "reach_down": {"shoulder": (0.0, -0.8, -1.1), "elbow": (0.0, -0.2, 0.0)},
    "holding": {"shoulder": (0.0, -0.45, -1.15), "elbow": (0.0, -1.6, 0.0)},
    "carrying": {"shoulder": (0.3, -0.7, -1.0), "elbow": (0.0, -1.3, 0.0)},
    "hand_on_hip": {"shoulder": (1.0, 0.35, -0.85), "elbow": (0.0, -1.5, 0.0), "wrist": (0.0, 0.0, 0.3)},
    "behind_back": {"shoulder": (1.3, 0.45, -1.1), "elbow": (0.0, -1.3, 0.0)},
    "behind_head": {"shoulder": (-1.3, 0.3, 0.5), "elbow": (0.0, -2.2, 0.0)},
    "to_face": {"shoulder": (0.3, -0.9, -0.8), "elbow": (0.0, -2.2, 0.0)},
    "phone": {"shoulder": (-0.9, -0.7, -0.8), "elbow": (0.0, -2.4, 0.0)},
    "crossed": {"shoulder": (0.9, -0.5, -1.1), "elbow": (0.0, -1.7, 0.0)},
    "guard": {"shoulder": (0.0, -0.9, -0.95), "elbow": (0.0, -1.9, 0.0)},
    "swing_back": {"shoulder": (0.0, 0.6, -1.1), "elbow": (0.0, -0.3, 0.0)},
    "on_thighs": {"shoulder": (0.3, -0.2, -1.35), "elbow": (0.0, -0.9, 0.0)},
    "hug_knees": {"shoulder": (0.9, -0.6, -1.2), "elbow": (0.0, -1.0, 0.0)},
}
_FREE_ARM_WEIGHTS = {
    "relaxed": 4.0, "a_pose": 1.0, "t_pose": 0.5, "raised": 0.8, "overhead": 0.6, "waving": 0.8,
    "fist_up": 0.3, "reaching": 0.8, "pointing": 0.6, "reach_down": 0.3, "holding": 1.5, "carrying": 0.5,
    "hand_on_hip": 1.0, "behind_back": 0.6, "behind_head": 0.5, "to_face": 0.7, "phone": 0.6,
    "crossed": 0.6, "guard": 0.3, "swing_back": 0.4,
}  # fmt: skip

#: One leg, left-side Euler means per joint kind.
LEGS: dict[str, Part] = {
    "straight": {"hip": (0.0, 0.0, 0.05)},
    "wide": {"hip": (0.0, 0.1, 0.3)},
    "relaxed_knee": {"hip": (-0.15, 0.1, 0.1), "knee": (0.3, 0.0, 0.0)},
    "step_forward": {"hip": (-0.45, 0.0, 0.05), "knee": (0.25, 0.0, 0.0)},
    "step_back": {"hip": (0.3, 0.0, 0.05), "knee": (0.4, 0.0, 0.0), "ankle": (-0.3, 0.0, 0.0)},
    "tiptoe_back": {"hip": (0.15, 0.0, 0.05), "knee": (0.5, 0.0, 0.0), "ankle": (-0.5, 0.0, 0.0)},
    "cross_front": {"hip": (-0.15, -0.2, -0.25), "knee": (0.15, 0.0, 0.0)},
    "chair": {"hip": (-1.5, 0.0, 0.1), "knee": (1.5, 0.0, 0.0)},
    "chair_forward": {"hip": (-1.4, 0.0, 0.1), "knee": (0.9, 0.0, 0.0), "ankle": (0.3, 0.0, 0.0)},
    "chair_tucked": {"hip": (-1.5, 0.0, 0.15), "knee": (2.0, 0.0, 0.0), "ankle": (-0.3, 0.0, 0.0)},
    "chair_apart": {"hip": (-1.5, 0.2, 0.45), "knee": (1.5, 0.0, 0.0)},
    "leg_over": {"hip": (-1.8, -0.1, -0.3), "knee": (1.2, 0.0, 0.0)},
    "squat": {"hip": (-2.0, 0.1, 0.35), "knee": (2.3, 0.0, 0.0), "ankle": (0.5, 0.0, 0.0)},
    "kneel_down": {"hip": (0.0, 0.0, 0.05), "knee": (1.6, 0.0, 0.0), "ankle": (-0.4, 0.0, 0.0)},
    "kneel_up": {"hip": (-1.4, 0.0, 0.1), "knee": (1.5, 0.0, 0.0), "ankle": (0.1, 0.0, 0.0)},
    "heel_sit": {"hip": (-0.6, 0.0, 0.1), "knee": (2.4, 0.0, 0.0), "ankle": (-0.6, 0.0, 0.0)},
    "lunge_front": {"hip": (-1.3, 0.0, 0.1), "knee": (1.3, 0.0, 0.0)},
    "lunge_back": {"hip": (0.5, 0.0, 0.05), "knee": (0.5, 0.0, 0.0), "ankle": (-0.4, 0.0, 0.0)},
    "floor_straight": {"hip": (-1.5, 0.0, 0.1), "knee": (0.1, 0.0, 0.0)},
    "cross_legged": {"hip": (-1.3, 0.8, -0.6), "knee": (2.4, 0.0, 0.0)},
    "knee_hug": {"hip": (-2.2, 0.0, 0.1), "knee": (2.3, 0.0, 0.0), "ankle": (0.2, 0.0, 0.0)},
    "knee_up": {"hip": (-1.3, 0.0, 0.0), "knee": (1.5, 0.0, 0.0)},
    "tree": {"hip": (-0.3, 0.95, 0.7), "knee": (2.3, 0.0, 0.0)},
    "arabesque": {"hip": (0.6, 0.0, 0.05), "knee": (0.1, 0.0, 0.0)},
    "kick": {"hip": (-1.5, 0.0, 0.1), "knee": (0.3, 0.0, 0.0)},
    "kick_chamber": {"hip": (-1.3, 0.0, 0.2), "knee": (1.8, 0.0, 0.0)},
    "jump_tuck": {"hip": (-1.5, 0.0, 0.15), "knee": (2.0, 0.0, 0.0), "ankle": (-0.3, 0.0, 0.0)},
    "star": {"hip": (0.0, 0.0, 0.55), "knee": (0.1, 0.0, 0.0)},
}

#: The spine, neck and head (centre joints).
TORSOS: dict[str, Part] = {
    "upright": {},
    "lean_forward": {"spine1": (0.25, 0.0, 0.0), "spine2": (0.15, 0.0, 0.0)},
    "lean_back": {"spine1": (-0.15, 0.0, 0.0), "spine2": (-0.1, 0.0, 0.0), "neck": (-0.1, 0.0, 0.0)},
    "twist": {"spine1": (0.0, 0.2, 0.0), "spine2": (0.0, 0.2, 0.0), "spine3": (0.0, 0.1, 0.0)},
    "side_bend": {"spine1": (0.0, 0.0, 0.15), "spine2": (0.0, 0.0, 0.15)},
    "look_around": {"neck": (0.0, 0.35, 0.0), "head": (0.1, 0.25, 0.0)},
    "look_down": {"neck": (0.35, 0.0, 0.0), "head": (0.2, 0.0, 0.0)},
    "look_up": {"neck": (-0.3, 0.0, 0.0), "head": (-0.2, 0.0, 0.0)},
    "slouch": {
        "spine1": (0.2, 0.0, 0.0),
        "spine2": (0.2, 0.0, 0.0),
        "spine3": (0.15, 0.0, 0.0),
        "neck": (0.1, 0, 0),
    },
}
_TORSO_WEIGHTS = {"upright": 3.0, "lean_forward": 1.0, "lean_back": 0.6, "twist": 1.0, "side_bend": 0.6,
                  "look_around": 1.0, "look_down": 0.8, "look_up": 0.4, "slouch": 0.6}  # fmt: skip


@dataclass
class Template:
    """Mean pose of one draw: per-joint Euler means, a whole-body tilt, which arms are free.

    Attributes:
        means: ``(21, 3)`` Euler means of ``body_pose``.
        tilt: Euler angles (x: pitch forward, y: turn, z: roll) of the whole body relative to
            upright, applied in the body frame before the view's yaw.
        free_arms: whether each arm (left, right) may be replaced by a random arm archetype.
        noise: multiplier of :attr:`PoseConfig.body_noise`.
        elevation: extra camera elevation (rad, looking down) suited to the activity (lying).
    """

    means: np.ndarray = field(default_factory=lambda: np.zeros((21, 3)))
    tilt: Euler = (0.0, 0.0, 0.0)
    free_arms: tuple[bool, bool] = (True, True)
    noise: float = 1.0
    elevation: float = 0.0

    def set(self, side: str | None, part: Part) -> Template:
        """Write ``part`` (left-side convention) onto ``side`` ("left"/"right"; None: centre joints)."""
        for kind, angles in part.items():
            name = kind if side is None else f"{side}_{kind}"
            self.means[BODY_JOINTS.index(name)] = np.asarray(angles) * (
                [1.0, -1.0, -1.0] if side == "right" else 1.0
            )
        return self

    def legs(self, left: str, right: str | None = None) -> Template:
        """Set both legs from :data:`LEGS` (the right defaults to the left's archetype)."""
        return self.set("left", LEGS[left]).set("right", LEGS[right or left])

    def arms(self, left: str, right: str | None = None) -> Template:
        """Set both arms from :data:`ARMS` and mark them fixed."""
        self.free_arms = (False, False)
        return self.set("left", ARMS[left]).set("right", ARMS[right or left])


def _choose(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    probs = np.array([weights[n] for n in names])
    return names[rng.choice(len(names), p=probs / probs.sum())]


def _pick(rng: np.random.Generator, *names: str) -> str:
    return names[rng.integers(len(names))]


def _stand(rng: np.random.Generator) -> Template:
    stance = _choose(
        rng, {"straight": 3, "wide": 1.5, "relaxed_knee": 1.5, "step": 1.5, "tiptoe": 0.4, "cross": 0.4}
    )
    template = Template().set(None, TORSOS[_choose(rng, _TORSO_WEIGHTS)])
    if stance == "relaxed_knee":  # contrapposto: weight on one leg, the pelvis rolls a little
        template.tilt = (0.0, 0.0, rng.uniform(-0.08, 0.0))
        return template.legs("straight", "relaxed_knee")
    pairs = {"step": ("step_forward", "step_back"), "tiptoe": ("straight", "tiptoe_back"),
             "cross": ("cross_front", "straight")}  # fmt: skip
    return template.legs(*pairs.get(stance, (stance, stance)))


def _gait(rng: np.random.Generator, running: bool) -> Template:
    """A point of a walking or running cycle: opposite arm and leg swing together."""
    phase = rng.uniform(0, 2 * np.pi)
    stride = rng.uniform(0.5, 0.9) if running else rng.uniform(0.25, 0.5)
    knee_gain = rng.uniform(1.2, 1.9) if running else rng.uniform(0.6, 1.0)
    swing = rng.uniform(0.5, 0.9) if running else rng.uniform(0.15, 0.45)
    elbow = rng.uniform(1.3, 1.8) if running else rng.uniform(0.15, 0.5)
    template = Template(free_arms=(False, False))
    for side, offset in (("left", 0.0), ("right", np.pi)):
        angle = phase + offset
        hip = -stride * np.sin(angle) * (1.0 if np.sin(angle) > 0 else 0.6)  # < 0: thigh forward
        knee = 0.1 + knee_gain * max(0.0, np.cos(angle)) ** 1.5  # most bent mid-swing
        ankle = 0.2 * np.sin(angle)
        template.set(side, {"hip": (hip, 0.0, 0.05), "knee": (knee, 0.0, 0.0), "ankle": (ankle, 0.0, 0.0)})
        arm = swing * np.sin(angle)  # this arm forward (< 0) when the other leg is
        template.set(side, {"shoulder": (0.0, arm, -1.2), "elbow": (0.0, -elbow - 0.3 * max(0.0, -arm), 0.0)})
    lean = rng.uniform(0.1, 0.3) if running else rng.uniform(0.0, 0.1)
    template.set(None, {"spine1": (lean, 0.0, 0.0), "spine2": (lean / 2, 0.0, 0.0)})
    if not running and rng.random() < 0.4:  # walking while holding something, waving, phoning
        template.free_arms = (rng.random() < 0.5, True)
    return template


def _sit_chair(rng: np.random.Generator) -> Template:
    legs = _choose(
        rng, {"chair": 3, "chair_forward": 1.5, "chair_tucked": 1, "chair_apart": 1, "leg_over": 0.8}
    )
    template = Template().set(
        None, TORSOS[_pick(rng, "upright", "lean_forward", "slouch", "lean_back", "twist")]
    )
    template.legs(legs, "chair" if legs == "leg_over" else legs)
    if rng.random() < 0.4:
        template.arms("on_thighs", _pick(rng, "on_thighs", "holding", "phone", "crossed"))
    return template


def _sit_floor(rng: np.random.Generator) -> Template:
    style = _pick(rng, "straight", "cross_legged", "knee_hug")
    if style == "straight":  # legs forward, leaning back on the hands
        template = Template(tilt=(-0.35, 0.0, 0.0)).legs("floor_straight")
        return template.arms("swing_back").set(None, {"spine1": (0.15, 0, 0), "neck": (0.2, 0, 0)})
    if style == "cross_legged":
        template = Template().legs("cross_legged").set(None, TORSOS[_pick(rng, "upright", "slouch", "twist")])
        return template
    return Template(tilt=(-0.2, 0.0, 0.0)).legs("knee_hug").arms("hug_knees")


def _squat(rng: np.random.Generator) -> Template:
    template = Template(tilt=(rng.uniform(0.2, 0.5), 0.0, 0.0)).legs("squat")
    if rng.random() < 0.5:
        template.arms(_pick(rng, "reaching", "reach_down", "holding", "crossed"))
    return template.set(None, {"spine1": (0.2, 0.0, 0.0), "neck": (-0.2, 0.0, 0.0)})


def _kneel(rng: np.random.Generator) -> Template:
    style = _pick(rng, "one_knee", "both", "heels")
    if style == "one_knee":
        return Template().legs("kneel_up", "kneel_down")
    if style == "both":
        return Template().legs("kneel_down").set(None, TORSOS[_choose(rng, _TORSO_WEIGHTS)])
    return Template(tilt=(0.25, 0.0, 0.0)).legs("heel_sit").set(None, {"neck": (-0.2, 0.0, 0.0)})


def _lunge(rng: np.random.Generator) -> Template:
    template = Template().legs("lunge_front", "lunge_back")
    if rng.random() < 0.5:
        template.arms(_pick(rng, "hand_on_hip", "overhead", "t_pose", "reaching"))
    return template


def _bend_over(rng: np.random.Generator) -> Template:
    """Picking something up: the pelvis pitches forward and the hips flex back to keep legs vertical."""
    pitch = rng.uniform(0.6, 1.2)
    knee = rng.uniform(0.0, 0.6)
    template = Template(tilt=(pitch, 0.0, 0.0))
    leg = {"hip": (-pitch - knee / 2, 0.0, 0.08), "knee": (knee, 0.0, 0.0)}
    template.set("left", leg).set("right", leg).set(None, {"spine1": (0.25, 0, 0), "spine2": (0.2, 0, 0),
                                                            "neck": (-0.3, 0, 0)})  # fmt: skip
    arm = {"shoulder": (0.0, -pitch - 0.3, -1.2), "elbow": (0.0, -0.2, 0.0)}
    template.set("left", arm).set("right", arm)
    template.free_arms = (False, rng.random() < 0.3)
    return template


def _lie(rng: np.random.Generator) -> Template:
    """On the back, the front or a side; seen from a higher camera."""
    facing = _pick(rng, "back", "front", "side")
    tilt = {"back": (-np.pi / 2, 0.0, 0.0), "front": (np.pi / 2, 0.0, 0.0),
            "side": (-np.pi / 2, 0.0, float(rng.choice([-1.0, 1.0])) * np.pi / 2)}[facing]  # fmt: skip
    template = Template(tilt=tilt, elevation=rng.uniform(0.3, 0.9))
    if facing == "side":
        template.legs("relaxed_knee", "step_forward")
    else:
        template.legs(
            _pick(rng, "straight", "wide", "relaxed_knee"), _pick(rng, "straight", "knee_up", "relaxed_knee")
        )
    if facing == "front":
        template.arms(_pick(rng, "t_pose", "overhead", "relaxed"))
    return template


def _jump(rng: np.random.Generator) -> Template:
    if rng.random() < 0.5:
        return Template().legs("star").arms(_pick(rng, "overhead", "raised"))
    return Template().legs("jump_tuck").arms(_pick(rng, "reaching", "overhead", "swing_back"))


def _kick(rng: np.random.Generator) -> Template:
    template = Template(tilt=(-0.15, 0.0, 0.0)).legs(_pick(rng, "kick", "kick_chamber"), "straight")
    return template.arms(_pick(rng, "a_pose", "guard", "t_pose"), _pick(rng, "a_pose", "guard", "swing_back"))


def _throw(rng: np.random.Generator) -> Template:
    """Throwing or serving: one arm cocked behind the head, the other forward, the torso twisted."""
    template = Template().legs("step_forward", "step_back").arms("pointing", "behind_head")
    template.set("right", {"shoulder": (-1.4, 0.4, 0.6), "elbow": (0.0, -1.6, 0.0)})
    return template.set(
        None, {"spine1": (0.0, -0.25, 0.0), "spine2": (0.0, -0.2, 0.0), "neck": (0.0, 0.3, 0.0)}
    )


def _balance(rng: np.random.Generator) -> Template:
    raised = _pick(rng, "tree", "knee_up", "arabesque")
    template = Template(tilt=(0.7, 0.0, 0.0) if raised == "arabesque" else (0.0, 0.0, 0.0))
    template.legs(raised, "straight")
    if raised == "arabesque":
        template.set("right", {"hip": (-0.7, 0.0, 0.05)}).set(None, {"neck": (-0.5, 0.0, 0.0)})
    return template.arms(_pick(rng, "overhead", "t_pose", "a_pose"))


def _stretch(rng: np.random.Generator) -> Template:
    template = (
        Template()
        .legs(_pick(rng, "wide", "straight"))
        .arms("overhead", _pick(rng, "overhead", "hand_on_hip"))
    )
    return template.set(None, {"spine1": (0.0, 0.0, 0.2), "spine2": (0.0, 0.0, 0.2), "spine3": (0, 0, 0.1)})


def _dance(rng: np.random.Generator) -> Template:
    """Freestyle: any two arm archetypes, a lively stance, wider noise."""
    template = Template(noise=1.6).legs(
        _pick(rng, "wide", "step_forward", "knee_up", "relaxed_knee", "tiptoe_back"),
        _pick(rng, "straight", "relaxed_knee", "step_back", "wide"),
    )
    template.set(None, TORSOS[_pick(rng, "twist", "side_bend", "look_around", "lean_back", "upright")])
    return template.arms(_pick(rng, *ARMS), _pick(rng, *ARMS))


ACTIVITIES: dict[str, tuple[float, Callable[[np.random.Generator], Template]]] = {
    "stand": (5.0, _stand),
    "walk": (3.0, lambda rng: _gait(rng, running=False)),
    "run": (1.2, lambda rng: _gait(rng, running=True)),
    "sit_chair": (1.8, _sit_chair),
    "sit_floor": (0.7, _sit_floor),
    "squat": (0.5, _squat),
    "kneel": (0.5, _kneel),
    "lunge": (0.4, _lunge),
    "bend_over": (0.5, _bend_over),
    "lie": (0.4, _lie),
    "jump": (0.3, _jump),
    "kick": (0.3, _kick),
    "throw": (0.3, _throw),
    "balance": (0.3, _balance),
    "stretch": (0.3, _stretch),
    "dance": (0.8, _dance),
}
"""Activity name -> (weight, template sampler)."""


@dataclass(frozen=True)
class PoseConfig:
    """Spread of the random parameters.

    Attributes:
        body_noise: std (rad) of the Gaussian perturbation around a template.
        symmetric_prob: probability that both free arms share one archetype.
        frontal_prob: probability of a near-frontal view (yaw ~ N(0, frontal_yaw_std)); otherwise
            the yaw is uniform over the circle.
        frontal_yaw_std: std (rad) of the near-frontal yaw.
        shape_std / shape_max: β ~ N(0, std) clipped to ±max (≤ 3 keeps it a valid target).
        expression_std / expression_max: ψ likewise.
        jaw_open_prob / jaw_max: probability and maximum angle (rad) of an open mouth.
    """

    body_noise: float = 0.12
    symmetric_prob: float = 0.4
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
    return geometry.matrix_to_axis_angle(_euler_matrix(angles))


def _euler_matrix(angles: np.ndarray) -> np.ndarray:
    angles = np.asarray(angles, dtype=np.float64)
    rx = geometry.axis_angle_to_matrix(angles[..., 0:1] * np.array([1.0, 0.0, 0.0]))
    ry = geometry.axis_angle_to_matrix(angles[..., 1:2] * np.array([0.0, 1.0, 0.0]))
    rz = geometry.axis_angle_to_matrix(angles[..., 2:3] * np.array([0.0, 0.0, 1.0]))
    return rz @ ry @ rx


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
_ARM_KINDS = ("collar", "shoulder", "elbow", "wrist")


def _mirror_name(name: str) -> str:
    kind, side = _joint_kind(name)
    return name if side is None else f"{'right' if side == 'left' else 'left'}_{kind}"


_MIRROR = np.array([BODY_JOINTS.index(_mirror_name(name)) for name in BODY_JOINTS])
"""Index of each joint's mirror image (left <-> right; centre joints map to themselves)."""


def sample_template(rng: np.random.Generator, config: PoseConfig = PoseConfig()) -> Template:
    """An activity's mean pose, with free arms filled in and a random left/right mirror."""
    names = list(ACTIVITIES)
    weights = np.array([ACTIVITIES[n][0] for n in names])
    template = ACTIVITIES[names[rng.choice(len(names), p=weights / weights.sum())]][1](rng)
    left_arm = _choose(rng, _FREE_ARM_WEIGHTS)
    right_arm = left_arm if rng.random() < config.symmetric_prob else _choose(rng, _FREE_ARM_WEIGHTS)
    for side, arm, free in (
        ("left", left_arm, template.free_arms[0]),
        ("right", right_arm, template.free_arms[1]),
    ):
        if free:
            for kind in _ARM_KINDS:
                template.means[BODY_JOINTS.index(f"{side}_{kind}")] = 0.0
            template.set(side, ARMS[arm])
    if rng.random() < 0.5:  # mirror: swap sides and negate y/z rotations
        template.means = template.means[_MIRROR] * np.array([1.0, -1.0, -1.0])
        template.tilt = (template.tilt[0], -template.tilt[1], -template.tilt[2])
    return template


def _perturb(rng: np.random.Generator, template: Template, config: PoseConfig) -> np.ndarray:
    angles = template.means + rng.normal(scale=config.body_noise * template.noise, size=template.means.shape)
    angles = np.clip(angles, _BODY_LIMITS[..., 0], _BODY_LIMITS[..., 1])
    return euler_to_axis_angle(angles).reshape(-1)


def sample_body_pose(rng: np.random.Generator, config: PoseConfig = PoseConfig()) -> np.ndarray:
    """A plausible ``(63,)`` axis-angle body pose (21 joints); the activity's tilt is dropped."""
    return _perturb(rng, sample_template(rng, config), config)


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


def sample_orientation(
    rng: np.random.Generator,
    config: PoseConfig = PoseConfig(),
    tilt: Euler = (0.0, 0.0, 0.0),
    extra_elevation: float = 0.0,
) -> np.ndarray:
    """Root orientation (axis-angle) in the camera frame, mostly facing the camera.

    The body is first tilted by ``tilt`` (its activity: bending over, lying) and a small random
    lean, then turned by the view's yaw, flipped into the y-down camera frame and seen from a
    random camera elevation (raised by ``extra_elevation`` for people lying down).
    """
    if rng.random() < config.frontal_prob:
        yaw = float(np.clip(rng.normal(scale=config.frontal_yaw_std), -1.3, 1.3))
    else:
        yaw = float(rng.uniform(-np.pi, np.pi))
    lean = rng.normal(scale=0.08, size=2)
    body = geometry.axis_angle_to_matrix(np.array([0.0, yaw, 0.0]))
    body = body @ geometry.axis_angle_to_matrix(np.array([lean[0], 0.0, lean[1]])) @ _euler_matrix(tilt)
    pitch = rng.uniform(-0.25, 0.3) + extra_elevation
    roll = rng.normal(scale=0.05)
    camera = geometry.axis_angle_to_matrix(np.array([pitch, 0.0, 0.0]))
    camera = geometry.axis_angle_to_matrix(np.array([0.0, 0.0, roll])) @ camera
    upside_down_to_camera = geometry.axis_angle_to_matrix(np.array([np.pi, 0.0, 0.0]))
    return geometry.matrix_to_axis_angle(camera @ upside_down_to_camera @ body)


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
    template = sample_template(rng, config)
    return SMPLXParams(
        root_pose=sample_orientation(rng, config, template.tilt, template.elevation),
        body_pose=_perturb(rng, template, config),
        lhand_pose=sample_hand_pose(rng, "left", left_hand_mean),
        rhand_pose=sample_hand_pose(rng, "right", right_hand_mean),
        jaw_pose=jaw,
        shape=shape,
        expr=expr,
        trans=np.zeros(3),
    )
