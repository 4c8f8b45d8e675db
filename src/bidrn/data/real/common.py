"""Reading helpers shared by the real-dataset loaders: JSON files, COCO indices, NeuralAnnot fits.

Every loader validates its files at this boundary: a JSON file must be a regular file below
:data:`MAX_JSON_BYTES`; an annotation whose fields have the wrong type or shape is one reported
problem (:data:`MALFORMED` are the errors a malformed field raises while a record is built); and a
file name from an annotation must stay inside the folder it is joined to (:func:`inside`), so an
absolute name or one climbing out with ``..`` never reaches the file system.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from bidrn.body import joint_sets
from bidrn.data.dataset import Problems, require
from bidrn.data.sample import NUM_JOINTS, NUM_ROTATIONS, PersonRecord, SMPLXParams
from bidrn.errors import BidrnError, InputFileError, one_line, require_regular_file

MAX_JSON_BYTES = 8 * 2**30
"""Largest annotation file read (8 GiB; COCO-WholeBody's training file is about 1.4 GB)."""
MALFORMED = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)
"""What building a record from an annotation with a malformed field raises (reported, never a traceback)."""


def load_json(path: Path) -> Any:
    """Parse a JSON file, or raise :class:`InputFileError` naming it."""
    if not Path(path).exists():
        raise InputFileError(path, "annotation file is missing")
    require_regular_file(path, "JSON file")
    if Path(path).stat().st_size > MAX_JSON_BYTES:
        raise InputFileError(path, f"larger than {MAX_JSON_BYTES // 2**30} GiB, not an annotation file")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise InputFileError(path, f"not a readable JSON file ({one_line(error)})") from None


def load_json_object(path: Path) -> dict[str, Any]:
    """:func:`load_json` for files whose top level must be an object."""
    document = load_json(path)
    if not isinstance(document, dict):
        raise InputFileError(
            path, f"expected a JSON object at the top level, got a {type(document).__name__}"
        )
    return document


def inside(folder: Path, name: Any, key: str) -> Path:
    """``folder / name`` for a relative path string that stays inside ``folder``, else :class:`ValueError`.

    The check is on the name itself: absolute names, ``..`` anywhere and NUL characters are
    refused (backslashes count as separators, as in annotation files written on Windows).
    ``key`` names the field in the message.
    """
    relative = PurePosixPath(name.replace("\\", "/")) if isinstance(name, str) else None
    if (
        relative is None
        or not relative.parts
        or "\x00" in name
        or relative.is_absolute()
        or ".." in relative.parts
    ):
        raise ValueError(f"'{key}' {str(name)[:80]!r} is not a relative path inside {folder}")
    return folder / relative


