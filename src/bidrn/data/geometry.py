"""Small numpy geometry used by every dataset: boxes, crop affines, rotations, projection.

All pixel coordinates follow one convention: ``x`` to the right, ``y`` down, pixel ``i`` has its
centre at coordinate ``i``. Camera coordinates are OpenCV's (X right, Y down, Z forward), so a
point ``X`` projects to ``u = f_x X/Z + c_x``, ``v = f_y Y/Z + c_y``. Boxes are ``xywh`` when they
come from annotation files and ``xyxy`` when they are hand or face boxes inside a sample.
"""

from __future__ import annotations

import numpy as np

CROP_HEIGHT = 512
CROP_WIDTH = 384
"""Size of the person crop fed to the network (docs/design/pipeline.md §2, ``input_img_shape``)."""

BOX_ASPECT = CROP_WIDTH / CROP_HEIGHT
BOX_EXTENSION = 1.25
"""Person boxes get the crop's aspect (w/h = 0.75) and are enlarged by 1.25 (docs/design/pipeline.md §7.3)."""


def sanitize_box(box_xywh: np.ndarray, image_height: int, image_width: int) -> np.ndarray | None:
    """Clip an ``xywh`` box to the image; ``None`` when nothing of positive area is left.

    The box is the continuous interval ``[x, x + w]`` clipped to ``[0, W - 1]`` (pixel centres).
    Hand4Whole clips ``[x, x + w - 1]`` instead; the continuous form keeps a box's centre
    mirroring exactly like a joint under a horizontal flip (a half-pixel difference otherwise).
    """
    x, y, w, h = (float(v) for v in box_xywh)
    if not np.all(np.isfinite([x, y, w, h])):
        return None
    x1, y1 = max(x, 0.0), max(y, 0.0)
    x2 = min(x + w, image_width - 1.0)
    y2 = min(y + h, image_height - 1.0)
    if w <= 0 or h <= 0 or x2 <= x1 or y2 <= y1:
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float64)


def fit_box_aspect(
    box_xywh: np.ndarray, aspect: float = BOX_ASPECT, extension: float = BOX_EXTENSION
) -> np.ndarray:
    """Grow the shorter side of an ``xywh`` box around its centre to ``w/h = aspect``, then scale.

    This is the person-box preparation of docs/design/pipeline.md §7.3: sanitised box, aspect set to the
    crop's 384/512 by growing the short side, both sides multiplied by ``extension``.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    cx, cy = x + w / 2.0, y + h / 2.0
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = h * aspect
    w, h = w * extension, h * extension
    return np.array([cx - w / 2.0, cy - h / 2.0, w, h], dtype=np.float64)


def prepare_person_box(box_xywh: np.ndarray, image_height: int, image_width: int) -> np.ndarray | None:
    """Sanitise a person box and give it the crop's aspect; ``None`` if it lies outside the image."""
    clean = sanitize_box(box_xywh, image_height, image_width)
    return None if clean is None else fit_box_aspect(clean)


def crop_affine(
    box_xywh: np.ndarray,
    scale: float = 1.0,
    rotation_deg: float = 0.0,
    out_height: int = CROP_HEIGHT,
    out_width: int = CROP_WIDTH,
) -> np.ndarray:
    """The 2x3 affine that maps image pixels into the crop of a (prepared) person box.

    The box centre goes to the crop centre; a region of ``scale`` times the box is fitted into
    the crop (so ``scale > 1`` zooms out); the image content turns counter-clockwise on screen by
    ``rotation_deg``. In camera terms that turn equals rotating the scene about the optical axis
    by :func:`rotation_about_z` of ``-rotation_deg`` (see :func:`scene_rotation_for_crop`).
    """
    x, y, w, h = (float(v) for v in box_xywh)
    centre = np.array([x + w / 2.0, y + h / 2.0])
    zoom = out_width / (w * scale)
    turn = np.deg2rad(rotation_deg)
    c, s = np.cos(turn), np.sin(turn)
    # Counter-clockwise on screen with y pointing down is the matrix [[c, s], [-s, c]].
    linear = zoom * np.array([[c, s], [-s, c]])
    offset = np.array([out_width / 2.0, out_height / 2.0]) - linear @ centre
    return np.concatenate([linear, offset[:, None]], axis=1)


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine."""
    full = np.vstack([affine, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to ``(N, 2)`` points."""
    return points @ affine[:, :2].T + affine[:, 2]


