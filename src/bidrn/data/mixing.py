"""Group resampling of training sets (docs/design/pipeline.md §7.2).

Hand4Whole trains on a 3D group (Human3.6M) and a 2D group (MSCOCO ∪ MPII). Each group is the
concatenation of its datasets, and every group is resampled to the length of the largest one,
so an epoch sees the groups 50/50 whatever their sizes. :class:`GroupResampledDataset` does this
for any number of groups and any datasets (a single synthetic dataset by default is simply
passed through). A group shorter than the largest one is repeated whole as many times as fits,
and the remainder is drawn without replacement, afresh each epoch (:meth:`set_epoch`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import ConcatDataset, Dataset


class GroupResampledDataset(Dataset):
    """Concatenate each group's datasets, then resample every group to the largest group's length.

    Args:
        groups: one sequence of datasets per group, e.g. ``[[h36m], [coco, mpii]]``.
        seed: seed of the per-epoch draw that tops up the shorter groups.

    Item ``i`` comes from group ``i // L`` (``L`` = length of the largest group); the sampler
    shuffles across groups as usual.
    """

    def __init__(self, groups: Sequence[Sequence[Dataset]], seed: int = 0) -> None:
        if not groups or any(len(group) == 0 for group in groups):
            raise ValueError("GroupResampledDataset needs at least one group, each with at least one dataset")
        self.groups = [ConcatDataset(list(group)) for group in groups]
        if any(len(group) == 0 for group in self.groups):
            raise ValueError("every group must hold at least one sample")
        self.group_length = max(len(group) for group in self.groups)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Redraw the top-up samples of the shorter groups and forward the epoch to every dataset."""
        self.epoch = epoch
        self._extra: list[np.ndarray] = []
        for number, group in enumerate(self.groups):
            rng = np.random.default_rng([self.seed, epoch, number])
            remainder = self.group_length % len(group)
            self._extra.append(rng.choice(len(group), size=remainder, replace=False))
            for dataset in group.datasets:
                if hasattr(dataset, "set_epoch"):
                    dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return self.group_length * len(self.groups)

    def locate(self, index: int) -> tuple[int, int]:
        """``(group number, index inside that group)`` of item ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        number, slot = divmod(index, self.group_length)
        size = len(self.groups[number])
        whole = (self.group_length // size) * size
        return number, (slot % size if slot < whole else int(self._extra[number][slot - whole]))

    def source(self, index: int) -> tuple[Dataset, int]:
        """The underlying dataset and its own index for item ``index``."""
        number, inner = self.locate(index)
        group = self.groups[number]
        which = bisect.bisect_right(group.cumulative_sizes, inner)
        start = 0 if which == 0 else group.cumulative_sizes[which - 1]
        return group.datasets[which], inner - start

    def __getitem__(self, index: int) -> Any:
        number, inner = self.locate(index)
        return self.groups[number][inner]
