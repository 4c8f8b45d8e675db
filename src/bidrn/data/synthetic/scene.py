"""Appearance of synthetic samples: skin and clothing colours, backgrounds, occluders.

Backgrounds are procedural (sky/wall gradients with a floor plane, tiles, stripes, soft blobs
and noise) or, when the user gives a folder of photos (``bidrn synth --backgrounds DIR``), random
crops of those photos. None of our dependencies ships photographs (architecture notes §5 list
scikit-image's public-domain astronaut, but scikit-image is not a dependency), so procedural
backgrounds are the default. Occluders are random flat shapes drawn over the person; their mask
feeds the joints' visibility.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bidrn.body import joint_sets
from bidrn.errors import BidrnError

SKIN_TONES = (
    np.array(
        [
            [255, 224, 196],
            [241, 194, 167],
            [224, 172, 138],
            [198, 134, 96],
            [161, 102, 68],
            [117, 74, 48],
            [88, 56, 38],
            [232, 190, 160],
        ],
        dtype=np.float64,
    )
    / 255.0
)
"""A spread of skin albedos from light to dark."""

_LEG_JOINTS = [
    joint_sets.SMPLX_BODY_NAMES.index(n)
    for n in (
        "pelvis",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
        "left_foot",
        "right_foot",
    )
]
_FOOT_JOINTS = [
    joint_sets.SMPLX_BODY_NAMES.index(n) for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")
]
_TORSO_JOINTS = [
    joint_sets.SMPLX_BODY_NAMES.index(n)
    for n in ("spine1", "spine2", "spine3", "left_collar", "right_collar", "left_shoulder", "right_shoulder")
]
_UPPER_ARM_JOINTS = [joint_sets.SMPLX_BODY_NAMES.index(n) for n in ("left_elbow", "right_elbow")]
_LOWER_ARM_JOINTS = [joint_sets.SMPLX_BODY_NAMES.index(n) for n in ("left_wrist", "right_wrist")]


def random_colour(rng: np.random.Generator, saturation: float = 0.6) -> np.ndarray:
    """A random RGB colour in [0, 1] with bounded saturation (clothing, objects)."""
    base = rng.uniform(0.08, 0.95)
    tint = rng.uniform(-saturation, saturation, size=3) * min(base, 1 - base) * 1.5
    return np.clip(base + tint, 0.02, 0.98)


def vertex_albedo(lbs_weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-vertex albedo ``(V, 3)``: skin, a top (short or long sleeves), trousers or shorts, shoes.

    Regions come from each vertex's dominant skinning joint, so clothing follows the body.
    """
    dominant = np.argmax(lbs_weights, axis=1)
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.05)
    top, bottom, shoes = random_colour(rng), random_colour(rng), random_colour(rng, 0.2) * 0.6
    albedo = np.tile(skin, (len(dominant), 1))
    long_sleeves = rng.random() < 0.5
    long_legs = rng.random() < 0.7
    albedo[np.isin(dominant, _TORSO_JOINTS)] = top
    if long_sleeves:
        albedo[np.isin(dominant, _UPPER_ARM_JOINTS)] = top
    legs = [j for j in _LEG_JOINTS if j not in _FOOT_JOINTS] + (_FOOT_JOINTS[:2] if long_legs else [])
    albedo[np.isin(dominant, legs)] = bottom
    if not long_legs:
        albedo[np.isin(dominant, [joint_sets.SMPLX_BODY_NAMES.index("pelvis")])] = bottom
    albedo[np.isin(dominant, _FOOT_JOINTS[2:])] = shoes
    if long_sleeves and rng.random() < 0.3:
        albedo[np.isin(dominant, _LOWER_ARM_JOINTS)] = top  # cuffs reaching the wrists
    return np.clip(albedo * rng.uniform(0.95, 1.05, size=(len(dominant), 1)), 0.0, 1.0)


