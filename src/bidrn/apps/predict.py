"""Whole-body mesh recovery on images: model loading, person crops, batched inference, output files.

This is the library behind ``bidrn predict`` and ``bidrn demo``::

    from bidrn.apps.predict import Predictor, predict_frames
    predictor = Predictor.load("model.bidrn.safetensors")        # or a training checkpoint
    report = predict_frames(predictor, frames, "out/")            # frames: bidrn.apps.inputs

Models
    ``Predictor.load`` accepts a frozen 1-bit file (``*.bidrn.safetensors`` from ``bidrn export``)
    or a training checkpoint (``bidrn.engine.checkpoint``: ``.safetensors`` + ``.json``, given by
    stem or either file); any other file is refused with one line. A training checkpoint runs
    *simulated* (binary layers as ±1 floats in torch) or is frozen on load; the frozen path is the
    default on CPU, where the packed XOR-popcount kernels run. On CUDA the default is the simulated
    model (the packed layers have no GPU kernels; a frozen file still runs there, on their torch
    reference path). The device is CUDA when available unless one is asked for. The recorded
    architecture and the weights are checked before use: a tensor whose dtype differs from the
    model's or that holds NaN or infinite values is refused with one line naming the file.

Crops
    Exactly the training crop (``bidrn.data``): the person box is sanitised, given the crop's
    aspect (w/h = 0.75) and enlarged by 1.25 (:func:`bidrn.data.geometry.prepare_person_box`),
    warped bilinearly to Hand4Whole's 512×384 crop, then resized like
    :class:`bidrn.engine.resolution.ResizedSamples` when the model takes a smaller crop. Without a
    box the whole image is the person box.

Camera
    The network predicts ``cam_trans`` for a virtual camera of the canonical 256×192 body image
    (focal 5000 px, principal point at its centre; :mod:`bidrn.nets.wholebody`). In the original
    image's pixels that camera is, for the prepared box ``(x, y, w, h)``::

        focal   = (5000 / 192 · w, 5000 / 256 · h)
        princpt = (x + w / 2, y + h / 2)

    (Hand4Whole's demo convention). Meshes are in the OpenCV camera frame (x right, y down, z
    forward, metres): ``vertices = SMPL-X(parameters) + cam_trans`` projects onto the original
    image with ``u = fx·X/Z + cx``, ``v = fy·Y/Z + cy``.

Outputs, per person ``k`` of a frame named ``NAME`` (file stem, or ``<video stem>_<frame>``)
    ``NAME_pK_mesh.obj``, ``NAME_pK_params.npz`` / ``.json`` (Hand4Whole's names plus the camera,
    the box and the parameter layout in ``metadata``), ``NAME_pK_overlay.png`` (mesh over the
    original image), ``NAME_pK_side.png`` (turned by 90°, at most 2048 pixels per side); one line
    per person appended to ``predictions.jsonl``. Names already taken in the folder (by an earlier
    or a concurrent run, or by another input of this one) get a suffix, ``NAME_2``: nothing is
    overwritten (:mod:`bidrn.apps.outputs`). A network output that is NaN or infinite stops the run
    with an error naming the checkpoint instead of writing it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from bidrn.apps.inputs import Frame, PersonBox
from bidrn.apps.outputs import SUMMARY_NAME, OutputFolder, person_stem
from bidrn.body import load_body_model
from bidrn.body.export import PARAMETER_SIZES, save_mesh, save_parameters, select_parameters
from bidrn.body.render import mesh_region, render_overlay, render_side_view
from bidrn.data import geometry
from bidrn.data.targets import warp_image
from bidrn.deploy.allocator import retain_freed_memory
from bidrn.deploy.dense import DensePrecision, dense_precision
from bidrn.deploy.loading import FreezeError, ModelInfo, load_model
from bidrn.engine.resolution import PAPER_CROP
from bidrn.errors import BidrnError, InputFileError
from bidrn.nets.wholebody import CANONICAL_BODY_INPUT, FOCAL, WholeBodyOutput

__all__ = [
    "BUNDLED_WEIGHTS",
    "OUTPUT_FORMAT",
    "FreezeError",
    "ModelInfo",
    "PersonCrop",
    "PersonResult",
    "PredictionReport",
    "Predictor",
    "bundled_weights_path",
    "image_camera",
    "load_model",
    "person_crop",
    "predict_frames",
    "resolve_device",
    "samples_path",
    "write_person",
]

PENDING_MEGAPIXELS = 100.0
"""Frames held for one batch are flushed early once their images add up to this many megapixels."""
BUNDLED_WEIGHTS = "bidrn-synth-tiny.bidrn.safetensors"
"""File name of the weights shipped in ``bidrn/assets/weights`` (frozen 1-bit format)."""
OUTPUT_FORMAT = "bidrn-prediction"
"""``metadata.format`` of every parameter file written here."""
CAMERA_CONVENTION = (
    "OpenCV pinhole in original-image pixels: x right, y down, z forward (metres); "
    "vertices = SMPL-X(parameters) + cam_trans; u = fx*X/Z + cx, v = fy*Y/Z + cy"
)
POSE_LAYOUT = (
    "axis-angle (3 per joint); root_pose = global orientation, body_pose = 21 SMPL-X body joints, "
    "lhand_pose/rhand_pose = 15 finger joints each, jaw_pose = jaw"
)


def bundled_weights_path() -> Path:
    """Where the bundled frozen weights live inside the installed package (the file may be absent)."""
    return Path(str(resources.files("bidrn.assets") / "weights" / BUNDLED_WEIGHTS))


def samples_path() -> Path:
    """The folder of packaged sample images (``astronaut.jpg``, ``synth-test/``)."""
    return Path(str(resources.files("bidrn.assets") / "samples"))


def resolve_device(requested: str | torch.device | None = None) -> torch.device:
    """``"cpu"``, ``"cuda"`` / ``"cuda:N"`` or ``None`` (CUDA when available); refuses missing CUDA."""
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise BidrnError(f"device {str(requested)!r}: expected cpu or cuda") from None
    if device.type not in ("cpu", "cuda"):
        raise BidrnError(f"device {str(requested)!r}: expected cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BidrnError(f"device {str(requested)!r}: CUDA is not available here; use the CPU")
    return device


# -- crops and cameras -------------------------------------------------------------------------------
@dataclass
class PersonCrop:
    """One person's network input and the camera that maps the prediction back onto the image.

    Attributes:
        pixels: ``(3, H, W)`` float32 crop in [0, 1] at the model's crop size.
        box: prepared person box ``(x, y, w, h)`` in original-image pixels.
        focal: ``(fx, fy)`` of the network's camera in original-image pixels.
        princpt: ``(cx, cy)`` likewise.
    """

    pixels: torch.Tensor
    box: np.ndarray
    focal: tuple[float, float]
    princpt: tuple[float, float]


def image_camera(box: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(focal, princpt)`` in original-image pixels of the network's camera for a prepared box."""
    x, y, w, h = (float(v) for v in box)
    height, width = CANONICAL_BODY_INPUT
    focal = (FOCAL[0] / width * w, FOCAL[1] / height * h)
    return focal, (x + w / 2.0, y + h / 2.0)


