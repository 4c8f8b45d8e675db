"""What ``bidrn predict`` reads: image files, folders, videos and person boxes, checked before use.

Inputs
    * an image file (``IMAGE_SUFFIXES``); its EXIF orientation is applied, so outputs match what
      image viewers show;
    * a folder: the images directly inside it, sorted by name (sub-folders are not searched);
    * a video file (``VIDEO_SUFFIXES``), decoded frame by frame with PyAV, an optional extra
      (``pip install 'bidrn[video]'``).

Every image is checked from its header *before* it is decoded: images above
:data:`MAX_MEGAPIXELS` (a decompression bomb or a scan far beyond any useful person crop) and
images below :data:`MIN_IMAGE_SIDE` pixels per side are refused. Every problem is an
:class:`~bidrn.errors.InputFileError` naming the file, so the caller can stop or skip it.

Person boxes
    * ``--bbox x,y,w,h``: one box (pixels) used for every input;
    * ``--boxes FILE``: COCO-style detections, either a list of
      ``{"image_id" | "file_name", "bbox": [x, y, w, h], "score"?, "category_id"?}`` (a detector's
      results file) or a COCO dictionary with ``images`` (``id``, ``file_name``) and
      ``annotations``. Entries with a ``category_id`` other than 1 (COCO's *person*) and entries
      below the minimum score are ignored. An image matches an entry by file name (or a trailing
      part of its path) or by ``image_id`` equal to the file's stem (``000123.jpg`` matches 123);
      a video frame matches ``image_id`` equal to its 0-based frame index.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bidrn.errors import BidrnError, InputFileError

__all__ = [
    "COCO_PERSON_CATEGORY",
    "IMAGE_SUFFIXES",
    "MAX_MEGAPIXELS",
    "MIN_IMAGE_SIDE",
    "VIDEO_SUFFIXES",
    "BoxTable",
    "Frame",
    "InputSource",
    "PersonBox",
    "check_image_size",
    "discover_inputs",
    "iter_frames",
    "parse_bbox",
    "read_boxes",
    "read_image_file",
    "read_image_header",
    "require_video_reader",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
"""File suffixes read as images (case-insensitive)."""
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
"""File suffixes read as videos (case-insensitive)."""
MAX_MEGAPIXELS = 100.0
"""Largest accepted image, in megapixels (10⁶ pixels): 12 000 × 8 333; the person crop is 512 × 384."""
MIN_IMAGE_SIDE = 32
"""Smallest accepted image side in pixels (a whole-body crop needs some pixels to look at)."""
COCO_PERSON_CATEGORY = 1
"""COCO's category id of *person*; detections of other categories are ignored."""


@dataclass(frozen=True)
class InputSource:
    """One file to read: an image, or a video whose frames are read one by one."""

    path: Path
    kind: Literal["image", "video"]


@dataclass
class Frame:
    """A decoded image and where it came from.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB pixels.
        source: the image or video file.
        name: unique stem for this frame's output files.
        frame_index: 0-based frame number inside a video, ``None`` for an image file.
    """

    image: np.ndarray
    source: Path
    name: str
    frame_index: int | None = None


@dataclass(frozen=True)
class PersonBox:
    """A person box ``(x, y, w, h)`` in image pixels and the detector's score, if any."""

    xywh: tuple[float, float, float, float]
    score: float | None = None


# -- files ---------------------------------------------------------------------------------------
def discover_inputs(paths: Sequence[str | Path]) -> tuple[list[InputSource], list[InputFileError]]:
    """Expand the command line's inputs into image and video files, in order.

    Folders contribute their images sorted by name. Returns the sources and, separately, one
    problem per input that cannot be used (missing path, empty folder, unsupported file type), so
    the caller decides whether to stop or to skip them.
    """
    sources: list[InputSource] = []
    problems: list[InputFileError] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                problems.append(InputFileError(path, f"folder has no images ({', '.join(IMAGE_SUFFIXES)})"))
            sources.extend(InputSource(p, "image") for p in images)
        elif not path.exists():
            problems.append(InputFileError(path, "no such file or folder"))
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            sources.append(InputSource(path, "video"))
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            sources.append(InputSource(path, "image"))
        else:
            problems.append(
                InputFileError(path, "not an image or video file (by its suffix); see `bidrn predict --help`")
            )
    return sources, problems


