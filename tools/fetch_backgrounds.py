"""Build bidrn's bundled background photographs (``src/bidrn/assets/backgrounds/``) from Debian packages.

The synthetic data generator (``bidrn synth``) pastes rendered people over these photographs. They
come from Debian's desktop wallpaper packages, whose copyright files (and, for KDE Plasma, each
wallpaper's own metadata) name the author and licence of every picture. Only photographs are
taken (no illustrations or abstract renders), and only pictures under licences that allow
redistribution of modified copies: CC0, CC-BY, CC-BY-SA, GPL-2+ and LGPL-3. Run once, offline, on
a Debian/Ubuntu machine (``apt-get download`` needs no root)::

    python tools/fetch_backgrounds.py [--out src/bidrn/assets/backgrounds] [--debs DIR] [--size 512]

What it does:

1. ``apt-get download`` the packages below into a temporary folder (or use the ``.deb`` files in
   ``--debs``) and unpack them with ``dpkg-deb -x``.
2. Check every entry of :data:`PHOTOS` against its package: the picture exists, its author is
   named in the package's copyright file, and for Plasma wallpapers the author and licence in the
   wallpaper's metadata match the table. A mismatch stops the script.
3. Downscale each picture to ``--size`` pixels on its long side (Lanczos), save it as a JPEG
   (quality 88), and write ``LICENSES.md`` (one row per file: package and version, original path,
   author, licence, changes) plus the GPL/LGPL texts the GPL-family pictures require.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

PACKAGES = (
    "plasma-workspace-wallpapers",
    "lomiri-wallpapers-16.04",
    "lomiri-wallpapers-20.04",
    "mate-backgrounds",
)

LICENCE_LINKS = {
    "CC0-1.0": "[CC0-1.0](https://creativecommons.org/publicdomain/zero/1.0/)",
    "CC-BY-4.0": "[CC-BY-4.0](https://creativecommons.org/licenses/by/4.0/)",
    "CC-BY-SA-3.0": "[CC-BY-SA-3.0](https://creativecommons.org/licenses/by-sa/3.0/)",
    "CC-BY-SA-4.0": "[CC-BY-SA-4.0](https://creativecommons.org/licenses/by-sa/4.0/)",
    "GPL-2+": "GPL-2+ (text: `licenses/GPL-2`)",
    "LGPL-3": "LGPL-3 (texts: `licenses/LGPL-3`, `licenses/GPL-3`)",
}
LICENCE_TEXTS = ("GPL-2", "GPL-3", "LGPL-3")  # copied from /usr/share/common-licenses


@dataclass(frozen=True)
class Photo:
    """One bundled photograph and where it comes from."""

    name: str  # output file stem
    package: str
    path: str  # inside the package
    author: str
    licence: str


_SOURCES = {  # short name in the table -> (package, path of a picture inside it)
    "plasma": ("plasma-workspace-wallpapers", "usr/share/wallpapers/{}/contents/images/2560x1600.jpg"),
    "lomiri16": ("lomiri-wallpapers-16.04", "usr/share/backgrounds/{}.jpg"),
    "lomiri20": ("lomiri-wallpapers-20.04", "usr/share/backgrounds/{}.jpg"),
    "mate": ("mate-backgrounds", "usr/share/backgrounds/mate/nature/{}.jpg"),
}

# output name | source (see _SOURCES) | picture | author | licence. Plasma: author and licence from each
# wallpaper's metadata (Debian's copyright file lists the whole package as GPL-2+; upstream marks
# these wallpapers LGPL-3). Lomiri and MATE: the per-file paragraphs of the copyright file.
_TABLE = """
plasma-by-the-water    | plasma   | BytheWater   | Maciej Wiklo    | LGPL-3
plasma-cold-ripple     | plasma   | ColdRipple   | Risto Saukonpää | LGPL-3
plasma-colorful-cups   | plasma   | ColorfulCups | Dmitri Popov    | LGPL-3
plasma-darkest-hour    | plasma   | DarkestHour  | Risto Saukonpää | LGPL-3
plasma-evening-glow    | plasma   | EveningGlow  | Ian Hex         | LGPL-3
plasma-fallen-leaf     | plasma   | FallenLeaf   | Martin Klapetek | LGPL-3
plasma-grey            | plasma   | Grey         | Sigi Sagi       | LGPL-3
plasma-kite            | plasma   | Kite         | Risto Saukonpää | LGPL-3
plasma-one-stands-out  | plasma   | OneStandsOut | Risto Saukonpää | LGPL-3
plasma-path            | plasma   | Path         | Risto Saukonpää | LGPL-3
plasma-summer-1am      | plasma   | summer_1am   | Risto Saukonpää | LGPL-3
lomiri-bridge          | lomiri16 | Bridge_by_Sander_Klootwijk         | Sander Klootwijk   | CC-BY-SA-4.0
lomiri-dragonfly       | lomiri16 | Dragonfly_by_Bolly                 | "Bolly"            | CC-BY-SA-4.0
lomiri-picture-0b      | lomiri16 | Picture_0B_by_freespace            | Trevor "Freespace" | CC-BY-4.0
lomiri-picture-1a      | lomiri16 | Picture_1A_by_freespace            | Trevor "Freespace" | CC-BY-4.0
lomiri-wine            | lomiri16 | Wine_by_Jakkub_Mede                | Jakub Mede         | CC-BY-4.0
lomiri-aitzgorri       | lomiri16 | aitzgorri_by_Aitzol_Berasategi     | Aitzol Berasategi  | CC-BY-4.0
lomiri-analog-pattern  | lomiri16 | analogpattern_by_Peter_Nerlich     | Peter Nerlich      | CC-BY-SA-4.0
lomiri-free            | lomiri16 | free_by_Peter_Nerlich              | Peter Nerlich      | CC-BY-SA-4.0
lomiri-friends         | lomiri16 | friends_by_Aitzol_Berasategi       | Aitzol Berasategi  | CC-BY-4.0
lomiri-greentock       | lomiri16 | greentock_by_Peter_Nerlich         | Peter Nerlich      | CC-BY-SA-4.0
lomiri-life            | lomiri16 | life_by_Aitzol_Berasategi          | Aitzol Berasategi  | CC-BY-4.0
lomiri-picos-de-europa | lomiri16 | picosdeeuropa_by_Aitzol_Berasategi | Aitzol Berasategi  | CC-BY-4.0
lomiri-seeding         | lomiri16 | seeding_by_Clements_Engelhardt     | Clemens Engelhardt | CC0-1.0
lomiri-sunset          | lomiri16 | sunset_by_Aitzol_Berasategi        | Aitzol Berasategi  | CC-BY-4.0
lomiri-kleiber         | lomiri20 | Kleiber_by_Lukas_Baubkus           | Lukas Baubkus      | CC-BY-SA-3.0
mate-aqua              | mate     | Aqua         | Charles Barbin                       | GPL-2+
mate-blinds            | mate     | Blinds       | Lennart Poettering, Andrea Cimitan   | GPL-2+
mate-dune              | mate     | Dune         | Marco Cogoni, Hylke Bons             | GPL-2+
mate-fresh-flower      | mate     | FreshFlower  | Jens Ansorg                          | GPL-2+
mate-garden            | mate     | Garden       | Charles Barbin                       | GPL-2+
mate-green-meadow      | mate     | GreenMeadow  | Timothy Schellhase, Lapo Calamandrei | GPL-2+
mate-lady-bird         | mate     | LadyBird     | Charles Barbin                       | GPL-2+
mate-rain-drops        | mate     | RainDrops    | "blackcombwhistler07"                | GPL-2+
mate-storm             | mate     | Storm        | Sergey Nazarov                       | GPL-2+
mate-two-wings         | mate     | TwoWings     | Charles Barbin, Hylke Bons           | GPL-2+
mate-wood              | mate     | Wood         | Jean-François Fortin Tam             | GPL-2+
mate-yellow-flower     | mate     | YellowFlower | Charles Barbin                       | GPL-2+
"""


def _photos() -> tuple[Photo, ...]:
    photos = []
    for line in _TABLE.strip().splitlines():
        name, source, picture, author, licence = (cell.strip() for cell in line.split("|"))
        package, path = _SOURCES[source]
        photos.append(Photo(name, package, path.format(picture), author, licence))
    return tuple(photos)


PHOTOS = _photos()
"""Every bundled photograph, in output order."""

_PLASMA_LICENCES = {"LGPLv3": "LGPL-3", "CC-BY-SA-4.0": "CC-BY-SA-4.0"}


def fail(message: str) -> None:
    """Stop with one line naming the problem."""
    sys.exit(f"fetch_backgrounds: {message}")


def unpack(debs: Path, work: Path) -> dict[str, tuple[Path, str]]:
    """Unpack each package's ``.deb`` from ``debs``; returns ``package -> (root, version)``."""
    roots = {}
    for package in PACKAGES:
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            fail(f"{debs}: no {package}_*.deb (run without --debs to download it)")
        deb = found[-1]
        version = subprocess.run(
            ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
        ).stdout.strip()
        root = work / package
        root.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        roots[package] = (root, version)
    return roots


