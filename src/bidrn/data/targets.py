"""Turn a :class:`~bidrn.data.sample.PersonRecord` and its image into network inputs and targets.

:func:`build_sample` returns Hand4Whole's three dictionaries (docs/design/pipeline.md §6–§7) as float32
torch tensors; ``J = 137`` (``bidrn.body.joint_sets.JOINT_NAMES``), "hm units" are the 8x6 body
heatmap's cells (x in [0, 6), y in [0, 8)) and depth bins are the 8 heatmap slices.

``inputs``
    ``img`` (3, 512, 384): RGB crop in [0, 1] (pixel / 255, no mean/std normalisation).

``targets``
    ``joint_img`` (J, 3): dataset joints, x/y in hm units of the crop, z = depth bin
    (body: pelvis-relative over 2 m; hands: wrist-relative over 0.3 m; face: neck-relative over
    0.3 m; z = 4, the middle bin, when the dataset has no 3D joints).
    ``joint_cam`` (J, 3): dataset 3D joints in metres, camera axes after the 3D rotation
    augmentation, body pelvis-relative, hands wrist-relative, face neck-relative (zeros if 2D-only).
    ``smplx_joint_img`` (J, 3), ``smplx_joint_cam`` (J, 3): the same for the joints of the
    (pseudo-)GT SMPL-X body.
    ``smplx_pose`` (159,): axis-angle ``root | body 21 | lhand 15 | rhand 15 | jaw``, root rotated by
    the 3D augmentation; ``smplx_shape`` (10,) (zeroed if any |β| > 3); ``smplx_expr`` (10,).
    ``lhand_bbox_center``, ``lhand_bbox_size``, ``rhand_bbox_center``, ``rhand_bbox_size``,
    ``face_bbox_center``, ``face_bbox_size`` (2,) each: box centre (x, y) and size (w, h) in hm units.

``meta_info``
    ``joint_valid`` (J, 1), ``joint_trunc`` (J, 1) (= valid and inside the 8x8x6 volume),
    ``smplx_joint_valid`` (J, 1), ``smplx_joint_trunc`` (J, 1), ``smplx_pose_valid`` (159,),
    ``smplx_shape_valid``, ``smplx_expr_valid``, ``is_3D``, ``lhand_bbox_valid``,
    ``rhand_bbox_valid``, ``face_bbox_valid`` (scalars, 0-d), ``bbox`` (4,) the prepared person box
    xywh in original-image pixels, ``img2bb_trans`` (2, 3) original image -> crop pixels (flip
    included), ``bb2img_trans`` (2, 3) its inverse, ``focal`` (2,) and ``princpt`` (2,) the camera
    of the crop in crop pixels (valid when ``has_camera`` is 1; it images the rotated scene, so
    projecting ``smplx_joint_cam + root`` with it gives the crop joints).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from bidrn.body import joint_sets
from bidrn.data import geometry
from bidrn.data.augment import IDENTITY, Augmentation
from bidrn.data.sample import NUM_JOINTS, NUM_ROTATIONS, PersonRecord
from bidrn.errors import BidrnError

HEATMAP_DEPTH, HEATMAP_HEIGHT, HEATMAP_WIDTH = 8, 8, 6
"""Body heatmap ``output_hm_shape`` (D, H, W) (docs/design/pipeline.md §2, §5.1)."""

BODY_3D_SIZE = 2.0
HAND_3D_SIZE = 0.3
FACE_3D_SIZE = 0.3
"""Depth ranges in metres mapped onto the 8 depth bins (docs/design/pipeline.md §2)."""

MAX_ABS_SHAPE = 3.0
"""β with any |β| above this is replaced by zeros in targets (docs/design/pipeline.md §9.1, item 7)."""

_PARTS = (
    (joint_sets.BODY_SLICE, joint_sets.BODY_ROOT, BODY_3D_SIZE),
    (joint_sets.LHAND_SLICE, joint_sets.LHAND_ROOT, HAND_3D_SIZE),
    (joint_sets.RHAND_SLICE, joint_sets.RHAND_ROOT, HAND_3D_SIZE),
    (joint_sets.FACE_SLICE, joint_sets.FACE_ROOT, FACE_3D_SIZE),
)


@dataclass(frozen=True)
class TargetGeometry:
    """Crop size and heatmap grid that define the target units (paper: 512x384 crops, 8x8x6).

    Smaller models (tests, quick experiments) take a smaller crop; x/y targets are always
    expressed on the body heatmap grid ``heatmap_shape`` (D, H, W).
    """

    crop_shape: tuple[int, int] = (geometry.CROP_HEIGHT, geometry.CROP_WIDTH)
    heatmap_shape: tuple[int, int, int] = (HEATMAP_DEPTH, HEATMAP_HEIGHT, HEATMAP_WIDTH)

    def to_heatmap_xy(self, points_px: np.ndarray) -> np.ndarray:
        """Crop pixels -> heatmap x/y units."""
        _, height, width = self.heatmap_shape
        return points_px * np.array([width / self.crop_shape[1], height / self.crop_shape[0]])

    def inside(self, joint_img: np.ndarray) -> np.ndarray:
        """Whether each ``(x, y, z)`` lies inside the heatmap volume."""
        depth, height, width = self.heatmap_shape
        x, y, z = joint_img[:, 0], joint_img[:, 1], joint_img[:, 2]
        return (x >= 0) & (x < width) & (y >= 0) & (y < height) & (z >= 0) & (z < depth)


PAPER_GEOMETRY = TargetGeometry()
"""512x384 crops and 8x8x6 body heatmaps (docs/design/pipeline.md §2)."""


class InvalidSampleError(BidrnError):
    """A record that cannot give correct targets (e.g. its person box lies outside the image)."""


@dataclass(frozen=True)
class CropResult:
    """Geometry of one crop: prepared box, the image->crop affine and the 3D scene rotation."""

    box: np.ndarray
    affine: np.ndarray
    scene_rotation: np.ndarray


def flip_affine(image_width: int) -> np.ndarray:
    """The 2x3 affine of a horizontal image flip ``x -> W - 1 - x``."""
    return np.array([[-1.0, 0.0, image_width - 1.0], [0.0, 1.0, 0.0]])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``outer ∘ inner`` for 2x3 affines."""
    return outer[:, :2] @ np.vstack([inner, [0.0, 0.0, 1.0]])[:2] + np.hstack(
        [np.zeros((2, 2)), outer[:, 2:]]
    )