def person_crop(image: np.ndarray, box_xywh: Any, crop_shape: tuple[int, int]) -> PersonCrop | None:
    """The training crop of a person box (see the module docstring); ``None`` if the box misses the image."""
    height, width = image.shape[:2]
    prepared = geometry.prepare_person_box(np.asarray(box_xywh, dtype=np.float64), height, width)
    if prepared is None:
        return None
    affine = geometry.crop_affine(prepared, 1.0, 0.0, *PAPER_CROP)
    crop = warp_image(image, affine, *PAPER_CROP).astype(np.float32) / 255.0
    pixels = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))
    if tuple(crop_shape) != PAPER_CROP:
        pixels = F.interpolate(pixels[None], size=tuple(crop_shape), mode="bilinear", antialias=True)[0]
    focal, princpt = image_camera(prepared)
    return PersonCrop(pixels, prepared, focal, princpt)


# -- the predictor -------------------------------------------------------------------------------------
class Predictor:
    """A loaded whole-body model with its body model, ready for batches of person crops.

    Args:
        model: a :class:`~bidrn.nets.wholebody.WholeBodyNet` (frozen or not) in eval mode.
        body_model: the SMPL-X layer meshes are made with; attached to ``model``.
        device: where both run.
        info: what was loaded (recorded in every output file).
    """

    def __init__(
        self, model: nn.Module, body_model: nn.Module, device: torch.device, info: ModelInfo
    ) -> None:
        self.model = model.to(device).eval()
        self.dense_precision = dense_precision(self.model)
        """Precision of the frozen model's full-precision convs (``"fp32"``, ``"bf16"`` or ``"int8"``)."""
        self.body_model = body_model.to(device)
        self.model.attach_body_model(self.body_model)
        self.device = device
        self.info = info

    @classmethod
    def load(
        cls,
        checkpoint: str | Path,
        body_model: str | Path | None = None,
        device: str | torch.device | None = None,
        frozen: bool | None = None,
        dense_precision: DensePrecision = "auto",
    ) -> Predictor:
        """Load a checkpoint (:func:`load_model`) and a body model (the checkpoint's, else the stand-in).

        Also keeps glibc from unmapping freed activations between calls
        (:func:`bidrn.deploy.allocator.retain_freed_memory`): this process is ours to run.
        """
        retain_freed_memory()
        chosen = resolve_device(device)
        model, info = load_model(checkpoint, chosen, frozen, dense_precision=dense_precision)
        layer = load_body_model(body_model or info.body_model)
        predictor = cls(model, layer, chosen, info)
        predictor.warm_up()
        return predictor

    def warm_up(self) -> None:
        """Run one blank crop, so one-time work is not counted as model throughput.

        Packed layers derive their kernel layouts on first use (about 2–4 s at synth-tiny size on a
        2-core CPU); the simulated model gets the same warm-up so the two compare fairly.
        """
        self.run(torch.zeros(1, 3, *self.crop_shape))

    @property
    def crop_shape(self) -> tuple[int, int]:
        """(H, W) of the person crop the model takes."""
        return tuple(self.model.config.crop_input)

    @property
    def body_model_name(self) -> str:
        """The body model's name from its metadata (the stand-in says so), else its file name."""
        try:
            name = json.loads(self.body_model.metadata).get("name")
        except (json.JSONDecodeError, TypeError, AttributeError):
            name = None
        return str(name or Path(str(self.body_model.source)).name)

    @property
    def mode(self) -> str:
        """``"frozen 1-bit"``, ``"simulated"`` (binary layers in floating point) or ``"full precision"``."""
        if not self.info.binarized:
            return "full precision"
        return "frozen 1-bit" if self.info.frozen else "simulated"

    @torch.no_grad()
    def run(self, pixels: torch.Tensor) -> WholeBodyOutput:
        """Predict a batch of crops ``(B, 3, H, W)``; the output includes ``mesh_cam``."""
        return self.model(pixels.to(self.device))