def check(photo: Photo, root: Path) -> Path:
    """The picture's path after checking its author (and Plasma licence) against the package."""
    source = root / photo.path
    if not source.is_file():
        fail(f"{photo.package}: {photo.path} not found")
    copyright_text = (root / "usr/share/doc" / photo.package / "copyright").read_text(encoding="utf-8")
    if photo.package == "plasma-workspace-wallpapers":
        folder = source.parents[2]
        meta_json = folder / "metadata.json"
        if meta_json.is_file():
            plugin = json.loads(meta_json.read_text(encoding="utf-8"))["KPlugin"]
            author, licence = plugin["Authors"][0]["Name"], plugin["License"]
        else:
            desktop = (folder / "metadata.desktop").read_text(encoding="utf-8")
            author = re.search(r"^X-KDE-PluginInfo-Author=(.*)$", desktop, re.M).group(1).strip()
            licence = re.search(r"^X-KDE-PluginInfo-License=(.*)$", desktop, re.M).group(1).strip()
        if author != photo.author or _PLASMA_LICENCES.get(licence) != photo.licence:
            fail(
                f"{photo.path}: metadata: {author!r} / {licence!r}, table: {photo.author!r} / {photo.licence}"
            )
    else:
        first_author = photo.author.split(",")[0].strip().strip('"')
        paragraph = next((p for p in re.split(r"\n\s*\n", copyright_text) if Path(photo.path).name in p), "")
        if first_author not in paragraph or f"License: {photo.licence}" not in paragraph:
            fail(f"{photo.package}: copyright paragraph of {Path(photo.path).name} does not name "
                 f"{first_author!r} under {photo.licence}")  # fmt: skip
    return source


