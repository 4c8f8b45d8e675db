"""Training checkpoints and frozen files: every malformed one is one line naming it, never a silent cast."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from bidrn import deploy
from bidrn.deploy import load_model
from bidrn.engine.checkpoint import FORMAT_TAG as CHECKPOINT_FORMAT
from bidrn.engine.checkpoint import FORMAT_VERSION as CHECKPOINT_VERSION
from bidrn.engine.checkpoint import load_checkpoint, tensor_digest
from bidrn.errors import InputFileError
from tests.fuzz.helpers import assert_cli_error, assert_one_line


# -- training checkpoints --------------------------------------------------------------------------
def tiny_training(tiny) -> tuple[dict, dict[str, torch.Tensor]]:
    """The tiny training checkpoint's JSON document and weights."""
    checkpoint = load_checkpoint(tiny["training"], with_state=False)
    return dict(checkpoint.info), dict(checkpoint.weights)


def write_checkpoint(path: Path, info, tensors: dict[str, torch.Tensor]) -> Path:
    """A current-format checkpoint (one file, ``info`` in the metadata, a valid digest) of anything."""
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "version": str(CHECKPOINT_VERSION),
        "model": "bidrn",
        "info": info if isinstance(info, str) else json.dumps(info),
        "sha256": tensor_digest(tensors),
    }
    save_file(tensors, str(path), metadata=metadata)
    return path


def write_legacy_checkpoint(stem: Path, info, tensors: dict[str, torch.Tensor]) -> Path:
    """A version-1 checkpoint: weights without a digest and the document beside them as ``.json``."""
    save_file(tensors, str(stem) + ".safetensors", metadata={"format": CHECKPOINT_FORMAT, "model": "bidrn"})
    Path(str(stem) + ".json").write_text(info if isinstance(info, str) else json.dumps(info))
    return stem


def first_float(tensors: dict[str, torch.Tensor]) -> str:
    return next(key for key, value in tensors.items() if value.is_floating_point() and value.numel() > 1)


def _json_list(info, tensors):
    return [info], tensors


def _model_number(info, tensors):
    return {**info, "model": 5}, tensors


def _unknown_model(info, tensors):
    return {**info, "model": "no-such-net"}, tensors


def _overrides_list(info, tensors):
    return {**info, "model_overrides": [1, 2]}, tensors


def _unknown_override(info, tensors):
    return {**info, "model_overrides": {**info["model_overrides"], "nope": 1}}, tensors


def _nan_override(info, tensors):
    return '{"model": "bidrn", "model_overrides": {"width": NaN}}', tensors


def _body_model_number(info, tensors):
    return {**info, "body_model": 3}, tensors


def _not_json(info, tensors):
    return "{model: bidrn", tensors


def _float64_weights(info, tensors):
    key = first_float(tensors)
    return info, {**tensors, key: tensors[key].double()}


def _int_weights(info, tensors):
    key = first_float(tensors)
    return info, {**tensors, key: tensors[key].to(torch.int32)}


def _nan_weight(info, tensors):
    key = first_float(tensors)
    broken = tensors[key].clone()
    broken.view(-1)[0] = float("nan")
    return info, {**tensors, key: broken}


def _infinite_statistic(info, tensors):
    key = next(k for k in tensors if k.endswith("running_var"))
    broken = tensors[key].clone()
    broken.view(-1)[-1] = float("inf")
    return info, {**tensors, key: broken}


def _missing_tensor(info, tensors):
    return info, {k: v for k, v in tensors.items() if k != first_float(tensors)}


BAD_TRAINING = {
    "JSON is a list": (_json_list, "must be a JSON object"),
    "model is a number": (_model_number, "'model' must be a string"),
    "unknown model": (_unknown_model, "records a model that cannot be built"),
    "overrides are a list": (_overrides_list, "'model_overrides' must be an object"),
    "unknown override": (_unknown_override, "nope"),
    "NaN override": (_nan_override, "bidrn"),
    "body model is a number": (_body_model_number, "'body_model' must be a path string"),
    "JSON is not JSON": (_not_json, "malformed checkpoint"),
    "float64 weights": (_float64_weights, "torch.float64, the model expects torch.float32"),
    "integer weights": (_int_weights, "torch.int32, the model expects torch.float32"),
    "NaN weight": (_nan_weight, "holds NaN or infinite values"),
    "infinite BatchNorm statistic": (_infinite_statistic, "running_var' holds NaN or infinite values"),
    "missing tensor": (_missing_tensor, "weights do not fit"),
}


@pytest.mark.parametrize("case", BAD_TRAINING)
def test_malformed_training_checkpoints_are_one_line_errors(case, tiny, tmp_path):
    make, fragment = BAD_TRAINING[case]
    path = write_checkpoint(tmp_path / "ckpt.safetensors", *make(*tiny_training(tiny)))
    assert_one_line(lambda: load_model(path, "cpu"), path, fragment, error=InputFileError)


