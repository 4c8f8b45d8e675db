"""bidrn.deploy.load_model: one loader for frozen files and training checkpoints."""

import subprocess
import sys

import pytest
import torch
from torch.nn.modules.module import register_module_parameter_registration_hook

import bidrn
from bidrn.binary import BinaryLayer
from bidrn.deploy import PackedBinaryLayer, freeze, is_frozen_file, load, load_model, save
from bidrn.engine.checkpoint import save_checkpoint
from bidrn.errors import BidrnError, InputFileError

TINY = {"width": 0.125, "body_input": [64, 48], "hand_input": [64, 64], "face_input": [64, 64]}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny BiDRN as a training checkpoint and as a frozen file, and the model itself."""
    folder = tmp_path_factory.mktemp("loading")
    torch.manual_seed(0)
    model = bidrn.create_model("bidrn", **TINY).eval()
    stem = folder / "last"
    save_checkpoint(stem, model, {"model": "bidrn", "model_overrides": TINY})
    frozen = freeze(model, example_inputs=(torch.rand(1, 3, 128, 96),))
    frozen_file = save(
        frozen, folder / "tiny.bidrn.safetensors", architecture={"name": "bidrn", "overrides": TINY}
    )
    return model, stem, frozen_file


def test_loading_a_frozen_file_never_materialises_latent_weights(files):
    _, _, frozen_file = files
    devices = []

    def record(module, _name, parameter):
        if isinstance(module, BinaryLayer):
            devices.append(parameter.device.type)

    handle = register_module_parameter_registration_hook(record)
    try:
        model = load(frozen_file)
    finally:
        handle.remove()
    assert devices and set(devices) == {"meta"}  # the skeleton's binary layers never got memory
    tensors = [*model.parameters(), *model.buffers()]
    assert all(t.device.type == "cpu" for t in tensors)
    assert not any(isinstance(module, BinaryLayer) for module in model.modules())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_frozen_models_do_not_keep_their_file_mapped(files):
    """safetensors' safe_open maps the whole file and its tensors keep the mapping (and every page
    read) alive; loading reads each tensor into memory of its own instead (docs/deployment.md)."""
    _, _, frozen_file = files
    model, _ = load_model(frozen_file)
    with open("/proc/self/maps") as maps:
        assert str(frozen_file.resolve()) not in maps.read()
    assert sum(t.numel() for t in model.state_dict().values()) > 0


def test_loading_a_frozen_file_runs_no_initialisation(files):
    """Random init on the meta device runs torch's reference decompositions, which import
    torch._dynamo and sympy (+80 MB resident, seconds): the skeleton must skip it. Checked in a
    fresh interpreter, since other tests may have imported them already."""
    _, _, frozen_file = files
    script = (
        "import sys, torch\n"
        "from bidrn.deploy import load_model\n"
        f"load_model({str(frozen_file)!r})\n"
        "print(sorted(m for m in ('sympy', 'torch._dynamo') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_load_model_runs_checkpoints_as_asked_and_frozen_files_frozen(files):
    model, stem, frozen_file = files
    images = torch.rand(1, 3, 128, 96, generator=torch.Generator().manual_seed(1))
    simulated, info = load_model(stem, frozen=False)
    assert info.file_format == "training" and not info.frozen and info.name == "bidrn"
    assert any(isinstance(module, BinaryLayer) for module in simulated.modules())
    packed, info = load_model(stem, frozen=True)
    assert info.frozen and any(isinstance(module, PackedBinaryLayer) for module in packed.modules())
    loaded, info = load_model(frozen_file)
    assert info.file_format == "frozen" and info.frozen and info.overrides == TINY
    assert is_frozen_file(frozen_file) and not is_frozen_file(stem)
    with torch.no_grad():
        expected = model(images).body_pose
        torch.testing.assert_close(simulated(images).body_pose, expected)
        torch.testing.assert_close(loaded(images).body_pose, packed(images).body_pose)
    with pytest.raises(InputFileError, match="runs only frozen"):
        load_model(frozen_file, frozen=False)


def test_load_model_attaches_the_body_model(files):
    from bidrn.body import load_body_model

    _, _, frozen_file = files
    model, _ = load_model(frozen_file, body_model=load_body_model())
    with torch.no_grad():
        assert model(torch.rand(1, 3, 128, 96)).mesh_cam is not None


def test_load_model_refuses_files_that_are_not_ours(tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(InputFileError, match="not a bidrn checkpoint"):
        load_model(garbage)
    with pytest.raises(InputFileError, match="not found"):
        load_model(tmp_path / "missing.bidrn.safetensors")


def test_load_model_sets_the_dense_precision_of_frozen_models(files, monkeypatch):
    from bidrn.deploy import kernels
    from bidrn.deploy.dense import dense_precision

    _, stem, frozen_file = files
    for precision in ("fp32", "bf16"):
        model, _ = load_model(frozen_file, dense_precision=precision)
        assert dense_precision(model) == precision
    monkeypatch.setattr(kernels, "native_int8", lambda: False)
    for native, expected in ((False, "fp32"), (True, "bf16")):
        monkeypatch.setattr(kernels, "native_bf16", lambda native=native: native)
        assert dense_precision(load_model(frozen_file)[0]) == expected
        assert dense_precision(load_model(stem, frozen=True)[0]) == expected
        assert dense_precision(load_model(stem, frozen=False, dense_precision="bf16")[0]) == "fp32"
    # with VNNI auto is int8: loading re-derives which Block Residual projections have bounded inputs
    monkeypatch.setattr(kernels, "native_int8", lambda: True)
    assert dense_precision(load_model(frozen_file)[0]) == "int8"
    assert dense_precision(load_model(stem, frozen=False)[0]) == "fp32"
    with pytest.raises(BidrnError, match="dense precision must be one of"):
        load_model(frozen_file, dense_precision="fp16")
