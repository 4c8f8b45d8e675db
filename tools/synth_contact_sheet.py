"""Render the synthetic-data contact sheet of the docs (``docs/synthetic-contact-sheet.png``).

Generates ``--num`` training samples with the default :class:`~bidrn.data.synthetic.generate.SynthConfig`
into a temporary folder and tiles the images, ``--columns`` wide, optionally with the annotations
drawn (person/hand/face boxes and joints, as ``bidrn synth --contact-sheet`` does)::

    python tools/synth_contact_sheet.py [--out docs/synthetic-contact-sheet.png] [--num 24] [--seed 1]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image

from bidrn.data.synthetic.dataset import SyntheticDataset
from bidrn.data.synthetic.generate import generate
from bidrn.data.visualize import draw_record


def main() -> None:
    """Generate the samples and save the tiled sheet."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/synthetic-contact-sheet.png", help="output PNG")
    parser.add_argument("--num", type=int, default=24, help="samples (default 24)")
    parser.add_argument("--seed", type=int, default=1, help="data seed (default 1)")
    parser.add_argument("--columns", type=int, default=6, help="tiles per row (default 6)")
    parser.add_argument("--scale", type=float, default=0.75, help="tile size / image size (default 0.75)")
    parser.add_argument("--annotations", action="store_true", help="draw boxes and joints")
    parser.add_argument("--workers", type=int, default=None, help="generator processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = SyntheticDataset(generate(Path(tmp) / "synth", args.num, seed=args.seed, workers=args.workers))
        tiles = []
        for index, record in enumerate(data.records):
            tile = (
                draw_record(data, index) if args.annotations else Image.open(record.image_path).convert("RGB")
            )
            tiles.append(tile.resize((round(tile.width * args.scale), round(tile.height * args.scale))))
    width, height = tiles[0].size
    rows = (len(tiles) + args.columns - 1) // args.columns
    sheet = Image.new("RGB", (args.columns * width, rows * height))
    for index, tile in enumerate(tiles):
        sheet.paste(tile, ((index % args.columns) * width, (index // args.columns) * height))
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({sheet.width}x{sheet.height}, {len(tiles)} samples, seed {args.seed})")


if __name__ == "__main__":
    main()
