"""What ``bidrn predict`` reads: image files, folders, videos and person boxes, checked before use.

Inputs
    * an image file (``IMAGE_SUFFIXES``); its EXIF orientation is applied, so outputs match what
      image viewers show;
    * a folder: the images directly inside it, sorted by name (sub-folders are not searched);
    * a video file (``VIDEO_SUFFIXES``), decoded frame by frame with PyAV, an optional extra
      (``pip install 'bidrn[video]'``).

Only regular files are read (a FIFO would block forever, a device never end). Every image is
checked from its header *before* it is decoded: images above :data:`MAX_MEGAPIXELS` (a
decompression bomb or a scan far beyond any useful person crop) and images below
:data:`MIN_IMAGE_SIDE` pixels per side are refused. Every problem is an
:class:`~bidrn.errors.InputFileError` naming the file, so the caller can stop or skip it.

Pixels
    Every image becomes ``(H, W, 3)`` uint8 RGB, whatever its mode:

    * 8-bit modes (grey, palette, RGB, CMYK, YCbCr, 1-bit) as Pillow converts them; 16-bit RGB(A)
      PNGs and TIFFs are already reduced to 8 bits by Pillow (the high byte);
    * 16-bit grey (Pillow's ``I;16`` modes, and 32-bit integer images whose values all lie in
      0..65535, which is how older Pillow versions open 16-bit PNGs): ``v · 255 / 65535``;
    * other 32-bit integer images: linearly from their smallest to their largest value;
    * floating-point images: ``v · 255`` when every value lies in [0, 1], else linearly from their
      smallest to their largest value; NaN or infinite pixels are refused;
    * transparency (an alpha channel or a transparent palette entry) is composited onto white,
      the page colour image viewers show behind a transparent picture.

Person boxes
    * one box ``x,y,w,h`` (pixels) used for every input (:func:`parse_bbox`);
    * a file of COCO-style detections (:func:`read_boxes`, at most :data:`MAX_BOXES_BYTES`), either a list of
      ``{"image_id" | "file_name", "bbox": [x, y, w, h], "score"?, "category_id"?}`` (a detector's
      results file) or a COCO dictionary with ``images`` (``id``, ``file_name``) and
      ``annotations``. Entries with a ``category_id`` other than 1 (COCO's *person*) and entries
      below the minimum score are ignored. An image matches an entry by file name (or a trailing
      part of its path) or by ``image_id`` equal to the file's stem (``000123.jpg`` matches 123);
      a video frame matches ``image_id`` equal to its 0-based frame index. Numbers must be
      finite (JSON's non-standard ``NaN`` and ``Infinity`` are refused, as are numbers too large
      for a float).

Output names
    A frame's name is its file's stem, or ``<video stem>_<frame index, 6 digits>``; the output
    folder (:mod:`bidrn.apps.outputs`) makes it unique there.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bidrn.errors import BidrnError, InputFileError, one_line, require_regular_file

__all__ = [
    "COCO_PERSON_CATEGORY",
    "IMAGE_SUFFIXES",
    "MAX_BOXES_BYTES",
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
    "to_rgb8",
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
MAX_BOXES_BYTES = 256 * 2**20
"""Largest accepted detections file (256 MiB: millions of boxes), checked before it is read."""


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
        name: stem for this frame's output files (the output folder makes it unique).
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

    Folders contribute the regular image files directly inside them, sorted by name. Returns the
    sources and, separately, one problem per input that cannot be used (missing path, empty or
    unreadable folder, unsupported file type, a FIFO or device), so the caller decides whether
    to stop or to skip them.
    """
    sources: list[InputSource] = []
    problems: list[InputFileError] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                images = sorted(
                    p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                )
            except OSError as error:
                problems.append(InputFileError(path, f"cannot list the folder ({one_line(error.strerror)})"))
                continue
            if not images:
                problems.append(InputFileError(path, f"folder has no images ({', '.join(IMAGE_SUFFIXES)})"))
            sources.extend(InputSource(p, "image") for p in images)
            continue
        if not os.path.lexists(path):
            problems.append(InputFileError(path, "no such file or folder"))
            continue
        suffix = path.suffix.lower()
        if suffix not in VIDEO_SUFFIXES + IMAGE_SUFFIXES:
            problems.append(
                InputFileError(
                    path,
                    f"not an image or video file by its suffix (images: {', '.join(IMAGE_SUFFIXES)}; "
                    f"videos: {', '.join(VIDEO_SUFFIXES)})",
                )
            )
            continue
        try:
            require_regular_file(path, "video" if suffix in VIDEO_SUFFIXES else "image")
        except InputFileError as problem:
            problems.append(problem)
            continue
        sources.append(InputSource(path, "video" if suffix in VIDEO_SUFFIXES else "image"))
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