def check_image_size(path: str | Path, height: int, width: int) -> None:
    """Refuse images above :data:`MAX_MEGAPIXELS` or below :data:`MIN_IMAGE_SIDE` per side."""
    if height * width > MAX_MEGAPIXELS * 1e6:
        raise InputFileError(
            path,
            f"image is {width}x{height} ({height * width / 1e6:.0f} megapixels), above the "
            f"{MAX_MEGAPIXELS:.0f}-megapixel limit; downscale it first",
        )
    if min(height, width) < MIN_IMAGE_SIDE:
        raise InputFileError(
            path, f"image is {width}x{height} pixels, too small (at least {MIN_IMAGE_SIDE} per side)"
        )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _open(path: Path) -> Image.Image:
    """Open an image lazily (header only), mapping every failure to an :class:`InputFileError`."""
    try:
        with warnings.catch_warnings():
            # Our own megapixel limit applies below; PIL's warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except IsADirectoryError:
        raise InputFileError(path, "is a folder, not an image") from None
    except Image.DecompressionBombError as error:
        raise InputFileError(
            path, f"image is above the {MAX_MEGAPIXELS:.0f}-megapixel limit ({_one_line(error)})"
        ) from None
    except UnidentifiedImageError:
        raise InputFileError(path, "not an image (the file's content is not a known image format)") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise InputFileError(path, f"cannot read image header ({_one_line(error)})") from None


