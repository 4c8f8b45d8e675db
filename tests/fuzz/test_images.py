"""Image inputs: every pixel format decoded against a reference conversion, every bad file one line."""

from __future__ import annotations

import os
import signal
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bidrn.apps.inputs import discover_inputs, iter_frames, read_image_file
from bidrn.apps.predict import predict_frames
from bidrn.errors import InputFileError
from tests.fuzz.helpers import assert_cli_error, assert_one_line

RNG = np.random.default_rng(7)
H, W = 40, 36


def png(path: Path, values: np.ndarray, color_type: int, depth: int = 16) -> Path:
    """A PNG of ``values`` with the given colour type (0 grey, 2 RGB, 4 grey+alpha, 6 RGBA) and bit depth."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    height, width = values.shape[:2]
    rows = values.astype(">u2" if depth == 16 else "u1").reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


def on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Reference alpha compositing onto white (uint8 in, uint8 out)."""
    a = alpha.astype(np.float64)[..., None] / 255.0
    return np.rint(rgb.astype(np.float64) * a + 255.0 * (1.0 - a)).astype(np.uint8)


def grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=2)


def scaled(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return grey(np.rint((values.astype(np.float64) - low) * 255.0 / (high - low)).astype(np.uint8))


def case_grey_8(tmp: Path):
    values = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    Image.fromarray(values, "L").save(tmp / "l.png")
    return tmp / "l.png", grey(values)


def case_one_bit(tmp: Path):
    values = RNG.random((H, W)) > 0.5
    Image.fromarray(values).convert("1").save(tmp / "bits.png")
    return tmp / "bits.png", grey(np.where(values, 255, 0).astype(np.uint8))


def case_palette(tmp: Path):
    palette = RNG.integers(0, 256, (16, 3), dtype=np.uint8)
    index = RNG.integers(0, 16, (H, W), dtype=np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(palette.ravel().tolist())
    image.save(tmp / "p.png")
    return tmp / "p.png", palette[index]


def case_palette_transparent(tmp: Path):
    palette = RNG.integers(0, 256, (16, 3), dtype=np.uint8)
    index = RNG.integers(0, 16, (H, W), dtype=np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(palette.ravel().tolist())
    image.save(tmp / "pt.png", transparency=3)
    expected = palette[index].copy()
    expected[index == 3] = 255
    return tmp / "pt.png", expected


def case_grey_alpha(tmp: Path):
    values = RNG.integers(0, 256, (H, W, 2), dtype=np.uint8)
    Image.fromarray(values, "LA").save(tmp / "la.png")
    return tmp / "la.png", on_white(grey(values[..., 0]), values[..., 1])


def case_rgba(tmp: Path):
    values = RNG.integers(0, 256, (H, W, 4), dtype=np.uint8)
    Image.fromarray(values, "RGBA").save(tmp / "rgba.png")
    return tmp / "rgba.png", on_white(values[..., :3], values[..., 3])


def case_cmyk(tmp: Path):
    inks = np.zeros((H, W, 4), dtype=np.uint8)  # pure inks, where every CMYK->RGB formula agrees
    inks[: H // 2, :, 0] = 255  # cyan
    inks[H // 2 :, : W // 2, 3] = 255  # black
    Image.fromarray(inks, "CMYK").save(tmp / "cmyk.tif")
    expected = np.full((H, W, 3), 255, dtype=np.uint8)
    expected[: H // 2] = (0, 255, 255)
    expected[H // 2 :, : W // 2] = 0
    return tmp / "cmyk.tif", expected


def case_grey_16_png(tmp: Path):
    values = RNG.integers(0, 65536, (H, W))
    return png(tmp / "g16.png", values, 0), scaled(values, 0, 65535)


def case_dark_grey_16_png(tmp: Path):
    values = RNG.integers(0, 4096, (H, W))  # 12-bit data in a 16-bit file: dark, not stretched
    return png(tmp / "g12.png", values, 0), scaled(values, 0, 65535)


def case_rgb_16_png(tmp: Path):
    values = RNG.integers(0, 65536, (H, W, 3))
    return png(tmp / "rgb16.png", values, 2), (values >> 8).astype(np.uint8)


def case_rgba_16_png(tmp: Path):
    values = RNG.integers(0, 65536, (H, W, 4))
    expected = on_white((values[..., :3] >> 8).astype(np.uint8), (values[..., 3] >> 8).astype(np.uint8))
    return png(tmp / "rgba16.png", values, 6), expected


def case_grey_16_tiff(tmp: Path):
    values = RNG.integers(0, 65536, (H, W)).astype(np.uint16)
    Image.fromarray(values).save(tmp / "g16.tif")  # mode I;16
    return tmp / "g16.tif", scaled(values, 0, 65535)


def case_int32_tiff_in_16_bit_range(tmp: Path):
    values = RNG.integers(0, 65536, (H, W)).astype(np.int32)
    Image.fromarray(values, "I").save(tmp / "i32.tif")
    return tmp / "i32.tif", scaled(values, 0, 65535)


def case_int32_tiff_signed(tmp: Path):
    values = RNG.integers(-(2**20), 2**20, (H, W)).astype(np.int32)
    Image.fromarray(values, "I").save(tmp / "signed.tif")
    return tmp / "signed.tif", scaled(values, values.min(), values.max())


def case_float_tiff_unit_range(tmp: Path):
    values = RNG.random((H, W)).astype(np.float32)
    Image.fromarray(values, "F").save(tmp / "f01.tif")
    return tmp / "f01.tif", grey(np.rint(values.astype(np.float64) * 255).astype(np.uint8))


def case_float_tiff_other_range(tmp: Path):
    values = RNG.uniform(-3.0, 40.0, (H, W)).astype(np.float32)
    Image.fromarray(values, "F").save(tmp / "fwide.tif")
    return tmp / "fwide.tif", scaled(values, float(values.min()), float(values.max()))


def case_animated_gif(tmp: Path):
    frames = [Image.fromarray(np.full((H, W), v, dtype=np.uint8), "L").convert("P") for v in (30, 200)]
    frames[0].save(tmp / "anim.png.gif", save_all=True, append_images=frames[1:])
    path = tmp / "anim.png"  # the suffix says PNG, the content is GIF: content wins
    os.replace(tmp / "anim.png.gif", path)
    return path, grey(np.full((H, W), 30, dtype=np.uint8))


MODES = [name for name in globals() if name.startswith("case_")]


@pytest.mark.parametrize("case", MODES)
def test_every_image_mode_matches_its_reference_conversion(case, tmp_path):
    path, expected = globals()[case](tmp_path)
    decoded = read_image_file(path)
    assert decoded.dtype == np.uint8 and decoded.shape == (H, W, 3)
    difference = np.abs(decoded.astype(int) - expected.astype(int))
    assert difference.max() <= 1, (case, difference.max())
    assert (difference == 0).mean() > 0.95, case


# -- bad image files -----------------------------------------------------------------------------------
def _bad_png_crc(tmp: Path) -> Path:
    path = tmp / "crc.png"
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    data[data.index(b"IDAT") + 20] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _nan_tiff(tmp: Path) -> Path:
    values = np.ones((40, 40), dtype=np.float32)
    values[3, 4] = np.nan
    Image.fromarray(values, "F").save(tmp / "nan.tif")
    return tmp / "nan.tif"


def _infinite_tiff(tmp: Path) -> Path:
    values = np.ones((40, 40), dtype=np.float32)
    values[0, 0] = np.inf
    Image.fromarray(values, "F").save(tmp / "inf.tif")
    return tmp / "inf.tif"


def _empty(tmp: Path) -> Path:
    (tmp / "empty.jpg").write_bytes(b"")
    return tmp / "empty.jpg"


def _folder(tmp: Path) -> Path:
    (tmp / "folder.jpg").mkdir()
    return tmp / "folder.jpg"


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.jpg")
    return tmp / "pipe.jpg"


def _device(tmp: Path) -> Path:
    (tmp / "zero.png").symlink_to("/dev/zero")
    return tmp / "zero.png"


def _dangling(tmp: Path) -> Path:
    (tmp / "gone.png").symlink_to(tmp / "nowhere.png")
    return tmp / "gone.png"


BAD_FILES = {
    "png with a bad CRC": (_bad_png_crc, "cannot decode image"),
    "float image with NaN": (_nan_tiff, "NaN or infinite pixel values"),
    "float image with infinity": (_infinite_tiff, "NaN or infinite pixel values"),
    "empty file": (_empty, "not an image"),
    "folder named like an image": (_folder, "is a folder"),
    "FIFO": (_fifo, "not a regular file"),
    "character device": (_device, "not a regular file"),
    "dangling link": (_dangling, "no such image"),
}


@pytest.fixture
def alarm():
    """Fail instead of hanging forever (a FIFO read blocks until someone writes)."""

    def expired(*_):
        raise TimeoutError("blocked reading the input")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_image_files_are_one_line_errors(case, tmp_path, alarm):
    make, fragment = BAD_FILES[case]
    path = make(tmp_path)
    assert_one_line(lambda: read_image_file(path), path, fragment, error=InputFileError)


@pytest.mark.parametrize("case", ["FIFO", "character device", "float image with NaN"])
def test_bad_images_through_predict_are_one_line_before_any_model_loads(case, tmp_path, capsys, alarm):
    make, fragment = BAD_FILES[case]
    path = make(tmp_path)
    missing = tmp_path / "no-such-model.bidrn.safetensors"  # never reached: the input fails first
    assert_cli_error(
        capsys, ("predict", path, "--out", tmp_path / "out", "--checkpoint", missing), path, fragment
    )


def test_fifo_and_device_among_good_images_are_skipped_not_waited_for(tmp_path, alarm):
    good = tmp_path / "good.png"
    Image.fromarray(RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(good)
    sources, problems = discover_inputs([_fifo(tmp_path), _device(tmp_path), good])
    assert [s.path for s in sources] == [good]
    assert all("not a regular file" in str(p) for p in problems) and len(problems) == 2


def test_truncated_video_among_images_is_a_warning_not_a_silent_drop(tmp_path):
    from tests.media import write_grey_clip

    clip = write_grey_clip(tmp_path / "clip.mp4", width=64, height=48, frames=4, step=30)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    sources, _ = discover_inputs([cut])
    items = list(iter_frames(sources))
    assert items and isinstance(items[-1], InputFileError) and str(items[-1]).startswith(str(cut))


# -- images that are fine but unusual ------------------------------------------------------------------
def test_image_wider_than_a_gl_framebuffer_renders(predictor, tmp_path):
    """17 000 px is beyond GL's 16 384-px framebuffer limit; rendering stays bounded, overlays full size."""
    from bidrn.apps.inputs import Frame

    image = np.full((48, 17000, 3), 90, dtype=np.uint8)
    report = predict_frames(predictor, [Frame(image, Path("wide.png"), "wide")], tmp_path)
    assert report.people == 1
    overlay = np.asarray(Image.open(tmp_path / report.records[0]["files"]["overlay"]))
    assert overlay.shape == image.shape
    side = Image.open(tmp_path / report.records[0]["files"]["side"])
    assert max(side.size) <= 2048