def plan_crop(
    record: PersonRecord, augmentation: Augmentation, shape: TargetGeometry = PAPER_GEOMETRY
) -> CropResult:
    """Prepared person box and crop affine of an (already mirrored, if flipping) record."""
    height, width = record.image_size
    box = geometry.sanitize_box(record.bbox, height, width)
    if box is not None:
        box = geometry.fit_box_aspect(box, aspect=shape.crop_shape[1] / shape.crop_shape[0])
    if box is None:
        raise InvalidSampleError(
            f"{record.image_path}: person box {np.round(record.bbox, 1).tolist()} of annotation "
            f"{record.ann_id} lies outside the {width}x{height} image"
        )
    affine = geometry.crop_affine(box, augmentation.scale, augmentation.rotation_deg, *shape.crop_shape)
    return CropResult(box, affine, geometry.scene_rotation_for_crop(augmentation.rotation_deg))


def warp_image(image: np.ndarray, affine: np.ndarray, out_height: int, out_width: int) -> np.ndarray:
    """Bilinear warp of an ``(H, W, 3)`` uint8 image by a 2x3 affine (image px -> output px).

    Only the window of the image the output samples from (its bilinear neighbours included, two
    pixels to spare) is handed to Pillow, which copies what it is given: a 512x384 crop of a
    person in a 12 MP photo copied all 48 MB of it before (49 ms, now 8 ms).
    """
    inverse = geometry.invert_affine(affine)
    height, width = image.shape[:2]
    reach = geometry.transform_box_xyxy(inverse, np.array([-0.5, -0.5, out_width - 0.5, out_height - 0.5]))
    x0, y0 = np.clip(np.floor(reach[:2]) - 2, 0, [width, height]).astype(int).tolist()
    x1, y1 = np.clip(np.ceil(reach[2:]) + 3, 0, [width, height]).astype(int).tolist()
    if x1 <= x0 or y1 <= y0:
        return np.zeros((out_height, out_width, *image.shape[2:]), dtype=image.dtype)
    # PIL samples at pixel centres (i + 0.5); our coordinates put pixel i's centre at i.
    linear = inverse[:, :2]
    offset = inverse[:, 2] - (x0, y0) + 0.5 - linear @ np.array([0.5, 0.5])
    coefficients = (*linear[0], offset[0], *linear[1], offset[1])
    warped = Image.fromarray(image[y0:y1, x0:x1]).transform(
        (out_width, out_height), Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR
    )
    return np.asarray(warped)