def procedural_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random indoor/outdoor-looking ``(H, W, 3)`` uint8 background."""
    ys = np.linspace(0.0, 1.0, height)[:, None, None]
    top, bottom = random_colour(rng, 0.4), random_colour(rng, 0.4)
    image = top * (1 - ys) + bottom * ys + np.zeros((1, width, 1))
    horizon = int(height * rng.uniform(0.45, 0.85))
    floor = random_colour(rng, 0.3)
    style = rng.integers(4)
    rows = np.arange(height - horizon)[:, None]
    cols = np.arange(width)[None, :]
    if style == 0:  # tiled floor in perspective
        depth = 1.0 / (rows + 8.0)
        tiles = ((np.floor((cols - width / 2) * depth * 6) + np.floor(600 * depth)) % 2)[..., None]
        image[horizon:] = floor * (0.75 + 0.25 * tiles)
    elif style == 1:  # stripes on the wall
        period = rng.uniform(8, 40)
        stripes = (np.sin(np.arange(width) / period * np.pi * 2 + rng.uniform(0, 6)) > 0)[None, :, None]
        image[:horizon] = image[:horizon] * (0.8 + 0.2 * stripes)
        image[horizon:] = floor
    else:
        image[horizon:] = floor * (0.85 + 0.15 * rows[..., None] / max(height - horizon, 1))
    canvas = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(2, 8)):  # furniture-like boxes and blobs
        x0, y0 = rng.uniform(-0.2, 1.0) * width, rng.uniform(0.0, 0.9) * height
        w, h = rng.uniform(0.1, 0.5) * width, rng.uniform(0.1, 0.5) * height
        fill = tuple(int(v) for v in random_colour(rng) * 255)
        if rng.random() < 0.5:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=fill)
        else:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=fill)
    canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.5)))
    noise = rng.normal(scale=rng.uniform(2, 8), size=(height, width, 1))
    return np.clip(np.asarray(canvas, dtype=np.float64) + noise, 0, 255).astype(np.uint8)


class PhotoBackgrounds:
    """Random crops of the user's photos (``.jpg``/``.jpeg``/``.png`` found under a folder)."""

    def __init__(self, folder: str | Path) -> None:
        self.paths = sorted(
            p for p in Path(folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
        )
        if not self.paths:
            raise BidrnError(f"{folder}: no .jpg/.jpeg/.png background images found")

    def sample(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        """A random ``(H, W, 3)`` uint8 crop, rescaled so it covers the output."""
        path = self.paths[rng.integers(len(self.paths))]
        try:
            with Image.open(path) as image:
                photo = image.convert("RGB")
        except OSError as error:
            raise BidrnError(f"{path}: cannot read background image ({error})") from None
        scale = max(height / photo.height, width / photo.width) * rng.uniform(1.0, 1.6)
        photo = photo.resize(
            (max(width, round(photo.width * scale)), max(height, round(photo.height * scale)))
        )
        x = rng.integers(0, photo.width - width + 1)
        y = rng.integers(0, photo.height - height + 1)
        return np.asarray(photo.crop((x, y, x + width, y + height)))


def draw_occluders(
    image: np.ndarray, rng: np.random.Generator, count: int, target_box: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``count`` random shapes overlapping ``target_box`` (xyxy); returns (image, occluder mask)."""
    height, width = image.shape[:2]
    canvas = Image.fromarray(image)
    mask = Image.new("L", (width, height), 0)
    draw, mask_draw = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)
    x0, y0, x1, y1 = target_box
    for _ in range(count):
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        size = rng.uniform(0.12, 0.35) * max(x1 - x0, y1 - y0)
        aspect = rng.uniform(0.4, 2.5)
        w, h = size * np.sqrt(aspect), size / np.sqrt(aspect)
        fill = tuple(int(v) for v in random_colour(rng) * 255)
        shape = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle(shape, fill=fill)
            mask_draw.rectangle(shape, fill=255)
        elif kind == 1:
            draw.ellipse(shape, fill=fill)
            mask_draw.ellipse(shape, fill=255)
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, size=rng.integers(3, 7)))
            points = [(cx + w / 2 * np.cos(a), cy + h / 2 * np.sin(a)) for a in angles]
            draw.polygon(points, fill=fill)
            mask_draw.polygon(points, fill=255)
    return np.asarray(canvas), np.asarray(mask) > 0
