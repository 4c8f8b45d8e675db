"""Frozen stages: blocks handing their outputs over, and all units of a stage as one kernel call."""

import threading

import pytest
import torch
from torch import nn

import bidrn
from bidrn.deploy import freeze, kernels
from bidrn.deploy.stages import FusedStage
from tests.deploy.test_bidrn_model import TINY, randomize


@pytest.fixture(scope="module")
def frozen_tiny():
    """A frozen tiny BiDRN that the tests below call but never change."""
    torch.manual_seed(0)
    return freeze(randomize(bidrn.create_model("bidrn", **TINY)))


@pytest.fixture(scope="module")
def frozen_stage(frozen_tiny):
    """The first body stage of a frozen tiny BiDRN (three bottlenecks, the first with a projection)."""
    stage = frozen_tiny.body_encoder.stages[0]
    assert isinstance(stage, FusedStage) and len(stage) == 3
    x = torch.randn(
        2, stage[0].units[0].convs[0].in_channels, 8, 6, generator=torch.Generator().manual_seed(2)
    )
    return stage, x.contiguous(memory_format=torch.channels_last)


def test_blocks_write_over_only_what_is_handed_over(isa, frozen_stage):
    """A block's output takes the memory of its Block Residual only when no one reads that again."""
    stage, x = frozen_stage
    first, second = stage[0], stage[1]  # projection; identity Block Residual
    with torch.no_grad():
        handed = first(x)
        kept = handed.clone()
        expected = second(kept)  # called on its own, a block leaves its input alone
        assert torch.equal(kept, handed)
        assert expected.data_ptr() != kept.data_ptr()
        overwritten = second(handed, overwrite_input=True)
        assert torch.equal(overwritten, expected)
        assert overwritten.data_ptr() == handed.data_ptr() or isa == kernels.REFERENCE
        before = x.clone()
        one_by_one = stage[2](second(first(x)))
        assert torch.equal(stage(x), one_by_one)
        assert torch.equal(x, before)  # a stage never writes over its input


@pytest.mark.parametrize("scope", ["module", "global"])
def test_blocks_never_write_over_what_a_hook_was_handed(isa, scope, frozen_stage):
    stage, x = frozen_stage
    seen = []

    def keep(module, _inputs, output):
        if module is stage[0]:
            seen.append((output, output.clone()))

    register = (
        stage[0].register_forward_hook
        if scope == "module"
        else nn.modules.module.register_module_forward_hook
    )
    handle = register(keep)
    try:
        with torch.no_grad():
            with_hook = stage(x)
    finally:
        handle.remove()
    with torch.no_grad():
        assert torch.equal(stage(x), with_hook)
    ((output, copy),) = seen
    assert torch.equal(output, copy)


def _programs(stage):
    return stage.__dict__.get("_plans", {})


def test_a_stage_runs_as_one_program_and_matches_its_blocks(isa, frozen_stage):
    stage, x = frozen_stage
    stage.__dict__.pop("_plans", None)
    with torch.no_grad():
        out = stage(x)
        assert torch.equal(out, stage._block_by_block(x))
    assert len(_programs(stage)) == (0 if isa == kernels.REFERENCE else 1)
    if isa != kernels.REFERENCE:
        (program,) = _programs(stage).values()
        assert len(program.steps) > 3 * len(stage)  # every unit's packs and convs in one run


def test_hooks_make_a_stage_run_block_by_block(isa, frozen_stage):
    stage, x = frozen_stage
    stage.__dict__.pop("_plans", None)
    calls = []
    handle = stage[1].units[1].register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            with_hook = stage(x)
    finally:
        handle.remove()
    assert calls == [1] and not _programs(stage)
    with torch.no_grad():
        assert torch.equal(stage(x), with_hook)


def test_a_stage_program_follows_new_parameters_and_input_shapes(isa):
    torch.manual_seed(0)
    frozen = freeze(randomize(bidrn.create_model("bidrn", **TINY)))
    stage = frozen.body_encoder.stages[0]
    other = freeze(randomize(bidrn.create_model("bidrn", **TINY), seed=5)).body_encoder.stages[0]
    generator = torch.Generator().manual_seed(2)
    channels = stage[0].units[0].convs[0].in_channels
    with torch.no_grad():
        for shape in ((2, channels, 8, 6), (1, channels, 5, 7)):
            x = torch.randn(shape, generator=generator).contiguous(memory_format=torch.channels_last)
            assert torch.equal(stage(x), stage._block_by_block(x))
        before = stage(x)
        stage.load_state_dict(other.state_dict())
        after = stage(x)
        assert not torch.equal(after, before)
        assert torch.equal(after, other._block_by_block(x))


