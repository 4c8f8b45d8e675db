"""Datasets named on the command line (``--data KIND:PATH[:SPLIT]``).

=========  ================================================  ==============================
KIND       loader                                            SPLIT (default)
=========  ================================================  ==============================
synth      :class:`bidrn.data.synthetic.dataset.SyntheticDataset`  (folder written by ``bidrn synth``)
ehf        :class:`bidrn.data.real.ehf.EHF`                  (test only)
agora      :class:`bidrn.data.real.agora.AGORA`              ``train`` / ``validation`` (validation)
h36m       :class:`bidrn.data.real.h36m.Human36M`            ``train`` / ``test`` (train)
coco       :class:`bidrn.data.real.coco.COCOWholeBody`       ``train`` / ``val`` (train)
mpii       :class:`bidrn.data.real.mpii.MPII`                (train only)
=========  ================================================  ==============================

Several specs joined with ``+`` are concatenated (e.g. the paper's ``h36m:data/Human36M+coco:data/
MSCOCO+mpii:data/MPII``). Training specs get Hand4Whole's augmentation; evaluation specs none.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from bidrn.data.augment import NO_AUGMENTATION, AugmentationConfig
from bidrn.data.baked import BakedSamples, bake, open_baked
from bidrn.data.dataset import DataOptions
from bidrn.engine.distributed import DistributedContext, barrier
from bidrn.engine.resolution import fit_to_model
from bidrn.errors import BidrnError, InputFileError

DATASET_KINDS = ("synth", "ehf", "agora", "h36m", "coco", "mpii")


class ConcatenatedDatasets(ConcatDataset):
    """``ConcatDataset`` that forwards ``set_epoch`` to every part (per-epoch augmentation)."""

    def set_epoch(self, epoch: int) -> None:
        """Advance every part's augmentation stream to ``epoch``."""
        for part in self.datasets:
            if hasattr(part, "set_epoch"):
                part.set_epoch(epoch)


def _open_one(
    kind: str, root: Path, split: str | None, options: DataOptions, body_model: nn.Module
) -> Dataset:
    if kind == "synth":
        from bidrn.data.synthetic.dataset import SyntheticDataset

        return SyntheticDataset(root, options)
    if kind == "ehf":
        from bidrn.data.real.ehf import EHF

        return EHF(root, options)
    if kind == "agora":
        from bidrn.data.real.agora import AGORA

        return AGORA(root, split=split or "validation", options=options, body_model=body_model)
    if kind == "h36m":
        from bidrn.data.real.h36m import Human36M

        return Human36M(root, split=split or "train", options=options, body_model=body_model)
    if kind == "coco":
        from bidrn.data.real.coco import COCOWholeBody

        return COCOWholeBody(root, split=split or "train", options=options, body_model=body_model)
    from bidrn.data.real.mpii import MPII

    return MPII(root, options=options, body_model=body_model)


def _parts(spec: str) -> list[tuple[str, Path, str]]:
    """``(kind, root, split)`` of every ``+``-joined item of a ``--data`` spec."""
    parts = []
    for item in spec.split("+"):
        kind, _, rest = item.partition(":")
        if kind not in DATASET_KINDS or not rest:
            choices = ", ".join(DATASET_KINDS)
            raise BidrnError(f"--data {item!r}: expected KIND:PATH[:SPLIT] with KIND one of {choices}")
        path, _, split = rest.partition(":") if not Path(rest).exists() else (rest, "", "")
        parts.append((kind, Path(path), split))
    return parts


def open_dataset(spec: str, train: bool, body_model: nn.Module, seed: int = 0) -> Dataset:
    """The dataset a ``--data`` spec names (see the module docstring).

    Args:
        spec: ``KIND:PATH[:SPLIT]``, several joined with ``+``.
        train: apply Hand4Whole's training augmentation.
        body_model: SMPL-X layer used by loaders that derive joints from SMPL-X parameters.
        seed: augmentation seed.

    Raises:
        BidrnError: malformed spec or unknown kind; InputFileError: missing folder.
    """
    options = DataOptions(augmentation=AugmentationConfig() if train else NO_AUGMENTATION, seed=seed)
    datasets = []
    for kind, root, split in _parts(spec):
        if not root.is_dir():
            raise InputFileError(root, "dataset folder not found")
        datasets.append(_open_one(kind, root, split or None, options, body_model))
    return datasets[0] if len(datasets) == 1 else ConcatenatedDatasets(datasets)


def _fingerprint(root: Path) -> str:
    """Digest of the names, sizes and modification times of a dataset folder's files (two levels deep)."""
    hasher = hashlib.sha256()
    for path in sorted([*root.glob("*"), *root.glob("*/*")]):
        if path.is_file():
            stat = path.stat()
            hasher.update(f"{path.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return hasher.hexdigest()


def training_samples(
    spec: str,
    model: nn.Module,
    body_model: nn.Module,
    augment: bool,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    context: DistributedContext | None = None,
    num_workers: int = 0,
) -> Dataset:
    """The training samples a ``--data`` spec names, served at ``model``'s resolution.

    Without augmentation every epoch sees identical samples, so when ``cache_dir`` is given they are
    baked once (:mod:`bidrn.data.baked`) into ``cache_dir/<digest>`` and read back from memory-mapped
    arrays: the cache is keyed by the spec, the data folders' file listing, the model's crop and
    heatmap sizes and the body model, and rebuilt when any of them changes. Under DDP rank 0 bakes and
    the other ranks wait.
    """
    dataset = fit_to_model(open_dataset(spec, train=augment, body_model=body_model, seed=seed), model)
    if augment or cache_dir is None:
        return dataset
    source: dict[str, Any] = {
        "parts": [
            [kind, str(root.resolve()), split, _fingerprint(root)] for kind, root, split in _parts(spec)
        ],
        "crop": list(model.config.crop_input),
        "body_heatmap": [model.config.heatmap_depth, *model.body_heatmap],
        "body_model": str(getattr(body_model, "source", "")),
    }
    digest = hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir) / digest
    main = context is None or context.is_main
    if main and open_baked(folder, source) is None:
        bake(dataset, folder, source, num_workers=num_workers)
    if context is not None:
        barrier(context)
    return BakedSamples(folder)
