"""``bidrn predict``: whole-body meshes from images, folders or videos (see docs/predict.md).

Examples::

    bidrn predict photo.jpg --out out/
    bidrn predict photos/ clip.mp4 --out out/ --boxes detections.json --batch-size 16
    bidrn predict photo.jpg --out out/ --bbox 120,40,260,610 --body-model SMPLX_NEUTRAL.npz
    bidrn predict photos/ --out out/ --checkpoint runs/bidrn/checkpoints/last --simulated
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bidrn.errors import BidrnError

if TYPE_CHECKING:
    import torch

    from bidrn.apps.predict import Predictor


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint``, ``--body-model``, ``--device`` and ``--frozen/--simulated`` (shared with demo)."""
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="frozen *.bidrn.safetensors (bidrn export) or training checkpoint (bidrn train); "
        "default: the bundled weights",
    )
    parser.add_argument(
        "--body-model",
        default=None,
        metavar="PATH",
        help="SMPL-X .npz/.pkl for the meshes (default: the checkpoint's, else the embedded stand-in)",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--frozen",
        dest="frozen",
        action="store_true",
        default=None,
        help="run packed 1-bit layers (default on CPU)",
    )
    mode.add_argument(
        "--simulated",
        dest="frozen",
        action="store_false",
        help="run the binary layers simulated in floating point (training checkpoints only)",
    )
    add_dense_precision_argument(parser)


def add_dense_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--dense-precision`` (predict, demo, eval, bench).

    The choices are ``bidrn.deploy.dense.DENSE_PRECISIONS``, spelt out so that building the parser
    does not import torch.
    """
    parser.add_argument(
        "--dense-precision",
        choices=("auto", "fp32", "bf16", "int8"),
        default="auto",
        help="precision of a frozen model's full-precision convs on CPU: bf16 rounds their "
        "weights and inputs (1.6-3x faster); int8 runs the stems and Block Residual projections "
        "as int8 convs instead (1.6-2x faster again; needs VNNI). Each moves any Table 1 error by "
        "< 0.7 mm and single meshes by ~5 cm. auto (default) picks int8 where the CPU has VNNI, "
        "else bf16 where it has bf16 dot products (AVX512_BF16, AMX, Arm BF16), else fp32 (exact)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bidrn predict``."""
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files, folders of images, video files"
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    add_model_arguments(parser)
    boxes = parser.add_mutually_exclusive_group()
    boxes.add_argument(
        "--bbox", default=None, metavar="X,Y,W,H", help="one person box (pixels) for every input"
    )
    boxes.add_argument(
        "--boxes",
        default=None,
        type=Path,
        metavar="JSON",
        help="COCO-style person detections (several per image)",
    )
    parser.add_argument(
        "--min-score", type=float, default=0.5, help="ignore --boxes detections scored below this"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="person crops per forward pass")
    parser.add_argument("--video-stride", type=int, default=1, help="use every n-th video frame")
    parser.add_argument("--no-render", action="store_true", help="skip the overlay and side-view pictures")


def model_path(checkpoint: str | None) -> Path:
    """The ``--checkpoint`` given, or the bundled weights (a one-line error when they are missing)."""
    from bidrn.apps.predict import bundled_weights_path

    if checkpoint is not None:
        return Path(checkpoint)
    bundled = bundled_weights_path()
    if not bundled.is_file():
        raise BidrnError(
            f"{bundled}: the bundled weights are missing from this installation; pass --checkpoint "
            "(a frozen .bidrn.safetensors from `bidrn export` or a checkpoint from `bidrn train`)"
        )
    return bundled


def _warn(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"bidrn predict: warning: {message}", file=sys.stderr)


def device_option(requested: str | None) -> torch.device:
    """``--device`` resolved (:func:`bidrn.apps.predict.resolve_device`), its errors naming the flag."""
    from bidrn.apps.predict import resolve_device

    try:
        return resolve_device(requested)
    except BidrnError as error:
        raise BidrnError(f"--device: {error}") from None


def load_predictor(args: argparse.Namespace, frozen: bool | None = None) -> Predictor:
    """The model of ``--checkpoint`` (or the bundled one) with ``--body-model`` on ``--device``."""
    from bidrn.apps.predict import FreezeError, Predictor

    device = device_option(args.device)
    try:
        return Predictor.load(
            model_path(args.checkpoint),
            getattr(args, "body_model", None),
            device,
            frozen,
            args.dense_precision,
        )
    except FreezeError as error:
        raise BidrnError(f"{error} (--simulated)") from None


def run(args: argparse.Namespace) -> int:
    """Discover inputs, load the model, predict in batches and print where everything went."""
    from bidrn.apps.inputs import (
        discover_inputs,
        iter_frames,
        parse_bbox,
        read_boxes,
        require_video_reader,
    )
    from bidrn.apps.outputs import prepare_folder
    from bidrn.apps.predict import predict_frames

    for flag, value in (("--batch-size", args.batch_size), ("--video-stride", args.video_stride)):
        if value < 1:
            raise BidrnError(f"{flag} must be at least 1, got {value}")
    if not math.isfinite(args.min_score):
        raise BidrnError(f"--min-score must be a finite number, got {args.min_score}")
    try:
        single = parse_bbox(args.bbox) if args.bbox else None
    except BidrnError as error:
        raise BidrnError(f"--bbox: {error}") from None
    table = read_boxes(args.boxes, args.min_score) if args.boxes else None
    sources, problems = discover_inputs(args.inputs)
    if len(problems) == 1 and not sources:
        raise problems[0]
    if not sources:
        raise BidrnError(f"none of the {len(problems)} inputs is usable: " + "; ".join(map(str, problems)))
    for problem in problems:
        _warn(f"skipping {problem}")
    for video in (s.path for s in sources if s.kind == "video"):
        require_video_reader(video)
    frames = iter_frames(sources, args.video_stride)
    if len(sources) == 1 and not problems and sources[0].kind == "image":
        frame = next(frames)  # a lone image that cannot be read is an error, not a skip
        if isinstance(frame, BidrnError):
            raise frame
        frames = iter([frame])
    prepare_folder(args.out)  # before the model loads: a bad --out fails at once
    predictor = load_predictor(args, args.frozen)

    def boxes_for(frame):
        if single is not None:
            return [single]
        return None if table is None else table.lookup(frame)

    show_progress = len(sources) > 1 or sources[0].kind == "video"
    total = len(sources) if all(s.kind == "image" for s in sources) else None
    report = predict_frames(
        predictor,
        frames,
        args.out,
        boxes_for,
        args.batch_size,
        not args.no_render,
        show_progress,
        total,
        _warn,
    )
    if report.people == 0:
        raise BidrnError(
            f"no person was predicted in {args.out}; every input or box was skipped (warnings above)"
        )
    skipped = len(report.skipped) + len(problems)
    if report.renamed:
        first, used = report.renamed[0]
        _warn(
            f"{len(report.renamed)} names were taken in {args.out}, so those outputs got a suffix "
            f"(e.g. {first} -> {used}); predictions.jsonl lists every file"
        )
    print(
        f"{report.frames} images, {report.people} people in {report.seconds:.1f} s: "
        f"{report.images_per_second:.2f} images/s overall, {report.model_people_per_second:.1f} crops/s "
        f"through the model ({predictor.mode}, {predictor.device.type}, batch {args.batch_size})"
        + (f"; {skipped} skipped" if skipped else "")
    )
    print(f"outputs: {report.out_dir} (summary: {report.jsonl})")
    return 0
