"""COCO-WholeBody with NeuralAnnot SMPL-X fits (docs/design/data-formats.md §2.2), a 2D training set.

Layout under ``root`` (the ``MSCOCO`` folder)::

    images/train2017/000000000036.jpg, images/val2017/...
    annotations/coco_wholebody_train_v1.0.json, annotations/coco_wholebody_val_v1.0.json
    annotations/MSCOCO_train_SMPLX_all_NeuralAnnot.json   {str(ann_id): {smplx_param, cam_param}}

Crowd annotations and those with ``num_keypoints == 0`` are skipped, as in Hand4Whole. Keypoints
are merged into Hand4Whole's 134-joint layout (17 body, a mid-hip Pelvis valid when both hips
are, 6 feet, wrist + 20 per hand, 68 face: contour as Face_56..72, the rest as Face_5..55) and
mapped to the 137 set by name; Face_18 (nose tip) takes the body nose. The wrist keypoints of
the hand annotations have no slot in the 137 set (its hand roots are the body wrists) and are
used only where the body wrist is missing. NeuralAnnot fits are already in the camera frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from bidrn.body import joint_sets
from bidrn.data.dataset import DataOptions, Problems, RecordDataset, filter_records
from bidrn.data.real.common import (
    MALFORMED,
    box_xywh,
    coco_index,
    first_missing,
    image_size,
    inside,
    load_json_object,
    parse_smplx_param,
    xywh_to_xyxy,
)
from bidrn.data.sample import PersonRecord, map_joints_by_name
from bidrn.errors import one_line

COCO_BODY_NAMES: tuple[str, ...] = (
    "Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow",
    "L_Wrist", "R_Wrist", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle",
)  # fmt: skip
"""The 17 COCO body keypoints, in file order."""

COCO_FOOT_NAMES: tuple[str, ...] = (
    "L_Big_toe",
    "L_Small_toe",
    "L_Heel",
    "R_Big_toe",
    "R_Small_toe",
    "R_Heel",
)
"""The 6 ``foot_kpts`` of COCO-WholeBody, in file order."""

_HAND_ORDER = tuple(f"{finger}_{k}" for finger in joint_sets.HAND_FINGER_ORDER for k in (1, 2, 3, 4))
COCO_FACE_NAMES: tuple[str, ...] = (
    *(f"Face_{k}" for k in range(56, 73)),
    *(f"Face_{k}" for k in range(5, 56)),
)
"""The 68 ``face_kpts`` (iBUG order) named as supervision joints: contour first, then the rest."""

WHOLEBODY_NAMES: tuple[str, ...] = (
    *COCO_BODY_NAMES,
    "Pelvis",
    *COCO_FOOT_NAMES,
    "L_Wrist_Hand",
    *(f"L_{name}" for name in _HAND_ORDER),
    "R_Wrist_Hand",
    *(f"R_{name}" for name in _HAND_ORDER),
    *COCO_FACE_NAMES,
)
"""Hand4Whole's 134-joint merged COCO-WholeBody layout."""

_KEYPOINT_KEYS = ("keypoints", "foot_kpts", "lefthand_kpts", "righthand_kpts", "face_kpts")
_REQUIRED_KEYS = ("bbox", "iscrowd", "num_keypoints", *_KEYPOINT_KEYS)


def merge_wholebody_keypoints(ann: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(134, 2)`` coordinates and ``(134,)`` validity in :data:`WHOLEBODY_NAMES` order."""
    parts = [np.asarray(ann[key], dtype=np.float64).reshape(-1, 3) for key in _KEYPOINT_KEYS]
    body, foot, lhand, rhand, face = parts
    hips = body[[11, 12]]
    pelvis = np.array([[*hips[:, :2].mean(axis=0), float(np.all(hips[:, 2] > 0))]])
    merged = np.concatenate([body, pelvis, foot, lhand, rhand, face])
    return merged[:, :2], merged[:, 2] > 0


def wholebody_to_joints(ann: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The annotation's keypoints in the 137 set (coordinates, validity)."""
    coords, valid = merge_wholebody_keypoints(ann)
    names = WHOLEBODY_NAMES
    for side in ("L", "R"):  # body wrist missing: take the hand annotation's wrist
        body, hand = names.index(f"{side}_Wrist"), names.index(f"{side}_Wrist_Hand")
        if not valid[body] and valid[hand]:
            coords[body], valid[body] = coords[hand], True
    nose, nose_tip = names.index("Nose"), names.index("Face_18")
    coords[nose_tip], valid[nose_tip] = coords[nose], valid[nose]
    return map_joints_by_name(names, coords, valid)


class COCOWholeBody(RecordDataset):
    """COCO-WholeBody person samples with NeuralAnnot SMPL-X pseudo-GT where available.

    Args:
        root: the ``MSCOCO`` folder.
        split: ``"train"`` (with NeuralAnnot fits) or ``"val"``.
        options: error policy, file checks, augmentation.
        body_model: SMPL-X layer that turns the fits into SMPL-X joint targets (masked without it).
    """

    def __init__(
        self,
        root: str | Path,
        split: Literal["train", "val"] = "train",
        options: DataOptions | None = None,
        body_model: torch.nn.Module | None = None,
    ) -> None:
        options = options or DataOptions()
        self.root = Path(root)
        problems = Problems(options.on_error, "MSCOCO")
        ann_path = self.root / "annotations" / f"coco_wholebody_{split}_v1.0.json"
        index = coco_index(ann_path)
        fits_path = self.root / "annotations" / "MSCOCO_train_SMPLX_all_NeuralAnnot.json"
        fits = load_json_object(fits_path) if split == "train" and fits_path.is_file() else {}
        images_folder = self.root / "images" / f"{split}2017"
        records = []
        for ann_id, ann in index.anns.items():
            context = f"annotation {ann_id}"
            missing = first_missing(ann, _REQUIRED_KEYS)
            image = index.imgs.get(ann.get("image_id"))
            if missing is None and image is None:
                missing = "image_id"
            if missing is None:
                missing = first_missing(image, ("file_name", "width", "height"))
            if missing is not None:
                problems.report(ann_path, f"{context}: missing key '{missing}'")
                continue
            if ann["iscrowd"] or ann["num_keypoints"] == 0:
                continue
            try:
                joints, valid = wholebody_to_joints(ann)
                record = PersonRecord(
                    image_path=inside(images_folder, image["file_name"], "file_name"),
                    image_size=image_size(image),
                    bbox=box_xywh(ann["bbox"]),
                    joints_2d=joints,
                    joints_2d_valid=valid,
                    lhand_box=xywh_to_xyxy(ann.get("lefthand_box")) if ann.get("lefthand_valid") else None,
                    rhand_box=xywh_to_xyxy(ann.get("righthand_box")) if ann.get("righthand_valid") else None,
                    face_box=xywh_to_xyxy(ann.get("face_box")) if ann.get("face_valid") else None,
                    dataset="MSCOCO",
                    ann_id=ann_id,
                )
            except MALFORMED as error:
                problems.report(ann_path, f"{context}: malformed annotation ({one_line(error)})")
                continue
            fit_raw = fits.get(str(ann_id))
            if isinstance(fit_raw, dict):
                fit = parse_smplx_param(fit_raw, fits_path, context, problems)
                if fit is not None:
                    fit.apply_to(record)
            records.append(record)
        super().__init__(filter_records(records, options, problems), options, body_model, "MSCOCO")
        self.skipped = problems.skipped