@pytest.mark.parametrize("case", ["JSON is a list", "overrides are a list", "NaN weight", "float64 weights"])
def test_malformed_version_1_checkpoints_are_one_line_errors(case, tiny, tmp_path):
    make, fragment = BAD_TRAINING[case]
    stem = write_legacy_checkpoint(tmp_path / "ckpt", *make(*tiny_training(tiny)))
    assert_one_line(lambda: load_model(stem, "cpu"), stem.name, fragment, error=InputFileError)


def test_tensors_that_do_not_match_their_digest(tiny, tmp_path):
    info, tensors = tiny_training(tiny)
    path = write_checkpoint(tmp_path / "ckpt.safetensors", info, tensors)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    save_file(_nan_weight(info, tensors)[1], str(path), metadata=metadata)  # the old digest
    assert_one_line(lambda: load_model(path, "cpu"), path, "damaged", error=InputFileError)


@pytest.mark.parametrize("cut", [0, 7, 100, -50])
def test_truncated_weights_are_not_ours(cut, tiny, tmp_path):
    weights = write_checkpoint(tmp_path / "ckpt.safetensors", *tiny_training(tiny))
    data = weights.read_bytes()
    weights.write_bytes(data[:cut])
    assert_one_line(
        lambda: load_model(weights, "cpu"), weights, "not a bidrn checkpoint", error=InputFileError
    )


