"""FDA's quantizers (Xu et al., NeurIPS 2021; docs/design/binarizers.md).

FDA is "Learning Frequency Domain Approximation for Binary Neural Networks". Forward values are
those of sign(x) and α_o·sign(w_o). Both gradients are a Fourier series whose number of terms grows
over training (:func:`~bidrn.binary.schedules.fda_fourier_terms`), and during training both values
get a noise-adaptation term λ·e(·) (:class:`~bidrn.binary.noise.NoiseAdaptation`) with λ decaying to
exactly 0 in the last epoch (:func:`~bidrn.binary.schedules.fda_noise_scale`).

Per-layer state: the modules ``input_noise`` and ``weight_noise`` and the buffers ``fourier_terms``
and ``noise_scale``, shared by the two quantizers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from bidrn.binary.estimators import GradientEstimator, binarize
from bidrn.binary.noise import NoiseAdaptation
from bidrn.binary.quantizers import SignActivation, SignWeight
from bidrn.binary.schedules import fda_fourier_terms, fda_noise_scale

if TYPE_CHECKING:
    from bidrn.binary.layers import BinaryLayer

__all__ = ["FdaActivation", "FdaWeight"]

FOURIER = GradientEstimator("fourier", omega=0.1)


def _build_schedules(layer: BinaryLayer) -> None:
    """The buffers both FDA quantizers read (created once per layer): terms 10, λ 0.1."""
    if not hasattr(layer, "fourier_terms"):
        layer.register_buffer("fourier_terms", torch.tensor(fda_fourier_terms(0, 1)))
        layer.register_buffer("noise_scale", torch.tensor(0.1))


def _set_schedules(layer: BinaryLayer, epoch: int, total_epochs: int) -> None:
    layer.fourier_terms.fill_(fda_fourier_terms(epoch, total_epochs))
    layer.noise_scale.fill_(fda_noise_scale(epoch, total_epochs))


def _noise_active(layer: BinaryLayer) -> bool:
    return layer.training and float(layer.noise_scale) > 0


@dataclass(frozen=True)
class FdaActivation(SignActivation):
    """a = sign(x) + λ·e(x) in training (e over the channels of each pixel), sign(x) in eval."""

    estimator: GradientEstimator = FOURIER
    input_only: ClassVar[bool] = False

    def build(self, layer: BinaryLayer, in_channels: int) -> None:
        """Create ``input_noise`` (width C_in) and the schedule buffers."""
        layer.input_noise = NoiseAdaptation(in_channels)
        _build_schedules(layer)

    def set_progress(self, layer: BinaryLayer, epoch: int, total_epochs: int) -> None:
        """Fourier terms and λ for ``epoch``."""
        _set_schedules(layer, epoch, total_epochs)

    def __call__(self, x: Tensor, layer: BinaryLayer) -> Tensor:
        """sign(x) (+ λ·e(x) in training) forward; the Fourier-series derivative backward."""
        binary = binarize(x, self.estimator, int(layer.fourier_terms))
        if _noise_active(layer):
            noise = layer.input_noise(x.movedim(layer.channel_dim, -1)).movedim(-1, layer.channel_dim)
            binary = binary + layer.noise_scale * noise
        return binary


@dataclass(frozen=True)
class FdaWeight(SignWeight):
    """w_b = α_o·(sign(w_o) + λ·e(w_o)) in training, α_o·sign(w_o) in eval; α_o = mean|w_o| detached."""

    estimator: GradientEstimator = FOURIER

    def build(self, layer: BinaryLayer, out_channels: int, filter_width: int) -> None:
        """Create ``weight_noise`` (width d, one flattened filter) and the schedule buffers."""
        layer.weight_noise = NoiseAdaptation(filter_width)
        _build_schedules(layer)

    def set_progress(self, layer: BinaryLayer, epoch: int, total_epochs: int) -> None:
        """Fourier terms and λ for ``epoch``."""
        _set_schedules(layer, epoch, total_epochs)

    def __call__(self, filters: Tensor, layer: BinaryLayer) -> Tensor:
        """α·(sign(w) + λ·e(w)) forward; α times the Fourier-series derivative backward."""
        scale = self.magnitude(filters)
        terms = int(layer.fourier_terms)
        if not _noise_active(layer):
            return binarize(filters, self.estimator, terms, scale=scale)
        noisy = binarize(filters, self.estimator, terms) + layer.noise_scale * layer.weight_noise(filters)
        return noisy * scale