def transform_box_xyxy(affine: np.ndarray, box_xyxy: np.ndarray) -> np.ndarray:
    """Axis-aligned hull of an ``xyxy`` box's four corners after an affine."""
    x1, y1, x2, y2 = box_xyxy
    corners = np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]], dtype=np.float64)
    moved = apply_affine(affine, corners)
    return np.concatenate([moved.min(axis=0), moved.max(axis=0)])


def rotation_about_z(angle_deg: float) -> np.ndarray:
    """3x3 rotation by ``angle_deg`` about the camera's optical (Z) axis."""
    turn = np.deg2rad(angle_deg)
    c, s = np.cos(turn), np.sin(turn)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def scene_rotation_for_crop(rotation_deg: float) -> np.ndarray:
    """The 3D rotation about the optical axis that matches a crop turned by ``rotation_deg``.

    This is the 3D consistency rule of docs/design/pipeline.md §7.3 (rotation about the camera's z axis).
    """
    return rotation_about_z(-rotation_deg)


def axis_angle_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues' formula for ``(..., 3)`` axis-angle vectors -> ``(..., 3, 3)`` rotations."""
    aa = np.asarray(axis_angle, dtype=np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    axis = aa / np.maximum(angle, 1e-12)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    cross = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(*aa.shape[:-1], 3, 3)
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    eye = np.broadcast_to(np.eye(3), cross.shape)
    return eye + s * cross + (1.0 - c) * (cross @ cross)


def matrix_to_axis_angle(matrix: np.ndarray) -> np.ndarray:
    """Inverse of :func:`axis_angle_to_matrix` for ``(..., 3, 3)`` rotations (angles in [0, pi])."""
    m = np.asarray(matrix, dtype=np.float64)
    cos = np.clip((np.trace(m, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    skew = np.stack(
        [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1
    )
    sin = np.sin(angle)
    small = sin > 1e-6
    axis = np.where(small[..., None], skew / np.where(small, 2.0 * sin, 1.0)[..., None], 0.0)
    # Near pi the skew part vanishes: take the axis from the symmetric part instead.
    near_pi = (~small) & (cos < 0)
    if np.any(near_pi):
        sym = (m[near_pi] + np.eye(3)) / 2.0
        column = np.argmax(np.diagonal(sym, axis1=-2, axis2=-1), axis=-1)
        picked = sym[np.arange(len(column)), :, column]
        picked /= np.linalg.norm(picked, axis=-1, keepdims=True)
        axis[near_pi] = picked
    return axis * angle[..., None]


def rotate_axis_angle(rotation: np.ndarray, axis_angle: np.ndarray) -> np.ndarray:
    """Left-multiply the rotation given as axis-angle by a 3x3 ``rotation`` (returns axis-angle)."""
    return matrix_to_axis_angle(rotation @ axis_angle_to_matrix(axis_angle))


def project(points: np.ndarray, focal: np.ndarray, princpt: np.ndarray) -> np.ndarray:
    """Pinhole projection of ``(N, 3)`` camera-frame points to ``(N, 2)`` pixels."""
    depth = np.maximum(points[:, 2:3], 1e-6)
    return points[:, :2] / depth * np.asarray(focal) + np.asarray(princpt)


def affine_camera(
    focal: np.ndarray, princpt: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Intrinsics after a scale-and-translate affine (no rotation): ``f a00``, ``c a00 + a02``.

    Used where a dataset ships pre-cropped images together with the crop affine (AGORA,
    docs/design/data-formats.md §2.5).
    """
    scale = np.array([affine[0, 0], affine[1, 1]])
    return np.asarray(focal) * scale, np.asarray(princpt) * scale + affine[:, 2]