def part_relative(joints_cam: np.ndarray) -> np.ndarray:
    """Body pelvis-relative, hands wrist-relative, face neck-relative (docs/design/pipeline.md §5.8)."""
    out = joints_cam.copy()
    for part, root, _ in _PARTS:
        out[part] = joints_cam[part] - joints_cam[root]
    return out


def depth_bins(joints_cam: np.ndarray, depth: int = HEATMAP_DEPTH) -> np.ndarray:
    """Discretised depth ``(z_rel / (S/2) + 1) / 2 * D`` per part (docs/design/pipeline.md §5.4)."""
    z = np.zeros(len(joints_cam))
    for part, root, size in _PARTS:
        relative = joints_cam[part, 2] - joints_cam[root, 2]
        z[part] = (relative / (size / 2.0) + 1.0) / 2.0 * depth
    return z


def _joint_targets(
    points_2d: np.ndarray | None,
    points_3d: np.ndarray | None,
    valid: np.ndarray,
    crop: CropResult,
    shape: TargetGeometry,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(joint_img, joint_cam, trunc) for one joint source."""
    if points_2d is None:
        return np.zeros((NUM_JOINTS, 3)), np.zeros((NUM_JOINTS, 3)), np.zeros(NUM_JOINTS, dtype=bool)
    xy = shape.to_heatmap_xy(geometry.apply_affine(crop.affine, points_2d))
    if points_3d is not None:
        rotated = points_3d @ crop.scene_rotation.T
        z = depth_bins(rotated, shape.heatmap_shape[0])
        cam = part_relative(rotated)
    else:
        z = np.full(NUM_JOINTS, shape.heatmap_shape[0] / 2.0)
        cam = np.zeros((NUM_JOINTS, 3))
    joint_img = np.concatenate([xy, z[:, None]], axis=1)
    return joint_img, cam, valid & shape.inside(joint_img)


def _box_targets(
    box_xyxy: np.ndarray | None, crop: CropResult, shape: TargetGeometry
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Centre, size (hm units) and validity of a hand or face box after the crop."""
    if (
        box_xyxy is None
        or not np.all(np.isfinite(box_xyxy))
        or box_xyxy[2] <= box_xyxy[0]
        or box_xyxy[3] <= box_xyxy[1]
    ):
        return np.zeros(2), np.zeros(2), False
    moved = geometry.transform_box_xyxy(crop.affine, np.asarray(box_xyxy, dtype=np.float64))
    corners = shape.to_heatmap_xy(moved.reshape(2, 2))
    centre = corners.mean(axis=0)
    size = corners[1] - corners[0]
    _, height, width = shape.heatmap_shape
    inside = 0 <= centre[0] < width and 0 <= centre[1] < height
    return centre, size, bool(inside)


def _tensor(value: np.ndarray | float | bool) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value, dtype=np.float32))