def licences_table(rows: list[tuple[Photo, str]]) -> str:
    """``LICENSES.md``: one row per shipped picture."""
    lines = [
        "# Background photographs",
        "",
        "Backgrounds for `bidrn synth` (`bidrn.data.synthetic.scene.PhotoBackgrounds`), built by",
        "`tools/fetch_backgrounds.py` from Debian 12 (bookworm) wallpaper packages. Each picture keeps its",
        "own licence, listed below with its author as given in the package's copyright file (Plasma: in",
        "the wallpaper's `metadata.json`/`metadata.desktop`). **Changes:** every picture was downscaled",
        "to at most 512 pixels on its long side and re-encoded as JPEG; nothing else was altered. The",
        "full-resolution originals (the preferred form for modification) are in the named Debian",
        "packages and their source packages. The GPL-2, GPL-3 and LGPL-3 texts are in `licenses/`;",
        "Creative Commons licences are linked.",
        "",
        "Note on the Plasma pictures: upstream's metadata marks them LGPL-3, while Debian's copyright",
        "file for `plasma-workspace-wallpapers` lists the whole package under GPL-2+; both allow",
        "redistribution of modified copies.",
        "",
        "| File | Debian package (version) | Original path | Author | Licence |",
        "|---|---|---|---|---|",
    ]
    for photo, version in rows:
        source = f"`{photo.package}` ({version})"
        link = LICENCE_LINKS[photo.licence]
        lines.append(f"| `{photo.name}.jpg` | {source} | `/{photo.path}` | {photo.author} | {link} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Download, check, downscale and write the pictures with their licence table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="src/bidrn/assets/backgrounds", help="output folder")
    parser.add_argument("--debs", default=None, help="folder that already holds the .deb files")
    parser.add_argument("--size", type=int, default=512, help="long side in pixels (default 512)")
    parser.add_argument("--quality", type=int, default=88, help="JPEG quality (default 88)")
    args = parser.parse_args()
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.debs is None:
            debs = work / "debs"
            debs.mkdir()
            print(f"apt-get download {' '.join(PACKAGES)}")
            subprocess.run(["apt-get", "download", *PACKAGES], cwd=debs, check=True)
        else:
            debs = Path(args.debs)
        roots = unpack(debs, work / "unpacked")
        if out.exists():
            shutil.rmtree(out)
        (out / "licenses").mkdir(parents=True)
        rows = []
        for index, photo in enumerate(PHOTOS, 1):
            root, version = roots[photo.package]
            source = check(photo, root)
            with Image.open(source) as image:
                picture = image.convert("RGB")
            picture.thumbnail((args.size, args.size), Image.Resampling.LANCZOS)
            picture.save(out / f"{photo.name}.jpg", quality=args.quality, optimize=True)
            rows.append((photo, version))
            print(f"[{index}/{len(PHOTOS)}] {photo.name}.jpg {picture.width}x{picture.height}")
    for name in LICENCE_TEXTS:
        shutil.copyfile(Path("/usr/share/common-licenses") / name, out / "licenses" / name)
    (out / "LICENSES.md").write_text(licences_table(rows), encoding="utf-8")
    total = sum(p.stat().st_size for p in out.glob("*.jpg"))
    print(f"wrote {len(rows)} pictures ({total / 1e6:.1f} MB) and LICENSES.md to {out}")


if __name__ == "__main__":
    main()