def box_xywh(value: Any) -> np.ndarray:
    """Four finite numbers ``[x, y, w, h]`` as float64, else :class:`ValueError`."""
    box = np.asarray(value, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.isfinite(box).all():
        raise ValueError(f"a box must be four finite numbers, got {str(value)[:80]}")
    return box


def image_size(image: dict[str, Any]) -> tuple[int, int]:
    """``(height, width)`` of a COCO ``images`` entry: two positive integers, else :class:`ValueError`."""
    height, width = image["height"], image["width"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (height, width)):
        raise ValueError(f"image height and width must be numbers, got {height!r} and {width!r}")
    if not (0 < height < 2**31 and 0 < width < 2**31) or int(height) != height or int(width) != width:
        raise ValueError(f"image height and width must be positive integers, got {height!r} and {width!r}")
    return int(height), int(width)


def coco_index(path: Path) -> Any:
    """A ``pycocotools.coco.COCO`` index over an MSCOCO-style JSON file (images + annotations)."""
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise BidrnError(
            "reading COCO-style annotation files needs pycocotools: pip install 'bidrn[datasets]'"
        ) from None
    data = load_json(path)
    for key in ("images", "annotations"):
        if not isinstance(require(data, key, path, "top level"), list):
            raise InputFileError(path, f"malformed COCO index: '{key}' must be a list")
    index = COCO()
    index.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        try:
            index.createIndex()
        except KeyError as error:
            raise InputFileError(path, f"malformed COCO index: missing key {error}") from None
        except (TypeError, AttributeError) as error:
            raise InputFileError(path, f"malformed COCO index ({one_line(error)})") from None
    return index


def first_missing(entry: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first of ``keys`` missing from ``entry`` (``None`` if all are present)."""
    return next((key for key in keys if key not in entry), None)


def xywh_to_xyxy(box: Any) -> np.ndarray | None:
    """``xywh`` list -> ``xyxy`` array; ``None`` for a missing or degenerate box."""
    if box is None:
        return None
    try:
        values = np.asarray(box, dtype=np.float64).reshape(-1)
    except (ValueError, TypeError):
        return None
    if values.size != 4 or not np.all(np.isfinite(values)) or values[2] <= 0 or values[3] <= 0:
        return None
    return np.array([values[0], values[1], values[0] + values[2], values[1] + values[3]])


_ROT = {name: i for i, name in enumerate(joint_sets.ROTATION_JOINT_NAMES)}
_JOINT = {name: i for i, name in enumerate(joint_sets.JOINT_NAMES)}
FOOT_JOINTS = ("L_Big_toe", "L_Small_toe", "L_Heel", "R_Big_toe", "R_Small_toe", "R_Heel")
ANKLE_WRIST_ROTATIONS = ("left_ankle", "right_ankle", "left_wrist", "right_wrist")


def rotation_mask(names: tuple[str, ...]) -> np.ndarray:
    """``(53,)`` bool, True at the named rotations."""
    mask = np.zeros(NUM_ROTATIONS, dtype=bool)
    mask[[_ROT[name] for name in names]] = True
    return mask


def joint_mask(names: tuple[str, ...]) -> np.ndarray:
    """``(137,)`` bool, True at the named supervision joints."""
    mask = np.zeros(NUM_JOINTS, dtype=bool)
    mask[[_JOINT[name] for name in names]] = True
    return mask


SMPLX_PARAM_KEYS = ("root_pose", "body_pose", "shape", "trans")
"""Keys every NeuralAnnot ``smplx_param`` entry must have; hands, jaw and expression are optional."""


class NeuralAnnotFit:
    """One NeuralAnnot pseudo-GT fit (``smplx_param`` + ``cam_param``) and the validity it implies."""

    def __init__(self, params: SMPLXParams, focal: np.ndarray | None, princpt: np.ndarray | None,
                 pose_valid: np.ndarray, joints_valid: np.ndarray, expr_valid: bool) -> None:  # fmt: skip
        self.params = params
        self.focal = focal
        self.princpt = princpt
        self.pose_valid = pose_valid
        self.joints_valid = joints_valid
        self.expr_valid = expr_valid

    def apply_to(self, record: PersonRecord, params: SMPLXParams | None = None) -> None:
        """Attach the fit to ``record``: parameters, the fit's camera if it has one, validity masks.

        ``params`` replaces the fit's own parameters (e.g. after moving them into the camera frame).
        """
        record.smplx = self.params if params is None else params
        if self.focal is not None:
            record.focal, record.princpt = self.focal, self.princpt
        record.smplx_pose_valid = self.pose_valid
        record.smplx_shape_valid = True
        record.smplx_expr_valid = self.expr_valid
        record.smplx_joints_valid = self.joints_valid


def parse_smplx_param(
    raw: dict[str, Any], path: Path, context: str, problems: Problems, with_camera: bool = True
) -> NeuralAnnotFit | None:
    """Turn a NeuralAnnot entry into parameters and validity masks (docs/design/data-formats.md §2.2).

    Missing hand (``lhand_pose``/``rhand_pose``) or face (``jaw_pose``/``expr``) parameters, or
    ``*_valid`` flags that are false, zero those parts: their rotations, their supervision joints
    and (face) the expression are marked invalid. A missing required key is reported through
    ``problems`` (raise or skip) and gives ``None``.
    """
    smplx = raw.get("smplx_param") if with_camera else raw
    if not isinstance(smplx, dict):
        problems.report(path, f"{context}: missing key 'smplx_param'")
        return None
    missing = first_missing(smplx, SMPLX_PARAM_KEYS)
    if missing is not None:
        problems.report(path, f"{context}: smplx_param is missing key '{missing}'")
        return None
    focal = princpt = None
    if with_camera:
        cam = raw.get("cam_param")
        if not isinstance(cam, dict) or first_missing(cam, ("focal", "princpt")) is not None:
            problems.report(path, f"{context}: missing cam_param with 'focal' and 'princpt'")
            return None
        try:
            focal = np.asarray(cam["focal"], float).reshape(2)
            princpt = np.asarray(cam["princpt"], float).reshape(2)
        except MALFORMED as error:
            problems.report(path, f"{context}: cam_param must hold two numbers each ({one_line(error)})")
            return None
    lhand = "lhand_pose" in smplx and bool(smplx.get("lhand_valid", True))
    rhand = "rhand_pose" in smplx and bool(smplx.get("rhand_valid", True))
    face = "jaw_pose" in smplx and "expr" in smplx and bool(smplx.get("face_valid", True))
    try:
        params = SMPLXParams(
            root_pose=smplx["root_pose"],
            body_pose=smplx["body_pose"],
            lhand_pose=smplx.get("lhand_pose", np.zeros(45)),
            rhand_pose=smplx.get("rhand_pose", np.zeros(45)),
            jaw_pose=smplx.get("jaw_pose", np.zeros(3)),
            shape=smplx["shape"],
            expr=smplx.get("expr", np.zeros(10)),
            trans=smplx["trans"],
        )
    except MALFORMED as error:
        problems.report(path, f"{context}: bad SMPL-X parameters ({one_line(error)})")
        return None
    pose_valid = np.ones(NUM_ROTATIONS, dtype=bool)
    joints_valid = np.ones(NUM_JOINTS, dtype=bool)
    if not lhand:
        pose_valid[joint_sets.ROT_LHAND_SLICE] = False
        joints_valid[joint_sets.LHAND_SLICE] = False
    if not rhand:
        pose_valid[joint_sets.ROT_RHAND_SLICE] = False
        joints_valid[joint_sets.RHAND_SLICE] = False
    if not face:
        pose_valid[joint_sets.ROT_JAW_SLICE] = False
        joints_valid[joint_sets.FACE_SLICE] = False
    return NeuralAnnotFit(params, focal, princpt, pose_valid, joints_valid, face)


def apply_body_only_fit_rules(fit: NeuralAnnotFit) -> None:
    """Human3.6M and MPII rules: ankle and wrist rotations and the 6 foot joints are not supervised."""
    fit.pose_valid &= ~rotation_mask(ANKLE_WRIST_ROTATIONS)
    fit.joints_valid &= ~joint_mask(FOOT_JOINTS)
