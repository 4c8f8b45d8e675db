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

from pathlib import Path

from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from bidrn.data.augment import NO_AUGMENTATION, AugmentationConfig
from bidrn.data.dataset import DataOptions
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
    parts = []
    for item in spec.split("+"):
        kind, _, rest = item.partition(":")
        if kind not in DATASET_KINDS or not rest:
            choices = ", ".join(DATASET_KINDS)
            raise BidrnError(f"--data {item!r}: expected KIND:PATH[:SPLIT] with KIND one of {choices}")
        path, _, split = rest.partition(":") if not Path(rest).exists() else (rest, "", "")
        root = Path(path)
        if not root.is_dir():
            raise InputFileError(root, "dataset folder not found")
        parts.append(_open_one(kind, root, split or None, options, body_model))
    return parts[0] if len(parts) == 1 else ConcatenatedDatasets(parts)
