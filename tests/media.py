"""Small media files for tests."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest


def write_grey_clip(path: Path, width: int, height: int, frames: int, step: int) -> Path:
    """An MPEG-4 clip whose frame ``i`` is uniformly grey ``step * i`` (skips the test without PyAV)."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            pixels = np.full((height, width, 3), step * index, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def png_header_only(path, width, height):
    """A PNG whose IHDR claims width x height, with an empty IDAT (nothing large is ever allocated)."""

    def chunk(kind, payload):
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path
