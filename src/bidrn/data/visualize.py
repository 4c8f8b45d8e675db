"""Contact sheets: dataset images with their person, hand and face boxes and 2D joints drawn."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from bidrn.body import joint_sets
from bidrn.data.dataset import RecordDataset

_PART_COLOURS = (
    (joint_sets.BODY_SLICE, (255, 60, 60)),
    (joint_sets.LHAND_SLICE, (60, 220, 60)),
    (joint_sets.RHAND_SLICE, (60, 140, 255)),
    (joint_sets.FACE_SLICE, (255, 220, 0)),
)


def draw_record(dataset: RecordDataset, index: int) -> Image.Image:
    """One image with the person box (white), hand boxes (green/blue), face box (yellow) and joints.

    Visible joints are filled dots, hidden ones (where the record knows visibility) hollow.
    """
    record = dataset.record(index)
    image = Image.fromarray(dataset.image_reader(record.image_path))
    draw = ImageDraw.Draw(image)
    x, y, w, h = record.bbox
    draw.rectangle([x, y, x + w, y + h], outline=(255, 255, 255))
    for box, colour in ((record.lhand_box, (60, 220, 60)), (record.rhand_box, (60, 140, 255)),
                        (record.face_box, (255, 220, 0))):  # fmt: skip
        if box is not None:
            draw.rectangle(list(box), outline=colour)
    visible = record.visibility if record.visibility is not None else np.ones(len(record.joints_2d), bool)
    for part, colour in _PART_COLOURS:
        radius = {joint_sets.BODY_SLICE.start: 2.0, joint_sets.FACE_SLICE.start: 0.8}.get(part.start, 1.2)
        for j in range(part.start, part.stop):
            if not record.joints_2d_valid[j]:
                continue
            u, v = record.joints_2d[j]
            shape = [u - radius, v - radius, u + radius, v + radius]
            draw.ellipse(shape, fill=colour if visible[j] else None, outline=colour)
    return image


def contact_sheet(dataset: RecordDataset, count: int = 16, columns: int = 4) -> Image.Image:
    """The first ``count`` samples of ``dataset`` drawn by :func:`draw_record`, tiled ``columns`` wide."""
    tiles = [draw_record(dataset, i) for i in range(min(count, len(dataset)))]
    if not tiles:
        raise ValueError("contact_sheet needs a non-empty dataset")
    cell_w = max(t.width for t in tiles)
    cell_h = max(t.height for t in tiles)
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), (0, 0, 0))
    for k, tile in enumerate(tiles):
        sheet.paste(tile, ((k % columns) * cell_w, (k // columns) * cell_h))
    return sheet