# -- outputs ------------------------------------------------------------------------------------------
@dataclass
class PersonResult:
    """One person's prediction, ready to be written.

    Attributes:
        frame: the frame the person is in.
        index: the person's number within the frame (0-based, in box order).
        crop: the crop and camera used.
        detection: the box as given (``None`` when the whole image was used).
        parameters: Hand4Whole-named parameters (flat float arrays).
        vertices: ``(V, 3)`` camera-frame mesh in metres (``mesh_cam``).
    """

    frame: Frame
    index: int
    crop: PersonCrop
    detection: PersonBox | None
    parameters: dict[str, np.ndarray]
    vertices: np.ndarray

    @property
    def stem(self) -> str:
        """Prefix of this person's output files."""
        return person_stem(self.frame.name, self.index)


def _metadata(result: PersonResult, predictor: Predictor) -> dict[str, Any]:
    height, width = result.frame.image.shape[:2]
    detection = result.detection
    return {
        "format": OUTPUT_FORMAT,
        "version": 1,
        "input": str(result.frame.source),
        "frame_index": result.frame.frame_index,
        "person_index": result.index,
        "image_size": [height, width],
        "bbox": [float(v) for v in result.crop.box],
        "detection_bbox": None if detection is None else list(detection.xywh),
        "score": None if detection is None else detection.score,
        "focal": list(result.crop.focal),
        "princpt": list(result.crop.princpt),
        "camera": CAMERA_CONVENTION,
        "pose_layout": POSE_LAYOUT,
        "rotation_format": "axis-angle",
        "flat_hand_mean": bool(predictor.body_model.flat_hand_mean),
        "use_pca": bool(predictor.body_model.use_pca),
        "num_betas": int(predictor.body_model.num_betas),
        "num_expression_coeffs": int(predictor.body_model.num_expression_coeffs),
        "body_model": predictor.body_model_name,
        "model": predictor.info.name,
        "checkpoint": str(predictor.info.path),
        "inference": predictor.mode,
        "dense_precision": predictor.dense_precision,
    }


