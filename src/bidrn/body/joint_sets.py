"""Names and indices of the SMPL-X joint sets used across bidrn.

Four sets appear in the pipeline (docs/design/body-model.md §3):

* ``SMPLX_JOINT_NAMES`` — the 144 joints the SMPL-X layer returns, in the official order:
  55 skeleton joints, 21 vertex-picked extra joints (nose, eyes, ears, toes, heels, finger tips),
  51 static face landmarks and 17 dynamic face-contour landmarks.
* ``JOINT_NAMES`` — Hand4Whole's 137-joint supervision set (25 body, 20 + 20 hand, 72 face), with
  ``JOINT_TO_SMPLX`` mapping each of them to its index among the 144.
* ``POS_JOINT_NAMES`` — the 65 joints PositionNet predicts (the supervision set without the face).
* ``ROTATION_JOINT_NAMES`` — the 53 joints whose axis-angle rotations form the 159-d pose vector
  ``root | body 21 | left hand 15 | right hand 15 | jaw`` used by the pose loss.

Face landmarks follow the iBUG-68 order (contour 0–16, brows 17–26, nose 27–35, eyes 36–47,
mouth 48–67); SMPL-X's 51 static landmarks are iBUG 17–67 and its 17 contour points are iBUG 0–16.
"Left" and "right" are the subject's. Everything here is a tuple of ints or strings; the only
function, :func:`flip_rotation_pose`, mirrors an axis-angle pose vector.
"""

from __future__ import annotations

from typing import TypeVar

# ----------------------------------------------------------------------------------------------
# The 144 SMPL-X output joints (official order).
# ----------------------------------------------------------------------------------------------

SMPLX_BODY_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
)  # fmt: skip
"""The 22 body joints of the SMPL-X skeleton (SMPL order)."""

SMPLX_FINGER_ORDER: tuple[str, ...] = ("index", "middle", "pinky", "ring", "thumb")
"""Finger order of the 15 joints of each SMPL-X hand (three joints per finger, base first)."""


def _hand_joint_names(side: str) -> tuple[str, ...]:
    return tuple(f"{side}_{finger}{k}" for finger in SMPLX_FINGER_ORDER for k in (1, 2, 3))


SMPLX_SKELETON_NAMES: tuple[str, ...] = (
    *SMPLX_BODY_NAMES,
    "jaw",
    "left_eye_smplhf",
    "right_eye_smplhf",
    *_hand_joint_names("left"),
    *_hand_joint_names("right"),
)
"""The 55 joints of the SMPL-X kinematic tree (indices 0–54 of the output)."""

SMPLX_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)  # fmt: skip
"""Parent of each of the 55 skeleton joints (-1 for the pelvis), as in every SMPL-X file."""

SMPLX_EXTRA_NAMES: tuple[str, ...] = (
    "nose", "right_eye", "left_eye", "right_ear", "left_ear",
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel",
    "left_thumb", "left_index", "left_middle", "left_ring", "left_pinky",
    "right_thumb", "right_index", "right_middle", "right_ring", "right_pinky",
)  # fmt: skip
"""The 21 vertex-picked extra joints (output indices 55–75)."""

SMPLX_EXTRA_VERTEX_IDS: tuple[int, ...] = (
    9120, 9929, 9448, 616, 6,
    5770, 5780, 8846, 8463, 8474, 8635,
    5361, 4933, 5058, 5169, 5286,
    8079, 7669, 7794, 7905, 8022,
)  # fmt: skip
"""Vertex index each extra joint copies, in the official 10475-vertex SMPL-X topology."""

