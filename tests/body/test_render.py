"""Renderers: geometry of the numpy z-buffer, GL/numpy agreement, automatic fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bidrn.body import render
from bidrn.body.render import Intrinsics, NumpyRasterizer, get_rasterizer, render_overlay, render_side_view


def _scene(layer):
    """The stand-in, posed, 2.6 m in front of a 384x512 camera (OpenCV axes)."""
    pose = torch.zeros(1, 21, 3)
    pose[0, 15, 2], pose[0, 16, 2] = 0.9, -0.9  # arms raised
    pose[0, 17, 1], pose[0, 18, 1] = -0.8, 0.8  # elbows bent
    out = layer(body_pose=pose, global_orient=torch.tensor([[np.pi, 0.3, 0.0]]))
    vertices = out.vertices[0].numpy().astype(np.float64)
    vertices[:, 2] += 2.6
    vertices[:, 1] += 0.2
    return vertices, layer.faces, Intrinsics(600.0, 600.0, 192.0, 256.0, 384, 512)


@pytest.fixture(scope="module")
def standin():
    from bidrn.body import load_body_model

    return load_body_model()


def test_numpy_triangle_coverage_and_depth():
    intr = Intrinsics(100.0, 100.0, 10.0, 10.0, 21, 21)
    verts = np.array([[0.0, 0.0, 2.0], [0.1, 0.0, 2.0], [0.0, 0.1, 2.0]])
    result = NumpyRasterizer().render(verts, np.array([[0, 1, 2]]), intr)
    # projections: (10, 10), (15, 10), (10, 15); inside pixels satisfy (u-10) + (v-10) <= 5
    u, v = np.meshgrid(np.arange(21), np.arange(21))
    expected = (u >= 10) & (v >= 10) & ((u - 10) + (v - 10) <= 5)
    assert np.array_equal(result.mask, expected)
    assert np.allclose(result.depth[result.mask], 2.0)
    assert np.isinf(result.depth[~result.mask]).all()
    assert (result.color.dtype, result.depth.dtype) == (np.uint8, np.float32)  # image-sized: compact


def test_numpy_slices_do_not_change_the_rendering(standin, monkeypatch):
    """Triangles are z-tested a slice at a time; tiny slices give the same picture as one big one."""
    vertices, faces, intr = _scene(standin)
    whole = NumpyRasterizer().render(vertices, faces, intr)
    monkeypatch.setattr(render, "_CANDIDATES_PER_SLICE", 97)
    sliced = NumpyRasterizer().render(vertices, faces, intr)
    assert whole.mask.sum() > 5000
    for name in ("color", "mask", "depth"):
        assert np.array_equal(getattr(sliced, name), getattr(whole, name)), name


def test_numpy_nearest_triangle_wins():
    intr = Intrinsics(100.0, 100.0, 10.0, 10.0, 21, 21)
    square = np.array([[-0.1, -0.1], [0.1, -0.1], [0.1, 0.1], [-0.1, 0.1]])
    far = np.c_[square * 3, np.full(4, 3.0)]
    near = np.c_[square * 0.3, np.full(4, 1.0)]
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    result = NumpyRasterizer().render(np.vstack([far, near]), faces, intr)
    assert result.depth[10, 10] == pytest.approx(1.0)
    assert result.depth[1, 1] == pytest.approx(3.0)


def test_gl_and_numpy_silhouettes_agree(standin):
    if not render.gl_available():
        pytest.skip("no offscreen GL context here (moderngl or an EGL driver is missing)")
    vertices, faces, intr = _scene(standin)
    gl = get_rasterizer("gl").render(vertices, faces, intr, render.DEFAULT_COLOR)
    cpu = get_rasterizer("numpy").render(vertices, faces, intr, render.DEFAULT_COLOR)
    iou = (gl.mask & cpu.mask).sum() / (gl.mask | cpu.mask).sum()
    assert cpu.mask.sum() > 5000
    assert iou >= 0.98
    both = gl.mask & cpu.mask
    assert np.median(np.abs(gl.depth[both] - cpu.depth[both])) < 1e-3
    assert np.median(np.abs(gl.color[both].astype(int) - cpu.color[both])) <= 5  # of 255


def test_auto_uses_gl_when_available_and_falls_back(monkeypatch):
    expected = "gl" if render.gl_available() else "numpy"
    assert get_rasterizer("auto").name == expected
    monkeypatch.setattr(render, "_gl_rasterizer", lambda: None)
    assert get_rasterizer("auto").name == "numpy"
    with pytest.raises(RuntimeError, match="no offscreen GL context"):
        get_rasterizer("gl")


def test_auto_renders_small_meshes_with_numpy_and_large_ones_with_gl(monkeypatch, standin):
    def no_gl():
        raise AssertionError("a small mesh must not make a GL context")

    expected = "gl" if render.gl_available() else "numpy"
    assert get_rasterizer("auto", pixels=render.NUMPY_RENDER_PIXELS).name == "numpy"
    assert get_rasterizer("auto", pixels=render.NUMPY_RENDER_PIXELS + 1).name == expected
    monkeypatch.setattr(render, "_gl_rasterizer", no_gl)
    vertices, faces, intr = _scene(standin)
    assert intr.width * intr.height <= render.NUMPY_RENDER_PIXELS
    photo = np.zeros((intr.height, intr.width, 3), dtype=np.uint8)
    render_overlay(photo, vertices, faces, (intr.fx, intr.fy), (intr.cx, intr.cy))
    render_side_view(vertices, faces, (intr.fx, intr.fy), (intr.height, intr.width))
    with pytest.raises(AssertionError, match="GL context"):  # a view larger than the threshold asks for GL
        render_side_view(vertices, faces, (intr.fx * 4, intr.fy * 4), (intr.height * 4, intr.width * 4))


def test_overlay_and_side_view(standin):
    vertices, faces, intr = _scene(standin)
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (intr.height, intr.width, 3), dtype=np.uint8)
    out = render_overlay(photo, vertices, faces, (intr.fx, intr.fy), (intr.cx, intr.cy), backend="numpy")
    mask = NumpyRasterizer().render(vertices, faces, intr).mask
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert np.array_equal(out[~mask], photo[~mask])
    assert (out[mask] != photo[mask]).any(axis=-1).mean() > 0.9
    side = render_side_view(vertices, faces, (intr.fx, intr.fy), (intr.height, intr.width), backend="numpy")
    covered = (side != 255).any(axis=-1)
    assert 1000 < covered.sum() < mask.sum()  # a turned body (arms towards the camera) covers less


def _rasterizer_name(_):
    return get_rasterizer("auto").name


def test_forked_worker_after_gl_falls_back_instead_of_hanging():
    if not render.gl_available():
        pytest.skip("no offscreen GL context here (moderngl or an EGL driver is missing)")
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:
        names = pool.map_async(_rasterizer_name, range(2)).get(timeout=60)
    assert names == ["numpy", "numpy"]
