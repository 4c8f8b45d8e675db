"""Render synthetic whole-body samples from the body model, in parallel, into shards.

Each sample ``i`` of a split draws everything from ``numpy.random.default_rng([seed, split, i])``
(split 0 = train, 1 = test), so the output depends only on ``(seed, split, i)``: not on the
number of workers, and train and test never share a random stream. A sample is:

1. random SMPL-X parameters: an activity's pose (standing, walking, sitting, lying, ...), hands,
   shape, expression, orientation (:mod:`bidrn.data.synthetic.poses`);
2. a pinhole camera (focal length, principal point jitter) and a translation that frames the
   person at a random size and position, sometimes partly outside the image (truncation) or as
   an upper-body close-up;
3. a z-buffer render (:mod:`bidrn.data.synthetic.raster`) of a clothed person — skin tone, hair,
   garments with per-pixel textures — under a key light, a fill light and hemisphere ambient,
   over a photograph (the bundled redistributable wallpapers by default) or a procedural
   background, plus random occluders and mild sensor noise (:mod:`bidrn.data.synthetic.scene`);
4. annotations: person box, hand and face boxes (joint extents x1.2, as AGORA's), SMPL-X
   parameters, intrinsics, the 137 joints in 2D (pixels) and 3D (camera metres), and per-joint
   visibility (inside the image, not behind the body's own surface, not under an occluder).
"""

from __future__ import annotations

import multiprocessing
import os
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter
from tqdm import tqdm

from bidrn.body import joint_sets
from bidrn.data import geometry
from bidrn.data.synthetic import raster, scene, shards
from bidrn.data.synthetic.poses import PoseConfig, sample_params
from bidrn.errors import BidrnError

GENERATOR_VERSION = 2
"""Bumped whenever the same ``(seed, split, index)`` renders a different sample (2: the activity pose
prior, clothing, hair, two lights and photo backgrounds); recorded in every manifest."""

SPLITS = {"train": 0, "test": 1}
"""Split name -> the split component of every sample's seed."""

_PART_TOLERANCE = (
    (joint_sets.BODY_SLICE, 0.15),
    (joint_sets.LHAND_SLICE, 0.035),
    (joint_sets.RHAND_SLICE, 0.035),
    (joint_sets.FACE_SLICE, 0.08),
)
"""How far (m) a joint may lie behind the visible surface and still count as visible."""


@dataclass(frozen=True)
class SynthConfig:
    """Everything that shapes the synthetic data (defaults used by ``bidrn synth``).

    Attributes:
        height, width: image size in pixels.
        person_fraction: range of the person's height as a fraction of the image height.
        focal_range: focal length range as a multiple of the image height (vertical FOV ~24-53°).
        truncation_prob: probability that the framing pushes part of the person out of the image.
        closeup_prob: probability of an upper-body close-up (the person 1.2-2x the image height,
            head near the top edge, legs cut off).
        occluder_prob / max_occluders: probability of occluders and their maximum number.
        photo_prob: probability of a photographic background (else procedural).
        backgrounds: folder of background photos; ``None`` uses the bundled photographs
            (``bidrn/assets/backgrounds``, licences in its ``LICENSES.md``).
        model_path: SMPL-X model file; ``None`` uses the embedded stand-in.
        pose: parameter distributions.
        shard_size: samples per shard folder; ``chunk_size``: samples per parallel task.
        jpeg_quality: JPEG quality of the stored images.
    """

    height: int = 320
    width: int = 256
    person_fraction: tuple[float, float] = (0.5, 0.92)
    focal_range: tuple[float, float] = (1.0, 2.4)
    truncation_prob: float = 0.15
    closeup_prob: float = 0.1
    occluder_prob: float = 0.35
    max_occluders: int = 3
    photo_prob: float = 0.7
    backgrounds: str | None = None
    model_path: str | None = None
    pose: PoseConfig = field(default_factory=PoseConfig)
    shard_size: int = 100
    chunk_size: int = 8
    jpeg_quality: int = 92