def _open(path: Path) -> Image.Image:
    """Open an image lazily (header only), mapping every failure to an :class:`InputFileError`."""
    require_regular_file(path, "image")
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
            path, f"image is above the {MAX_MEGAPIXELS:.0f}-megapixel limit ({one_line(error)})"
        ) from None
    except UnidentifiedImageError:
        raise InputFileError(path, "not an image (the file's content is not a known image format)") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise InputFileError(path, f"cannot read image header ({one_line(error)})") from None


def read_image_header(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` from the file's header (nothing decoded), size limits checked."""
    path = Path(path)
    with _open(path) as image:
        width, height = image.size
    check_image_size(path, height, width)
    return height, width


def _grey_range(values: np.ndarray, mode: str) -> tuple[float, float]:
    """The input range mapped onto 0..255 for a 16-bit, 32-bit integer or float grey image."""
    low, high = float(values.min()), float(values.max())
    if mode.startswith("I;16") or (mode == "I" and low >= 0 and high <= 65535):
        return 0.0, 65535.0
    if mode == "F" and low >= 0 and high <= 1:
        return 0.0, 1.0
    return low, high


def _grey_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale a high-bit-depth grey image onto 0..255 by its real range (module docstring)."""
    low, high = _grey_range(values, mode)
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
EXIF_ORIENTATION = 0x0112
"""The EXIF tag that says how to turn the stored pixels upright."""


def to_rgb8(image: Image.Image, path: str | Path = "image") -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB pixels of a Pillow image of any mode (the rules in the module docstring).

    Raises:
        InputFileError: floating-point pixels that are NaN or infinite, naming ``path``.
    """
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image)
        if image.mode == "F" and not np.isfinite(values).all():
            raise InputFileError(path, "image has NaN or infinite pixel values")
        return np.repeat(_grey_to_uint8(values, image.mode)[..., None], 3, axis=2)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return np.asarray(flat)
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def read_image_file(path: str | Path) -> np.ndarray:
    """Decode an image to ``(H, W, 3)`` uint8 RGB, EXIF orientation applied, after the header checks."""
    path = Path(path)
    with _open(path) as image:
        width, height = image.size
        check_image_size(path, height, width)
        try:
            if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
                image = ImageOps.exif_transpose(image)
            return to_rgb8(image, path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            if isinstance(error, InputFileError):
                raise
            raise InputFileError(path, f"cannot decode image ({one_line(error)})") from None


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
    require_regular_file(path, "video")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot open video ({one_line(error)})") from None
    decoded = 0
    with container:
        if not container.streams.video:
            raise InputFileError(path, "file has no video stream")
        stream = container.streams.video[0]
        check_image_size(path, stream.codec_context.height, stream.codec_context.width)
        try:
            for index, frame in enumerate(container.decode(stream)):
                decoded += 1
                if index % stride == 0:
                    yield index, frame.to_ndarray(format="rgb24")
        except (av.FFmpegError, OSError, ValueError) as error:
            raise InputFileError(
                path, f"cannot decode video after {decoded} frames ({one_line(error)})"
            ) from None
    if decoded == 0:
        raise InputFileError(path, "video has no decodable frames")


def iter_frames(sources: Sequence[InputSource], video_stride: int = 1) -> Iterator[Frame | InputFileError]:
    """Decode the sources in order, yielding a :class:`Frame` per image or video frame.

    A source that cannot be read yields its :class:`~bidrn.errors.InputFileError` instead (once;
    a video that fails midway yields the frames before the failure first, and a video without a
    single decodable frame is a problem too), so callers can skip it and go on. Frames are named
    after the file stem, video frames ``<stem>_<frame index, 6 digits>``; the output folder makes
    the names unique. ``video_stride`` keeps every n-th video frame.
    """
    if video_stride < 1:
        raise BidrnError(f"video stride must be at least 1, got {video_stride}")
    for source in sources:
        stem = source.path.stem
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
    """``"x,y,w,h"`` (pixels) -> :class:`PersonBox`; four finite numbers, width and height positive."""
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(float(v) for v in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values) or values[2] <= 0 or values[3] <= 0:
        raise BidrnError(f"person box {text!r}: expected four numbers x,y,w,h with w and h positive")
    return PersonBox(values)  # type: ignore[arg-type]


def _finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` for anything else (a bool, a string, 10**400, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _entry_box(entry: Any, where: str, path: Path) -> PersonBox | None:
    """The person box of one detection entry; ``None`` for non-person categories."""
    if not isinstance(entry, dict):
        raise InputFileError(path, f"{where}: expected an object with 'bbox', got {type(entry).__name__}")
    category = entry.get("category_id", COCO_PERSON_CATEGORY)
    if category != COCO_PERSON_CATEGORY:
        return None
    bbox = entry.get("bbox")
    values = [_finite_number(v) for v in bbox] if isinstance(bbox, list) else []
    if len(values) != 4 or None in values:
        raise InputFileError(path, f"{where}: 'bbox' must be four numbers [x, y, w, h], got {_short(bbox)}")
    if values[2] <= 0 or values[3] <= 0:
        raise InputFileError(path, f"{where}: 'bbox' width and height must be positive, got {_short(bbox)}")
    score = entry.get("score")
    if score is not None and _finite_number(score) is None:
        raise InputFileError(path, f"{where}: 'score' must be a finite number, got {_short(score)}")
    return PersonBox(tuple(values), None if score is None else _finite_number(score))  # type: ignore[arg-type]


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (a 400-digit number or a huge list stays readable)."""
    try:
        text = repr(value)
    except ValueError:  # an int too long for str()
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _id_key(value: Any) -> str:
    """Canonical form of an image id or file stem: ``000123``, ``123`` and ``123.0`` compare equal."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if abs(value) < 10**100 else _short(value)
    text = str(value)
    if text.isascii() and text.isdigit() and len(text) < 100:
        return str(int(text))  # exact, also beyond float precision
    try:
        number = float(text)
    except (ValueError, OverflowError):
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


class _NonStandardNumberError(ValueError):
    """``NaN``, ``Infinity`` or ``-Infinity`` in a JSON document (Python accepts them, JSON does not)."""


def _refuse_constant(name: str) -> Any:
    raise _NonStandardNumberError(name)


def read_boxes(path: str | Path, min_score: float = 0.0) -> BoxTable:
    """Read a COCO-style detections file (see the module docstring) into a :class:`BoxTable`.

    Raises:
        InputFileError: missing or malformed file, naming the file and the faulty entry.
    """
    path = Path(path)
    require_regular_file(path, "boxes file")
    size = path.stat().st_size
    if size > MAX_BOXES_BYTES:
        raise InputFileError(
            path, f"boxes file is {size / 2**20:.0f} MiB, above the {MAX_BOXES_BYTES // 2**20} MiB limit"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot read boxes file ({one_line(error)})") from None
    except json.JSONDecodeError as error:
        raise InputFileError(
            path, f"not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None
    except _NonStandardNumberError as error:
        raise InputFileError(path, f"not valid JSON ({error} is not a JSON number)") from None
    except RecursionError:
        raise InputFileError(path, "not valid JSON for a boxes file (nested too deeply)") from None
    except ValueError as error:  # e.g. an integer literal beyond Python's digit limit
        raise InputFileError(path, f"not valid JSON ({one_line(error)})") from None

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
                raise InputFileError(path, f"images[{number}]: needs 'id' and 'file_name' (a string)")
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
                raise InputFileError(path, f"{where}: image_id {_short(image_id)} is not in 'images'")
            file_name = file_names[_id_key(image_id)]
        if file_name is None and image_id is None:
            raise InputFileError(path, f"{where}: needs 'image_id' or 'file_name'")
        if file_name is not None and not isinstance(file_name, str):
            raise InputFileError(path, f"{where}: 'file_name' must be a string, got {_short(file_name)}")
        if image_id is not None and (
            isinstance(image_id, bool) or not isinstance(image_id, int | float | str)
        ):
            raise InputFileError(
                path, f"{where}: 'image_id' must be a number or a string, got {_short(image_id)}"
            )
        table.add(box, file_name, image_id)
    return table
