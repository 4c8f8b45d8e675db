"""EHF (docs/design/data-formats.md §2.4): 100 test frames with ground-truth SMPL-X meshes.

Layout under ``root`` (the ``EHF`` folder)::

    data/EHF.json        images (id, file_name, width, height); annotations (image_id, body_bbox,
                         lefthand_bbox, righthand_bbox, face_bbox), boxes xywh
    data/01_img.jpg      the images
    data/01_align.ply    ground-truth mesh of frame 01 (prefix before the first "_")

Samples carry no joint targets but ``targets["smplx_mesh_cam"]``: :meth:`EHF.gt_mesh`, the
ground-truth vertices rotated into the camera frame with the fixed rotation of docs/design/pipeline.md §8.2
(:data:`EHF_MESH_ROTATION`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bidrn.data import geometry
from bidrn.data.dataset import DataOptions, Problems, RecordDataset, filter_records
from bidrn.data.real.common import (
    MALFORMED,
    box_xywh,
    coco_index,
    first_missing,
    image_size,
    inside,
    xywh_to_xyxy,
)
from bidrn.data.sample import PersonRecord, empty_joints
from bidrn.errors import InputFileError, one_line, require_regular_file

EHF_MESH_ROTATION = geometry.axis_angle_to_matrix(np.array([-2.98747896, 0.01172457, -0.05704687]))
"""Rotation taking EHF's ``*_align.ply`` meshes into the camera frame (docs/design/pipeline.md §8.2)."""


def read_ply_vertices(path: Path) -> np.ndarray:
    """``(V, 3)`` vertex positions of an ASCII or little-endian binary PLY file."""
    if not Path(path).exists():
        raise InputFileError(path, "ground-truth mesh is missing")
    require_regular_file(path, "PLY mesh")
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise InputFileError(path, f"cannot read mesh ({one_line(error.strerror or error)})") from None
    try:
        return _parse_ply(raw, path)
    except (ValueError, KeyError, IndexError) as error:
        if isinstance(error, InputFileError):
            raise
        raise InputFileError(path, f"malformed PLY file ({one_line(error)})") from None


def _parse_ply(raw: bytes, path: Path) -> np.ndarray:
    """The vertex positions of a PLY file's bytes (ValueError / KeyError / IndexError when malformed)."""
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise InputFileError(path, "not a PLY file (no 'ply' magic or 'end_header')")
    header = raw[:end].decode("ascii", "replace").splitlines()
    body = raw[raw.index(b"\n", end) + 1 :]
    fmt = next((line.split()[1] for line in header if line.startswith("format")), "")
    count, props, in_vertex = 0, [], False
    for line in header:
        words = line.split()
        if words[:2] == ["element", "vertex"]:
            count, in_vertex = int(words[2]), True
        elif words[:1] == ["element"]:
            in_vertex = False
        elif words[:1] == ["property"] and in_vertex:
            props.append((words[-1], words[1]))
    names = [name for name, _ in props]
    if count == 0 or not {"x", "y", "z"} <= set(names):
        raise InputFileError(path, "PLY file has no vertex x/y/z properties")
    columns = [names.index(axis) for axis in ("x", "y", "z")]
    if fmt == "ascii":
        rows = body.decode("ascii", "replace").split("\n")[:count]
        values = np.array([row.split()[: len(props)] for row in rows], dtype=np.float64)
    elif fmt == "binary_little_endian":
        types = {"float": "<f4", "float32": "<f4", "double": "<f8", "uchar": "u1", "uint8": "u1",
                 "int": "<i4", "int32": "<i4", "uint": "<u4", "short": "<i2", "ushort": "<u2"}  # fmt: skip
        dtype = np.dtype([(name, types[kind]) for name, kind in props])
        if len(body) < dtype.itemsize * count:
            raise InputFileError(path, "PLY file is truncated")
        table = np.frombuffer(body, dtype=dtype, count=count)
        return np.stack([table[axis].astype(np.float64) for axis in ("x", "y", "z")], axis=1)
    else:
        raise InputFileError(path, f"unsupported PLY format '{fmt}'")
    if values.shape[0] != count:
        raise InputFileError(path, "PLY file is truncated")
    return values[:, columns]


class EHF(RecordDataset):
    """EHF evaluation samples (person box from ``body_bbox``, hand/face boxes, GT meshes).

    Args:
        root: the ``EHF`` folder.
        options: error policy and file checks (no augmentation at test time).
    """

    def __init__(self, root: str | Path, options: DataOptions | None = None) -> None:
        options = options or DataOptions()
        self.root = Path(root)
        problems = Problems(options.on_error, "EHF")
        ann_path = self.root / "data" / "EHF.json"
        index = coco_index(ann_path)
        records = []
        for ann_id, ann in index.anns.items():
            context = f"annotation {ann_id}"
            image = index.imgs.get(ann.get("image_id"))
            missing = first_missing(ann, ("body_bbox", "lefthand_bbox", "righthand_bbox", "face_bbox")) or (
                "image_id" if image is None else first_missing(image, ("file_name", "width", "height"))
            )
            if missing is not None:
                problems.report(ann_path, f"{context}: missing key '{missing}'")
                continue
            joints, valid = empty_joints(2)
            try:
                records.append(
                    PersonRecord(
                        image_path=inside(self.root / "data", image["file_name"], "file_name"),
                        image_size=image_size(image),
                        bbox=box_xywh(ann["body_bbox"]),
                        joints_2d=joints,
                        joints_2d_valid=valid,
                        lhand_box=xywh_to_xyxy(ann["lefthand_bbox"]),
                        rhand_box=xywh_to_xyxy(ann["righthand_bbox"]),
                        face_box=xywh_to_xyxy(ann["face_bbox"]),
                        dataset="EHF",
                        ann_id=ann_id,
                    )
                )
            except MALFORMED as error:
                problems.report(ann_path, f"{context}: malformed annotation ({one_line(error)})")
        super().__init__(filter_records(records, options, problems), options, None, "EHF")
        self.skipped = problems.skipped

    def mesh_path(self, index: int) -> Path:
        """Ground-truth mesh file of sample ``index`` (``NN_align.ply`` beside ``NN_img.jpg``)."""
        image = self.records[index].image_path
        return image.parent / f"{image.name.split('_')[0]}_align.ply"

    def gt_mesh(self, index: int) -> np.ndarray:
        """Ground-truth vertices of sample ``index`` in the camera frame (metres)."""
        return read_ply_vertices(self.mesh_path(index)) @ EHF_MESH_ROTATION.T

    def __getitem__(self, index: int) -> dict[str, dict[str, torch.Tensor]]:
        """The sample plus ``targets["smplx_mesh_cam"]`` (V, 3), the ground-truth mesh for evaluation."""
        sample = super().__getitem__(index)
        sample["targets"]["smplx_mesh_cam"] = torch.as_tensor(self.gt_mesh(index), dtype=torch.float32)
        return sample
