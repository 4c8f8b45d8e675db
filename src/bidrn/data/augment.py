"""Training-time augmentation parameters (docs/design/pipeline.md §7.3), sampled per sample.

An :class:`Augmentation` is a plain value (scale, rotation, flip, colour factors) that
:func:`bidrn.data.targets.build_sample` applies consistently to the image, the 2D and 3D
joints, the hand and face boxes and the SMPL-X parameters. Keeping sampling separate from
application makes every augmentation reproducible from a seed and testable on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Augmentation:
    """One concrete augmentation.

    Attributes:
        scale: the crop covers ``scale`` times the prepared person box (``> 1`` zooms out).
        rotation_deg: the crop turns counter-clockwise on screen by this angle; the 3D joints and
            the SMPL-X root rotate about the camera's optical axis by ``-rotation_deg``.
        flip: mirror horizontally (joints, boxes and axis-angle pose swap left and right).
        colour: per-channel (R, G, B) multipliers applied to the 0–255 crop before clipping.
    """

    scale: float = 1.0
    rotation_deg: float = 0.0
    flip: bool = False
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)


IDENTITY = Augmentation()
"""The test-time "augmentation": no scale, rotation, flip or colour change."""


@dataclass(frozen=True)
class AugmentationConfig:
    """Distributions of the training augmentation; defaults are Hand4Whole's (docs/design/pipeline.md §7.3).

    Attributes:
        scale_factor: scale = clip(N(0, 1), -1, 1) * scale_factor + 1.
        rotation_factor_deg: rotation = clip(N(0, 1), -2, 2) * rotation_factor_deg ...
        rotation_prob: ... with this probability, else 0.
        flip_prob: probability of a horizontal flip.
        colour_factor: each channel multiplier is U(1 - colour_factor, 1 + colour_factor).
    """

    scale_factor: float = 0.25
    rotation_factor_deg: float = 30.0
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    colour_factor: float = 0.2
    enabled: bool = field(default=True)

    def sample(self, rng: np.random.Generator) -> Augmentation:
        """Draw one :class:`Augmentation` (the identity when ``enabled`` is False)."""
        if not self.enabled:
            return IDENTITY
        scale = float(np.clip(rng.standard_normal(), -1.0, 1.0) * self.scale_factor + 1.0)
        rotation = float(np.clip(rng.standard_normal(), -2.0, 2.0) * self.rotation_factor_deg)
        if rng.random() >= self.rotation_prob:
            rotation = 0.0
        flip = bool(rng.random() < self.flip_prob)
        low, high = 1.0 - self.colour_factor, 1.0 + self.colour_factor
        colour = tuple(float(c) for c in rng.uniform(low, high, size=3))
        return Augmentation(scale=scale, rotation_deg=rotation, flip=flip, colour=colour)


NO_AUGMENTATION = AugmentationConfig(enabled=False)
"""Configuration for evaluation: every sample uses :data:`IDENTITY`."""
