"""Seeding and the capture/restore of every random-number generator a training step touches.

Exact resumption needs the generators' states at a step boundary: Python's ``random``, NumPy's
global generator, torch's CPU generator and every CUDA generator. Tensors go into the checkpoint's
safetensors file, the rest into its JSON.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The current generator states as ``(json_part, tensors)``."""
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    document = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)],
    }
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = state
    return document, tensors


def restore_rng_state(document: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Put back what :func:`capture_rng_state` returned."""
    version, internal, gauss = document["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = document["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"])
    cuda_keys = sorted(
        (k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1])
    )
    cuda_states = [tensors[k] for k in cuda_keys]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
