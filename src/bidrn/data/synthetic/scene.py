"""Appearance of synthetic samples: skin, hair, clothing textures, lights, backgrounds, occluders.

**People.** Every vertex of the body model gets a *canonical position* (its place on the T-posed
template: y up, +z facing forward, metres) and a *limb* (from its dominant skinning joint). An
outfit is a set of garments, each covering the vertices inside a box of canonical coordinates —
a top from its hem to its neckline with short or long sleeves, trousers/shorts/skirt from the
waist to a leg length, socks and shoes — so clothing follows the body in any pose. A garment has
a colour from a palette of common clothing colours, and a pattern evaluated per *pixel* from the
interpolated canonical position (horizontal or vertical stripes, checks, plaid, mottled noise,
colour blocks, a chest print) plus low-frequency fold shading. Skin tones are interpolated along
a light-to-dark scale; hair covers the scalp above a hairline plane (short, long down to the
neck, shaved, or none) with eyebrows; eyes are dark and lips slightly red, so the face shows
which way the head turns.

**Light.** :class:`~bidrn.data.synthetic.raster.Lighting` with a random key light from the upper
hemisphere, a weaker fill light from the other side, a sky/ground ambient term and a white
balance pulled towards the background's mean colour.

**Backgrounds** are photographs (the bundled ``bidrn/assets/backgrounds``: redistributable Debian
wallpapers, see its ``LICENSES.md``; or the user's folder) cropped at a random scale and
position, or procedural (gradients, tiled floors, stripes, furniture-like shapes). **Occluders**
are shapes filled with a flat colour, stripes or a piece of photograph, sometimes a bar rising
from the bottom edge (a table or a wall); their mask feeds the joints' visibility.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bidrn.body import joint_sets
from bidrn.data.synthetic.raster import Fragments, Lighting
from bidrn.errors import BidrnError

SKIN_TONES = (
    np.array(
        [
            [255, 226, 204],
            [241, 198, 170],
            [226, 176, 140],
            [200, 140, 102],
            [164, 108, 72],
            [126, 80, 52],
            [92, 58, 38],
            [64, 42, 30],
        ],
        dtype=np.float64,
    )
    / 255.0
)
"""A light-to-dark scale of skin albedos; a sample interpolates between neighbours."""

HAIR_COLOURS = (
    np.array(
        [
            [20, 16, 14],
            [45, 30, 22],
            [80, 55, 35],
            [120, 85, 50],
            [185, 150, 95],
            [150, 70, 35],
            [160, 155, 150],
        ],
        dtype=np.float64,
    )
    / 255.0
)
"""Black, dark brown, brown, light brown, blond, auburn and grey."""

CLOTHING_COLOURS = (
    np.array(
        [
            [20, 20, 22], [235, 235, 230], [128, 128, 128], [60, 60, 65], [30, 40, 80], [60, 90, 140],
            [110, 140, 180], [120, 30, 35], [180, 40, 40], [200, 170, 120], [110, 85, 60], [70, 95, 60],
            [30, 70, 50], [230, 200, 60], [210, 110, 40], [140, 80, 140], [220, 150, 170], [60, 150, 160],
        ],
        dtype=np.float64,
    )
    / 255.0
)  # fmt: skip
"""Common garment colours: black, white, greys, navy, denims, burgundy, red, khaki, brown, olive, ..."""

PATTERNS = ("plain", "h_stripes", "v_stripes", "checks", "plaid", "mottled", "blocks", "print")
_PATTERN_WEIGHTS = np.array([0.42, 0.13, 0.05, 0.08, 0.06, 0.12, 0.07, 0.07])

# Limbs: groups of skinning joints that decide which garment may cover a vertex.
_HEAD, _NECK, _TORSO, _ARM, _HAND, _LEG, _FOOT = range(7)
_LIMB_OF_JOINT = {
    "pelvis": _TORSO, "spine1": _TORSO, "spine2": _TORSO, "spine3": _TORSO,
    "left_collar": _TORSO, "right_collar": _TORSO, "neck": _NECK, "head": _HEAD,
    "left_shoulder": _ARM, "right_shoulder": _ARM, "left_elbow": _ARM, "right_elbow": _ARM,
    "left_wrist": _HAND, "right_wrist": _HAND,
    "left_hip": _LEG, "right_hip": _LEG, "left_knee": _LEG, "right_knee": _LEG,
    "left_ankle": _FOOT, "right_ankle": _FOOT, "left_foot": _FOOT, "right_foot": _FOOT,
}  # fmt: skip
_EYE_JOINTS = (23, 24)  # SMPL-X joints 22..24: jaw, left eye, right eye; 25..54: fingers (hands)


@dataclass(frozen=True)
class BodySurface:
    """Per-vertex facts of one body model that appearance needs (built once per model).

    Attributes:
        canonical: ``(V, 3)`` template positions (y up, +z forward, metres).
        limb: ``(V,)`` limb group of each vertex's dominant skinning joint.
        eyes: ``(V,)`` whether the vertex belongs to an eyeball.
    """

    canonical: np.ndarray
    limb: np.ndarray
    eyes: np.ndarray

    @classmethod
    def from_model(cls, template: np.ndarray, lbs_weights: np.ndarray) -> BodySurface:
        """Label the vertices of a model from its template ``(V, 3)`` and skinning weights ``(V, J)``."""
        dominant = np.argmax(lbs_weights, axis=1)
        table = np.full(lbs_weights.shape[1], _HAND)  # fingers (25..54) belong to the hands
        for name, limb in _LIMB_OF_JOINT.items():
            table[joint_sets.SMPLX_BODY_NAMES.index(name)] = limb
        table[22:25] = _HEAD  # jaw and eyes
        return cls(
            canonical=np.asarray(template, dtype=np.float64),
            limb=table[dominant],
            eyes=np.isin(dominant, _EYE_JOINTS),
        )


@dataclass(frozen=True)
class Garment:
    """One piece of clothing: where it sits (in canonical coordinates) and how it looks.

    ``limbs`` are the limb groups it may cover. An arm vertex is covered when ``|x| <= reach``
    (sleeve length: arms lie along x in the T-posed template), any other vertex when its ``y``
    lies in ``[low, high]`` (hem to neckline, waist to leg length).
    """

    limbs: tuple[int, ...]
    low: float
    high: float
    reach: float
    colour: np.ndarray
    pattern: str = "plain"
    second: np.ndarray | None = None
    scale: float = 0.05
    phase: float = 0.0


@dataclass(frozen=True)
class Appearance:
    """Everything that colours one person: skin, hair, garments (drawn in order) and a noise seed."""

    skin: np.ndarray
    hair: np.ndarray
    hairline_front: float
    hairline_back: float
    eye: np.ndarray
    garments: tuple[Garment, ...]
    noise: np.ndarray  # (16, 16, 16) lattice of the mottled pattern and fold shading


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float) -> np.ndarray:
    return np.clip(
        colour * rng.uniform(1 - amount, 1 + amount) + rng.normal(scale=amount / 3, size=3), 0.02, 0.98
    )


def random_colour(rng: np.random.Generator, saturation: float = 0.6) -> np.ndarray:
    """A random RGB colour in [0, 1] with bounded saturation (objects, procedural backgrounds)."""
    base = rng.uniform(0.08, 0.95)
    tint = rng.uniform(-saturation, saturation, size=3) * min(base, 1 - base) * 1.5
    return np.clip(base + tint, 0.02, 0.98)


def clothing_colour(rng: np.random.Generator) -> np.ndarray:
    """A garment colour: mostly a jittered palette colour, sometimes any colour."""
    if rng.random() < 0.7:
        return _jitter(rng, CLOTHING_COLOURS[rng.integers(len(CLOTHING_COLOURS))], 0.15)
    return random_colour(rng, 0.7)


def skin_tone(rng: np.random.Generator) -> np.ndarray:
    """A skin albedo interpolated on :data:`SKIN_TONES` with a little hue and brightness jitter."""
    position = rng.uniform(0, len(SKIN_TONES) - 1)
    low = int(position)
    high = min(low + 1, len(SKIN_TONES) - 1)
    tone = SKIN_TONES[low] + (SKIN_TONES[high] - SKIN_TONES[low]) * (position - low)
    return np.clip(tone * rng.uniform(0.94, 1.04) * (1 + rng.normal(scale=0.025, size=3)), 0.0, 1.0)


def _garment(
    rng: np.random.Generator, limbs: tuple[int, ...], low: float, high: float, reach: float
) -> Garment:
    pattern = PATTERNS[rng.choice(len(PATTERNS), p=_PATTERN_WEIGHTS / _PATTERN_WEIGHTS.sum())]
    colour = clothing_colour(rng)
    second = clothing_colour(rng) if rng.random() < 0.6 else np.clip(colour * rng.uniform(0.4, 0.7), 0, 1)
    return Garment(
        limbs, low, high, reach, colour, str(pattern), second, rng.uniform(0.02, 0.07), rng.uniform(0, 6.3)
    )


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """A random person: skin, hair, a top, a bottom, maybe socks, shoes (canonical heights in metres).

    Canonical landmarks of the body model: waist ~-0.25, crotch ~-0.45, knee -0.77, ankle -1.2,
    shoulder joint x ±0.18, elbow ±0.44, wrist ±0.68, neck base y ~0.15, brows 0.36, crown 0.44.
    """
    skin = skin_tone(rng)
    hair = _jitter(rng, HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], 0.1)
    style = rng.choice(4, p=[0.08, 0.1, 0.5, 0.32])  # none, shaved, short, long
    if style == 0:
        front, back = 1.0, 1.0  # above the crown: no hair
    elif style == 1:
        front, back, hair = rng.uniform(0.40, 0.42), rng.uniform(0.28, 0.31), 0.5 * hair + 0.5 * skin
    elif style == 2:
        front, back = rng.uniform(0.385, 0.41), rng.uniform(0.24, 0.29)
    else:
        front, back = rng.uniform(0.375, 0.4), rng.uniform(0.0, 0.15)
    eye = _jitter(rng, np.array([0.18, 0.12, 0.08]), 0.3)

    garments = []
    dress = rng.random() < 0.08
    bottom_high = rng.uniform(-0.3, -0.2)
    leg_end = rng.choice(
        [rng.uniform(-1.22, -1.1), rng.uniform(-0.75, -0.55), rng.uniform(-1.0, -0.85)], p=[0.65, 0.25, 0.1]
    )
    bottom = _garment(rng, (_TORSO, _LEG, _FOOT), float(leg_end), bottom_high, 1.0)
    if rng.random() < 0.35 and leg_end > -1.1:  # socks between the hem and the shoe
        garments.append(Garment((_LEG, _FOOT), -1.3, rng.uniform(-1.1, -0.95), 1.0, clothing_colour(rng)))
    if not dress:
        garments.append(bottom)
    sleeve = rng.choice(
        [rng.uniform(0.25, 0.36), rng.uniform(0.6, 0.7), rng.uniform(0.12, 0.2)], p=[0.45, 0.45, 0.1]
    )
    hem = rng.uniform(-0.45, -0.2) if not dress else float(leg_end)
    neckline = rng.uniform(0.09, 0.17)
    top = _garment(rng, (_TORSO, _ARM, _LEG) if dress else (_TORSO, _ARM), hem, neckline, float(sleeve))
    tucked = rng.random() < 0.3
    garments.insert(len(garments) if not tucked else 0, top)
    if rng.random() < 0.95:  # shoes
        shoe = clothing_colour(rng) * rng.uniform(0.4, 1.0)
        garments.append(Garment((_FOOT,), -1.3, rng.uniform(-1.17, -1.08), 1.0, shoe))
    return Appearance(skin, hair, float(front), float(back), eye, tuple(garments), rng.random((16, 16, 16)))


def _covered(garment: Garment, canonical: np.ndarray, limb: np.ndarray) -> np.ndarray:
    """Vertices under ``garment``: arms by their reach along x, everything else by height."""
    x, y = canonical[:, 0], canonical[:, 1]
    on_arm = (limb == _ARM) | (limb == _HAND)
    inside = np.where(on_arm, np.abs(x) <= garment.reach, (y >= garment.low) & (y <= garment.high))
    return np.isin(limb, garment.limbs) & inside


def _owner(appearance: Appearance, surface: BodySurface) -> np.ndarray:
    """Per vertex: index of the garment drawn last over it (later garments cover earlier ones), -1 = skin."""
    owner = np.full(len(surface.limb), -1)
    for index, garment in enumerate(appearance.garments):
        owner[_covered(garment, surface.canonical, surface.limb)] = index
    return owner


def vertex_albedo(appearance: Appearance, surface: BodySurface) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex base albedo ``(V, 3)`` and the garment index of each vertex (-1: skin, hair, eyes)."""
    x, y, z = surface.canonical.T
    owner = _owner(appearance, surface)
    albedo = np.tile(appearance.skin, (len(owner), 1))
    for index, garment in enumerate(appearance.garments):
        albedo[owner == index] = garment.colour
    head = surface.limb == _HEAD
    # Hairline: from `front` over the brow (z = 0.14) down to `back` behind the head (z = -0.05),
    # dropping slowly over the temples and fast behind the ears; long hair covers the upper back.
    drop = np.clip((0.14 - z) / 0.19, 0.0, 1.0) ** 1.6
    hairline = appearance.hairline_front - (appearance.hairline_front - appearance.hairline_back) * drop
    upper_back = (surface.limb == _TORSO) & (np.abs(x) < 0.11)
    scalp = (head | (surface.limb == _NECK) | upper_back) & (y > hairline) & ~surface.eyes
    brows = head & (y > 0.35) & (y < 0.364) & (np.abs(x) > 0.008) & (np.abs(x) < 0.052) & (z > 0.12)
    lips = head & (y > 0.25) & (y < 0.272) & (np.abs(x) < 0.024) & (z > 0.134)
    albedo[scalp | brows] = appearance.hair
    albedo[lips] = appearance.skin * np.array([0.92, 0.7, 0.7])
    albedo[surface.eyes] = appearance.eye
    owner[scalp] = -1
    return albedo, owner


