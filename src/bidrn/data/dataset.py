"""The torch ``Dataset`` shared by every loader: records in, ``inputs``/``targets``/``meta_info`` out.

A loader's only job is to turn its files into :class:`~bidrn.data.sample.PersonRecord` objects;
:class:`RecordDataset` then reads images, fills SMPL-X joints with a body model when the record
only carries parameters, samples the augmentation and calls
:func:`bidrn.data.targets.build_sample`.

Bad inputs are handled by one policy, :attr:`DataOptions.on_error`:

* ``"raise"`` (default): the first problem raises :class:`bidrn.errors.InputFileError` naming the
  file and the problem. Annotation problems (missing keys, boxes outside the image, missing image
  files) are found while indexing, in the main process, before any DataLoader worker starts.
* ``"skip"``: the problem is logged once as a warning and the annotation is dropped; an image that
  turns out to be unreadable only when a worker decodes it is replaced by the next readable
  sample (logged), so a long run is not lost to one truncated JPEG.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from bidrn.data import geometry
from bidrn.data.augment import NO_AUGMENTATION, AugmentationConfig
from bidrn.data.sample import PersonRecord
from bidrn.data.targets import PAPER_GEOMETRY, InvalidSampleError, TargetGeometry, build_sample
from bidrn.errors import BidrnError, InputFileError

LOGGER = logging.getLogger("bidrn.data")

ErrorPolicy = Literal["raise", "skip"]
FileCheck = Literal["none", "exists", "header"]


@dataclass(frozen=True)
class DataOptions:
    """Options every loader accepts.

    Attributes:
        on_error: ``"raise"`` or ``"skip"`` (see the module docstring).
        check_files: while indexing, ``"exists"`` stats every image, ``"header"`` also opens it and
            compares its size with the annotation, ``"none"`` trusts the annotation file.
        augmentation: training augmentation (default: none, i.e. evaluation).
        seed: base seed; sample ``i`` of epoch ``e`` uses ``default_rng([seed, e, i])``.
        max_skips: how many consecutive unreadable samples ``"skip"`` tolerates before raising.
        target_geometry: crop size and heatmap grid of the targets (the paper's by default).
    """

    on_error: ErrorPolicy = "raise"
    check_files: FileCheck = "exists"
    augmentation: AugmentationConfig = field(default_factory=lambda: NO_AUGMENTATION)
    seed: int = 0
    max_skips: int = 16
    target_geometry: TargetGeometry = PAPER_GEOMETRY


class SampleReadError(BidrnError):
    """An image that could not be decoded when a sample was built (one-line message)."""


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to ``(H, W, 3)`` uint8 RGB or raise :class:`SampleReadError`."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise SampleReadError(f"{path}: image file is missing") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise SampleReadError(f"{path}: cannot decode image ({error})") from None


def image_header_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from an image file's header, or :class:`InputFileError`."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except FileNotFoundError:
        raise InputFileError(path, "image file is missing") from None
    except (UnidentifiedImageError, OSError) as error:
        raise InputFileError(path, f"not a readable image ({error})") from None


class Problems:
    """Collects annotation problems according to an error policy (raise at once, or log and count)."""

    def __init__(self, policy: ErrorPolicy, dataset: str) -> None:
        self.policy = policy
        self.dataset = dataset
        self.skipped = 0

    def report(self, path: Path | str, problem: str) -> None:
        """Raise :class:`InputFileError` or log a warning and count the skip."""
        if self.policy == "raise":
            raise InputFileError(path, problem)
        self.skipped += 1
        LOGGER.warning("%s: skipping: %s: %s", self.dataset, path, problem)


def require(mapping: Any, key: str, where: Path | str, context: str) -> Any:
    """``mapping[key]`` or an :class:`InputFileError` naming the file, the entry and the key."""
    if not isinstance(mapping, dict) or key not in mapping:
        raise InputFileError(where, f"{context}: missing key '{key}'")
    return mapping[key]


def filter_records(
    records: Iterable[PersonRecord], options: DataOptions, problems: Problems
) -> list[PersonRecord]:
    """Drop (or raise on) records whose box lies outside the image or whose image file is bad."""
    kept: list[PersonRecord] = []
    header_cache: dict[Path, tuple[int, int] | InputFileError] = {}
    for record in records:
        height, width = record.image_size
        if geometry.sanitize_box(record.bbox, height, width) is None:
            problems.report(
                record.image_path,
                f"annotation {record.ann_id}: person box {np.round(record.bbox, 1).tolist()} "
                f"lies outside the {width}x{height} image",
            )
            continue
        if options.check_files == "exists" and not Path(record.image_path).is_file():
            problems.report(record.image_path, f"annotation {record.ann_id}: image file is missing")
            continue
        if options.check_files == "header":
            if record.image_path not in header_cache:
                try:
                    header_cache[record.image_path] = image_header_size(record.image_path)
                except InputFileError as error:
                    header_cache[record.image_path] = error
            found = header_cache[record.image_path]
            if isinstance(found, InputFileError):
                problems.report(record.image_path, f"annotation {record.ann_id}: {found.problem}")
                continue
            if found != (height, width):
                problems.report(
                    record.image_path,
                    f"annotation {record.ann_id}: image is {found[1]}x{found[0]}, "
                    f"annotation says {width}x{height}",
                )
                continue
        kept.append(record)
    return kept


def attach_smplx_joints(record: PersonRecord, body_model: torch.nn.Module) -> PersonRecord:
    """Fill ``smplx_joints_3d`` / ``smplx_joints_2d`` from the record's parameters and camera.

    The body model is any :func:`bidrn.body.load_body_model` layer; its ``supervision_joints``
    (the 137 set) are evaluated with the record's translation and projected with its intrinsics.
    """
    if record.smplx is None or record.focal is None or record.princpt is None:
        return record
    params = record.smplx

    def t(value: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(value, dtype=torch.float32)[None]

    with torch.no_grad():
        output = body_model(
            betas=t(params.shape),
            global_orient=t(params.root_pose),
            body_pose=t(params.body_pose),
            left_hand_pose=t(params.lhand_pose),
            right_hand_pose=t(params.rhand_pose),
            jaw_pose=t(params.jaw_pose),
            expression=t(params.expr),
            transl=t(params.trans),
        )
    joints = output.supervision_joints[0].double().numpy()
    joints_2d = geometry.project(joints, record.focal, record.princpt)
    record = replace(record, smplx_joints_3d=joints, smplx_joints_2d=joints_2d)
    if record.joints_from_smplx:
        record = replace(
            record,
            joints_2d=joints_2d,
            joints_2d_valid=record.smplx_joints_valid.copy(),
            joints_3d=joints,
            joints_3d_valid=record.smplx_joints_valid.copy(),
        )
    return record


class RecordDataset(Dataset):
    """A map-style dataset over :class:`PersonRecord` objects (the base of every loader).

    Args:
        records: the person records (already filtered).
        options: error policy, augmentation, seed.
        body_model: optional SMPL-X layer used to compute SMPL-X joints for records that carry
            parameters but no joints (NeuralAnnot fits, AGORA); without it those targets are masked.
        name: dataset name used in log messages.
        image_reader: how to decode an image file (tests inject failures here).
    """

    def __init__(
        self,
        records: list[PersonRecord],
        options: DataOptions | None = None,
        body_model: torch.nn.Module | None = None,
        name: str = "",
        image_reader: Callable[[Path], np.ndarray] = read_image,
    ) -> None:
        self.records = records
        self.options = options or DataOptions()
        self.body_model = body_model
        self.name = name
        self.image_reader = image_reader
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream (call once per epoch, like a DistributedSampler)."""
        self.epoch = epoch

    def record(self, index: int) -> PersonRecord:
        """The record at ``index`` with SMPL-X joints filled in when a body model is attached."""
        record = self.records[index]
        if self.body_model is not None and record.smplx is not None and record.smplx_joints_3d is None:
            record = attach_smplx_joints(record, self.body_model)
        return record

    def __getitem__(self, index: int) -> dict[str, dict[str, torch.Tensor]]:
        attempts = 0
        while True:
            record = self.record(index)
            try:
                image = self.image_reader(record.image_path)
                rng = np.random.default_rng([self.options.seed, self.epoch, index])
                augmentation = self.options.augmentation.sample(rng)
                return build_sample(record, image, augmentation, self.options.target_geometry)
            except (SampleReadError, InvalidSampleError) as error:
                if self.options.on_error == "raise" or attempts >= self.options.max_skips:
                    raise
                LOGGER.warning("%s: sample %d replaced by the next one: %s", self.name, index, error)
                attempts += 1
                index = (index + 1) % len(self)
