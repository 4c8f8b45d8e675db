"""The optimiser side of training: Adam, the learning-rate schedule, AMP and gradient clipping.

:class:`Optimization` owns everything that turns a loss into a parameter update, so the training loop
only calls :meth:`Optimization.step`. The schedule (:class:`LearningRateSchedule`) is Hand4Whole's:
Adam at ``lr``, divided by ``decay_factor`` at the start of every epoch in ``decay_epochs`` (paper
§4.1), optionally after a linear warm-up over the first ``warmup_steps`` updates.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bidrn.engine.checkpoint import optimizer_from_files, optimizer_to_files


@dataclass(frozen=True)
class LearningRateSchedule:
    """Step decays per epoch after an optional linear warm-up.

    Attributes:
        lr: base learning rate.
        decay_epochs: epochs (0-based) at whose start the rate is divided by ``decay_factor``.
        decay_factor: the divisor.
        warmup_steps: updates over which the rate rises linearly from ``lr / warmup_steps`` to ``lr``.
    """

    lr: float = 1e-4
    decay_epochs: tuple[int, ...] = (8, 12)
    decay_factor: float = 10.0
    warmup_steps: int = 0

    def at(self, epoch: int, step: int) -> float:
        """Learning rate for the update number ``step`` (0-based, global), taken during ``epoch``."""
        decays = sum(1 for milestone in self.decay_epochs if epoch >= milestone)
        rate = self.lr / self.decay_factor**decays
        if step < self.warmup_steps:
            rate *= (step + 1) / self.warmup_steps
        return rate


def adam(parameters: Iterable[nn.Parameter], lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam with default betas and no weight decay (Hand4Whole), in its fused form where torch has one.

    The fused kernels update every parameter in one pass instead of a dozen element-wise operations
    per tensor; binarized networks have over a thousand small tensors (RPReLU, BatchNorm), where the
    per-tensor form spends more time dispatching than computing. The update is the same algorithm.
    """
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, TypeError):  # torch without fused Adam on this device
        return torch.optim.Adam(parameters, lr=lr)


class Optimization:
    """Adam, schedule, automatic mixed precision and gradient clipping for one model.

    Args:
        model: the (unwrapped) model whose parameters are optimised.
        schedule: the learning-rate schedule.
        device: where the model runs; AMP is used only on CUDA (bfloat16 where supported, else float16
            with loss scaling).
        amp: allow mixed precision.
        grad_clip_norm: clip the global gradient norm (after unscaling), or ``None``.
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: LearningRateSchedule,
        device: torch.device,
        amp: bool = True,
        grad_clip_norm: float | None = None,
    ) -> None:
        self.model = model
        self.schedule = schedule
        self.grad_clip_norm = grad_clip_norm
        self.optimizer = adam(model.parameters(), schedule.lr, device)
        self.amp_dtype: torch.dtype | None = None
        if amp and device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    @contextmanager
    def autocast(self) -> Iterator[None]:
        """Context for the forward pass (mixed precision on CUDA when enabled)."""
        context = (
            nullcontext()
            if self.amp_dtype is None
            else torch.autocast(device_type="cuda", dtype=self.amp_dtype)
        )
        with context:
            yield

    @property
    def lr(self) -> float:
        """The learning rate currently set."""
        return self.optimizer.param_groups[0]["lr"]

    def step(self, loss: torch.Tensor, epoch: int, global_step: int) -> None:
        """Back-propagate ``loss`` and update the parameters at the schedule's rate for this step."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.at(epoch, global_step)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(JSON document, tensors)`` to checkpoint: Adam's hyper-parameters and moments, the scaler."""
        document, tensors = optimizer_to_files(self.optimizer)
        return {"optimizer": document, "grad_scaler": self.scaler.state_dict()}, tensors

    def load_state(self, document: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state` returned."""
        optimizer_from_files(self.optimizer, document["optimizer"], tensors)
        if document.get("grad_scaler"):
            self.scaler.load_state_dict(document["grad_scaler"])