def _value_noise(lattice: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Trilinear value noise in [0, 1] at ``points`` ``(P, 3)`` (lattice units) on a wrapping lattice."""
    size = lattice.shape[0]
    base = np.floor(points)
    frac = points - base
    frac = frac * frac * (3 - 2 * frac)
    i = base.astype(np.int64) % size
    j = (i + 1) % size
    out = np.zeros(len(points))
    for corner in range(8):
        pick = [(j if corner >> axis & 1 else i)[:, axis] for axis in range(3)]
        weight = np.prod([frac[:, a] if corner >> a & 1 else 1 - frac[:, a] for a in range(3)], axis=0)
        out += weight * lattice[pick[0], pick[1], pick[2]]
    return out


def _pattern(garment: Garment, canonical: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """Per-pixel weight of the garment's second colour (0..1)."""
    x, y, z = canonical.T
    scale, phase = garment.scale, garment.phase
    if garment.pattern == "h_stripes":
        return (np.sin(y / scale * np.pi + phase) > 0.2).astype(np.float64)
    if garment.pattern == "v_stripes":
        return (np.sin(np.arctan2(x, z) * 0.25 / scale + phase) > 0.3).astype(np.float64)
    if garment.pattern == "checks":
        return ((np.floor(x / scale + phase) + np.floor(y / scale)) % 2).astype(np.float64)
    if garment.pattern == "plaid":
        lines = (np.abs(np.sin(x / scale * np.pi + phase)) > 0.8) | (np.abs(np.sin(y / scale * np.pi)) > 0.8)
        return 0.7 * lines.astype(np.float64)
    if garment.pattern == "mottled":
        return np.clip((_value_noise(lattice, canonical / (scale * 0.6)) - 0.35) * 2.5, 0, 1)
    if garment.pattern == "blocks":
        return (y > (garment.low + garment.high) / 2 + np.sin(phase) * 0.08).astype(np.float64)
    if garment.pattern == "print":
        centre = (garment.low + garment.high) / 2 + 0.12
        return ((np.abs(x) < 2 * scale + 0.03) & (np.abs(y - centre) < 2 * scale + 0.02) & (z > 0)).astype(
            np.float64
        )
    return np.zeros(len(canonical))


def paint(
    appearance: Appearance, surface: BodySurface, fragments: Fragments, faces: np.ndarray
) -> np.ndarray:
    """Albedo ``(P, 3)`` of the covered pixels (mask order).

    Interpolated per-vertex base colours, garment patterns evaluated at each pixel's canonical
    position, and soft fold shading on clothing.
    """
    albedo_v, owner_v = vertex_albedo(appearance, surface)
    mask = fragments.mask
    corners = faces[fragments.face[mask]]
    weights = fragments.bary[mask]
    albedo = np.einsum("pk,pkc->pc", weights, albedo_v[corners])
    canonical = np.einsum("pk,pkc->pc", weights, surface.canonical[corners])
    owner = owner_v[corners[np.arange(len(corners)), np.argmax(weights, axis=1)]]
    clothed = owner >= 0
    if clothed.any():
        folds = _value_noise(appearance.noise, canonical[clothed] * 12.0 + 5.0)
        albedo[clothed] *= (0.82 + 0.3 * folds)[:, None]
    for index, garment in enumerate(appearance.garments):
        if garment.pattern == "plain" or garment.second is None:
            continue
        pixels = np.nonzero(owner == index)[0]
        if len(pixels) == 0:
            continue
        weight = _pattern(garment, canonical[pixels], appearance.noise)[:, None]
        albedo[pixels] = albedo[pixels] * (1 - weight) + garment.second * weight
    return np.clip(albedo, 0.0, 1.0)


def sample_lighting(rng: np.random.Generator, background_mean: np.ndarray) -> Lighting:
    """Random key/fill/ambient light; the white balance leans towards the background's mean colour."""
    side = rng.uniform(-1.0, 1.0)
    key = (side, -rng.uniform(0.2, 1.2), -rng.uniform(0.3, 1.2))
    fill = (-side * rng.uniform(0.5, 1.5), -rng.uniform(-0.2, 0.6), -rng.uniform(0.5, 1.2))
    tint = background_mean / max(float(background_mean.mean()), 1e-3)
    colour = rng.uniform(0.88, 1.08, size=3) * (1 + 0.25 * (np.clip(tint, 0.5, 1.5) - 1))
    sky = rng.uniform(0.22, 0.5)
    return Lighting(
        key=key,
        fill=fill,
        key_strength=rng.uniform(0.45, 0.9),
        fill_strength=rng.uniform(0.0, 0.35),
        sky=sky,
        ground=sky * rng.uniform(0.35, 0.9),
        colour=tuple(float(c) for c in colour),
    )


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
    canvas = canvas.filter(ImageFilter.BoxBlur(rng.uniform(0.5, 2.5)))
    noise = rng.normal(scale=rng.uniform(2, 8), size=(height, width, 1))
    return np.clip(np.asarray(canvas, dtype=np.float64) + noise, 0, 255).astype(np.uint8)


def bundled_backgrounds() -> Path:
    """The folder of background photographs shipped with bidrn (licences in its ``LICENSES.md``)."""
    return Path(str(resources.files("bidrn") / "assets" / "backgrounds"))


class PhotoBackgrounds:
    """Random crops of photos (``.jpg``/``.jpeg``/``.png`` found under a folder), decoded once."""

    def __init__(self, folder: str | Path) -> None:
        self.paths = sorted(
            p for p in Path(folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
        )
        if not self.paths:
            raise BidrnError(f"{folder}: no .jpg/.jpeg/.png background images found")
        self._decoded: dict[int, Image.Image] = {}

    def _photo(self, index: int) -> Image.Image:
        if index not in self._decoded:
            path = self.paths[index]
            try:
                with Image.open(path) as image:
                    self._decoded[index] = image.convert("RGB")
            except OSError as error:
                raise BidrnError(f"{path}: cannot read background image ({error})") from None
        return self._decoded[index]

    def sample(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        """A random ``(H, W, 3)`` uint8 crop covering the output, maybe mirrored and re-exposed."""
        photo = self._photo(int(rng.integers(len(self.paths))))
        scale = max(height / photo.height, width / photo.width) * rng.uniform(1.0, 1.8)
        box_w, box_h = width / scale, height / scale
        x = rng.uniform(0, photo.width - box_w)
        y = rng.uniform(0, photo.height - box_h)
        crop = photo.resize((width, height), Image.Resampling.BILINEAR, box=(x, y, x + box_w, y + box_h))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        gain = rng.uniform(0.7, 1.2) * rng.uniform(0.92, 1.08, size=3)
        return np.clip(np.asarray(crop, dtype=np.float64) * gain, 0, 255).astype(np.uint8)


def _stripes(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A ``(H, W, 3)`` uint8 two-colour stripe texture at a random angle (occluder fill)."""
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 20)
    ys, xs = np.mgrid[0:height, 0:width]
    phase = (xs * np.cos(angle) + ys * np.sin(angle)) / period
    first, second = random_colour(rng) * 255, random_colour(rng) * 255
    return np.where((phase % 1.0 < 0.5)[..., None], first, second).astype(np.uint8)


def draw_occluders(
    image: np.ndarray,
    rng: np.random.Generator,
    count: int,
    target_box: np.ndarray,
    photos: PhotoBackgrounds | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``count`` random shapes overlapping ``target_box`` (xyxy); returns (image, occluder mask).

    Shapes are rectangles, ellipses, polygons or (sometimes) a bar rising from the bottom edge
    over the lower body; each is filled with a flat colour, stripes or a piece of photograph.
    """
    height, width = image.shape[:2]
    canvas = Image.fromarray(image)
    total = Image.new("L", (width, height), 0)
    x0, y0, x1, y1 = target_box
    for _ in range(count):
        mask = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(mask)
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        size = rng.uniform(0.12, 0.35) * max(x1 - x0, y1 - y0)
        aspect = rng.uniform(0.4, 2.5)
        w, h = size * np.sqrt(aspect), size / np.sqrt(aspect)
        shape = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        kind = rng.integers(5)
        if kind == 0:
            draw.rectangle(shape, fill=255)
        elif kind == 1:
            draw.ellipse(shape, fill=255)
        elif kind == 2:
            angles = np.sort(rng.uniform(0, 2 * np.pi, size=rng.integers(3, 7)))
            draw.polygon([(cx + w / 2 * np.cos(a), cy + h / 2 * np.sin(a)) for a in angles], fill=255)
        elif kind == 3:  # a table or wall in front of the lower body
            top = y0 + (y1 - y0) * rng.uniform(0.45, 0.85)
            draw.rectangle([x0 - rng.uniform(0, width), top, x1 + rng.uniform(0, width), height], fill=255)
        else:  # a pole or door frame crossing the person
            half = rng.uniform(0.04, 0.15) * (x1 - x0)
            draw.rectangle([cx - half, 0, cx + half, height], fill=255)
        fill_kind = rng.integers(3) if photos is not None else rng.integers(2)
        if fill_kind == 0:
            colour = tuple(int(v) for v in random_colour(rng) * 255)
            fill = Image.new("RGB", (width, height), colour)
        elif fill_kind == 1:
            fill = Image.fromarray(_stripes(rng, height, width))
        else:
            fill = Image.fromarray(photos.sample(rng, height, width))
        canvas.paste(fill, (0, 0), mask)
        total.paste(255, (0, 0), mask)
    return np.asarray(canvas), np.asarray(total) > 0