def test_safetensors_header_claiming_a_huge_length(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes((2**62).to_bytes(8, "little") + b"{}")
    assert_one_line(lambda: load_model(path, "cpu"), path, "not a bidrn checkpoint", error=InputFileError)


def test_checkpoint_fifo_folder_and_missing_file(tmp_path):
    os.mkfifo(tmp_path / "fifo.safetensors")
    assert_one_line(
        lambda: load_model(tmp_path / "fifo.safetensors"), "not a regular file", error=InputFileError
    )
    assert_one_line(lambda: load_model(tmp_path), "is a folder", error=InputFileError)
    assert_one_line(lambda: load_model(tmp_path / "none"), "checkpoint not found", error=InputFileError)


def test_nan_weights_through_predict_are_one_line_naming_the_checkpoint(tiny, tmp_path, capsys):
    stem = tmp_path / "ckpt"
    write_checkpoint(tmp_path / "ckpt.safetensors", *_nan_weight(*tiny_training(tiny)))
    image = tmp_path / "a.png"
    Image.new("RGB", (48, 64), (90, 90, 90)).save(image)
    argv = ("predict", image, "--out", tmp_path / "out", "--checkpoint", stem)
    assert_cli_error(capsys, argv, stem, "holds NaN or infinite values")
    assert not any((tmp_path / "out").glob("*.obj"))


# -- frozen files ------------------------------------------------------------------------------------
def copy_frozen(tiny, path: Path, metadata_changes=None, tensor_changes=None) -> Path:
    """The tiny frozen file with some metadata entries replaced (None deletes) and some tensors changed."""
    with safe_open(str(tiny["frozen"]), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    for key, value in (metadata_changes or {}).items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    for key_filter, change in (tensor_changes or {}).items():
        key = next(k for k in tensors if key_filter(k, tensors[k]))
        tensors[key] = change(tensors[key])
    save_file(tensors, str(path), metadata=metadata)
    return path


def _is_multiplier(key, value):
    return key.endswith("multiplier")


def _is_packed(key, value):
    return key.endswith("weight_bits")


def _is_float_weight(key, value):
    return value.dtype == torch.float32 and value.ndim == 4


def _with_nan(tensor):
    tensor = tensor.clone()
    tensor.view(-1)[0] = float("nan")
    return tensor


BAD_FROZEN = {
    "architecture is a list": ({"architecture": "[1, 2]"}, None, "'architecture' must be an object"),
    "architecture name is a number": (
        {"architecture": '{"name": 3}'},
        None,
        "'architecture' must be an object",
    ),
    "overrides are a list": (
        {"architecture": '{"name": "bidrn", "overrides": [1]}'},
        None,
        "'architecture.overrides' must be an object",
    ),
    "unknown architecture": ({"architecture": '{"name": "no-such-net"}'}, None, "cannot be built"),
    "unknown override": (
        {"architecture": '{"name": "bidrn", "overrides": {"nope": 1}}'},
        None,
        "nope",
    ),
    "no architecture": ({"architecture": None}, None, "no architecture recorded"),
    "architecture not JSON": ({"architecture": "{name"}, None, "malformed frozen-model metadata"),
    "layout is a list": ({"layout": "[]"}, None, "frozen"),
    "layout lacks its tables": ({"layout": "{}"}, None, "frozen"),
    "layout not JSON": ({"layout": "nope"}, None, "malformed frozen-model metadata"),
    "unknown version": ({"version": "99"}, None, "unsupported frozen format version"),
    "foreign format": ({"format": "pt"}, None, "not a bidrn checkpoint"),
    "NaN multiplier": (None, {_is_multiplier: _with_nan}, "holds NaN or infinite values"),
}


@pytest.mark.parametrize("case", BAD_FROZEN)
def test_malformed_frozen_files_are_one_line_errors(case, tiny, tmp_path):
    metadata, tensors, fragment = BAD_FROZEN[case]
    path = copy_frozen(tiny, tmp_path / "model.bidrn.safetensors", metadata, tensors)
    assert_one_line(lambda: load_model(path, "cpu"), path, fragment, error=InputFileError)


def test_frozen_packed_words_of_the_wrong_dtype_are_refused(tiny, tmp_path):
    path = copy_frozen(
        tiny, tmp_path / "m.bidrn.safetensors", None, {_is_packed: lambda t: t.to(torch.int32)}
    )
    assert_one_line(lambda: load_model(path, "cpu"), path, "int32", error=InputFileError)


def test_frozen_float64_tensors_in_a_float32_file_are_refused(tiny, tmp_path):
    path = copy_frozen(tiny, tmp_path / "m.bidrn.safetensors", None, {_is_float_weight: lambda t: t.double()})
    assert_one_line(lambda: load_model(path, "cpu"), path, "float64", error=InputFileError)


@pytest.fixture(scope="module")
def frozen_model(tiny):
    return load_model(tiny["frozen"], "cpu", dense_precision="fp32")[0]  # exact: these tests save it


def test_fp16_frozen_file_loads_and_predicts_like_the_float32_one(tiny, frozen_model, tmp_path):
    model = frozen_model
    half = deploy.save(
        model, tmp_path / "half.bidrn.safetensors", fp16=True, architecture=_architecture(tiny)
    )
    loaded, info = load_model(half, "cpu")
    crops = torch.rand(1, 3, *model.config.crop_input, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference, halved = model(crops), loaded(crops)
    assert info.file_format == "frozen"
    torch.testing.assert_close(halved.cam_trans, reference.cam_trans, atol=5e-2, rtol=5e-2)


def _architecture(tiny) -> dict:
    with safe_open(str(tiny["frozen"]), framework="pt") as handle:
        return json.loads(handle.metadata()["architecture"])


# -- problems whose fix lives in another module (the owners fix them; the tests say what is expected) --
def test_export_of_a_checkpoint_whose_json_is_a_list(tiny, tmp_path, capsys):
    path = write_checkpoint(tmp_path / "c.safetensors", *_json_list(*tiny_training(tiny)))
    assert_cli_error(
        capsys, ("export", "--checkpoint", path, "--out", tmp_path / "m.bidrn.safetensors"), path
    )


def test_export_refuses_float64_weights(tiny, tmp_path, capsys):
    path = write_checkpoint(tmp_path / "c.safetensors", *_float64_weights(*tiny_training(tiny)))
    argv = ("export", "--checkpoint", path, "--out", tmp_path / "m.bidrn.safetensors")
    assert_cli_error(capsys, argv, path, "float64")


def test_export_of_an_already_frozen_file_says_so(tiny, tmp_path, capsys):
    argv = ("export", "--checkpoint", tiny["frozen"], "--out", tmp_path / "again.bidrn.safetensors")
    assert_cli_error(capsys, argv, "already frozen")


def test_roi_align_survives_non_finite_boxes():
    from bidrn.nets.roi import roi_align

    boxes = torch.tensor([[float("nan")] * 4, [0.0, 0.0, 15.0, float("inf")], [2.0, 2.0, 10.0, 10.0]])
    images = torch.rand(3, 3, 16, 16)
    crops = roi_align(images, boxes, (4, 4))
    assert crops.shape == (3, 3, 4, 4)
    torch.testing.assert_close(crops[2:], roi_align(images[2:], boxes[2:], (4, 4)))  # finite box unharmed


def test_checkpoints_are_readable_by_the_group(tmp_path):
    from bidrn.engine.checkpoint import save_checkpoint

    previous = os.umask(0o022)
    try:
        weights = save_checkpoint(tmp_path / "c", torch.nn.Linear(2, 2), {"model": "x"})
    finally:
        os.umask(previous)
    assert oct(weights.stat().st_mode & 0o777) == "0o644"


def test_frozen_files_are_readable_by_the_group(frozen_model, tmp_path):
    previous = os.umask(0o022)
    try:
        frozen = deploy.save(frozen_model, tmp_path / "f.bidrn.safetensors", architecture={"name": "bidrn"})
    finally:
        os.umask(previous)
    assert oct(frozen.stat().st_mode & 0o777) == "0o644"