SMPLX_LANDMARK_NAMES: tuple[str, ...] = (
    "right_eye_brow1", "right_eye_brow2", "right_eye_brow3", "right_eye_brow4", "right_eye_brow5",
    "left_eye_brow5", "left_eye_brow4", "left_eye_brow3", "left_eye_brow2", "left_eye_brow1",
    "nose1", "nose2", "nose3", "nose4",
    "right_nose_2", "right_nose_1", "nose_middle", "left_nose_1", "left_nose_2",
    "right_eye1", "right_eye2", "right_eye3", "right_eye4", "right_eye5", "right_eye6",
    "left_eye4", "left_eye3", "left_eye2", "left_eye1", "left_eye6", "left_eye5",
    "right_mouth_1", "right_mouth_2", "right_mouth_3", "mouth_top",
    "left_mouth_3", "left_mouth_2", "left_mouth_1", "left_mouth_5", "left_mouth_4",
    "mouth_bottom", "right_mouth_4", "right_mouth_5",
    "right_lip_1", "right_lip_2", "lip_top", "left_lip_2", "left_lip_1", "left_lip_3",
    "lip_bottom", "right_lip_3",
)  # fmt: skip
"""The 51 static face landmarks (output indices 76–126) = iBUG-68 points 17–67."""

SMPLX_CONTOUR_NAMES: tuple[str, ...] = (
    *(f"right_contour_{k}" for k in range(1, 9)),
    "contour_middle",
    *(f"left_contour_{k}" for k in range(8, 0, -1)),
)
"""The 17 dynamic face-contour landmarks (output indices 127–143) = iBUG-68 points 0–16."""

SMPLX_JOINT_NAMES: tuple[str, ...] = (
    *SMPLX_SKELETON_NAMES,
    *SMPLX_EXTRA_NAMES,
    *SMPLX_LANDMARK_NAMES,
    *SMPLX_CONTOUR_NAMES,
)
"""All 144 SMPL-X output joints, official order."""

NUM_SMPLX_SKELETON_JOINTS = 55
NUM_SMPLX_JOINTS = 144
SMPLX_EXTRA_SLICE = slice(55, 76)
SMPLX_LANDMARK_SLICE = slice(76, 127)
SMPLX_CONTOUR_SLICE = slice(127, 144)
SMPLX_LEFT_HAND_SLICE = slice(25, 40)
SMPLX_RIGHT_HAND_SLICE = slice(40, 55)
SMPLX_JAW_INDEX = 22

# iBUG-68 mirror pairs (index pairs of the 68-point face layout).
_IBUG_FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    *((k, 16 - k) for k in range(8)),  # contour
    *((17 + k, 26 - k) for k in range(5)),  # brows
    (31, 35), (32, 34),  # nostrils
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),  # eyes
    (48, 54), (49, 53), (50, 52), (55, 59), (56, 58),  # outer lips
    (60, 64), (61, 63), (65, 67),  # inner lips
)  # fmt: skip


def _ibug_to_smplx(ibug: int) -> int:
    return 127 + ibug if ibug < 17 else 76 + ibug - 17


def _permutation_from_pairs(size: int, pairs: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
    perm = list(range(size))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


SMPLX_SKELETON_FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21), (23, 24),
    *((25 + k, 40 + k) for k in range(15)),
)  # fmt: skip
"""Left/right pairs among the 55 skeleton joints."""

SMPLX_FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    *SMPLX_SKELETON_FLIP_PAIRS,
    (56, 57), (58, 59), (60, 63), (61, 64), (62, 65),
    *((66 + k, 71 + k) for k in range(5)),
    *((_ibug_to_smplx(a), _ibug_to_smplx(b)) for a, b in _IBUG_FLIP_PAIRS),
)  # fmt: skip
"""Left/right pairs among all 144 output joints."""

SMPLX_FLIP_PERMUTATION: tuple[int, ...] = _permutation_from_pairs(NUM_SMPLX_JOINTS, SMPLX_FLIP_PAIRS)
"""``joints[..., SMPLX_FLIP_PERMUTATION, :]`` (with x negated) is the mirrored skeleton."""

# ----------------------------------------------------------------------------------------------
# Hand4Whole's 137-joint supervision set (docs/design/body-model.md §3.2).
# ----------------------------------------------------------------------------------------------

BODY_JOINT_NAMES: tuple[str, ...] = (
    "Pelvis", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle", "Neck",
    "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist",
    "L_Big_toe", "L_Small_toe", "L_Heel", "R_Big_toe", "R_Small_toe", "R_Heel",
    "L_Ear", "R_Ear", "L_Eye", "R_Eye", "Nose",
)  # fmt: skip
"""The 25 body joints of the supervision set."""