_WORKER_STATE: dict[str, Any] = {}


def _body_model(config: SynthConfig) -> torch.nn.Module:
    """The body model of this process (loaded once per worker)."""
    key = f"body:{config.model_path}"
    if key not in _WORKER_STATE:
        from bidrn.body import load_body_model

        _WORKER_STATE[key] = load_body_model(config.model_path)
    return _WORKER_STATE[key]


def _surface(body: torch.nn.Module, config: SynthConfig) -> scene.BodySurface:
    """Per-vertex appearance facts of this process's body model (built once per worker)."""
    key = f"surface:{config.model_path}"
    if key not in _WORKER_STATE:
        _WORKER_STATE[key] = scene.BodySurface.from_model(
            body.v_template.double().numpy(), body.lbs_weights.double().numpy()
        )
    return _WORKER_STATE[key]


def _photos(config: SynthConfig) -> scene.PhotoBackgrounds:
    """This process's background photos (decoded once per worker)."""
    folder = config.backgrounds or scene.bundled_backgrounds()
    key = f"photos:{folder}"
    if key not in _WORKER_STATE:
        _WORKER_STATE[key] = scene.PhotoBackgrounds(folder)
    return _WORKER_STATE[key]


def _pose_batch(body: torch.nn.Module, params: list) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``(B, V, 3)`` and supervision joints ``(B, 137, 3)`` without translation."""

    def stack(name: str) -> torch.Tensor:
        return torch.as_tensor(np.stack([getattr(p, name) for p in params]), dtype=torch.float32)

    with torch.no_grad():
        output = body(
            betas=stack("shape"),
            global_orient=stack("root_pose"),
            body_pose=stack("body_pose"),
            left_hand_pose=stack("lhand_pose"),
            right_hand_pose=stack("rhand_pose"),
            jaw_pose=stack("jaw_pose"),
            expression=stack("expr"),
        )
    return output.vertices.double().numpy(), output.supervision_joints.double().numpy()


def _frame(
    rng: np.random.Generator, vertices: np.ndarray, config: SynthConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random intrinsics and the translation that frames the person: ``(focal, princpt, trans)``.

    The person's larger extent (height, or width for someone lying down or with arms spread)
    takes a random fraction of the image; sometimes the framing pushes part of them out of the
    image, or zooms onto the upper body with the head near the top edge.
    """
    height, width = config.height, config.width
    focal_px = rng.uniform(*config.focal_range) * height
    focal = np.array([focal_px, focal_px])
    princpt = np.array([width / 2, height / 2]) + rng.normal(scale=0.02, size=2) * [width, height]
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    centre = (low + high) / 2
    extent = high - low
    fraction = rng.uniform(*config.person_fraction)
    closeup = rng.random() < config.closeup_prob
    if closeup:
        fraction = rng.uniform(1.2, 2.0)
    depth = focal_px * max(extent[1] / (fraction * height), extent[0] / (fraction * width))
    depth = max(depth, 0.6 + extent[2])
    span_x, span_y = extent[0] * focal_px / depth, extent[1] * focal_px / depth
    slack_x, slack_y = max(width - span_x, 0.0) / 2, max(height - span_y, 0.0) / 2
    target = np.array(
        [width / 2 + rng.uniform(-slack_x, slack_x), height / 2 + rng.uniform(-slack_y, slack_y)]
    )
    if closeup:  # the top of the person sits 2-15 % below the top edge
        target[1] = rng.uniform(0.02, 0.15) * height + span_y / 2
    elif rng.random() < config.truncation_prob:
        direction = rng.integers(4)
        axis, sign = direction % 2, 1.0 if direction < 2 else -1.0
        spans = (span_x, span_y)
        target[axis] += sign * rng.uniform(0.2, 0.45) * spans[axis]
    xy = (target - princpt) * depth / focal_px
    trans = np.array([xy[0] - centre[0], xy[1] - centre[1], depth - centre[2]])
    return focal, princpt, trans