def write_person(
    out_dir: Path,
    result: PersonResult,
    predictor: Predictor,
    render: bool = True,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write one person's mesh, parameter files and (with ``render``) pictures; returns its summary record.

    ``warn`` is told when the mesh lies entirely outside the image (its overlay is the bare image).
    """
    metadata = _metadata(result, predictor)
    files = {
        "mesh": save_mesh(out_dir / f"{result.stem}_mesh.obj", result.vertices, predictor.body_model.faces),
        "params_npz": save_parameters(
            out_dir / f"{result.stem}_params.npz", result.parameters, metadata=metadata
        ),
        "params_json": save_parameters(
            out_dir / f"{result.stem}_params.json", result.parameters, metadata=metadata
        ),
    }
    if render:
        image = result.frame.image
        faces = predictor.body_model.faces
        if warn is not None and mesh_region(result.vertices, result.crop.focal, result.crop.princpt,
                                            image.shape[:2]) is None:  # fmt: skip
            warn(
                f"{result.frame.source}{_frame_label(result.frame)} person {result.index}: the mesh lies "
                "entirely outside the image, so its overlay shows the image alone"
            )
        overlay = render_overlay(image, result.vertices, faces, result.crop.focal, result.crop.princpt)
        side = render_side_view(result.vertices, faces, result.crop.focal, image.shape[:2])
        files["overlay"] = out_dir / f"{result.stem}_overlay.png"
        files["side"] = out_dir / f"{result.stem}_side.png"
        for key, pixels in (("overlay", overlay), ("side", side)):
            _save_png(pixels, files[key])
    return {
        "input": metadata["input"],
        "frame_index": metadata["frame_index"],
        "name": result.frame.name,
        "person": result.index,
        "bbox": metadata["bbox"],
        "score": metadata["score"],
        "focal": metadata["focal"],
        "princpt": metadata["princpt"],
        "cam_trans": result.parameters["cam_trans"].tolist(),
        "files": {key: path.name for key, path in files.items()},
    }


def _save_png(pixels: np.ndarray, path: Path) -> None:
    """Write (H, W, 3) uint8 pixels as PNG with fast compression.

    zlib level 1 writes a 64-megapixel overlay about five times faster than Pillow's default level 6,
    for a file about 15 % larger.
    """
    Image.fromarray(pixels).save(path, compress_level=1)


@dataclass
class PredictionReport:
    """What :func:`predict_frames` did.

    Attributes:
        out_dir: the output folder.
        frames: frames read (images and video frames).
        people: persons predicted and written.
        skipped: one line per skipped input or person.
        renamed: ``(name, name used)`` of frames whose name was taken in the folder.
        seconds: wall time of the whole run (reading, inference, writing).
        model_seconds: time spent in the network and body model.
        records: the lines written to ``predictions.jsonl``.
    """

    out_dir: Path
    frames: int = 0
    people: int = 0
    skipped: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    model_seconds: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def jsonl(self) -> Path:
        """The summary file."""
        return self.out_dir / SUMMARY_NAME

    @property
    def images_per_second(self) -> float:
        """Frames per second of wall time, everything included."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def model_people_per_second(self) -> float:
        """Person crops per second through the network and body model."""
        return self.people / self.model_seconds if self.model_seconds > 0 else 0.0


def _warn(message: str) -> None:
    tqdm.write(f"warning: {message}", file=sys.stderr)


def predict_frames(
    predictor: Predictor,
    frames: Iterable[Frame | InputFileError],
    out_dir: str | Path,
    boxes_for: Callable[[Frame], list[PersonBox] | None] = lambda frame: None,
    batch_size: int = 8,
    render: bool = True,
    progress: bool = False,
    total: int | None = None,
    warn: Callable[[str], None] = _warn,
) -> PredictionReport:
    """Predict every person of every frame in batches and write their outputs to ``out_dir``.

    Args:
        predictor: the loaded model.
        frames: decoded frames; an :class:`~bidrn.errors.InputFileError` in their place is skipped
            with a warning.
        out_dir: output folder (created); other runs may write into it at the same time.
        boxes_for: the person boxes of a frame, or ``None`` to use the whole image.
        batch_size: crops per forward pass (a batch is also run early once the frames it holds add
            up to :data:`PENDING_MEGAPIXELS`).
        render: also write the overlay and side-view pictures.
        progress: show a progress bar over frames.
        total: number of frames for the progress bar, if known.
        warn: called with one line per skipped input or person, and per mesh outside its image.

    Raises:
        InputFileError: the output folder cannot be written, or the network's output is NaN or
            infinite (naming the checkpoint).
    """
    if batch_size < 1:
        raise BidrnError(f"batch size must be at least 1, got {batch_size}")
    report = PredictionReport(Path(out_dir))
    pending: list[tuple[Frame, int, PersonCrop, PersonBox | None]] = []
    start = time.perf_counter()

    def skip(message: str) -> None:
        report.skipped.append(message)
        warn(f"skipping {message}")

    def flush(folder: OutputFolder) -> None:
        if not pending:
            return
        tick = time.perf_counter()
        output = predictor.run(torch.stack([crop.pixels for _, _, crop, _ in pending]))
        vertices = output.mesh_cam.float().cpu().numpy()
        report.model_seconds += time.perf_counter() - tick
        for row, (frame, index, crop, detection) in enumerate(pending):
            parameters = select_parameters(output, row)
            _require_finite(parameters, vertices[row], predictor, frame, index)
            result = PersonResult(frame, index, crop, detection, parameters, vertices[row])
            record = write_person(folder.path, result, predictor, render, warn)
            folder.append(record)
            report.records.append(record)
            report.people += 1
        pending.clear()

    with (
        OutputFolder(report.out_dir) as folder,
        tqdm(total=total, disable=not progress, unit="img", desc="predict", file=sys.stderr) as bar,
    ):
        for frame in frames:
            bar.update(1)
            if isinstance(frame, InputFileError):
                skip(str(frame))
                continue
            report.frames += 1
            crops = _frame_crops(frame, boxes_for(frame), predictor.crop_shape, skip)
            if not crops:
                continue
            named = replace(frame, name=folder.claim(frame.name, [index for index, _, _ in crops]))
            for index, crop, box in crops:
                pending.append((named, index, crop, box))
                if len(pending) >= batch_size or _pending_megapixels(pending) > PENDING_MEGAPIXELS:
                    flush(folder)
        flush(folder)
        report.renamed = list(folder.renamed)
    report.seconds = time.perf_counter() - start
    return report


def _frame_crops(
    frame: Frame,
    boxes: list[PersonBox] | None,
    crop_shape: tuple[int, int],
    skip: Callable[[str], None],
) -> list[tuple[int, PersonCrop, PersonBox | None]]:
    """``(person index, crop, box)`` of every usable person box of a frame (the whole image without boxes)."""
    height, width = frame.image.shape[:2]
    if boxes is not None and not boxes:
        skip(f"{frame.source}{_frame_label(frame)}: no person boxes for it in the boxes file")
    given: list[PersonBox | None] = [None] if boxes is None else list(boxes)
    crops = []
    for index, box in enumerate(given):
        crop = person_crop(frame.image, (0, 0, width, height) if box is None else box.xywh, crop_shape)
        if crop is None:
            skip(f"{frame.source}{_frame_label(frame)}: person box {list(box.xywh)} lies outside the "
                 f"{width}x{height} image")  # fmt: skip
            continue
        crops.append((index, crop, box))
    return crops


def _pending_megapixels(pending: list[tuple[Frame, int, PersonCrop, PersonBox | None]]) -> float:
    """Megapixels of the distinct frames a batch holds on to."""
    images = {id(frame.image): frame.image for frame, _, _, _ in pending}
    return sum(image.shape[0] * image.shape[1] for image in images.values()) / 1e6


def _require_finite(
    parameters: dict[str, np.ndarray], vertices: np.ndarray, predictor: Predictor, frame: Frame, index: int
) -> None:
    """Stop with an error naming the checkpoint when the network's output for a person is not finite."""
    broken = [name for name in PARAMETER_SIZES if not np.isfinite(parameters[name]).all()]
    if not np.isfinite(vertices).all():
        broken.append("mesh")
    if broken:
        raise InputFileError(
            predictor.info.path,
            f"the model's output is NaN or infinite ({', '.join(broken)}) for {frame.source}"
            f"{_frame_label(frame)} person {index}; nothing was written for it. The weights may be "
            "damaged or the model diverged in training",
        )


def _frame_label(frame: Frame) -> str:
    return "" if frame.frame_index is None else f" frame {frame.frame_index}"
