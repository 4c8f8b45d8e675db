"""Pictures of the experiments: a Figure-2-style bar chart and a Figure-7-style comparison grid.

* :func:`error_bar_chart` — grouped bars of MPVPE all / hand / face per method (matplotlib, the
  optional ``plots`` extra: ``pip install bidrn[plots]``).
* :func:`comparison_grid` — rows of images (the input crop, then each method's mesh overlay) with
  labels, assembled with pillow (a core dependency), so Figure 7 needs no plotting library.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bidrn.errors import BidrnError

BAR_COLUMNS = (("mpvpe_all", "MPVPE all"), ("mpvpe_hand", "MPVPE hand"), ("mpvpe_face", "MPVPE face"))


def error_bar_chart(rows: Sequence[dict[str, Any]], path: str | Path, title: str) -> Path:
    """Grouped bars of MPVPE all/hand/face (mm) for each row, saved as a PNG at ``path``.

    Raises:
        BidrnError: when matplotlib is not installed (``pip install bidrn[plots]``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BidrnError("bar charts need matplotlib: pip install 'bidrn[plots]'") from None
    labels = [row["label"] for row in rows]
    positions = np.arange(len(rows))
    bar_width = 0.8 / len(BAR_COLUMNS)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(rows)), 3.6), dpi=120)
    for offset, (key, name) in enumerate(BAR_COLUMNS):
        axes.bar(positions + (offset - 1) * bar_width, [row[key] for row in rows], bar_width, label=name)
    axes.set_xticks(positions, labels, rotation=30, ha="right")
    axes.set_ylabel("error (mm)")
    axes.set_title(title)
    axes.legend(frameon=False)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def comparison_grid(
    rows: Sequence[Sequence[np.ndarray]],
    column_labels: Sequence[str],
    path: str | Path,
    label_height: int = 28,
) -> Path:
    """Tile ``rows`` of equally sized uint8 images under a header of ``column_labels``; save as PNG.

    Args:
        rows: one list per test image: the input image, then one overlay per method.
        column_labels: one label per column.
        path: output PNG.
        label_height: pixels reserved for the header.
    """
    if not rows or any(len(row) != len(column_labels) for row in rows):
        raise ValueError("every row needs one image per column label")
    height, width = rows[0][0].shape[:2]
    canvas = Image.new("RGB", (width * len(column_labels), label_height + height * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=label_height - 6)
    except TypeError:  # pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    for column, label in enumerate(column_labels):
        draw.text((column * width + 4, 2), label, fill="black", font=font)
    for row_index, row in enumerate(rows):
        for column, image in enumerate(row):
            tile = Image.fromarray(np.asarray(image, dtype=np.uint8)).resize((width, height))
            canvas.paste(tile, (column * width, label_height + row_index * height))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