def test_a_stage_whose_first_block_adds_its_input_leaves_the_input_alone(isa):
    """No projection and no pre-activation: the Block Residual is the stage input, never written."""
    torch.manual_seed(0)
    frozen = freeze(randomize(bidrn.create_model("bidrn", **TINY)))
    stage = frozen.face_encoder.stages[0]  # ResNet-18 layer1: 64 -> 64 channels, stride 1
    assert isinstance(stage, FusedStage) and isinstance(stage[0].block_residual.projection, nn.Identity)
    stage[0].preactivation = nn.Identity()
    x = torch.rand(2, stage[0].units[0].convs[0].in_channels, 6, 6) * 2 - 1
    x = x.contiguous(memory_format=torch.channels_last)
    before = x.clone()
    with torch.no_grad():
        out = stage(x)
        assert torch.equal(x, before)
        assert torch.equal(out, stage._block_by_block(x))
    assert len(_programs(stage)) == (0 if isa == kernels.REFERENCE else 1)


def test_a_stage_never_writes_over_what_a_hook_on_its_first_preactivation_kept(isa, frozen_tiny):
    """Hardtanh, then an identity Block Residual: the program would write its output over a."""
    stage = frozen_tiny.face_encoder.stages[0]
    assert isinstance(stage[0].preactivation, nn.Hardtanh)
    x = torch.randn(2, stage[0].units[0].convs[0].in_channels, 6, 6) * 2
    x = x.contiguous(memory_format=torch.channels_last)
    kept = []
    handle = stage[0].preactivation.register_forward_hook(lambda _m, _i, out: kept.append((out, out.clone())))
    try:
        with torch.no_grad():
            out = stage(x)
    finally:
        handle.remove()
    ((seen, copy),) = kept
    assert torch.equal(seen, copy)
    with torch.no_grad():
        assert torch.equal(out, stage(x))


def _caller(kind, frozen_tiny, frozen_stage):
    """A frozen module whose call fills addresses into shared argument structs, and an input."""
    stage, x = frozen_stage
    if kind == "stage":  # StageProgram
        return stage, stage._block_by_block, x
    if kind == "unit":  # UnitPlan
        unit = stage[1].units[1]
        x = torch.rand(2, unit.convs[0].in_channels, 8, 6) * 2 - 1
        return unit, unit, x.contiguous(memory_format=torch.channels_last)
    upsampling = frozen_tiny.boxnet.upsampling[0]  # ConvPlan
    x = torch.rand(1, upsampling.deconv.in_channels, 4, 3) * 2 - 1
    return upsampling, upsampling, x.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("kind", ["stage", "unit", "upsampling"])
def test_calls_from_two_threads_never_run_with_each_others_addresses(
    kind, frozen_tiny, frozen_stage, monkeypatch
):
    """Thread A fills in its addresses and is held just before the kernels read them, while thread B
    calls the same module: B must wait for A rather than fill in its own addresses over A's."""
    module, reference, x = _caller(kind, frozen_tiny, frozen_stage)
    other = (x * -0.5).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        module(x)  # plan once, outside the race
        expected = {"a": reference(x).clone(), "b": reference(other).clone()}
    a_in_run, b_done = threading.Event(), threading.Event()
    real_run = kernels.run

    def held_run(steps):
        if threading.current_thread().name == "a" and not a_in_run.is_set():
            a_in_run.set()
            b_done.wait(timeout=1.0)  # with the lock held, b cannot finish: a goes on after 1 s
        real_run(steps)

    monkeypatch.setattr(kernels, "run", held_run)
    results = {}

    def call(name, tensor, wait_for=None):
        if wait_for is not None:
            wait_for.wait(timeout=5.0)
        with torch.no_grad():
            results[name] = module(tensor)
        if name == "b":
            b_done.set()

    threads = [
        threading.Thread(target=call, args=("a", x), name="a"),
        threading.Thread(target=call, args=("b", other, a_in_run), name="b"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert a_in_run.is_set()
    assert torch.equal(results["a"], expected["a"]) and torch.equal(results["b"], expected["b"])
