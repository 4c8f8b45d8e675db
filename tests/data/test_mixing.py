from collections import Counter

import pytest
from torch.utils.data import Dataset

from bidrn.data.mixing import GroupResampledDataset


class Named(Dataset):
    def __init__(self, name, size):
        self.name, self.size, self.epoch = name, size, None

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        if not 0 <= i < self.size:
            raise IndexError(i)
        return (self.name, i)

    def set_epoch(self, epoch):
        self.epoch = epoch


def test_groups_are_resampled_to_the_largest_and_split_evenly():
    h36m, coco, mpii = Named("h36m", 7), Named("coco", 10), Named("mpii", 15)
    mix = GroupResampledDataset([[h36m], [coco, mpii]], seed=3)
    assert len(mix) == 2 * 25
    items = [mix[i] for i in range(len(mix))]
    groups = Counter("3d" if name == "h36m" else "2d" for name, _ in items)
    assert groups == {"3d": 25, "2d": 25}
    # The 2D group is exactly its concatenation; the 3D group holds every sample 3 times + 4 distinct extras.
    assert sorted(items[25:]) == sorted([("coco", i) for i in range(10)] + [("mpii", i) for i in range(15)])
    counts = Counter(i for _, i in items[:25])
    assert set(counts) == set(range(7)) and sorted(counts.values()) == [3, 3, 3, 4, 4, 4, 4]
    assert mix.source(30) == (coco, 5)


def test_epochs_redraw_the_extras_and_reach_the_datasets():
    small = Named("small", 4)
    mix = GroupResampledDataset([[small], [Named("big", 10)]], seed=0)
    draws = set()
    for epoch in range(6):
        mix.set_epoch(epoch)
        draws.add(tuple(mix[i][1] for i in range(8, 10)))
    assert len(draws) > 1
    assert small.epoch == 5


def test_single_dataset_passes_through():
    data = Named("synth", 5)
    mix = GroupResampledDataset([[data]])
    assert [mix[i] for i in range(len(mix))] == [("synth", i) for i in range(5)]
    with pytest.raises(IndexError):
        mix[5]
    with pytest.raises(ValueError):
        GroupResampledDataset([])
