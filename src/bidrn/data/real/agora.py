"""AGORA (docs/design/data-formats.md §2.5): synthetic photoreal scenes with camera-frame SMPL-X ground truth.

Layout under ``root`` (``AGORA/data``, as produced by Hand4Whole's AGORA tools)::

    AGORA_{train,validation}_SMPLX.json       images + annotations (boxes xywh in 3840x2160 px)
    smplx_params_cam/{split}/{image}/{person}.json   global_orient, body_pose, ..., betas, transl
    cam_params/{split}/{image}.json                  focal, princpt (3840x2160 px)
    images_3840x2160/{split}_crop/{image}_person_id_{k}.png (+ .json: affine_mat or img2bb_trans)
    images_1280x720/{split}/{image}_1280x720.png

``resolution="4k_crop"`` (default, Hand4Whole's) reads the 512x384 person crops: the person box is
the whole crop and intrinsics and boxes go through the crop's affine. ``resolution="1280x720"``
reads the low-resolution frames with boxes and intrinsics divided by 3. Annotations with
``is_valid == False`` are skipped. The targets' joints are the SMPL-X joints (both ``joint_*``
and ``smplx_joint_*``, ``is_3D``), which needs a body model; without one they are masked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from bidrn.data import geometry
from bidrn.data.dataset import DataOptions, Problems, RecordDataset, filter_records
from bidrn.data.real.common import MALFORMED, coco_index, first_missing, inside, load_json, xywh_to_xyxy
from bidrn.data.sample import NUM_JOINTS, NUM_ROTATIONS, PersonRecord, SMPLXParams, empty_joints
from bidrn.errors import InputFileError, one_line

AGORA_PARAM_KEYS = ("global_orient", "body_pose", "jaw_pose", "left_hand_pose", "right_hand_pose",
                    "betas", "expression", "transl")  # fmt: skip
"""Keys every AGORA camera-frame parameter file must have (eye poses are ignored)."""

LOW_RES_FACTOR = 3.0
"""3840x2160 -> 1280x720."""


def read_agora_params(path: Path) -> SMPLXParams:
    """Camera-frame SMPL-X parameters from one ``smplx_params_cam`` file (β truncated to 10)."""
    raw = load_json(path)
    missing = first_missing(raw, AGORA_PARAM_KEYS) if isinstance(raw, dict) else "global_orient"
    if missing is not None:
        raise InputFileError(path, f"missing key '{missing}'")
    try:
        return SMPLXParams(
            root_pose=raw["global_orient"],
            body_pose=raw["body_pose"],
            lhand_pose=raw["left_hand_pose"],
            rhand_pose=raw["right_hand_pose"],
            jaw_pose=raw["jaw_pose"],
            shape=raw["betas"],
            expr=raw["expression"],
            trans=raw["transl"],
        )
    except (ValueError, TypeError) as error:
        raise InputFileError(path, f"bad SMPL-X parameters ({one_line(error)})") from None


class AGORA(RecordDataset):
    """AGORA person samples (``split`` ``"train"`` or ``"validation"``; the paper evaluates on validation).

    Args:
        root: the ``AGORA/data`` folder.
        split: ``"train"`` or ``"validation"``.
        resolution: ``"4k_crop"`` or ``"1280x720"``.
        options: error policy, file checks, augmentation.
        body_model: SMPL-X layer for the joint targets (masked without it).
    """

    def __init__(
        self,
        root: str | Path,
        split: Literal["train", "validation"] = "validation",
        resolution: Literal["4k_crop", "1280x720"] = "4k_crop",
        options: DataOptions | None = None,
        body_model: torch.nn.Module | None = None,
    ) -> None:
        options = options or DataOptions()
        self.root = Path(root)
        self.resolution = resolution
        problems = Problems(options.on_error, "AGORA")
        ann_path = self.root / f"AGORA_{split}_SMPLX.json"
        index = coco_index(ann_path)
        required = ("image_id", "person_id", "smplx_param_path", "cam_param_path", "is_valid", "bbox",
                    "lhand_bbox", "rhand_bbox", "face_bbox")  # fmt: skip
        records = []
        for ann_id, ann in index.anns.items():
            context = f"annotation {ann_id}"
            image = index.imgs.get(ann.get("image_id"))
            missing = first_missing(ann, required) or (
                "image_id"
                if image is None
                else first_missing(image, ("file_name_3840x2160", "file_name_1280x720"))
            )
            if missing is not None:
                problems.report(ann_path, f"{context}: missing key '{missing}'")
                continue
            if not ann["is_valid"]:
                continue
            try:
                records.append(self._record(ann_id, ann, image))
            except InputFileError as error:
                problems.report(error.path, f"{context}: {error.problem}")
            except MALFORMED as error:
                problems.report(ann_path, f"{context}: malformed annotation ({one_line(error)})")
        super().__init__(filter_records(records, options, problems), options, body_model, "AGORA")
        self.skipped = problems.skipped

    def _record(self, ann_id: int, ann: dict[str, Any], image: dict[str, Any]) -> PersonRecord:
        params = read_agora_params(inside(self.root, ann["smplx_param_path"], "smplx_param_path"))
        cam_path = inside(self.root, ann["cam_param_path"], "cam_param_path")
        cam = load_json(cam_path)
        if not isinstance(cam, dict) or first_missing(cam, ("focal", "princpt")) is not None:
            raise InputFileError(cam_path, "missing key 'focal' or 'princpt'")
        focal, princpt = (
            np.asarray(cam["focal"], float).reshape(2),
            np.asarray(cam["princpt"], float).reshape(2),
        )
        boxes = {key: xywh_to_xyxy(ann[key]) for key in ("bbox", "lhand_bbox", "rhand_bbox", "face_bbox")}
        if self.resolution == "4k_crop":
            image_path, size, affine = self._crop(image["file_name_3840x2160"], ann["person_id"])
            focal, princpt = geometry.affine_camera(focal, princpt, affine)
            boxes = {
                k: None if b is None else geometry.transform_box_xyxy(affine, b) for k, b in boxes.items()
            }
            bbox = np.array([0.0, 0.0, size[1], size[0]])
        else:
            image_path = inside(self.root, image["file_name_1280x720"], "file_name_1280x720")
            size = (720, 1280)
            focal, princpt = focal / LOW_RES_FACTOR, princpt / LOW_RES_FACTOR
            boxes = {k: None if b is None else b / LOW_RES_FACTOR for k, b in boxes.items()}
            if boxes["bbox"] is None:
                raise InputFileError(self.root, "person box is empty")
            x1, y1, x2, y2 = boxes["bbox"]
            bbox = np.array([x1, y1, x2 - x1, y2 - y1])
        joints, valid = empty_joints(2)
        return PersonRecord(
            image_path=image_path,
            image_size=size,
            bbox=bbox,
            joints_2d=joints,
            joints_2d_valid=valid,
            smplx=params,
            smplx_pose_valid=np.ones(NUM_ROTATIONS, dtype=bool),
            smplx_shape_valid=True,
            smplx_expr_valid=True,
            smplx_joints_valid=np.ones(NUM_JOINTS, dtype=bool),
            focal=focal,
            princpt=princpt,
            lhand_box=boxes["lhand_bbox"],
            rhand_box=boxes["rhand_bbox"],
            face_box=boxes["face_bbox"],
            is_3d=True,
            joints_from_smplx=True,
            dataset="AGORA",
            ann_id=ann_id,
        )

    def _crop(self, file_name: str, person_id: int) -> tuple[Path, tuple[int, int], np.ndarray]:
        """Path, size and original->crop affine of one pre-cropped person."""
        if not isinstance(person_id, int) or isinstance(person_id, bool):
            raise ValueError(f"'person_id' must be an integer, got {str(person_id)[:40]!r}")
        original = inside(self.root, file_name, "file_name_3840x2160").relative_to(self.root)
        folder = self.root / original.parent.parent / f"{original.parent.name}_crop"
        image_path = folder / f"{original.stem}_person_id_{person_id}.png"
        meta_path = image_path.with_suffix(".json")
        meta = load_json(meta_path)
        if not isinstance(meta, dict):
            raise InputFileError(meta_path, "expected a JSON object")
        key = "affine_mat" if "affine_mat" in meta else "img2bb_trans"
        missing = first_missing(meta, (key, "resized_height", "resized_width"))
        if missing is not None:
            raise InputFileError(meta_path, f"missing key '{missing}'")
        affine = np.asarray(meta[key], dtype=np.float64).reshape(2, 3)
        return image_path, (int(meta["resized_height"]), int(meta["resized_width"])), affine
