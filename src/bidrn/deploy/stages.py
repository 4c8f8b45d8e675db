"""Frozen encoder stages: the fused units of all a stage's BiDRBs as one kernel call.

A stage (ResNet's ``layer1``..``layer4``) is a chain of BiDRBs (Eq. 11) whose blocks after the
first add their own input as the Block Residual. Run block by block, every fused unit
(:class:`~bidrn.deploy.fusion.FusedLocalConvResidual`) is a Python call that finds its plan,
allocates its output and packed buffers, points its argument structs at them and calls the kernels:
15-18 µs per unit and about 15 µs more per block on a 2.3 GHz Zen 4 core, 3-4 ms of every
paper-size forward at one thread.

:class:`FusedStage` plans a stage once per input layout (:class:`StageProgram`): the first block's
pre-activation and Block Residual projection still run as modules (the projection is a oneDNN
GEMM), then every unit of every block runs in one :func:`bidrn.deploy.kernels.run`. The units'
intermediate outputs and packed buffers live in one scratch tensor per call, each block reusing the
regions of the one before; each block writes its output over its input (the stage's running tensor,
which is the first block's Block Residual when that is a tensor of its own). Per call, Python only
points the program's argument structs at the call's four tensors. The kernels, their order and
their operands are those of the block-by-block path, so the output is bit for bit the same.

The stage runs block by block instead when anything could tell the difference: forward hooks on
any module that path calls (blocks, units, their pre-activations, Block Residuals: the program
would not call them, or would write over what they were handed), inputs the kernels do not take
(not CPU float32, no compiled kernels), or a structure the program does not cover (a later block
with a projection or a pre-activation of its own, a unit with a pre-activation).
"""

from __future__ import annotations

import ctypes
import math
import threading
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from bidrn.deploy import kernels
from bidrn.deploy.fusion import FusedBiDRB, FusedLocalConvResidual, UnitPlan, observed, shares_memory

__all__ = ["FusedStage", "StageProgram", "fuse_stages"]

# The call's base addresses: the first block's pre-activated input, its Block Residual, the stage's
# running tensor (each block's output) and the scratch tensor.
_INPUT, _ADDED, _RUNNING, _SCRATCH = range(4)
_ALIGNMENT = 64  # bytes, of every scratch region


@dataclass(frozen=True)
class StageProgram:
    """A stage's units as one sequence of kernel steps, for one input layout.

    ``pointers`` lists every pointer field of ``steps`` over the call's four base addresses; a call
    fills them in (:func:`bidrn.deploy.kernels.fill_addresses`) and runs while holding ``lock``,
    so that calls from several threads never run with each other's addresses.
    """

    steps: tuple[ctypes.Structure, ...]
    pointers: tuple[kernels.Pointer, ...]
    scratch_bytes: int
    out_shape: tuple[int, int, int, int]  # of the stage's output, (N, H, W, C)
    structure: tuple[nn.Module, ...]  # the modules it was made from (see FusedStage._structure)
    unit_plans: tuple[tuple[FusedLocalConvResidual, dict, UnitPlan], ...]  # the plans it copied
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def is_current(self, structure: tuple[nn.Module, ...]) -> bool:
        """Whether the stage still has these modules and no unit has dropped its plans since.

        A unit replaces its plan cache when its parameters change
        (:meth:`~bidrn.deploy.fusion.FusedLocalConvResidual.invalidate`).
        """
        return structure == self.structure and all(unit._plans is cache for unit, cache, _ in self.unit_plans)


