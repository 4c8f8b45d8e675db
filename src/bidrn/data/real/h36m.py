"""Human3.6M with NeuralAnnot SMPL-X fits (docs/design/data-formats.md §2.1), the paper's 3D training set.

Layout under ``root`` (the ``Human36M`` folder)::

    images/s_01_act_02_subact_01_ca_01/s_01_act_02_subact_01_ca_01_000001.jpg
    annotations/Human36M_subject{S}_data.json          images + annotations (bbox xywh)
    annotations/Human36M_subject{S}_camera.json        {cam_idx: {R, t (mm), f, c}}
    annotations/Human36M_subject{S}_joint_3d.json      {action: {subaction: {frame: 17x3 world mm}}}
    annotations/Human36M_subject{S}_SMPLX_NeuralAnnot.json   {action: {subaction: {frame: params}}}

The 17 H36M joints are mapped to the 137 set by name (Torso, Head and Head_top have no
counterpart). SMPL-X fits are stored in the *world* frame; they are moved to each camera with
``X_cam = R X_world + t``: the root rotation becomes ``R root``, and the translation is chosen so
the posed body lands where ``R X + t`` puts it (this needs the body model's rest pelvis; without a
body model the translation assumes a pelvis at the origin and no SMPL-X joint target is built).
SMPL-X chooses its 17 face-contour landmarks by the head's yaw in the frame it is evaluated in,
so those (only) differ slightly from the world body's contour moved rigidly to the camera.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from bidrn.data import geometry
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
from bidrn.data.sample import PersonRecord, SMPLXParams, map_joints_by_name
from bidrn.errors import one_line

H36M_JOINT_NAMES: tuple[str, ...] = (
    "Pelvis", "R_Hip", "R_Knee", "R_Ankle", "L_Hip", "L_Knee", "L_Ankle", "Torso", "Neck", "Head",
    "Head_top", "L_Shoulder", "L_Elbow", "L_Wrist", "R_Shoulder", "R_Elbow", "R_Wrist",
)  # fmt: skip
"""The 17 Human3.6M joints, in file order."""


@dataclass(frozen=True)
class H36MSplit:
    """Which subjects, frames and cameras a split uses (docs/design/pipeline.md §7.2)."""

    subjects: tuple[int, ...]
    frame_stride: int
    cameras: tuple[int, ...] | None


H36M_SPLITS = {
    "train": H36MSplit((1, 5, 6, 7, 8), 5, None),
    "test": H36MSplit((9, 11), 64, (4,)),
}


def world_fit_to_camera(
    params: SMPLXParams, rotation: np.ndarray, translation_m: np.ndarray, rest_pelvis: np.ndarray
) -> SMPLXParams:
    """SMPL-X parameters of the same body seen from a camera with ``X_cam = R X_world + t``.

    SMPL-X rotates the body about its rest-pose pelvis ``J0``, so a world body is
    ``R_root (X - J0) + J0 + trans``. In the camera that is ``(R R_root)(X - J0) + R (J0 + trans) + t``,
    i.e. root ``R R_root`` and translation ``R (J0 + trans) + t - J0``.
    """
    root = geometry.rotate_axis_angle(rotation, params.root_pose)
    trans = rotation @ (rest_pelvis + params.trans) + translation_m - rest_pelvis
    return SMPLXParams(root, params.body_pose, params.lhand_pose, params.rhand_pose, params.jaw_pose,
                       params.shape, params.expr, trans)  # fmt: skip


def rest_pelvis(body_model: torch.nn.Module | None, shape: np.ndarray) -> np.ndarray:
    """The rest-pose pelvis of a shape (zeros without a body model)."""
    if body_model is None:
        return np.zeros(3)
    with torch.no_grad():
        output = body_model(betas=torch.as_tensor(shape, dtype=torch.float32)[None])
    return output.joints[0, 0].double().numpy()


class Human36M(RecordDataset):
    """Human3.6M person samples.

    ``split="train"``: S1, 5, 6, 7, 8, every 5th frame, all cameras; ``"test"``: S9, 11, every 64th
    frame, camera 4.

    Args:
        root: the ``Human36M`` folder.
        split: ``"train"`` or ``"test"``; ``subjects`` overrides the split's subjects.
        options: error policy, file checks, augmentation.
        body_model: SMPL-X layer for exact camera-frame translations and SMPL-X joint targets.
    """

    def __init__(
        self,
        root: str | Path,
        split: Literal["train", "test"] = "train",
        options: DataOptions | None = None,
        body_model: torch.nn.Module | None = None,
        subjects: tuple[int, ...] | None = None,
    ) -> None:
        options = options or DataOptions()
        self.root = Path(root)
        plan = H36M_SPLITS[split]
        problems = Problems(options.on_error, "Human36M")
        records: list[PersonRecord] = []
        for subject in subjects or plan.subjects:
            records.extend(self._subject_records(subject, plan, problems, body_model))
        super().__init__(filter_records(records, options, problems), options, body_model, "Human36M")
        self.skipped = problems.skipped

    def _subject_records(
        self, subject: int, plan: H36MSplit, problems: Problems, body_model: torch.nn.Module | None
    ) -> list[PersonRecord]:
        folder = self.root / "annotations"
        data_path = folder / f"Human36M_subject{subject}_data.json"
        index = coco_index(data_path)
        cameras_path = folder / f"Human36M_subject{subject}_camera.json"
        cameras = load_json_object(cameras_path)
        joints_path = folder / f"Human36M_subject{subject}_joint_3d.json"
        joints_3d = load_json_object(joints_path)
        fits_path = folder / f"Human36M_subject{subject}_SMPLX_NeuralAnnot.json"
        fits = load_json_object(fits_path) if fits_path.is_file() else {}

        records = []
        for ann_id, ann in index.anns.items():
            context = f"annotation {ann_id}"
            image = index.imgs.get(ann.get("image_id"))
            if image is None:
                problems.report(data_path, f"{context}: image_id {ann.get('image_id')} has no image entry")
                continue
            missing = first_missing(ann, ("bbox",)) or first_missing(
                image, ("file_name", "width", "height", "action_idx", "subaction_idx", "frame_idx", "cam_idx")
            )
            if missing is not None:
                problems.report(data_path, f"{context}: missing key '{missing}'")
                continue
            if not all(
                isinstance(image[key], int) and not isinstance(image[key], bool)
                for key in ("action_idx", "subaction_idx", "frame_idx", "cam_idx")
            ):
                problems.report(data_path, f"{context}: action, subaction, frame and camera must be integers")
                continue
            if image["frame_idx"] % plan.frame_stride != 0:
                continue
            if plan.cameras is not None and image["cam_idx"] not in plan.cameras:
                continue
            camera = cameras.get(str(image["cam_idx"]))
            if not isinstance(camera, dict) or first_missing(camera, ("R", "t", "f", "c")) is not None:
                problems.report(
                    cameras_path, f"camera {image['cam_idx']}: missing or lacks one of R, t, f, c"
                )
                continue
            key = (str(image["action_idx"]), str(image["subaction_idx"]), str(image["frame_idx"]))
            world = _nested(joints_3d, key)
            if world is None:
                problems.report(
                    joints_path, f"{context}: no 3D joints for action/subaction/frame {'/'.join(key)}"
                )
                continue
            fit = _nested(fits, key)
            try:
                records.append(
                    self._record(ann_id, ann, image, camera, world, fit, fits_path, problems, body_model)
                )
            except MALFORMED as error:
                problems.report(data_path, f"{context}: malformed annotation or camera ({one_line(error)})")
        return records

    def _record(
        self,
        ann_id: int,
        ann: dict[str, Any],
        image: dict[str, Any],
        camera: dict[str, Any],
        world_mm: Any,
        fit_raw: Any,
        fits_path: Path,
        problems: Problems,
        body_model: torch.nn.Module | None,
    ) -> PersonRecord:
        rotation = np.asarray(camera["R"], dtype=np.float64).reshape(3, 3)
        translation = np.asarray(camera["t"], dtype=np.float64).reshape(3) / 1000.0
        focal = np.asarray(camera["f"], dtype=np.float64).reshape(2)
        princpt = np.asarray(camera["c"], dtype=np.float64).reshape(2)
        world = np.asarray(world_mm, dtype=np.float64).reshape(len(H36M_JOINT_NAMES), 3) / 1000.0
        cam = world @ rotation.T + translation
        joints_3d, valid = map_joints_by_name(H36M_JOINT_NAMES, cam, np.ones(len(H36M_JOINT_NAMES)))
        joints_2d = geometry.project(np.where(valid[:, None], joints_3d, [0.0, 0.0, 1.0]), focal, princpt)
        record = PersonRecord(
            image_path=inside(self.root / "images", image["file_name"], "file_name"),
            image_size=image_size(image),
            bbox=box_xywh(ann["bbox"]),
            joints_2d=joints_2d,
            joints_2d_valid=valid,
            joints_3d=joints_3d,
            joints_3d_valid=valid.copy(),
            focal=focal,
            princpt=princpt,
            is_3d=True,
            dataset="Human36M",
            ann_id=ann_id,
        )
        if isinstance(fit_raw, dict):
            fit = parse_smplx_param(fit_raw, fits_path, f"annotation {ann_id}", problems, with_camera=False)
            if fit is not None:
                apply_body_only_fit_rules(fit)
                pelvis = rest_pelvis(body_model, fit.params.shape)
                fit.apply_to(record, world_fit_to_camera(fit.params, rotation, translation, pelvis))
        return record


def _nested(tree: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree
