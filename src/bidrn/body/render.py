"""Rendering meshes over images: an offscreen GL fast path and a numpy z-buffer fallback.

Coordinates follow the OpenCV pinhole convention used by Hand4Whole (docs/design/pipeline.md §5.7): camera
frame x right, y down, z forward (metres); a vertex projects to pixel
``u = fx · X / Z + cx``, ``v = fy · Y / Z + cy`` with pixel centres at integer coordinates.
``mesh_cam`` (vertices + cam_trans) from the network is already in this frame.

Two interchangeable rasterisers produce the same silhouette and flat Lambert shading:

* :class:`GLRasterizer` — moderngl on a headless EGL context (Mesa's llvmpipe works without a GPU);
  used automatically when ``moderngl`` is installed (``pip install bidrn[render]``) and a context
  can be made;
* :class:`NumpyRasterizer` — a vectorised z-buffer in numpy, no extra dependency; the fallback,
  and the choice for small meshes (:data:`NUMPY_RENDER_PIXELS`).

:func:`get_rasterizer` picks one (``"auto"``, ``"gl"`` or ``"numpy"``); :func:`render_overlay`
draws a mesh over an image and :func:`render_side_view` shows the same mesh turned by 90° about
its vertical axis, as whole-body demos do.

Cost does not grow with the image's megapixels: the overlay rasterises only the pixel box the
mesh projects into (:func:`mesh_region`), at most :data:`MAX_RENDER_SIDE` pixels per side, and
scales that rendering up bilinearly onto the image when the box is larger; the side view is drawn
at most :data:`MAX_RENDER_SIDE` pixels per side. (A 20 000-pixel-wide photo would otherwise need
a framebuffer beyond GL's limits and gigabytes of float buffers.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image

LIGHT_DIRECTION = np.array([0.3, -0.4, -1.0]) / np.linalg.norm([0.3, -0.4, -1.0])
"""Direction towards the light in camera coordinates (from slightly above, behind the camera)."""
AMBIENT = 0.35
DIFFUSE = 0.65
DEFAULT_COLOR = (0.55, 0.7, 0.95)
_NEAR = 0.01
_FAR = 100.0
MAX_RENDER_SIDE = 2048
"""Largest side, in pixels, of any rasterisation (larger overlays are scaled up from it)."""
NUMPY_RENDER_PIXELS = 512 * 512
"""``"auto"`` rasterises a mesh whose pixel box is at most this large with numpy, even where GL works.

Numpy's time grows with the pixels the mesh covers: a body filling a 512x384 view took 0.11-0.13 s,
1024x768 0.33 s, 2048x1536 1.1 s, GL 0.02-0.13 s at any of these. But the first GL rendering of a
process makes a context (Mesa's llvmpipe: 0.07-0.3 s and 60-70 MB of resident memory), so for the
boxes below this size numpy is as fast for one image and `bidrn predict` on a 512x512 photo peaks
65 MB lower (388 instead of 451-456 MB, /usr/bin/time -v) and finishes 0.15-0.3 s sooner."""
_BLEND_ROWS = 256
_CANDIDATES_PER_SLICE = 250_000
"""Pixel candidates the numpy rasteriser tests at once (about 100 bytes of temporaries each).

A quarter million was as fast as four million (0.21 vs 0.31 s for a 512-pixel side view, 2.5-3.1
vs 5.1-5.9 s at 2048) and peaks 110 MB instead of 760 MB above the process at 2048 pixels."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels (OpenCV convention) and the image size."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int


@dataclass
class Rendering:
    """A rendered mesh: colour (H, W, 3) uint8 (0 where empty), coverage mask, depth float32 (inf = empty).

    Compact types because renderings are image-sized: a 2048 x 1536 side view is 9 MB of colour
    and 13 MB of depth (float64 colour and depth were 126 MB; docs/body-model.md, "Rendering").
    """

    color: np.ndarray
    mask: np.ndarray
    depth: np.ndarray


class Rasterizer(Protocol):
    """Anything that turns camera-frame triangles into a :class:`Rendering`."""

    name: str

    def render(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        intrinsics: Intrinsics,
        color: tuple[float, float, float],
    ) -> Rendering:
        """Rasterise ``vertices`` (V, 3, camera frame) and ``faces`` (F, 3) with flat shading."""
        ...


def _to_numpy(array: Any) -> np.ndarray:
    """A numpy view of an array or (CPU/CUDA, possibly grad-tracking) torch tensor."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def face_shading(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per-triangle Lambert factor ``AMBIENT + DIFFUSE · |n · l|`` (two-sided), shape (F,)."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    normals = np.cross(b - a, c - a)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return AMBIENT + DIFFUSE * np.abs(normals @ LIGHT_DIRECTION)


def project(vertices: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Pixel coordinates (V, 2) of camera-frame points."""
    z = np.maximum(vertices[:, 2], 1e-9)
    return np.stack(
        (
            intrinsics.fx * vertices[:, 0] / z + intrinsics.cx,
            intrinsics.fy * vertices[:, 1] / z + intrinsics.cy,
        ),
        axis=1,
    )


class NumpyRasterizer:
    """Vectorised z-buffer rasteriser in numpy (exact visibility, pixel centres sampled).

    Triangles are grouped by the size of their pixel bounding box; each group is rasterised at once
    by testing every pixel of a ``size × size`` window per triangle, and the nearest sample per pixel
    wins. Depth is interpolated with perspective-correct barycentrics (``1/Z`` linear on screen).
    """

    name = "numpy"

    def render(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        intrinsics: Intrinsics,
        color: tuple[float, float, float] = DEFAULT_COLOR,
    ) -> Rendering:
        """Rasterise ``vertices`` (V, 3, camera frame) and ``faces`` (F, 3) with flat shading."""
        W, H = intrinsics.width, intrinsics.height
        vertices = np.asarray(vertices, dtype=np.float64)
        faces = np.asarray(faces, dtype=np.int64)
        keep = (vertices[faces, 2] > _NEAR).all(axis=1)
        faces = faces[keep]
        shade = face_shading(vertices, faces)
        uv = project(vertices, intrinsics)
        tri_uv = uv[faces]  # (F, 3, 2)
        inv_z = 1.0 / vertices[faces, 2]  # (F, 3)
        lo = np.clip(np.ceil(tri_uv.min(axis=1)), 0, [W, H]).astype(np.int64)
        hi = np.clip(np.floor(tri_uv.max(axis=1)), -1, [W - 1, H - 1]).astype(np.int64)
        extent = (hi - lo).max(axis=1) + 1
        visible = (hi >= lo).all(axis=1)

        depth_map = np.full(H * W, np.inf)
        face_map = np.zeros(H * W, dtype=np.int32)
        size = 1
        while visible.any():
            group = np.flatnonzero(visible & (extent <= size))
            visible[group] = False
            for pix, depth, tri in self._raster_group(tri_uv[group], inv_z[group], lo[group], size, W, H):
                _keep_nearest(depth_map, face_map, pix, depth, group[tri])
            size *= 2
        mask = np.isfinite(depth_map)
        depth_map = depth_map.astype(np.float32)
        face_colors = _unit_to_uint8(shade[:, None] * np.asarray(color))
        color_map = np.zeros((H * W, 3), dtype=np.uint8)
        color_map[mask] = face_colors[face_map[mask]]
        return Rendering(color_map.reshape(H, W, 3), mask.reshape(H, W), depth_map.reshape(H, W))

    @staticmethod
    def _raster_group(
        tri_uv: np.ndarray, inv_z: np.ndarray, lo: np.ndarray, size: int, width: int, height: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Covered pixels (flat index), depths and triangle ids for triangles whose box fits ``size``.

        Yielded a slice of triangles at a time, so that the candidate arrays stay around
        :data:`_CANDIDATES_PER_SLICE` entries.
        """
        per_slice = max(1, _CANDIDATES_PER_SLICE // (size * size))
        offsets = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="xy"), axis=-1).reshape(
            -1, 2
        )
        for start in range(0, len(tri_uv), per_slice):
            t_uv = tri_uv[start : start + per_slice]
            px = lo[start : start + per_slice, None, :] + offsets[None]  # (T, S², 2)
            a, b, c = t_uv[:, 0, None], t_uv[:, 1, None], t_uv[:, 2, None]
            e0, e1 = b - a, c - a
            den = e0[..., 0] * e1[..., 1] - e1[..., 0] * e0[..., 1]
            den = np.where(np.abs(den) < 1e-12, np.nan, den)
            rel = px - a
            l1 = (rel[..., 0] * e1[..., 1] - e1[..., 0] * rel[..., 1]) / den
            l2 = (e0[..., 0] * rel[..., 1] - rel[..., 0] * e0[..., 1]) / den
            l0 = 1.0 - l1 - l2
            eps = -1e-9
            inside = (l0 >= eps) & (l1 >= eps) & (l2 >= eps) & (px[..., 0] < width) & (px[..., 1] < height)
            tri_idx, cand = np.nonzero(inside)
            iz = inv_z[start : start + per_slice]
            interp = l0[tri_idx, cand] * iz[tri_idx, 0] + l1[tri_idx, cand] * iz[tri_idx, 1]
            interp += l2[tri_idx, cand] * iz[tri_idx, 2]
            p = px[tri_idx, cand]
            yield p[:, 1] * width + p[:, 0], 1.0 / interp, tri_idx + start


def _keep_nearest(
    depth_map: np.ndarray, face_map: np.ndarray, pix: np.ndarray, depth: np.ndarray, faces: np.ndarray
) -> None:
    """Z-test candidate samples into the maps: each pixel keeps its nearest sample (earlier ones win ties)."""
    order = np.lexsort((depth, pix))
    pix, depth, faces = pix[order], depth[order], faces[order]
    first = np.ones(pix.size, dtype=bool)
    first[1:] = pix[1:] != pix[:-1]
    pix, depth, faces = pix[first], depth[first], faces[first]
    nearer = depth < depth_map[pix]
    depth_map[pix[nearer]] = depth[nearer]
    face_map[pix[nearer]] = faces[nearer]


def _unit_to_uint8(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as uint8 0..255 (rounded to nearest, clipped)."""
    return np.clip(np.rint(np.asarray(values, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def _coverage(mask: np.ndarray) -> np.ndarray:
    """A boolean mask as the uint8 blending weight :func:`_blend` takes (0 or 255)."""
    return mask.view(np.uint8) * np.uint8(255)


_VERTEX_SHADER = """
#version 330
uniform vec4 intrinsics;   // fx, fy, cx, cy
uniform vec2 size;         // width, height
uniform vec2 near_far;
in vec3 in_position;       // camera frame, OpenCV axes
in float in_shade;
out float shade;
void main() {
    float z = in_position.z;
    float u = intrinsics.x * in_position.x / z + intrinsics.z;
    float v = intrinsics.y * in_position.y / z + intrinsics.w;
    float x_ndc = 2.0 * (u + 0.5) / size.x - 1.0;
    float y_ndc = 1.0 - 2.0 * (v + 0.5) / size.y;
    float z_ndc = 2.0 * (z - near_far.x) / (near_far.y - near_far.x) - 1.0;
    gl_Position = vec4(x_ndc * z, y_ndc * z, z_ndc * z, z);
    shade = in_shade;
}
"""

_FRAGMENT_SHADER = """
#version 330
uniform vec3 base_color;
in float shade;
out vec4 frag_color;
void main() {
    frag_color = vec4(base_color * shade, 1.0);
}
"""


class GLRasterizer:
    """Offscreen OpenGL rasteriser through moderngl and EGL (works headless with Mesa's llvmpipe)."""

    name = "gl"

    def __init__(self) -> None:
        import moderngl

        self._moderngl = moderngl
        self.ctx = moderngl.create_standalone_context(backend="egl")
        self.program = self.ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)

    def render(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        intrinsics: Intrinsics,
        color: tuple[float, float, float] = DEFAULT_COLOR,
    ) -> Rendering:
        """Rasterise ``vertices`` (V, 3, camera frame) and ``faces`` (F, 3) with flat shading."""
        mgl = self._moderngl
        W, H = intrinsics.width, intrinsics.height
        vertices = np.asarray(vertices, dtype=np.float64)
        faces = np.asarray(faces, dtype=np.int64)
        faces = faces[(vertices[faces, 2] > _NEAR).all(axis=1)]
        shade = face_shading(vertices, faces)
        data = np.concatenate((vertices[faces].reshape(-1, 3), np.repeat(shade, 3)[:, None]), axis=1).astype(
            "f4"
        )
        self.program["intrinsics"].value = (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy)
        self.program["size"].value = (W, H)
        self.program["near_far"].value = (_NEAR, _FAR)
        self.program["base_color"].value = tuple(float(c) for c in color)
        vbo = self.ctx.buffer(data.tobytes())
        vao = self.ctx.vertex_array(self.program, [(vbo, "3f 1f", "in_position", "in_shade")])
        color_rb = self.ctx.renderbuffer((W, H), components=4, dtype="f1")
        depth_rb = self.ctx.depth_renderbuffer((W, H))
        fbo = self.ctx.framebuffer(color_attachments=[color_rb], depth_attachment=depth_rb)
        try:
            fbo.use()
            self.ctx.enable(mgl.DEPTH_TEST)
            self.ctx.disable(mgl.CULL_FACE)
            fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            vao.render(mgl.TRIANGLES)
            rgba = np.frombuffer(fbo.read(components=4, dtype="f1"), dtype=np.uint8).reshape(H, W, 4)[::-1]
            depth_ndc = np.frombuffer(fbo.read(components=1, attachment=-1, dtype="f4"), dtype="f4").reshape(
                H, W
            )[::-1]
        finally:
            for obj in (vao, vbo, fbo, color_rb, depth_rb):
                obj.release()
        mask = rgba[..., 3] > 127
        depth = np.where(mask, _NEAR + depth_ndc * np.float32(_FAR - _NEAR), np.float32(np.inf))
        return Rendering(rgba[..., :3], mask, depth)


_GL_BY_PROCESS: dict[int, GLRasterizer | None] = {}
"""The GL rasteriser made by each process (None: none could be made)."""


def _gl_rasterizer() -> GLRasterizer | None:
    """This process's GL rasteriser, made on first use.

    A process forked after its parent made a GL context inherits the driver's threads and locks
    in an unusable state (making a new context there hangs), so such a child uses numpy instead.
    """
    pid = os.getpid()
    if pid not in _GL_BY_PROCESS:
        inherited = any(r is not None for r in _GL_BY_PROCESS.values())
        try:
            _GL_BY_PROCESS[pid] = None if inherited else GLRasterizer()
        except Exception:  # any missing library / driver / display problem means "no GL here"
            _GL_BY_PROCESS[pid] = None
    return _GL_BY_PROCESS[pid]


def gl_available() -> bool:
    """Whether an offscreen GL context can be made here (moderngl installed, EGL driver present)."""
    return _gl_rasterizer() is not None


def get_rasterizer(backend: Literal["auto", "gl", "numpy"] = "auto", pixels: int | None = None) -> Rasterizer:
    """The rasteriser for ``backend``.

    ``"auto"`` takes numpy when ``pixels`` (the area of the mesh's pixel box) is at most
    :data:`NUMPY_RENDER_PIXELS`, else GL where a context can be made, else numpy, silently.
    """
    if backend == "numpy" or (backend == "auto" and pixels is not None and pixels <= NUMPY_RENDER_PIXELS):
        return NumpyRasterizer()
    gl = _gl_rasterizer()
    if gl is not None:
        return gl
    if backend == "gl":
        raise RuntimeError("no offscreen GL context: install moderngl (pip install 'bidrn[render]') and EGL")
    return NumpyRasterizer()


def mesh_region(
    vertices: np.ndarray,
    focal: tuple[float, float],
    princpt: tuple[float, float],
    image_size: tuple[int, int],
) -> tuple[int, int, int, int] | None:
    """The pixel box ``(x0, y0, x1, y1)`` (ends exclusive) of ``image_size`` (H, W) the mesh may cover.

    The box around the projections of the finite vertices in front of the camera, one pixel wider on
    each side, clipped to the image; ``None`` when the mesh lies entirely outside the image (or
    behind the camera).
    """
    vertices = _to_numpy(vertices).astype(np.float64)
    front = vertices[np.isfinite(vertices).all(axis=1) & (vertices[:, 2] > _NEAR)]
    if not len(front):
        return None
    height, width = image_size
    uv = project(front, Intrinsics(focal[0], focal[1], princpt[0], princpt[1], width, height))
    limits = np.array([width, height], dtype=np.float64)
    x0, y0 = np.clip(np.floor(uv.min(axis=0)) - 1, 0, limits).astype(int).tolist()
    x1, y1 = np.clip(np.ceil(uv.max(axis=0)) + 2, 0, limits).astype(int).tolist()
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _rgb8(image: np.ndarray) -> np.ndarray:
    """A writable (H, W, 3) uint8 copy of an RGB(A) or grey image in uint8 or float [0, 1]."""
    base = np.asarray(image)
    if base.dtype != np.uint8:
        base = _unit_to_uint8(base)
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=2)
    return np.array(base[..., :3], dtype=np.uint8, order="C")


def _blend(target: np.ndarray, color: np.ndarray, weight: np.ndarray, alpha: float) -> None:
    """``target ← target · (1 − alpha · weight/255) + alpha · color`` in place, a band of rows at a time.

    ``color`` (H, W, 3) uint8 is premultiplied by the coverage ``weight`` (H, W) uint8.
    """
    for start in range(0, target.shape[0], _BLEND_ROWS):
        rows = slice(start, start + _BLEND_ROWS)
        keep = 1.0 - weight[rows, :, None].astype(np.float32) * np.float32(alpha / 255.0)
        mixed = target[rows].astype(np.float32) * keep + color[rows].astype(np.float32) * np.float32(alpha)
        target[rows] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def render_overlay(
    image: np.ndarray,
    vertices: np.ndarray,
    faces: np.ndarray,
    focal: tuple[float, float],
    princpt: tuple[float, float],
    *,
    color: tuple[float, float, float] = DEFAULT_COLOR,
    alpha: float = 0.8,
    backend: Literal["auto", "gl", "numpy"] = "auto",
    max_side: int = MAX_RENDER_SIDE,
) -> np.ndarray:
    """Draw a camera-frame mesh over ``image`` with intrinsics ``focal`` = (fx, fy), ``princpt`` = (cx, cy).

    ``vertices`` (V, 3) array or tensor in metres, e.g. Hand4Whole's ``mesh_cam`` after rescaling the
    virtual camera to the image (docs/design/pipeline.md §5.7). Only the mesh's pixel box is rasterised, at
    most ``max_side`` pixels per side, and scaled up bilinearly when the box is larger, so time and
    memory stay bounded for any image size. Returns an (H, W, 3) uint8 image (a copy of ``image``
    when the mesh lies outside it).
    """
    out = _rgb8(image)
    vertices = _to_numpy(vertices).astype(np.float64)
    region = mesh_region(vertices, focal, princpt, out.shape[:2])
    if region is None:
        return out
    x0, y0, x1, y1 = region
    width, height = x1 - x0, y1 - y0
    scale = min(1.0, max_side / max(width, height))
    render_width, render_height = max(1, round(width * scale)), max(1, round(height * scale))
    sx, sy = render_width / width, render_height / height
    intrinsics = Intrinsics(focal[0] * sx, focal[1] * sy, (princpt[0] - x0 + 0.5) * sx - 0.5,
                            (princpt[1] - y0 + 0.5) * sy - 0.5, render_width, render_height)  # fmt: skip
    rasterizer = get_rasterizer(backend, pixels=render_width * render_height)
    rendering = rasterizer.render(vertices, _to_numpy(faces), intrinsics, color)
    shade = rendering.color  # already 0 outside the mask
    coverage = _coverage(rendering.mask)
    del rendering
    if (render_width, render_height) != (width, height):
        size, bilinear = (width, height), Image.Resampling.BILINEAR
        shade = np.asarray(Image.fromarray(np.ascontiguousarray(shade)).resize(size, bilinear))
        coverage = np.asarray(Image.fromarray(coverage).resize(size, bilinear))
    _blend(out[y0:y1, x0:x1], shade, coverage, alpha)
    return out


def render_side_view(
    vertices: np.ndarray,
    faces: np.ndarray,
    focal: tuple[float, float],
    image_size: tuple[int, int],
    *,
    angle_deg: float = 90.0,
    color: tuple[float, float, float] = DEFAULT_COLOR,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    backend: Literal["auto", "gl", "numpy"] = "auto",
    max_side: int = MAX_RENDER_SIDE,
) -> np.ndarray:
    """The mesh turned by ``angle_deg`` about the vertical axis through its centre, on a plain background.

    ``image_size`` is (height, width); the mesh keeps its distance to the camera and is centred in
    the view. Returns an (H, W, 3) uint8 image of that size, or scaled down (focal with it) so its
    longer side is ``max_side`` pixels.
    """
    vertices = _to_numpy(vertices).astype(np.float64)
    center = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
    t = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(t), 0.0, np.sin(t)], [0.0, 1.0, 0.0], [-np.sin(t), 0.0, np.cos(t)]])
    turned = (vertices - center) @ rotation.T + np.array([0.0, 0.0, center[2]])
    height, width = image_size
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        height, width = max(1, round(height * scale)), max(1, round(width * scale))
        focal = (focal[0] * scale, focal[1] * scale)
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = _unit_to_uint8(background)
    intrinsics = Intrinsics(focal[0], focal[1], width / 2, height / 2, width, height)
    region = mesh_region(turned, focal, (width / 2, height / 2), (height, width))
    box_pixels = 0 if region is None else (region[2] - region[0]) * (region[3] - region[1])
    rendering = get_rasterizer(backend, pixels=box_pixels).render(turned, _to_numpy(faces), intrinsics, color)
    _blend(canvas, rendering.color, _coverage(rendering.mask), 1.0)
    return canvas