class _ScratchLayout:
    """Regions of the per-call scratch tensor by role.

    Blocks run one after the other, so a role's region (e.g. "the second unit's output") serves
    every block.
    """

    def __init__(self) -> None:
        self.sizes: dict[tuple, int] = {}

    def need(self, role: tuple, nbytes: int) -> tuple:
        self.sizes[role] = max(self.sizes.get(role, 0), nbytes)
        return role

    def offsets(self) -> tuple[dict[tuple, int], int]:
        offsets, total = {}, 0
        for role, size in self.sizes.items():
            offsets[role] = total
            total += -(-size // _ALIGNMENT) * _ALIGNMENT
        return offsets, total


class FusedStage(kernels.CallPlanCache, nn.Sequential):
    """A stage of fused BiDRBs that runs all their units as one kernel call (see the module doc).

    Inside the stage a block's output is read by the next block only, so the next block writes its
    own output over it; the stage's input is never written. Made in place from an
    ``nn.Sequential`` (same state dict) by :func:`fuse_stages`.
    """

    def forward(self, x: Tensor) -> Tensor:
        """The blocks in order: as one program when nothing tells the difference, else one by one."""
        structure = self._structure()
        if structure is None or not self._kernels_take(x, structure) or observed(self._readers(structure)):
            return self._block_by_block(x)
        first = structure[0]
        a = first.preactivation(x)
        residual = None if first.block_residual is None else first.block_residual(a)
        a_nhwc = a.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        added = None if residual is None else residual.contiguous(memory_format=torch.channels_last)
        added_nhwc = None if added is None else added.permute(0, 2, 3, 1)
        owned = (
            added_nhwc is not None
            and added_nhwc.dtype == torch.float32
            and added_nhwc.is_contiguous()
            and not shares_memory(added, x)
        )
        key = FusedLocalConvResidual.plan_key(a_nhwc, added_nhwc, None)
        programs = self.__dict__.setdefault("_plans", {})
        program = programs.get(key)
        if program is None or not program.is_current(structure):
            program = self._compile(structure, a_nhwc, added_nhwc)
            programs[key] = program
        out_nhwc = added_nhwc if owned else torch.empty(program.out_shape, dtype=torch.float32)
        scratch = torch.empty(program.scratch_bytes, dtype=torch.uint8)
        bases = (
            a_nhwc.data_ptr(),
            0 if added_nhwc is None else added_nhwc.data_ptr(),
            out_nhwc.data_ptr(),
            scratch.data_ptr(),
        )
        with program.lock:
            kernels.fill_addresses(program.pointers, bases)
            kernels.run(program.steps)
        return out_nhwc.permute(0, 3, 1, 2)

    def _block_by_block(self, x: Tensor) -> Tensor:
        """Each block's output handed to the next unless a hook saw it."""
        previous = None
        for block in self:
            x = block(x, overwrite_input=previous is not None and not observed(previous.output_readers()))
            previous = block
        return x

    def _structure(self) -> tuple[nn.Module, ...] | None:
        """The blocks, then every block's units, when the program covers them; else ``None``.

        Read through ``_modules`` (``nn.Module.__getattr__`` costs about a microsecond per name).
        """
        blocks = tuple(self._modules.values())
        units: list[nn.Module] = []
        for index, block in enumerate(blocks):
            if not isinstance(block, FusedBiDRB):
                return None
            parts = block._modules
            residual = parts["block_residual"]
            if index and not (
                isinstance(parts["preactivation"], nn.Identity)
                and residual is not None
                and isinstance(residual._modules["projection"], nn.Identity)
            ):
                return None
            for unit in parts["units"]._modules.values():
                if not (
                    type(unit) is FusedLocalConvResidual
                    and isinstance(unit._modules["preactivation"], nn.Identity)
                ):
                    return None
                units.append(unit)
        return blocks + tuple(units)

    def _readers(self, structure: tuple[nn.Module, ...]) -> list[nn.Module]:
        """Every module the block-by-block path calls.

        The program would skip their forward hooks, or (the first block's pre-activation and Block
        Residual) write over what they were handed.
        """
        readers = list(structure)
        for block in structure[: len(self)]:
            parts = block._modules
            readers.append(parts["preactivation"])
            if parts["block_residual"] is not None:
                readers.extend(parts["block_residual"].modules())
        readers.extend(unit._modules["preactivation"] for unit in structure[len(self) :])
        return readers

    def _kernels_take(self, x: Tensor, structure: tuple[nn.Module, ...]) -> bool:
        first_unit = structure[len(self)]
        return x.dim() == 4 and first_unit.convs[0]._use_kernels(x)

    def _compile(
        self, structure: tuple[nn.Module, ...], a_nhwc: Tensor, added_nhwc: Tensor | None
    ) -> StageProgram:
        """Plan every unit for these layouts and record where each pointer of their steps goes.

        A tensor is named by (slot, scratch role or ``None``); example tensors of the right shapes
        and strides stand in for the call's tensors while the units plan.
        """
        layout = _ScratchLayout()
        steps: list[ctypes.Structure] = []
        pending: list[tuple[ctypes.Structure, str, tuple[int, tuple | None], int]] = []
        unit_plans = []
        running = None  # an example of the stage's running tensor, (N, H, W, C)
        for index, block in enumerate(structure[: len(self)]):
            units = list(block.units)
            source, source_example = ((_INPUT, None), a_nhwc) if index == 0 else ((_RUNNING, None), running)
            for position, unit in enumerate(units):
                last = position == len(units) - 1
                if not last:
                    added, added_example, clamp = None, None, unit.output_clamp
                elif index == 0:
                    added, added_example, clamp = (_ADDED, None), added_nhwc, block.output_clamp
                else:
                    added, added_example, clamp = (_RUNNING, None), running, block.output_clamp
                plan = unit.call_plan(source_example, added_example, clamp)
                unit_plans.append((unit, unit._plans, plan))
                if last:
                    target = (_RUNNING, None)
                    running = torch.empty(plan.out_shape) if running is None else running
                    out_example = running
                else:
                    nbytes = math.prod(plan.out_shape) * 4
                    target = (_SCRATCH, layout.need(("out", position), nbytes))
                    out_example = torch.empty(plan.out_shape)
                copies = {id(step): type(step).from_buffer_copy(step) for step in plan.steps}
                steps.extend(copies[id(step)] for step in plan.steps)
                buffers = [
                    (_SCRATCH, layout.need(("pack", position, k), math.prod(pack.buffer_shape) * 8))
                    for k, pack in enumerate(plan.packs)
                ]
                where = (source, target, added, *buffers)  # indexed by the unit plan's bases
                pending += [
                    (copies[id(struct)], name, where[base], offset)
                    for struct, name, base, offset in plan.pointers
                ]
                source, source_example = target, out_example
        offsets, scratch_bytes = layout.offsets()
        pointers = tuple(
            (struct, name, slot, offset + (0 if role is None else offsets[role]))
            for struct, name, (slot, role), offset in pending
        )
        return StageProgram(
            tuple(steps), pointers, scratch_bytes, tuple(running.shape), structure, tuple(unit_plans)
        )


def fuse_stages(model: nn.Module) -> int:
    """Make each ``nn.Sequential`` of two or more :class:`FusedBiDRB` a :class:`FusedStage`; how many."""
    stages = [
        module
        for module in model.modules()
        if type(module) is nn.Sequential
        and len(module) > 1
        and all(isinstance(block, FusedBiDRB) for block in module)
    ]
    for stage in stages:
        stage.__class__ = FusedStage
    return len(stages)
