import json

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from bidrn.data.baked import BakedSamples, bake, open_baked
from bidrn.errors import InputFileError


class _Samples(Dataset):
    def __init__(self, count: int = 5) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(count, 3, 8, 6, generator=g)
        self.joints = torch.randn(count, 4, 3, generator=g)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {
            "inputs": {"img": self.images[index]},
            "targets": {"joint_img": self.joints[index]},
            "meta_info": {"is_3D": torch.tensor(float(index % 2))},
        }


def test_baked_samples_equal_the_originals(tmp_path):
    original = _Samples()
    baked = BakedSamples(bake(original, tmp_path / "cache", {"spec": "x"}, batch_size=2, progress=False))
    assert len(baked) == len(original)
    for index in range(len(original)):
        want, got = original[index], baked[index]
        assert set(got) == set(want) and all(set(got[g]) == set(want[g]) for g in want)
        # Images are stored as 8-bit values: within half a level; everything else is exact.
        assert got["inputs"]["img"].dtype == torch.float32
        assert torch.allclose(got["inputs"]["img"], want["inputs"]["img"], atol=0.5 / 255 + 1e-7)
        assert torch.equal(got["targets"]["joint_img"], want["targets"]["joint_img"])
        assert (
            got["meta_info"]["is_3D"].shape == () and got["meta_info"]["is_3D"] == want["meta_info"]["is_3D"]
        )


def test_cache_is_reused_only_for_the_same_source(tmp_path):
    folder = bake(_Samples(), tmp_path / "cache", {"spec": "x", "crop": [8, 6]}, progress=False)
    assert open_baked(folder, {"spec": "x", "crop": [8, 6]}) is not None
    assert open_baked(folder, {"spec": "x", "crop": [16, 12]}) is None
    assert open_baked(tmp_path / "missing", {"spec": "x"}) is None


def test_an_interrupted_bake_leaves_no_finished_looking_folder(tmp_path):
    class Failing(_Samples):
        def __getitem__(self, index):
            if index == 3:
                raise RuntimeError("disk full")
            return super().__getitem__(index)

    with pytest.raises(RuntimeError):
        bake(Failing(), tmp_path / "cache", {"spec": "x"}, batch_size=2, progress=False)
    assert not (tmp_path / "cache").exists()
    assert open_baked(tmp_path / "cache", {"spec": "x"}) is None


def test_inconsistent_folder_is_one_line_error(tmp_path):
    folder = bake(_Samples(), tmp_path / "cache", {"spec": "x"}, progress=False)
    np.save(folder / "targets.joint_img.npy", np.zeros((2, 4, 3), dtype=np.float32))
    with pytest.raises(InputFileError, match="holds 2 samples"):
        BakedSamples(folder)
    (folder / "manifest.json").write_text(json.dumps([1, 2]))
    with pytest.raises(InputFileError, match="manifest"):
        BakedSamples(folder)
