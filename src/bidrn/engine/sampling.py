"""A :class:`~torch.utils.data.DistributedSampler` that can start part-way through an epoch.

Exact resumption restarts an interrupted epoch at the batch where it stopped. The order of an
epoch is fully determined by ``(seed, epoch, rank, world size)`` in ``DistributedSampler``; this
subclass only drops the indices this rank already consumed, so no sample is seen twice and the
remaining batches are exactly those of an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import DistributedSampler


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` whose next epoch may skip its first ``start_index`` indices.

    Works in a single process too (``num_replicas=1, rank=0``), so training code has one path.
    """

    start_index: int = 0

    def skip_first(self, count: int) -> None:
        """Make the next iteration start at this rank's ``count``-th index of the current epoch."""
        self.start_index = count

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start_index :])

    def __len__(self) -> int:
        return max(self.num_samples - self.start_index, 0)
