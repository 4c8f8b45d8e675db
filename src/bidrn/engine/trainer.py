"""Training loop: Adam with step decays, binarization schedules, AMP, DDP, exact resumption.

The trainer is generic. It needs

* a model whose ``forward(images)`` returns an output object,
* a dataset of sample dicts ``{"inputs": {"img": ...}, "targets": {...}, "meta_info": {...}}``
  (Hand4Whole's layout; default collation stacks them),
* a loss function ``loss_fn(output, targets, meta_info) -> {term: scalar}`` whose sum is minimised
  (:class:`bidrn.engine.losses.WholeBodyLoss` for the whole-body models).

Recipe (architecture.md §7, paper §4.1): Adam (default betas, no weight decay), learning rate
``lr`` divided by ``lr_decay_factor`` at each epoch in ``lr_decay_epochs``, ``batch_size`` samples
per process, :func:`bidrn.binary.set_progress` called at the start of every epoch so ReCU's τ and
FDA's terms follow their schedules. The paper trains 14 epochs at lr 1e-4, batch 24; it does not
state its decay epochs, so the default decays at epochs 8 and 12 — Hand4Whole's 4/6 of 7 epochs
scaled to 14 *[inferred]*.

**Multi-GPU / multi-node.** Launched under ``torchrun`` the trainer wraps the model in
``DistributedDataParallel`` (NCCL on GPU, gloo on CPU), shards every epoch with a
``DistributedSampler`` and logs, prints and checkpoints on rank 0 only.

**Exact resumption.** A checkpoint holds the weights, Adam's moments, the AMP scaler, the
epoch/step counters and every RNG state, and the data order of an epoch is a function of
``(seed, epoch)``; resuming skips the batches already consumed. A resumed single-process run with
``num_workers=0`` therefore reproduces an uninterrupted run bit for bit. With loader workers the
batches are identical but per-sample augmentation randomness follows the workers' seeds, which
depend on where the epoch started. Under DDP only rank 0's RNG state is saved and restored on every
rank.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from bidrn.binary import set_progress
from bidrn.engine.checkpoint import (
    load_checkpoint,
    load_weights_into,
    optimizer_from_files,
    optimizer_to_files,
    save_checkpoint,
)
from bidrn.engine.distributed import DistributedContext, init_distributed, mean_across_ranks
from bidrn.engine.reproducibility import capture_rng_state, restore_rng_state, seed_everything
from bidrn.engine.sampling import ResumableDistributedSampler
from bidrn.engine.training_log import TrainingLog
from bidrn.errors import BidrnError

LossFunction = Callable[[Any, Mapping[str, Any], Mapping[str, Any]], dict[str, torch.Tensor]]
EpochHook = Callable[[nn.Module, int, int], Any]


@dataclass
class TrainConfig:
    """Hyper-parameters and bookkeeping of one training run.

    Attributes:
        epochs: number of epochs (paper: 14).
        batch_size: samples per process and step (paper: 24 per GPU).
        lr: initial Adam learning rate (paper: 1e-4).
        lr_decay_epochs: epochs at whose start the learning rate is divided by ``lr_decay_factor``.
        lr_decay_factor: divisor applied at each decay epoch (Hand4Whole: 10).
        grad_clip_norm: clip the global gradient norm to this value; ``None`` disables clipping.
        amp: mixed precision on CUDA (bfloat16 where supported, else float16 with loss scaling);
            ignored on CPU.
        seed: seeds weights' RNG use, data order and augmentation.
        num_workers: DataLoader worker processes (0 = load in the training process).
        log_every_steps: steps between log records and progress-bar updates.
        checkpoint_every_steps: also write ``last`` every this many steps (0 = at epoch ends only).
        max_steps: stop (after checkpointing) once this many optimizer steps have run in total.
        find_unused_parameters: passed to ``DistributedDataParallel``.
        progress_bar: show a tqdm bar on rank 0.
        tensorboard: write TensorBoard scalars when the package is installed.
    """

    epochs: int = 14
    batch_size: int = 24
    lr: float = 1e-4
    lr_decay_epochs: tuple[int, ...] = (8, 12)
    lr_decay_factor: float = 10.0
    grad_clip_norm: float | None = None
    amp: bool = True
    seed: int = 0
    num_workers: int = 0
    log_every_steps: int = 20
    checkpoint_every_steps: int = 0
    max_steps: int | None = None
    find_unused_parameters: bool = False
    progress_bar: bool = True
    tensorboard: bool = True

    def learning_rate(self, epoch: int) -> float:
        """Learning rate of ``epoch`` (0-based) under the step-decay policy."""
        decays = sum(1 for milestone in self.lr_decay_epochs if epoch >= milestone)
        return self.lr / self.lr_decay_factor**decays


@dataclass
class TrainResult:
    """What a call to :meth:`Trainer.fit` did.

    Attributes:
        global_step: optimizer steps done in total (including before a resume).
        epochs_done: completed epochs.
        steps_run: optimizer steps done by this call.
        images_per_second: training throughput over this call (all processes together).
        last_losses: the last logged loss terms and total.
        checkpoint: stem of the last checkpoint written.
    """

    global_step: int
    epochs_done: int
    steps_run: int
    images_per_second: float
    last_losses: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None


def default_collate_to(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a nested dict/list batch to ``device`` (non-blocking)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: default_collate_to(value, device) for key, value in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(default_collate_to(value, device) for value in batch)
    return batch


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


class Trainer:
    """Train ``model`` on ``dataset`` with ``loss_fn``, writing checkpoints under ``output_dir``.

    Args:
        model: the network (unwrapped; the trainer adds DDP when distributed).
        dataset: map-style dataset of sample dicts.
        loss_fn: ``(output, targets, meta_info) -> {term: scalar}``.
        config: the run's :class:`TrainConfig`.
        output_dir: run directory: ``checkpoints/``, ``log.jsonl``, TensorBoard files.
        model_info: recorded in checkpoints so evaluation can rebuild the model, e.g.
            ``{"model": "bidrn", "model_overrides": {...}}``.
        context: distributed context; by default :func:`init_distributed` is called.
        epoch_hook: called as ``hook(model, epoch, epochs)`` at every epoch start;
            default :func:`bidrn.binary.set_progress`.
        collate_fn: DataLoader collation (default: torch's, which stacks nested dicts).
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: Dataset,
        loss_fn: LossFunction,
        config: TrainConfig,
        output_dir: str | Path,
        model_info: dict[str, Any] | None = None,
        context: DistributedContext | None = None,
        epoch_hook: EpochHook = set_progress,
        collate_fn: Callable | None = None,
    ) -> None:
        self.config = config
        self.context = context or init_distributed()
        self.output_dir = Path(output_dir)
        self.model_info = dict(model_info or {})
        self.loss_fn = loss_fn
        self.epoch_hook = epoch_hook
        self.dataset = dataset
        self.collate_fn = collate_fn
        seed_everything(config.seed)
        self.model = model.to(self.context.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.sampler = ResumableDistributedSampler(
            dataset,
            num_replicas=self.context.world_size,
            rank=self.context.rank,
            shuffle=True,
            seed=config.seed,
        )
        if len(self.sampler) < config.batch_size:
            raise BidrnError(
                f"dataset of {len(dataset)} samples gives fewer than one batch of {config.batch_size} "
                f"per process on {self.context.world_size} process(es)"
            )
        self.steps_per_epoch = len(self.sampler) // config.batch_size
        use_cuda = self.context.device.type == "cuda"
        self.amp_dtype: torch.dtype | None = None
        if config.amp and use_cuda:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.train_model: nn.Module = self.model
        if self.context.is_distributed:
            self.train_model = DistributedDataParallel(
                self.model,
                device_ids=[self.context.local_rank] if use_cuda else None,
                find_unused_parameters=config.find_unused_parameters,
            )

    # -- checkpoints -----------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        """Directory of this run's checkpoints."""
        return self.output_dir / "checkpoints"

    def save(self, name: str = "last") -> Path:
        """Write a resumable checkpoint (rank 0 only) and return its stem."""
        stem = self.checkpoint_dir / name
        if not self.context.is_main:
            return stem
        optimizer_document, optimizer_tensors = optimizer_to_files(self.optimizer)
        rng_document, rng_tensors = capture_rng_state()
        info = {
            **self.model_info,
            "train_config": asdict(self.config),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "world_size": self.context.world_size,
            "optimizer": optimizer_document,
            "grad_scaler": self.scaler.state_dict(),
            "rng": rng_document,
        }
        save_checkpoint(stem, self.model, info, state={**optimizer_tensors, **rng_tensors})
        return stem

    def resume(self, path: str | Path) -> None:
        """Continue exactly where the checkpoint at ``path`` stopped (weights, optimizer, RNG, data)."""
        checkpoint = load_checkpoint(path)
        if not checkpoint.state or "optimizer" not in checkpoint.info:
            raise BidrnError(f"{path}: holds weights only, cannot resume training (use --init-from)")
        load_weights_into(self.model, checkpoint, path)
        optimizer_from_files(self.optimizer, checkpoint.info["optimizer"], checkpoint.state)
        if checkpoint.info.get("grad_scaler"):
            self.scaler.load_state_dict(checkpoint.info["grad_scaler"])
        restore_rng_state(checkpoint.info["rng"], checkpoint.state)
        self.epoch = int(checkpoint.info["epoch"])
        self.step_in_epoch = int(checkpoint.info["step_in_epoch"])
        self.global_step = int(checkpoint.info["global_step"])
        saved_world = int(checkpoint.info.get("world_size", 1))
        if saved_world != self.context.world_size and self.step_in_epoch and self.context.is_main:
            print(
                f"bidrn train: resuming mid-epoch with {self.context.world_size} processes instead of "
                f"{saved_world}; the rest of epoch {self.epoch} is re-sharded",
                file=sys.stderr,
            )

    def initialize_from(self, path: str | Path) -> tuple[list[str], list[str]]:
        """Load matching weights from a checkpoint (e.g. a full-precision model) before training.

        Returns:
            ``(missing_keys, unexpected_keys)`` of the non-strict load.
        """
        checkpoint = load_checkpoint(path, with_state=False)
        own = self.model.state_dict()
        fitting = {k: v for k, v in checkpoint.weights.items() if k in own and own[k].shape == v.shape}
        result = self.model.load_state_dict(fitting, strict=False)
        unexpected = sorted(set(checkpoint.weights) - set(fitting))
        return list(result.missing_keys), unexpected

    # -- training ---------------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        self.sampler.set_epoch(self.epoch)
        if hasattr(self.dataset, "set_epoch"):  # per-epoch augmentation seeds (bidrn.data datasets)
            self.dataset.set_epoch(self.epoch)
        self.sampler.skip_first(self.step_in_epoch * self.config.batch_size)
        # A dedicated generator keeps the loader from drawing its worker seed from the global RNG,
        # so creating a loader mid-epoch (after a resume) does not shift the global stream.
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.epoch)
        return DataLoader(
            self.dataset,
            batch_size=self.config.batch_size,
            sampler=self.sampler,
            num_workers=self.config.num_workers,
            collate_fn=self.collate_fn,
            pin_memory=self.context.device.type == "cuda",
            drop_last=True,
            generator=generator,
            persistent_workers=False,
        )

    def _step(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        batch = default_collate_to(batch, self.context.device)
        if self.amp_dtype is None:
            output = self.train_model(batch["inputs"]["img"])
            terms = self.loss_fn(output, batch["targets"], batch["meta_info"])
        else:
            with torch.autocast(device_type="cuda", dtype=self.amp_dtype):
                output = self.train_model(batch["inputs"]["img"])
            with torch.autocast(device_type="cuda", enabled=False):  # losses in float32
                terms = self.loss_fn(output, batch["targets"], batch["meta_info"])
        total = sum(terms.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.config.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {**{k: v.detach() for k, v in terms.items()}, "total": total.detach()}

    def fit(self) -> TrainResult:
        """Train until ``config.epochs`` (or ``config.max_steps``) and return a summary."""
        config, context = self.config, self.context
        log = TrainingLog(self.output_dir, enabled=context.is_main, tensorboard=config.tensorboard)
        images_per_step = config.batch_size * context.world_size
        started = time.perf_counter()
        steps_this_call = 0
        last_losses: dict[str, float] = {}
        stem: Path | None = None
        bar = tqdm(
            total=config.epochs * self.steps_per_epoch,
            initial=self.epoch * self.steps_per_epoch + self.step_in_epoch,
            disable=not (config.progress_bar and context.is_main),
            unit="step",
            dynamic_ncols=True,
        )
        try:
            while self.epoch < config.epochs:
                for group in self.optimizer.param_groups:
                    group["lr"] = config.learning_rate(self.epoch)
                self.epoch_hook(self.model, self.epoch, config.epochs)
                self.train_model.train()
                window: dict[str, torch.Tensor] = {}
                window_steps, window_start, data_time = 0, time.perf_counter(), 0.0
                fetch_start = time.perf_counter()
                for batch in self._loader():
                    data_time += time.perf_counter() - fetch_start
                    terms = self._step(batch)
                    self.step_in_epoch += 1
                    self.global_step += 1
                    steps_this_call += 1
                    window_steps += 1
                    for name, value in terms.items():
                        window[name] = window.get(name, 0.0) + value
                    bar.update(1)
                    stopping = config.max_steps is not None and self.global_step >= config.max_steps
                    if window_steps == config.log_every_steps or self.step_in_epoch == self.steps_per_epoch:
                        elapsed = time.perf_counter() - window_start
                        last_losses = self._log_window(log, window, window_steps, elapsed, data_time)
                        bar.set_postfix(
                            loss=f"{last_losses['total']:.4f}",
                            img_s=f"{window_steps * images_per_step / max(elapsed, 1e-9):.1f}",
                        )
                        window, window_steps, data_time = {}, 0, 0.0
                        window_start = time.perf_counter()
                    if (
                        config.checkpoint_every_steps
                        and self.global_step % config.checkpoint_every_steps == 0
                    ):
                        stem = self.save()
                    if stopping:
                        if self.step_in_epoch == self.steps_per_epoch:
                            self.epoch, self.step_in_epoch = self.epoch + 1, 0
                        stem = self.save()
                        return self._result(started, steps_this_call, last_losses, stem)
                    fetch_start = time.perf_counter()
                self.epoch += 1
                self.step_in_epoch = 0
                stem = self.save()
            return self._result(started, steps_this_call, last_losses, stem)
        finally:
            bar.close()
            log.close()

    def _log_window(
        self,
        log: TrainingLog,
        window: dict[str, torch.Tensor],
        steps: int,
        elapsed: float,
        data_time: float,
    ) -> dict[str, float]:
        means = {name: float(value) / steps for name, value in window.items()}
        means = mean_across_ranks(means, self.context)
        if not math.isfinite(means["total"]):
            raise BidrnError(f"training diverged: loss is {means['total']} at step {self.global_step}")
        images = steps * self.config.batch_size * self.context.world_size
        scalars = {f"loss/{name}": value for name, value in means.items()}
        scalars["lr"] = self.optimizer.param_groups[0]["lr"]
        scalars["throughput/images_per_s"] = images / max(elapsed, 1e-9)
        scalars["time/data_fraction"] = data_time / max(elapsed, 1e-9)
        log.write(self.global_step, scalars, epoch=self.epoch)
        return means

    def _result(self, started: float, steps: int, losses: dict[str, float], stem: Path | None) -> TrainResult:
        elapsed = time.perf_counter() - started
        images = steps * self.config.batch_size * self.context.world_size
        return TrainResult(
            global_step=self.global_step,
            epochs_done=self.epoch,
            steps_run=steps,
            images_per_second=images / max(elapsed, 1e-9),
            last_losses=losses,
            checkpoint=stem,
        )