def build_sample(
    record: PersonRecord,
    image: np.ndarray,
    augmentation: Augmentation = IDENTITY,
    shape: TargetGeometry = PAPER_GEOMETRY,
) -> dict[str, dict[str, torch.Tensor]]:
    """Crop, augment and encode one person (see the module docstring for every key).

    ``image`` is the record's full ``(H, W, 3)`` uint8 RGB image; ``shape`` sets the crop size and
    heatmap grid (the paper's by default). Raises
    :class:`InvalidSampleError` when the person box lies outside the image.
    """
    height, width = record.image_size
    if image.shape[:2] != (height, width):
        raise InvalidSampleError(
            f"{record.image_path}: image is {image.shape[1]}x{image.shape[0]} but the annotation says "
            f"{width}x{height}"
        )
    original_box = plan_crop(record, IDENTITY, shape).box
    to_source = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    if augmentation.flip:
        record = record.mirrored()
        to_source = flip_affine(width)
    crop = plan_crop(record, augmentation, shape)
    img2bb = compose_affine(crop.affine, to_source)

    crop_img = warp_image(image, img2bb, *shape.crop_shape).astype(np.float32)
    crop_img = np.clip(crop_img * np.asarray(augmentation.colour, dtype=np.float32), 0.0, 255.0) / 255.0

    joint_img, joint_cam, joint_trunc = _joint_targets(
        record.joints_2d, record.joints_3d, record.joints_2d_valid, crop, shape
    )
    if not record.is_3d or record.joints_3d is None:
        joint_cam = np.zeros_like(joint_cam)
    smplx_img, smplx_cam, smplx_trunc = _joint_targets(
        record.smplx_joints_2d, record.smplx_joints_3d, record.smplx_joints_valid, crop, shape
    )
    smplx_joint_valid = (
        record.smplx_joints_valid if record.smplx_joints_2d is not None else np.zeros(NUM_JOINTS, bool)
    )

    targets: dict[str, np.ndarray] = {
        "joint_img": joint_img,
        "joint_cam": joint_cam,
        "smplx_joint_img": smplx_img,
        "smplx_joint_cam": smplx_cam,
    }
    meta: dict[str, np.ndarray | float] = {
        "joint_valid": record.joints_2d_valid[:, None],
        "joint_trunc": joint_trunc[:, None],
        "smplx_joint_valid": smplx_joint_valid[:, None],
        "smplx_joint_trunc": (smplx_trunc & smplx_joint_valid)[:, None],
        "is_3D": float(record.is_3d),
    }

    if record.smplx is not None:
        params = record.smplx
        pose = params.pose().copy()
        pose[:3] = geometry.rotate_axis_angle(crop.scene_rotation, pose[:3])
        betas = params.shape if np.all(np.abs(params.shape) <= MAX_ABS_SHAPE) else np.zeros(10)
        targets.update(smplx_pose=pose, smplx_shape=betas, smplx_expr=params.expr)
        meta.update(
            smplx_pose_valid=np.repeat(record.smplx_pose_valid, 3),
            smplx_shape_valid=float(record.smplx_shape_valid),
            smplx_expr_valid=float(record.smplx_expr_valid),
        )
    else:
        targets.update(
            smplx_pose=np.zeros(3 * NUM_ROTATIONS), smplx_shape=np.zeros(10), smplx_expr=np.zeros(10)
        )
        meta.update(smplx_pose_valid=np.zeros(3 * NUM_ROTATIONS), smplx_shape_valid=0.0, smplx_expr_valid=0.0)

    for part, box in (("lhand", record.lhand_box), ("rhand", record.rhand_box), ("face", record.face_box)):
        centre, size, valid = _box_targets(box, crop, shape)
        targets[f"{part}_bbox_center"] = centre
        targets[f"{part}_bbox_size"] = size
        meta[f"{part}_bbox_valid"] = float(valid)

    has_camera = record.focal is not None and record.princpt is not None
    zoom = float(np.hypot(*crop.affine[0, :2]))
    meta.update(
        bbox=original_box,
        img2bb_trans=img2bb,
        bb2img_trans=geometry.invert_affine(img2bb),
        focal=np.asarray(record.focal) * zoom if has_camera else np.zeros(2),
        princpt=geometry.apply_affine(crop.affine, np.asarray(record.princpt)[None])[0]
        if has_camera
        else np.zeros(2),
        has_camera=float(has_camera),
    )
    return {
        "inputs": {"img": torch.from_numpy(np.ascontiguousarray(crop_img.transpose(2, 0, 1)))},
        "targets": {k: _tensor(v) for k, v in targets.items()},
        "meta_info": {k: _tensor(v) for k, v in meta.items()},
    }
