"""A vectorised numpy z-buffer rasteriser with per-vertex colours, for data generation.

Data generation needs more than an overlay: per-pixel depth (to decide which joints are hidden
by the body itself), a person mask, and per-vertex albedo (skin and clothing). This module
provides exactly that in pure numpy — every triangle's candidate pixels are enumerated at
once, barycentric coordinates are computed in one pass and the nearest fragment per pixel wins —
so it is deterministic and fast enough (tens of milliseconds for a 10k-vertex body at 320x256).
Pixel ``(i, j)`` has its centre at ``x = j``, ``y = i``, matching :mod:`bidrn.data.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
    points_2d: np.ndarray, depth: np.ndarray, faces: np.ndarray, height: int, width: int, near: float = 0.05
) -> Fragments:
    """Rasterise triangles given projected vertices ``(V, 2)`` and their depths ``(V,)``."""
    faces = np.asarray(faces, dtype=np.int64)
    tri = points_2d[faces]  # (F, 3, 2)
    tri_z = depth[faces]
    keep = np.all(tri_z > near, axis=1)
    x0 = np.ceil(tri[..., 0].min(axis=1)).clip(0, width)
    x1 = np.floor(tri[..., 0].max(axis=1)).clip(-1, width - 1)
    y0 = np.ceil(tri[..., 1].min(axis=1)).clip(0, height)
    y1 = np.floor(tri[..., 1].max(axis=1)).clip(-1, height - 1)
    keep &= (x1 >= x0) & (y1 >= y0)
    ids = np.nonzero(keep)[0]
    widths = (x1[ids] - x0[ids] + 1).astype(np.int64)
    counts = widths * (y1[ids] - y0[ids] + 1).astype(np.int64)
    face_id = np.repeat(ids, counts)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    local = np.arange(counts.sum()) - start
    w_rep = np.repeat(widths, counts)
    px = np.repeat(x0[ids], counts) + local % w_rep
    py = np.repeat(y0[ids], counts) + local // w_rep

    a, b, c = tri[face_id, 0], tri[face_id, 1], tri[face_id, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    ok = np.abs(area) > 1e-12
    safe = np.where(ok, area, 1.0)
    w0 = ((b[:, 0] - px) * (c[:, 1] - py) - (b[:, 1] - py) * (c[:, 0] - px)) / safe
    w1 = ((c[:, 0] - px) * (a[:, 1] - py) - (c[:, 1] - py) * (a[:, 0] - px)) / safe
    w2 = 1.0 - w0 - w1
    inside = ok & (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
    face_id, px, py = face_id[inside], px[inside].astype(np.int64), py[inside].astype(np.int64)
    screen = np.stack([w0[inside], w1[inside], w2[inside]], axis=1)
    inv_z = screen / tri_z[face_id]
    frag_depth = 1.0 / inv_z.sum(axis=1)
    bary = inv_z * frag_depth[:, None]

    pixel = py * width + px
    order = np.lexsort((frag_depth, pixel))
    pixel = pixel[order]
    first = np.ones(len(pixel), dtype=bool)
    first[1:] = pixel[1:] != pixel[:-1]
    winners = order[first]

    out_face = np.full(height * width, -1, dtype=np.int64)
    out_bary = np.zeros((height * width, 3))
    out_depth = np.full(height * width, np.inf)
    out_face[pixel[first]] = face_id[winners]
    out_bary[pixel[first]] = bary[winners]
    out_depth[pixel[first]] = frag_depth[winners]
    return Fragments(
        out_face.reshape(height, width), out_bary.reshape(height, width, 3), out_depth.reshape(height, width)
    )


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``(V, 3)``."""
    tri = vertices[faces]
    face_normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(vertices)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def shade(
    fragments: Fragments,
    faces: np.ndarray,
    albedo: np.ndarray,
    normals: np.ndarray,
    light_direction: np.ndarray,
    ambient: float = 0.35,
    diffuse: float = 0.75,
) -> np.ndarray:
    """Lambert-shaded ``(H, W, 3)`` colours in [0, 1] (zeros outside the mask).

    ``albedo`` and ``normals`` are per vertex; ``light_direction`` points from the scene towards
    the light, in camera coordinates. Back-facing normals are flipped towards the camera.
    """
    mask = fragments.mask
    corners = faces[fragments.face[mask]]  # (P, 3)
    weights = fragments.bary[mask][..., None]
    colour = (albedo[corners] * weights).sum(axis=1)
    normal = (normals[corners] * weights).sum(axis=1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    normal[normal[:, 2] > 0] *= -1.0  # camera looks along +z: visible normals point to -z
    light = np.asarray(light_direction, dtype=np.float64)
    light = light / np.linalg.norm(light)
    lambert = np.clip(normal @ light, 0.0, 1.0)
    image = np.zeros((*mask.shape, 3))
    image[mask] = np.clip(colour * (ambient + diffuse * lambert[:, None]), 0.0, 1.0)
    return image
