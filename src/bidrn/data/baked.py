"""Samples rendered once at the model's resolution and read back from memory-mapped arrays.

Building a sample costs far more than a small model's training step on a CPU: the image is decoded,
warped to Hand4Whole's 512×384 crop, resized to the model's crop and every target is recomputed.
Without augmentation all of that gives the same result every epoch, so :func:`bake` runs it once
and stores every field of every sample as one ``.npy`` array per field (the crop as uint8, so an
image costs 1 byte per value; every other field float32). :class:`BakedSamples` memory-maps the
folder and hands out the same sample dictionaries again: images equal the original crops rounded to
the nearest 1/255, every other field is bit-identical.

A baked folder holds ``manifest.json`` (format version, sample count, the crop shape, a free-form
``source`` description the caller uses to decide whether the folder is still valid) and
``<group>.<key>.npy`` per field. It is written under a temporary name and renamed when complete,
so an interrupted bake never leaves a folder that looks finished. Nothing is unpickled:
arrays are loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from bidrn.errors import InputFileError

FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
_IMAGE = ("inputs", "img")


def _fields(sample: Mapping[str, Mapping[str, torch.Tensor]]) -> list[tuple[str, str]]:
    return [(group, key) for group, values in sample.items() for key in values]


def bake(
    dataset: Dataset,
    folder: str | Path,
    source: Mapping[str, Any],
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
) -> Path:
    """Evaluate every sample of ``dataset`` once and store it in ``folder`` (see the module docstring).

    Args:
        dataset: map-style dataset of sample dicts ``{group: {key: tensor}}`` with ``inputs.img`` in
            [0, 1]; every sample must have the same fields and shapes.
        folder: destination; replaced if it exists.
        source: JSON-serialisable description of what was baked (checked by :func:`open_baked`).
        batch_size: samples per DataLoader batch while baking (in order).
        num_workers: DataLoader worker processes.
        progress: show a progress bar.
    """
    folder = Path(folder)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    count = len(dataset)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    arrays: dict[tuple[str, str], np.ndarray] = {}
    start = 0
    for batch in tqdm(loader, total=len(loader), disable=not progress, unit="batch", desc="bake samples"):
        if not arrays:
            for group, key in _fields(batch):
                values = batch[group][key]
                dtype = np.uint8 if (group, key) == _IMAGE else np.float32
                arrays[group, key] = np.lib.format.open_memmap(
                    partial / f"{group}.{key}.npy", mode="w+", dtype=dtype, shape=(count, *values.shape[1:])
                )
        stop = start + batch["inputs"]["img"].shape[0]
        for (group, key), array in arrays.items():
            values = batch[group][key]
            if (group, key) == _IMAGE:
                values = (values * 255.0).round_().clamp_(0, 255).to(torch.uint8)
            array[start:stop] = values.numpy()
        start = stop
    for array in arrays.values():
        array.flush()
    manifest = {"format": FORMAT_VERSION, "count": count, "fields": [f"{g}.{k}" for g, k in arrays]}
    (partial / _MANIFEST).write_text(json.dumps({**manifest, "source": dict(source)}, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    return folder


class BakedSamples(Dataset):
    """The samples of a folder written by :func:`bake`, memory-mapped (cheap to share with workers)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        manifest_path = self.folder / _MANIFEST
        try:
            self.manifest = json.loads(manifest_path.read_text())
            names = [tuple(name.split(".", 1)) for name in self.manifest["fields"]]
            self.count = int(self.manifest["count"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputFileError(manifest_path, f"not a baked-sample manifest ({error})") from None
        if self.manifest.get("format") != FORMAT_VERSION:
            raise InputFileError(manifest_path, f"baked-sample format {self.manifest.get('format')} unknown")
        self.arrays: dict[tuple[str, str], np.ndarray] = {}
        for group, key in names:
            path = self.folder / f"{group}.{key}.npy"
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as error:
                raise InputFileError(path, f"cannot read baked samples ({error})") from None
            if array.shape[0] != self.count:
                raise InputFileError(path, f"holds {array.shape[0]} samples, the manifest says {self.count}")
            self.arrays[group, key] = array

    @property
    def source(self) -> dict[str, Any]:
        """The ``source`` description given to :func:`bake`."""
        return dict(self.manifest.get("source", {}))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, dict[str, torch.Tensor]]:
        sample: dict[str, dict[str, torch.Tensor]] = {}
        for (group, key), array in self.arrays.items():
            value = torch.from_numpy(np.array(array[index]))
            if (group, key) == _IMAGE:
                value = value.float().div_(255.0)
            sample.setdefault(group, {})[key] = value
        return sample


def open_baked(folder: str | Path, source: Mapping[str, Any]) -> BakedSamples | None:
    """The baked samples in ``folder`` if they exist and were baked from ``source``, else ``None``."""
    if not (Path(folder) / _MANIFEST).is_file():
        return None
    baked = BakedSamples(folder)
    return baked if baked.source == json.loads(json.dumps(dict(source))) else None