HAND_FINGER_ORDER: tuple[str, ...] = ("Thumb", "Index", "Middle", "Ring", "Pinky")
"""Finger order of the 20 supervision joints of each hand (four per finger; 4 = tip)."""

LHAND_JOINT_NAMES: tuple[str, ...] = tuple(
    f"L_{finger}_{k}" for finger in HAND_FINGER_ORDER for k in (1, 2, 3, 4)
)
"""The 20 left-hand supervision joints (no wrist)."""

RHAND_JOINT_NAMES: tuple[str, ...] = tuple(
    f"R_{finger}_{k}" for finger in HAND_FINGER_ORDER for k in (1, 2, 3, 4)
)
"""The 20 right-hand supervision joints (no wrist)."""

FACE_JOINT_NAMES: tuple[str, ...] = tuple(f"Face_{k}" for k in range(1, 73))
"""The 72 face supervision joints: jaw, head, left eyeball, right eyeball, 51 landmarks, 17 contour."""

JOINT_NAMES: tuple[str, ...] = (*BODY_JOINT_NAMES, *LHAND_JOINT_NAMES, *RHAND_JOINT_NAMES, *FACE_JOINT_NAMES)
"""The 137 supervision joints in order (body, left hand, right hand, face)."""

NUM_JOINTS = 137

BODY_TO_SMPLX: tuple[int, ...] = (
    0, 1, 2, 4, 5, 7, 8, 12, 16, 17, 18, 19, 20, 21, 60, 61, 62, 63, 64, 65, 59, 58, 57, 56, 55,
)  # fmt: skip
LHAND_TO_SMPLX: tuple[int, ...] = (
    37, 38, 39, 66, 25, 26, 27, 67, 28, 29, 30, 68, 34, 35, 36, 69, 31, 32, 33, 70,
)  # fmt: skip
RHAND_TO_SMPLX: tuple[int, ...] = (
    52, 53, 54, 71, 40, 41, 42, 72, 43, 44, 45, 73, 49, 50, 51, 74, 46, 47, 48, 75,
)  # fmt: skip
FACE_TO_SMPLX: tuple[int, ...] = (22, 15, 57, 56, *range(76, 144))

JOINT_TO_SMPLX: tuple[int, ...] = (*BODY_TO_SMPLX, *LHAND_TO_SMPLX, *RHAND_TO_SMPLX, *FACE_TO_SMPLX)
"""Index among the 144 SMPL-X outputs of each of the 137 supervision joints."""

BODY_SLICE = slice(0, 25)
LHAND_SLICE = slice(25, 45)
RHAND_SLICE = slice(45, 65)
FACE_SLICE = slice(65, 137)
"""Part slices of the 137 supervision set (``BODY_SLICE``..``FACE_SLICE``)."""

BODY_ROOT = JOINT_NAMES.index("Pelvis")
LHAND_ROOT = JOINT_NAMES.index("L_Wrist")
RHAND_ROOT = JOINT_NAMES.index("R_Wrist")
FACE_ROOT = JOINT_NAMES.index("Neck")
"""Part roots (indices into the 137 set) for part-relative coordinates (docs/design/body-model.md §3.4)."""

HAND_MCP_INDICES: tuple[int, ...] = (4, 8, 12, 16)
"""Index_1, Middle_1, Ring_1, Pinky_1 within one hand's 20 joints (sampled by the body RotationNet)."""

_BODY_FLIP_PAIRS: tuple[tuple[int, int], ...] = tuple(
    (BODY_JOINT_NAMES.index(name), BODY_JOINT_NAMES.index("R" + name[1:]))
    for name in BODY_JOINT_NAMES
    if name.startswith("L_")
)
_FACE_FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (2, 3),  # eyeballs
    *((FACE_TO_SMPLX.index(a), FACE_TO_SMPLX.index(b)) for a, b in SMPLX_FLIP_PAIRS if a >= 76),
)

FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    *_BODY_FLIP_PAIRS,
    *((LHAND_SLICE.start + k, RHAND_SLICE.start + k) for k in range(20)),
    *((FACE_SLICE.start + a, FACE_SLICE.start + b) for a, b in _FACE_FLIP_PAIRS),
)
"""Left/right pairs among the 137 supervision joints (body, hands 25+k <-> 45+k, face)."""

