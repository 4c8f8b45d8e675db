import torch
from torch.utils.data import Dataset

from bidrn.engine.resolution import ResizedSamples


class _PaperSample(Dataset):
    def __len__(self):
        return 1

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __getitem__(self, index):
        image = torch.zeros(3, 512, 384)
        image[:, :256, :] = 1.0  # top half white
        return {
            "inputs": {"img": image},
            "targets": {
                "joint_img": torch.tensor([[6.0, 8.0, 8.0], [3.0, 4.0, 2.0]]),
                "joint_cam": torch.tensor([[0.1, 0.2, 0.3], [0.0, 0.0, 0.0]]),
                "lhand_bbox_center": torch.tensor([3.0, 4.0]),
            },
            "meta_info": {"focal": torch.tensor([5000.0, 5000.0]), "princpt": torch.tensor([192.0, 256.0])},
        }


def test_resized_samples_rescale_pixels_and_cells_only():
    view = ResizedSamples(_PaperSample(), crop_shape=(256, 192), body_heatmap_shape=(8, 4, 3))
    sample = view[0]
    assert sample["inputs"]["img"].shape == (3, 256, 192)
    assert torch.allclose(sample["inputs"]["img"][:, :120].mean(), torch.tensor(1.0))
    assert torch.allclose(sample["inputs"]["img"][:, 136:].mean(), torch.tensor(0.0))
    # (6, 8) cells of an 8x6 map are the far corner; in a 4x3 map that is (3, 4); depth bins unchanged.
    assert torch.allclose(sample["targets"]["joint_img"][0], torch.tensor([3.0, 4.0, 8.0]))
    assert torch.allclose(sample["targets"]["lhand_bbox_center"], torch.tensor([1.5, 2.0]))
    assert torch.equal(sample["targets"]["joint_cam"], torch.tensor([[0.1, 0.2, 0.3], [0.0, 0.0, 0.0]]))
    assert torch.allclose(sample["meta_info"]["princpt"], torch.tensor([96.0, 128.0]))
    view.set_epoch(3)  # loader methods are forwarded
    assert view.dataset.epoch == 3