def read_image_header(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` from the file's header (nothing decoded), size limits checked."""
    path = Path(path)
    with _open(path) as image:
        width, height = image.size
    check_image_size(path, height, width)
    return height, width


def read_image_file(path: str | Path) -> np.ndarray:
    """Decode an image to ``(H, W, 3)`` uint8 RGB, EXIF orientation applied, after the header checks."""
    path = Path(path)
    with _open(path) as image:
        width, height = image.size
        check_image_size(path, height, width)
        try:
            upright = ImageOps.exif_transpose(image)
            return np.asarray(upright.convert("RGB"))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            raise InputFileError(path, f"cannot decode image ({_one_line(error)})") from None


def require_video_reader(path: str | Path) -> Any:
    """The PyAV module, or a one-line :class:`~bidrn.errors.BidrnError` naming the video and the extra."""
    try:
        import av
    except ImportError:
        raise BidrnError(
            f"{path}: reading videos needs PyAV; install it with: pip install 'bidrn[video]'"
        ) from None
    return av


def _video_frames(path: Path, stride: int) -> Iterator[tuple[int, np.ndarray]]:
    av = require_video_reader(path)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as error:
        raise InputFileError(path, f"cannot open video ({_one_line(error)})") from None
    with container:
        if not container.streams.video:
            raise InputFileError(path, "file has no video stream")
        stream = container.streams.video[0]
        check_image_size(path, stream.codec_context.height, stream.codec_context.width)
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index % stride == 0:
                    yield index, frame.to_ndarray(format="rgb24")
        except (av.FFmpegError, OSError) as error:
            raise InputFileError(path, f"cannot decode video ({_one_line(error)})") from None


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}_{number}", number + 1
    taken.add(candidate)
    return candidate


def iter_frames(sources: Sequence[InputSource], video_stride: int = 1) -> Iterator[Frame | InputFileError]:
    """Decode the sources in order, yielding a :class:`Frame` per image or video frame.

    A source that cannot be read yields its :class:`~bidrn.errors.InputFileError` instead (once;
    a video that fails midway yields the frames before the failure first), so callers can skip
    it and go on. Output names are the file stems, made unique (``photo``, ``photo_2``); video
    frames are ``<stem>_<frame index, 6 digits>``. ``video_stride`` keeps every n-th video frame.
    """
    if video_stride < 1:
        raise BidrnError(f"--video-stride must be at least 1, got {video_stride}")
    taken: set[str] = set()
    for source in sources:
        stem = _unique(source.path.stem, taken)
        if source.kind == "image":
            try:
                yield Frame(read_image_file(source.path), source.path, stem)
            except InputFileError as problem:
                yield problem
            continue
        try:
            for index, image in _video_frames(source.path, video_stride):
                yield Frame(image, source.path, f"{stem}_{index:06d}", index)
        except InputFileError as problem:
            yield problem


# -- boxes -----------------------------------------------------------------------------------------
def parse_bbox(text: str) -> PersonBox:
    """``"x,y,w,h"`` (pixels) -> :class:`PersonBox`; width and height must be positive."""
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(float(v) for v in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values) or values[2] <= 0 or values[3] <= 0:
        raise BidrnError(f"--bbox {text!r}: expected four numbers x,y,w,h with w and h positive")
    return PersonBox(values)  # type: ignore[arg-type]


def _entry_box(entry: Any, where: str, path: Path) -> PersonBox | None:
    """The person box of one detection entry; ``None`` for non-person categories."""
    if not isinstance(entry, dict):
        raise InputFileError(path, f"{where}: expected an object with 'bbox', got {type(entry).__name__}")
    category = entry.get("category_id", COCO_PERSON_CATEGORY)
    if category != COCO_PERSON_CATEGORY:
        return None
    bbox = entry.get("bbox")
    if (
        not isinstance(bbox, list)
        or len(bbox) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    ):
        raise InputFileError(path, f"{where}: 'bbox' must be four numbers [x, y, w, h], got {bbox!r}")
    if bbox[2] <= 0 or bbox[3] <= 0:
        raise InputFileError(path, f"{where}: 'bbox' width and height must be positive, got {bbox!r}")
    score = entry.get("score")
    if score is not None and (not isinstance(score, int | float) or isinstance(score, bool)):
        raise InputFileError(path, f"{where}: 'score' must be a number, got {score!r}")
    return PersonBox(tuple(float(v) for v in bbox), None if score is None else float(score))  # type: ignore[arg-type]


def _id_key(value: Any) -> str:
    """Canonical form of an image id or file stem: ``000123``, ``123`` and ``123.0`` compare equal."""
    text = str(value)
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


class BoxTable:
    """Person boxes of a detections file, looked up by frame (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.by_name: dict[str, list[PersonBox]] = {}
        self.by_id: dict[str, list[PersonBox]] = {}

    def add(self, box: PersonBox, file_name: str | None, image_id: Any) -> None:
        """Record a box under a file name and/or an image id."""
        if file_name is not None:
            self.by_name.setdefault(file_name.replace("\\", "/"), []).append(box)
        elif image_id is not None:
            self.by_id.setdefault(_id_key(image_id), []).append(box)

    def lookup(self, frame: Frame) -> list[PersonBox]:
        """The boxes of ``frame``, in file order (empty when the file lists none for it)."""
        if frame.frame_index is not None:
            return list(self.by_id.get(str(frame.frame_index), []))
        source = frame.source.as_posix()
        for name, boxes in self.by_name.items():
            if source == name or source.endswith("/" + name.lstrip("./")):
                return list(boxes)
        return list(self.by_id.get(_id_key(frame.source.stem), []))

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_name.values()) + sum(len(v) for v in self.by_id.values())


def read_boxes(path: str | Path, min_score: float = 0.0) -> BoxTable:
    """Read a COCO-style detections file (see the module docstring) into a :class:`BoxTable`.

    Raises:
        InputFileError: missing or malformed file, naming the file and the faulty entry.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(path, "boxes file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot read boxes file ({_one_line(error)})") from None
    except json.JSONDecodeError as error:
        raise InputFileError(
            path, f"not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None

    file_names: dict[str, str] = {}
    if isinstance(document, dict):
        if not isinstance(document.get("images"), list) or not isinstance(document.get("annotations"), list):
            raise InputFileError(path, "a COCO dictionary needs 'images' and 'annotations' lists")
        for number, image in enumerate(document["images"]):
            if (
                not isinstance(image, dict)
                or "id" not in image
                or not isinstance(image.get("file_name"), str)
            ):
                raise InputFileError(path, f"images[{number}]: needs 'id' and 'file_name'")
            file_names[_id_key(image["id"])] = image["file_name"]
        entries, label = document["annotations"], "annotations"
    elif isinstance(document, list):
        entries, label = document, "entry"
    else:
        raise InputFileError(path, "expected a list of detections or a COCO dictionary")

    table = BoxTable(path)
    for number, entry in enumerate(entries):
        where = f"{label}[{number}]"
        box = _entry_box(entry, where, path)
        if box is None or (box.score is not None and box.score < min_score):
            continue
        file_name = entry.get("file_name")
        image_id = entry.get("image_id")
        if file_name is None and image_id is not None and file_names:
            if _id_key(image_id) not in file_names:
                raise InputFileError(path, f"{where}: image_id {image_id!r} is not in 'images'")
            file_name = file_names[_id_key(image_id)]
        if file_name is None and image_id is None:
            raise InputFileError(path, f"{where}: needs 'image_id' or 'file_name'")
        if file_name is not None and not isinstance(file_name, str):
            raise InputFileError(path, f"{where}: 'file_name' must be a string, got {file_name!r}")
        table.add(box, file_name, image_id)
    return table
