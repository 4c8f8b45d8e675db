"""The training loop: epochs, steps, DDP, exact resumption and clean stops.

The trainer is generic. It needs

* a model whose ``forward(images)`` returns an output object,
* a dataset of sample dicts ``{"inputs": {"img": ...}, "targets": {...}, "meta_info": {...}}``
  (Hand4Whole's layout; default collation stacks them),
* a loss function ``loss_fn(output, targets, meta_info) -> {term: scalar}`` whose sum is minimised
  (:class:`bidrn.engine.losses.WholeBodyLoss` for the whole-body models),
* optionally extra terms ``extra_terms(images, output) -> {term: scalar}`` (knowledge distillation
  from a teacher, :class:`bidrn.engine.distillation.Distillation`).

It delegates the update to :class:`bidrn.engine.optimization.Optimization` (Adam, learning-rate
schedule, AMP, clipping), files to :mod:`bidrn.engine.checkpoint`, logging and the progress bar to
:class:`bidrn.engine.training_log.RunMonitor` and signals to
:class:`bidrn.engine.signals.StopRequests`. Recipe (paper §4.1, docs/design/pipeline.md §7): Adam
(default betas, no weight decay), ``lr`` divided by ``lr_decay_factor`` at each epoch in
``lr_decay_epochs``, ``batch_size`` samples per process, :func:`bidrn.binary.set_progress` at the
start of every epoch so ReCU's τ and FDA's terms follow their schedules.

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

**Stops.** SIGINT (Ctrl-C) or SIGTERM lets the current step finish, writes ``last`` and raises
:class:`bidrn.engine.signals.TrainingInterruptedError`; ``--resume auto`` continues from there.
"""

from __future__ import annotations

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

from bidrn.binary import set_progress
from bidrn.engine.checkpoint import load_checkpoint, load_weights_into, save_checkpoint
from bidrn.engine.distributed import DistributedContext, any_rank, init_distributed
from bidrn.engine.optimization import LearningRateSchedule, Optimization
from bidrn.engine.reproducibility import capture_rng_state, restore_rng_state, seed_everything
from bidrn.engine.sampling import ResumableDistributedSampler
from bidrn.engine.signals import StopRequests, TrainingInterruptedError
from bidrn.engine.training_log import RunMonitor
from bidrn.errors import BidrnError, InputFileError
from bidrn.nets.transfer import transfer_weights

LossFunction = Callable[[Any, Mapping[str, Any], Mapping[str, Any]], dict[str, torch.Tensor]]
ExtraTerms = Callable[[torch.Tensor, Any], dict[str, torch.Tensor]]
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
        warmup_steps: updates over which the learning rate rises linearly to ``lr`` (0: none).
        grad_clip_norm: clip the global gradient norm to this value; ``None`` disables clipping.
        amp: mixed precision on CUDA (bfloat16 where supported, else float16 with loss scaling);
            ignored on CPU.
        channels_last: train with 4-D weights and input images in the channels-last memory layout,
            which oneDNN's CPU convolutions run faster (full-precision Hand4Whole at the synth-cpu
            size: 1.3x images/s on 2 cores; BiDRN: no change; docs/training.md) and which PyTorch
            recommends for CUDA mixed precision. The arithmetic is the same; sums may round in
            another order. Models that would hit a oneDNN bug in that layout train in NCHW
            (:func:`channels_last_is_safe`).
        seed: seeds weights' RNG use, data order and augmentation.
        num_workers: DataLoader worker processes (0 = load in the training process).
        log_every_steps: steps between log records and progress-bar updates.
        checkpoint_every_steps: also write ``last`` every N steps (0 = only at epoch ends).
        validate_every_steps: run the trainer's ``validate`` callback every N steps and before the
            first one (0 = never); its scalars go to the log (learning curves).
        max_steps: stop (with a checkpoint) after this many optimizer steps in total.
        find_unused_parameters: DDP option for models with branches unused in some steps.
        progress_bar: show a tqdm bar on rank 0.
        tensorboard: also write TensorBoard scalars when ``tensorboard`` is installed.
    """

    epochs: int = 14
    batch_size: int = 24
    lr: float = 1e-4
    lr_decay_epochs: tuple[int, ...] = (8, 12)
    lr_decay_factor: float = 10.0
    warmup_steps: int = 0
    grad_clip_norm: float | None = None
    amp: bool = True
    channels_last: bool = True
    seed: int = 0
    num_workers: int = 0
    log_every_steps: int = 20
    checkpoint_every_steps: int = 0
    validate_every_steps: int = 0
    max_steps: int | None = None
    find_unused_parameters: bool = False
    progress_bar: bool = True
    tensorboard: bool = True

    @property
    def schedule(self) -> LearningRateSchedule:
        """The learning-rate schedule these settings describe."""
        return LearningRateSchedule(
            self.lr, tuple(self.lr_decay_epochs), self.lr_decay_factor, self.warmup_steps
        )

    def learning_rate(self, epoch: int) -> float:
        """Learning rate of ``epoch`` (0-based) under the step-decay policy, after any warm-up."""
        return self.schedule.at(epoch, self.warmup_steps)


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


_ONEDNN_MIN_STRIDED_1X1_INPUTS = 16
"""oneDNN's x86 1×1 conv computes wrong weight gradients in the channels-last layout, and may
corrupt the heap, when the conv is strided and has fewer input channels per group than its channel
block: uxlfoundation/oneDNN#6035. Measured with torch 2.13 on AVX2 (block 8): 2-7 input channels
give wrong gradients, 8 and more right ones; 16 also covers AVX-512's block of 16."""