def _part_box(points: np.ndarray, height: int, width: int, margin: float = 1.2) -> np.ndarray | None:
    """Extent box ``xyxy`` of some 2D points enlarged by ``margin``; ``None`` if its centre is off-image."""
    low, high = points.min(axis=0), points.max(axis=0)
    centre, half = (low + high) / 2, (high - low) / 2 * margin
    if not (0 <= centre[0] <= width - 1 and 0 <= centre[1] <= height - 1):
        return None
    return np.concatenate([centre - half, centre + half])


def _visibility(
    joints_2d: np.ndarray, joints_3d: np.ndarray, fragments: raster.Fragments, occluded: np.ndarray
) -> np.ndarray:
    """Joints inside the image, not behind the body's visible surface and not under an occluder."""
    height, width = occluded.shape
    pixel = np.round(joints_2d).astype(np.int64)
    inside = (pixel[:, 0] >= 0) & (pixel[:, 0] < width) & (pixel[:, 1] >= 0) & (pixel[:, 1] < height)
    px, py = np.clip(pixel[:, 0], 0, width - 1), np.clip(pixel[:, 1], 0, height - 1)
    tolerance = np.zeros(len(joints_2d))
    for part, value in _PART_TOLERANCE:
        tolerance[part] = value
    surface = fragments.depth[py, px]
    return inside & (surface >= joints_3d[:, 2] - tolerance) & ~occluded[py, px]


