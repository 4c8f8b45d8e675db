"""A vectorised numpy z-buffer rasteriser with per-vertex attributes and two-light shading.

Data generation needs more than an overlay: per-pixel depth (to decide which joints are hidden
by the body itself), a person mask, and per-pixel surface attributes (albedo, normals, canonical
body coordinates for procedural clothing textures). This module provides exactly that in pure
numpy — every front-facing triangle's candidate pixels are enumerated at once, barycentric
coordinates are computed in one pass and the nearest fragment per pixel wins — so it is
deterministic on every machine and fast (about 20 ms for a 10k-vertex body at 320x256 on one
core). Pixel ``(i, j)`` has its centre at ``x = j``, ``y = i``, matching :mod:`bidrn.data.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_DEPTH_BITS = 26
_DEPTH_RANGE = 64.0
"""Fragments are ordered by depth quantised to 64 m / 2^26 (about 1 µm) in front of the nearest one."""


@dataclass
class Fragments:
    """Per-pixel result of :func:`rasterize` (``H x W``).

    Attributes:
        face: index of the visible triangle, -1 for background.
        bary: perspective-correct barycentric weights of that triangle's vertices.
        depth: camera-frame depth of the visible surface (``inf`` for background).
    """

    face: np.ndarray
    bary: np.ndarray
    depth: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """Where the mesh covers a pixel centre."""
        return self.face >= 0


def rasterize(
    points_2d: np.ndarray,
    depth: np.ndarray,
    faces: np.ndarray,
    height: int,
    width: int,
    near: float = 0.05,
    cull_back: bool = True,
) -> Fragments:
    """Rasterise triangles given projected vertices ``(V, 2)`` and their depths ``(V,)``.

    With ``cull_back`` (the default, for closed meshes such as the body) triangles that face away
    from the camera are dropped before rasterisation: they can never be the nearest surface, and
    skipping them halves the work. The winner per pixel is the nearest fragment; the key that
    orders fragments is unique (pixel, quantised depth, fragment number), so the result does not
    depend on the sorting algorithm numpy picks for the CPU.
    """
    faces = np.asarray(faces, dtype=np.int64)
    tri = points_2d[faces]  # (F, 3, 2)
    tri_z = depth[faces]
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    facing = area < -1e-12 if cull_back else np.abs(area) > 1e-12  # outward faces wind this way (y down)
    facing &= (tri_z[:, 0] > near) & (tri_z[:, 1] > near) & (tri_z[:, 2] > near)
    ids = np.nonzero(facing)[0]
    xs, ys = tri[ids, :, 0], tri[ids, :, 1]
    x0 = np.ceil(np.minimum(np.minimum(xs[:, 0], xs[:, 1]), xs[:, 2])).clip(0, width)
    x1 = np.floor(np.maximum(np.maximum(xs[:, 0], xs[:, 1]), xs[:, 2])).clip(-1, width - 1)
    y0 = np.ceil(np.minimum(np.minimum(ys[:, 0], ys[:, 1]), ys[:, 2])).clip(0, height)
    y1 = np.floor(np.maximum(np.maximum(ys[:, 0], ys[:, 1]), ys[:, 2])).clip(-1, height - 1)
    keep = (x1 >= x0) & (y1 >= y0)
    ids, x0, x1, y0, y1 = ids[keep], x0[keep], x1[keep], y0[keep], y1[keep]
    widths = (x1 - x0 + 1).astype(np.int64)
    counts = widths * (y1 - y0 + 1).astype(np.int64)
    face_id = np.repeat(ids, counts)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    local = np.arange(counts.sum()) - start
    w_rep = np.repeat(widths, counts)
    px = np.repeat(x0.astype(np.int64), counts) + local % w_rep
    py = np.repeat(y0.astype(np.int64), counts) + local // w_rep

    a, b, c, inv_area = a[face_id], b[face_id], c[face_id], 1.0 / area[face_id]
    w0 = ((b[:, 0] - px) * (c[:, 1] - py) - (b[:, 1] - py) * (c[:, 0] - px)) * inv_area
    w1 = ((c[:, 0] - px) * (a[:, 1] - py) - (c[:, 1] - py) * (a[:, 0] - px)) * inv_area
    w2 = 1.0 - w0 - w1
    inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
    face_id, px, py = face_id[inside], px[inside], py[inside]
    inv_z = np.stack([w0[inside], w1[inside], w2[inside]], axis=1) / tri_z[face_id]
    frag_depth = 1.0 / inv_z.sum(axis=1)
    if len(frag_depth) == 0:
        return Fragments(
            np.full((height, width), -1, dtype=np.int64),
            np.zeros((height, width, 3)),
            np.full((height, width), np.inf),
        )

    pixel = py * width + px
    order = _nearest_first(pixel, frag_depth, height * width)
    sorted_pixel = pixel[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_pixel[1:] != sorted_pixel[:-1]
    winners = order[first]

    out_face = np.full(height * width, -1, dtype=np.int64)
    out_bary = np.zeros((height * width, 3))
    out_depth = np.full(height * width, np.inf)
    out_face[pixel[winners]] = face_id[winners]
    out_bary[pixel[winners]] = inv_z[winners] * frag_depth[winners, None]
    out_depth[pixel[winners]] = frag_depth[winners]
    return Fragments(
        out_face.reshape(height, width), out_bary.reshape(height, width, 3), out_depth.reshape(height, width)
    )


def _nearest_first(pixel: np.ndarray, frag_depth: np.ndarray, num_pixels: int) -> np.ndarray:
    """Fragment order by (pixel, depth, fragment number); one int64 sort key when it fits."""
    number_bits = max(int(len(pixel) - 1).bit_length(), 1)
    if int(num_pixels - 1).bit_length() + _DEPTH_BITS + number_bits > 63:
        return np.lexsort((frag_depth, pixel))  # stable, so ties keep fragment order too
    levels = (1 << _DEPTH_BITS) - 1
    quantised = np.clip((frag_depth - frag_depth.min()) * (levels / _DEPTH_RANGE), 0, levels).astype(np.int64)
    key = (((pixel << _DEPTH_BITS) | quantised) << number_bits) | np.arange(len(pixel))
    return np.argsort(key)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``(V, 3)``."""
    tri = vertices[faces]
    face_normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).T.copy()  # (3, F)
    normals = np.zeros((3, len(vertices)))
    for corner in range(3):
        for axis in range(3):
            normals[axis] += np.bincount(
                faces[:, corner], weights=face_normals[axis], minlength=len(vertices)
            )
    normals = normals.T
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def interpolate(fragments: Fragments, faces: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-vertex ``values`` ``(V, C)`` interpolated at the covered pixels: ``(P, C)`` in mask order."""
    mask = fragments.mask
    corners = faces[fragments.face[mask]]  # (P, 3)
    weights = fragments.bary[mask]
    return np.einsum("pk,pkc->pc", weights, values[corners])


@dataclass(frozen=True)
class Lighting:
    """A key light, a fill light and a sky/ground ambient term (all in camera coordinates).

    Attributes:
        key: direction from the scene towards the key light.
        fill: direction towards the (weaker) fill light, usually from the other side.
        key_strength / fill_strength: their diffuse gains.
        sky / ground: ambient light reaching surfaces facing up / down (a hemisphere light, so
            tops of shoulders and heads are brighter than the undersides of arms).
        up: the scene's up direction in the camera frame (``-y`` for an upright camera).
        colour: RGB gain of the whole light (white balance).
    """

    key: tuple[float, float, float] = (0.3, -0.6, -1.0)
    fill: tuple[float, float, float] = (-0.6, -0.2, -1.0)
    key_strength: float = 0.75
    fill_strength: float = 0.2
    sky: float = 0.35
    ground: float = 0.2
    up: tuple[float, float, float] = (0.0, -1.0, 0.0)
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)


def _unit(vector: tuple[float, float, float]) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


def shade(
    fragments: Fragments, faces: np.ndarray, albedo: np.ndarray, normals: np.ndarray, lighting: Lighting
) -> np.ndarray:
    """Shaded colours ``(P, 3)`` in [0, 1] of the covered pixels (mask order).

    ``albedo`` is per covered pixel ``(P, 3)`` (e.g. from :func:`interpolate` plus a texture) and
    ``normals`` per vertex. Lambert terms for the key and fill lights are added to a hemisphere
    ambient term; back-facing normals are flipped towards the camera.
    """
    normal = interpolate(fragments, faces, normals)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    normal[normal[:, 2] > 0] *= -1.0  # camera looks along +z: visible normals point to -z
    key = np.clip(normal @ _unit(lighting.key), 0.0, 1.0)
    fill = np.clip(normal @ _unit(lighting.fill), 0.0, 1.0)
    upness = 0.5 + 0.5 * (normal @ _unit(lighting.up))
    ambient = lighting.ground + (lighting.sky - lighting.ground) * upness
    light = ambient + lighting.key_strength * key + lighting.fill_strength * fill
    return np.clip(albedo * light[:, None] * np.asarray(lighting.colour), 0.0, 1.0)