def channels_last_is_safe(model: nn.Module) -> bool:
    """Whether ``model`` can train in the channels-last layout without hitting oneDNN#6035.

    False when any conv is a strided 1×1 with fewer than 16 input channels per group (the test suite's
    smallest widths); such models train in NCHW, which has no such bug.
    """
    for module in model.modules():
        if (
            isinstance(module, nn.Conv2d)
            and tuple(module.kernel_size) == (1, 1)
            and max(module.stride) > 1
            and module.in_channels // module.groups < _ONEDNN_MIN_STRIDED_1X1_INPUTS
        ):
            return False
    return True


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
        extra_terms: ``(images, output) -> {term: scalar}`` added to the loss (e.g. distillation).
        validate: ``model -> {name: value}`` run every ``config.validate_every_steps`` steps (the model
            is put back in training mode afterwards), e.g. held-out MPVPE and loss.
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
        extra_terms: ExtraTerms | None = None,
        validate: Callable[[nn.Module], dict[str, float]] | None = None,
    ) -> None:
        if config.batch_size < 1 or config.epochs < 1:
            raise BidrnError(
                f"batch size and epochs must be positive, got {config.batch_size} and {config.epochs}"
            )
        self.config = config
        self.context = context or init_distributed()
        self.output_dir = Path(output_dir)
        self.model_info = dict(model_info or {})
        self.loss_fn = loss_fn
        self.extra_terms = extra_terms
        self.validate = validate
        self.epoch_hook = epoch_hook
        self.dataset = dataset
        self.collate_fn = collate_fn
        seed_everything(config.seed)
        self.model = model.to(self.context.device)
        self.channels_last = config.channels_last and channels_last_is_safe(self.model)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimization = Optimization(
            self.model, config.schedule, self.context.device, config.amp, config.grad_clip_norm
        )
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
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.train_model: nn.Module = self.model
        if self.context.is_distributed:
            use_cuda = self.context.device.type == "cuda"
            self.train_model = DistributedDataParallel(
                self.model,
                device_ids=[self.context.local_rank] if use_cuda else None,
                find_unused_parameters=config.find_unused_parameters,
            )

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The Adam optimizer (owned by :attr:`optimization`)."""
        return self.optimization.optimizer

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
        optimization_document, optimization_tensors = self.optimization.state()
        rng_document, rng_tensors = capture_rng_state()
        info = {
            **self.model_info,
            "train_config": asdict(self.config),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "world_size": self.context.world_size,
            **optimization_document,
            "rng": rng_document,
        }
        save_checkpoint(stem, self.model, info, state={**optimization_tensors, **rng_tensors})
        return stem

    def resume(self, path: str | Path) -> None:
        """Continue exactly where the checkpoint at ``path`` stopped (weights, optimizer, RNG, data)."""
        checkpoint = load_checkpoint(path)
        if not checkpoint.state or "optimizer" not in checkpoint.info:
            raise BidrnError(f"{path}: holds weights only, cannot resume training (use --init-from)")
        if not checkpoint.verified:
            raise BidrnError(
                f"{path}: written by an older bidrn whose three checkpoint files cannot be checked "
                "against each other; resuming from it is refused (use --init-from to start from its weights)"
            )
        info = checkpoint.info
        try:
            counters = {name: int(info[name]) for name in ("epoch", "step_in_epoch", "global_step")}
            load_weights_into(self.model, checkpoint, path)
            self.optimization.load_state(info, checkpoint.state)
            restore_rng_state(info["rng"], checkpoint.state)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            if isinstance(error, InputFileError):
                raise
            raise InputFileError(
                path, f"checkpoint training state is incomplete or malformed ({error!r})"
            ) from None
        if not 0 <= counters["step_in_epoch"] <= self.steps_per_epoch:
            raise InputFileError(path, f"step {counters['step_in_epoch']} does not fit an epoch of this data")
        self.epoch, self.step_in_epoch, self.global_step = (
            counters["epoch"], counters["step_in_epoch"], counters["global_step"]
        )  # fmt: skip
        saved_world = int(info.get("world_size", 1))
        if saved_world != self.context.world_size and self.step_in_epoch and self.context.is_main:
            print(
                f"bidrn train: resuming mid-epoch with {self.context.world_size} processes instead of "
                f"{saved_world}; the rest of epoch {self.epoch} is re-sharded",
                file=sys.stderr,
            )

    def initialize_from(self, path: str | Path) -> tuple[list[str], list[str]]:
        """Start from a checkpoint's weights, e.g. a trained full-precision model for a binarized one.

        Matching tensors are copied and BiDRN's branch convolutions take their share of the
        full-precision ones (:func:`bidrn.nets.transfer.transfer_weights`).

        Returns:
            ``(missing_keys, unused_keys)``: model tensors left at their initialisation, and
            checkpoint tensors used nowhere.
        """
        checkpoint = load_checkpoint(path, with_state=False)
        state, unused = transfer_weights(checkpoint.weights, self.model)
        result = self.model.load_state_dict(state, strict=False)
        return list(result.missing_keys), unused

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
        images = batch["inputs"]["img"]
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self.optimization.autocast():
            output = self.train_model(images)
        terms = self.loss_fn(output, batch["targets"], batch["meta_info"])
        if self.extra_terms is not None:
            terms.update(self.extra_terms(images, output))
        total = sum(terms.values())
        self.optimization.step(total, self.epoch, self.global_step)
        return {**{k: v.detach() for k, v in terms.items()}, "total": total.detach()}

    def fit(self) -> TrainResult:
        """Train until ``config.epochs`` (or ``config.max_steps``) and return a summary.

        Raises:
            TrainingInterruptedError: after SIGINT/SIGTERM, once the step is done and ``last`` is written.
            BidrnError: when the loss becomes NaN or infinite.
        """
        config, context = self.config, self.context
        monitor = RunMonitor(
            self.output_dir,
            context,
            images_per_step=config.batch_size * context.world_size,
            log_every_steps=config.log_every_steps,
            total_steps=config.epochs * self.steps_per_epoch,
            done_steps=self.epoch * self.steps_per_epoch + self.step_in_epoch,
            progress_bar=config.progress_bar,
            tensorboard=config.tensorboard,
        )
        started = time.perf_counter()
        steps_this_call = 0
        stem: Path | None = None
        with monitor, StopRequests() as stops:
            if self.global_step == 0:
                self._validate(monitor)
            while self.epoch < config.epochs:
                self.epoch_hook(self.model, self.epoch, config.epochs)
                self.train_model.train()
                monitor.start_window()
                for batch in self._loader():
                    monitor.data_ready()
                    terms = self._step(batch)
                    self.step_in_epoch += 1
                    self.global_step += 1
                    steps_this_call += 1
                    end_of_epoch = self.step_in_epoch == self.steps_per_epoch
                    monitor.record(
                        terms, self.global_step, self.epoch, self.optimization.lr, flush=end_of_epoch
                    )
                    if config.validate_every_steps and self.global_step % config.validate_every_steps == 0:
                        self._validate(monitor)
                    if (
                        config.checkpoint_every_steps
                        and self.global_step % config.checkpoint_every_steps == 0
                    ):
                        stem = self.save()
                    interrupted = any_rank(stops.requested, context)
                    if interrupted or (config.max_steps is not None and self.global_step >= config.max_steps):
                        if end_of_epoch:
                            self.epoch, self.step_in_epoch = self.epoch + 1, 0
                        stem = self.save()
                        if interrupted:
                            raise TrainingInterruptedError(
                                f"stopped by a signal after step {self.global_step}; checkpoint {stem} "
                                "written (continue with --resume auto)"
                            )
                        return self._result(started, steps_this_call, monitor.last_losses, stem)
                    monitor.waiting_for_data()
                self.epoch, self.step_in_epoch = self.epoch + 1, 0
                stem = self.save()
            return self._result(started, steps_this_call, monitor.last_losses, stem)

    def _validate(self, monitor: RunMonitor) -> None:
        if self.validate is None or not self.config.validate_every_steps:
            return
        started = time.perf_counter()
        scalars = self.validate(self.model)
        self.train_model.train()
        monitor.write(self.global_step, scalars, epoch=self.epoch)
        monitor.exclude(time.perf_counter() - started)  # validation time is not training throughput

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
