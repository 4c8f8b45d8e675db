"""Tiny stand-ins for a whole-body model and dataset, to exercise the engine in milliseconds."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset


@dataclass
class TinyOutput:
    pose: torch.Tensor


class TinyModel(nn.Module):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(4, 6)
        self.progress: list[tuple[int, int]] = []

    def forward(self, images: torch.Tensor) -> TinyOutput:
        features = torch.relu(self.conv(images)).mean(dim=(2, 3))
        return TinyOutput(pose=self.head(self.drop(features)))


class TinyDataset(Dataset):
    """Images and 6-d targets; with ``augment`` each sample draws noise from the global RNG."""

    def __init__(self, size: int = 24, augment: bool = False) -> None:
        g = torch.Generator().manual_seed(123)
        self.images = torch.rand(size, 3, 8, 8, generator=g)
        self.targets = torch.rand(size, 6, generator=g)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        if self.augment:
            image = image + 0.1 * torch.randn_like(image)
        return {
            "inputs": {"img": image},
            "targets": {"pose": self.targets[index]},
            "meta_info": {"pose_valid": torch.ones(6)},
        }


def tiny_loss(output: TinyOutput, targets: dict, meta_info: dict) -> dict[str, torch.Tensor]:
    return {"pose": ((output.pose - targets["pose"]).abs() * meta_info["pose_valid"]).mean()}


def no_schedule(model: nn.Module, epoch: int, total: int) -> None:
    model.progress.append((epoch, total))
