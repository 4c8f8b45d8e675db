"""Read synthetic shards written by ``bidrn synth`` as a :class:`~bidrn.data.dataset.RecordDataset`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bidrn.data.dataset import DataOptions, Problems, RecordDataset, filter_records
from bidrn.data.sample import NUM_JOINTS, NUM_ROTATIONS, PersonRecord, SMPLXParams
from bidrn.data.synthetic import shards


def shard_records(folder: Path) -> list[PersonRecord]:
    """The person records of one shard folder."""
    index, arrays = shards.read_shard(folder)
    records = []
    for row, (sample_id, file_name) in enumerate(zip(arrays["ids"].tolist(), index["files"], strict=True)):
        joints_2d = arrays["joints_2d"][row].astype(np.float64)
        joints_3d = arrays["joints_3d"][row].astype(np.float64)
        everything = np.ones(NUM_JOINTS, dtype=bool)
        params = SMPLXParams(
            **{
                key: arrays[key][row]
                for key in (
                    "root_pose",
                    "body_pose",
                    "lhand_pose",
                    "rhand_pose",
                    "jaw_pose",
                    "shape",
                    "expr",
                    "trans",
                )
            }
        )
        boxes = {
            part: arrays[f"{part}_box"][row].astype(np.float64) if arrays[f"{part}_valid"][row] else None
            for part in ("lhand", "rhand", "face")
        }
        height, width = (int(v) for v in arrays["image_size"][row])
        records.append(
            PersonRecord(
                image_path=folder / file_name,
                image_size=(height, width),
                bbox=arrays["bbox"][row].astype(np.float64),
                joints_2d=joints_2d,
                joints_2d_valid=everything,
                joints_3d=joints_3d,
                joints_3d_valid=everything.copy(),
                smplx=params,
                smplx_pose_valid=np.ones(NUM_ROTATIONS, dtype=bool),
                smplx_shape_valid=True,
                smplx_expr_valid=True,
                smplx_joints_2d=joints_2d.copy(),
                smplx_joints_3d=joints_3d.copy(),
                smplx_joints_valid=everything.copy(),
                focal=arrays["focal"][row].astype(np.float64),
                princpt=arrays["princpt"][row].astype(np.float64),
                lhand_box=boxes["lhand"],
                rhand_box=boxes["rhand"],
                face_box=boxes["face"],
                visibility=arrays["visible"][row].astype(bool),
                is_3d=True,
                dataset="synthetic",
                ann_id=int(sample_id),
            )
        )
    return records


class SyntheticDataset(RecordDataset):
    """Samples rendered by ``bidrn synth`` (one output folder = one split).

    Every joint is valid (the ground truth is exact even where a joint is hidden; ``visibility``
    on each record says which joints can be seen), the joints are the SMPL-X joints of the stored
    parameters, and ``is_3D`` is set.
    """

    def __init__(self, root: str | Path, options: DataOptions | None = None) -> None:
        options = options or DataOptions()
        self.root = Path(root)
        self.manifest = shards.read_manifest(self.root)
        problems = Problems(options.on_error, "synthetic")
        records: list[PersonRecord] = []
        for name in self.manifest["shards"]:
            records.extend(shard_records(self.root / name))
        super().__init__(filter_records(records, options, problems), options, None, "synthetic")
        self.skipped = problems.skipped
