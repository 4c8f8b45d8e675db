"""Serve paper-resolution samples to a model built at a reduced input size.

The data layer crops persons at Hand4Whole's 512×384 and expresses image-space targets in the
8×8×6 body-heatmap cells (:mod:`bidrn.data.targets`). A model built with a smaller ``body_input``
(e.g. the ``synth-tiny`` protocol) takes a smaller crop and predicts in a coarser heatmap.
:class:`ResizedSamples` wraps a dataset so that every sample matches such a model: the image is
resized (bilinear, antialiased) and every quantity measured in crop pixels or heatmap cells is
rescaled. Metric quantities (``joint_cam``, meshes, SMPL-X parameters) are unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

PAPER_CROP = (512, 384)
"""(H, W) of the person crops the data layer produces."""
PAPER_BODY_HEATMAP = (8, 8, 6)
"""(D, H, W) of the heatmap the data layer's image-space targets are expressed in."""

_HEATMAP_JOINTS = ("joint_img", "smplx_joint_img")
_HEATMAP_BOXES = ("lhand_bbox_center", "lhand_bbox_size", "rhand_bbox_center", "rhand_bbox_size",
                  "face_bbox_center", "face_bbox_size")  # fmt: skip


class ResizedSamples(Dataset):
    """``dataset`` with crops resized to ``crop_shape`` and targets in ``body_heatmap_shape`` cells.

    Args:
        dataset: a dataset of sample dicts at the paper's resolution.
        crop_shape: (H, W) the model takes (``model.config.crop_input``).
        body_heatmap_shape: (D, H, W) of the model's body heatmap.
    """

    def __init__(
        self, dataset: Dataset, crop_shape: tuple[int, int], body_heatmap_shape: tuple[int, int, int]
    ) -> None:
        self.dataset = dataset
        self.crop_shape = tuple(crop_shape)
        depth, height, width = body_heatmap_shape
        paper_depth, paper_height, paper_width = PAPER_BODY_HEATMAP
        self._cell_scale = torch.tensor([width / paper_width, height / paper_height, depth / paper_depth])
        self._pixel_scale = torch.tensor([crop_shape[1] / PAPER_CROP[1], crop_shape[0] / PAPER_CROP[0]])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        # Forward loader-specific methods (``set_epoch``, ``gt_mesh``, ``record``) to the wrapped dataset.
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> dict[str, dict[str, torch.Tensor]]:
        sample = self.dataset[index]
        image = sample["inputs"]["img"]
        if tuple(image.shape[-2:]) != self.crop_shape:
            image = F.interpolate(image[None], size=self.crop_shape, mode="bilinear", antialias=True)[0]
        targets = dict(sample["targets"])
        for name in _HEATMAP_JOINTS:
            if name in targets:
                targets[name] = targets[name] * self._cell_scale[: targets[name].shape[-1]]
        for name in _HEATMAP_BOXES:
            if name in targets:
                targets[name] = targets[name] * self._cell_scale[:2]
        meta = dict(sample["meta_info"])
        sx, sy = self._pixel_scale.tolist()
        if "focal" in meta:
            meta["focal"] = meta["focal"] * self._pixel_scale
            meta["princpt"] = meta["princpt"] * self._pixel_scale
        if "img2bb_trans" in meta:
            meta["img2bb_trans"] = meta["img2bb_trans"] * torch.tensor([[sx], [sy]])
            meta["bb2img_trans"] = meta["bb2img_trans"] * torch.tensor([1 / sx, 1 / sy, 1.0])
        return {**sample, "inputs": {**sample["inputs"], "img": image}, "targets": targets, "meta_info": meta}


def fit_to_model(dataset: Dataset, model: torch.nn.Module) -> Dataset:
    """``dataset`` itself when ``model`` takes paper-size crops, else a :class:`ResizedSamples` view."""
    config = model.config
    heatmap = (config.heatmap_depth, *model.body_heatmap)
    if tuple(config.crop_input) == PAPER_CROP and heatmap == PAPER_BODY_HEATMAP:
        return dataset
    return ResizedSamples(dataset, tuple(config.crop_input), heatmap)
