"""MPII with NeuralAnnot SMPL-X fits (docs/design/data-formats.md §2.3), a 2D training set.

Layout under ``root`` (the ``MPII`` folder)::

    data/<file_name>                                  images (file names carry their sub-folder)
    data/annotations/train.json                       COCO-style, 16 keypoints
    data/annotations/MPII_train_SMPLX_NeuralAnnot.json   {str(ann_id): {smplx_param, cam_param}}

Annotations without any labelled keypoint or marked ``iscrowd`` are skipped. Like Human3.6M,
ankle/wrist rotations and foot joints of the fits are not supervised; MPII has no hand/face boxes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bidrn.data.dataset import DataOptions, Problems, RecordDataset, filter_records
from bidrn.data.real.common import (
    MALFORMED,
    apply_body_only_fit_rules,
    box_xywh,
    coco_index,
    first_missing,
    image_size,
    inside,
    load_json_object,
    parse_smplx_param,
)
from bidrn.data.sample import PersonRecord, map_joints_by_name
from bidrn.errors import one_line

MPII_JOINT_NAMES: tuple[str, ...] = (
    "R_Ankle", "R_Knee", "R_Hip", "L_Hip", "L_Knee", "L_Ankle", "Pelvis", "Thorax", "Neck",
    "Head_top", "R_Wrist", "R_Elbow", "R_Shoulder", "L_Shoulder", "L_Elbow", "L_Wrist",
)  # fmt: skip
"""The 16 MPII keypoints, in file order."""


class MPII(RecordDataset):
    """MPII training samples (the only split the paper uses).

    Args:
        root: the ``MPII`` folder.
        options: error policy, file checks, augmentation.
        body_model: SMPL-X layer that turns the fits into SMPL-X joint targets (masked without it).
    """

    def __init__(
        self, root: str | Path, options: DataOptions | None = None, body_model: torch.nn.Module | None = None
    ) -> None:
        options = options or DataOptions()
        self.root = Path(root)
        problems = Problems(options.on_error, "MPII")
        ann_path = self.root / "data" / "annotations" / "train.json"
        index = coco_index(ann_path)
        fits_path = self.root / "data" / "annotations" / "MPII_train_SMPLX_NeuralAnnot.json"
        fits = load_json_object(fits_path) if fits_path.is_file() else {}
        records = []
        for ann_id, ann in index.anns.items():
            context = f"annotation {ann_id}"
            image = index.imgs.get(ann.get("image_id"))
            missing = first_missing(ann, ("bbox", "keypoints")) or (
                "image_id" if image is None else first_missing(image, ("file_name", "width", "height"))
            )
            if missing is not None:
                problems.report(ann_path, f"{context}: missing key '{missing}'")
                continue
            try:
                keypoints = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
            except MALFORMED as error:
                problems.report(ann_path, f"{context}: malformed keypoints ({one_line(error)})")
                continue
            if len(keypoints) != len(MPII_JOINT_NAMES):
                problems.report(ann_path, f"{context}: expected 16 keypoints, found {len(keypoints)}")
                continue
            if ann.get("iscrowd", 0) or not np.any(keypoints[:, 2] > 0):
                continue
            joints, valid = map_joints_by_name(MPII_JOINT_NAMES, keypoints[:, :2], keypoints[:, 2] > 0)
            try:
                record = PersonRecord(
                    image_path=inside(self.root / "data", image["file_name"], "file_name"),
                    image_size=image_size(image),
                    bbox=box_xywh(ann["bbox"]),
                    joints_2d=joints,
                    joints_2d_valid=valid,
                    dataset="MPII",
                    ann_id=ann_id,
                )
            except MALFORMED as error:
                problems.report(ann_path, f"{context}: malformed annotation ({one_line(error)})")
                continue
            fit_raw = fits.get(str(ann_id))
            if isinstance(fit_raw, dict):
                fit = parse_smplx_param(fit_raw, fits_path, context, problems)
                if fit is not None:
                    apply_body_only_fit_rules(fit)
                    fit.apply_to(record)
            records.append(record)
        super().__init__(filter_records(records, options, problems), options, body_model, "MPII")
        self.skipped = problems.skipped