def render_sample(
    rng: np.random.Generator,
    params: Any,
    vertices: np.ndarray,
    joints: np.ndarray,
    body: torch.nn.Module,
    config: SynthConfig,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Frame, light, render and annotate one posed body; returns the uint8 image and its annotation."""
    height, width = config.height, config.width
    focal, princpt, trans = _frame(rng, vertices, config)
    vertices = vertices + trans
    joints = joints + trans
    params = replace(params, trans=trans)
    points = geometry.project(vertices, focal, princpt)
    joints_2d = geometry.project(joints, focal, princpt)

    faces = np.asarray(body.faces, dtype=np.int64)
    fragments = raster.rasterize(points, vertices[:, 2], faces, height, width)
    if rng.random() < config.photo_prob:
        background = _photos(config).sample(rng, height, width)
    else:
        background = scene.procedural_background(rng, height, width)
    appearance = scene.sample_appearance(rng)
    albedo = scene.paint(appearance, _surface(body, config), fragments, faces)
    lighting = scene.sample_lighting(rng, background[::4, ::4].reshape(-1, 3).mean(axis=0) / 255.0)
    person = raster.shade(fragments, faces, albedo, raster.vertex_normals(vertices, faces), lighting)
    image = np.array(background)
    image[fragments.mask] = (person * 255).astype(np.uint8)
    image = np.asarray(Image.fromarray(image).filter(ImageFilter.SMOOTH))

    low, high = points.min(axis=0), points.max(axis=0)
    person_box = np.concatenate(
        [np.clip(low, 0, [width - 1, height - 1]), np.clip(high, 0, [width - 1, height - 1])]
    )
    occluded = np.zeros((height, width), dtype=bool)
    if rng.random() < config.occluder_prob:
        count = int(rng.integers(1, config.max_occluders + 1))
        photos = _photos(config) if config.photo_prob > 0 else None
        image, occluded = scene.draw_occluders(image, rng, count, person_box, photos)
    noise = rng.standard_normal(size=image.shape, dtype=np.float32) * rng.uniform(0.5, 3.0)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)

    boxes = {}
    for name, part in (("lhand", joint_sets.LHAND_SLICE), ("rhand", joint_sets.RHAND_SLICE)):
        root = joint_sets.LHAND_ROOT if name == "lhand" else joint_sets.RHAND_ROOT
        boxes[name] = _part_box(np.vstack([joints_2d[part], joints_2d[root]]), height, width)
    boxes["face"] = _part_box(joints_2d[joint_sets.FACE_SLICE][4:], height, width)
    annotation = {
        "bbox": np.array([*person_box[:2], *(person_box[2:] - person_box[:2])]),
        **{f"{k}_box": np.zeros(4) if b is None else b for k, b in boxes.items()},
        **{f"{k}_valid": b is not None for k, b in boxes.items()},
        **params.as_dict(),
        "focal": focal,
        "princpt": princpt,
        "joints_2d": joints_2d.astype(np.float32),
        "joints_3d": joints.astype(np.float32),
        "visible": _visibility(joints_2d, joints, fragments, occluded),
        "image_size": np.array([height, width]),
    }
    return image, annotation


def _render_chunk(
    task: tuple[str, str, list[int], int, int, SynthConfig],
) -> tuple[str, list[int], list[dict]]:
    """Worker: render samples ``ids`` into ``out/shard`` and return their annotations."""
    out, shard, ids, seed, split_code, config = task
    torch.set_num_threads(1)
    body = _body_model(config)
    rngs = [np.random.default_rng([seed, split_code, sample_id]) for sample_id in ids]
    left_mean = body.left_hand_mean.double().numpy()
    right_mean = body.right_hand_mean.double().numpy()
    rows = []
    for rng, sample_id in zip(rngs, ids, strict=True):
        params = sample_params(rng, config.pose, left_mean, right_mean)
        # One body per forward pass: batching changes float32 rounding, and the output must not
        # depend on how samples were grouped into chunks.
        vertices, joints = _pose_batch(body, [params])
        image, annotation = render_sample(rng, params, vertices[0], joints[0], body, config)
        Image.fromarray(image).save(
            Path(out) / shard / shards.image_name(sample_id), quality=config.jpeg_quality
        )
        rows.append(annotation)
    return shard, ids, rows


def generate(
    out: str | Path,
    num: int,
    seed: int = 0,
    split: str = "train",
    config: SynthConfig | None = None,
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Render ``num`` samples of ``split`` into shard folders under ``out``; returns ``out``.

    ``workers`` processes render chunks of ``config.chunk_size`` samples (default: one per CPU).
    """
    config = config or SynthConfig()
    if split not in SPLITS:
        raise BidrnError(f"unknown split '{split}' (choose from {', '.join(SPLITS)})")
    if num <= 0:
        raise BidrnError(f"--num must be positive, got {num}")
    out = Path(out)
    if (out / "manifest.json").exists() and not overwrite:
        raise BidrnError(f"{out}: already holds synthetic data (manifest.json); choose another folder")
    if config.photo_prob > 0:
        scene.PhotoBackgrounds(
            config.backgrounds or scene.bundled_backgrounds()
        )  # fail early on an empty folder
    shard_ids: dict[str, list[int]] = defaultdict(list)
    for sample_id in range(num):
        shard_ids[shards.shard_name(split, sample_id // config.shard_size)].append(sample_id)
    tasks = []
    for shard, ids in shard_ids.items():
        (out / shard).mkdir(parents=True, exist_ok=True)
        for start in range(0, len(ids), config.chunk_size):
            tasks.append(
                (str(out), shard, ids[start : start + config.chunk_size], seed, SPLITS[split], config)
            )

    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    collected: dict[str, dict[int, dict]] = defaultdict(dict)
    bar = tqdm(total=num, unit="img", desc=f"synth {split}", disable=not progress)
    if workers == 1:
        results = map(_render_chunk, tasks)
        pool = None
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers)
        results = pool.imap_unordered(_render_chunk, tasks)
    try:
        for shard, ids, rows in results:
            collected[shard].update(zip(ids, rows, strict=True))
            bar.update(len(ids))
            if len(collected[shard]) == len(shard_ids[shard]):
                ordered = shard_ids[shard]
                shards.write_shard(out / shard, split, seed, ordered, [collected[shard][i] for i in ordered])
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    body_source = str(config.model_path) if config.model_path else "embedded stand-in"
    shards.write_manifest(
        out,
        {
            "generator": GENERATOR_VERSION,
            "split": split,
            "seed": seed,
            "count": num,
            "image_size": [config.height, config.width],
            "shards": list(shard_ids),
            "body_model": body_source,
        },
    )
    return out