FLIP_PERMUTATION: tuple[int, ...] = _permutation_from_pairs(NUM_JOINTS, FLIP_PAIRS)
"""``joints[..., FLIP_PERMUTATION, :]`` reorders the 137 set after a horizontal image flip."""

# ----------------------------------------------------------------------------------------------
# PositionNet's 65 joints.
# ----------------------------------------------------------------------------------------------

POS_JOINT_NAMES: tuple[str, ...] = JOINT_NAMES[:65]
"""The 65 PositionNet joints: 25 body, 20 left hand, 20 right hand (same slices as the 137 set)."""

NUM_POS_JOINTS = 65
POS_BODY_SLICE = BODY_SLICE
POS_LHAND_SLICE = LHAND_SLICE
POS_RHAND_SLICE = RHAND_SLICE
POS_JOINT_TO_JOINT: tuple[int, ...] = tuple(range(65))
"""Index in the 137 set of each PositionNet joint (the first 65)."""

POS_FLIP_PERMUTATION: tuple[int, ...] = FLIP_PERMUTATION[:65]
"""Flip permutation of the 65 PositionNet joints."""

# ----------------------------------------------------------------------------------------------
# The 53 rotated joints (pose vector of 159 = 53 x 3 axis-angle values).
# ----------------------------------------------------------------------------------------------

ROTATION_TO_SMPLX: tuple[int, ...] = (*range(22), *range(25, 55), SMPLX_JAW_INDEX)
"""Skeleton index (0–54) of each of the 53 rotated joints: 22 body, 15 + 15 hand, jaw."""

ROTATION_JOINT_NAMES: tuple[str, ...] = tuple(SMPLX_SKELETON_NAMES[i] for i in ROTATION_TO_SMPLX)
"""Names of the 53 rotated joints in pose-vector order."""

NUM_ROTATION_JOINTS = 53
ROT_ROOT_SLICE = slice(0, 1)
ROT_BODY_SLICE = slice(1, 22)
ROT_LHAND_SLICE = slice(22, 37)
ROT_RHAND_SLICE = slice(37, 52)
ROT_JAW_SLICE = slice(52, 53)
"""Joint slices of the 53 rotations: root, 21 body, 15 left hand, 15 right hand, jaw."""

ROTATION_FLIP_PERMUTATION: tuple[int, ...] = tuple(
    ROTATION_TO_SMPLX.index(
        dict(SMPLX_SKELETON_FLIP_PAIRS + tuple((b, a) for a, b in SMPLX_SKELETON_FLIP_PAIRS)).get(j, j)
    )
    for j in ROTATION_TO_SMPLX
)
"""``pose[..., ROTATION_FLIP_PERMUTATION, :]`` swaps left and right joints of the 53 rotations."""

ArrayT = TypeVar("ArrayT")


def flip_rotation_pose(pose: ArrayT) -> ArrayT:
    """Mirror a 53-joint axis-angle pose across the body's sagittal plane (horizontal image flip).

    Accepts a numpy array or torch tensor of shape ``(..., 159)`` or ``(..., 53, 3)`` and returns
    the same type and shape: left/right joints swap (``ROTATION_FLIP_PERMUTATION``) and each
    axis-angle vector ``(x, y, z)`` becomes ``(x, -y, -z)``.
    """
    flat = pose.shape[-1] == 3 * NUM_ROTATION_JOINTS
    joints = pose.reshape(*pose.shape[:-1], NUM_ROTATION_JOINTS, 3) if flat else pose
    if joints.shape[-2:] != (NUM_ROTATION_JOINTS, 3):
        raise ValueError(f"expected a pose of shape (..., 159) or (..., 53, 3), got {tuple(pose.shape)}")
    mirrored = joints[..., list(ROTATION_FLIP_PERMUTATION), :]  # advanced indexing copies
    mirrored[..., 1:] = -mirrored[..., 1:]
    return mirrored.reshape(pose.shape) if flat else mirrored
