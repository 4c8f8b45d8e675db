"""Without the compiled extension everything runs on the reference path, after one warning."""

import os
import subprocess
import sys
import warnings

import pytest
import torch

from bidrn.deploy import kernels
from bidrn.deploy.layers import PackedBinaryConv2d


def test_disable_extension_environment_variable_forces_reference_path():
    code = (
        "import torch\n"
        "from bidrn.deploy import kernels, PackedBinaryConv2d\n"
        "layer = PackedBinaryConv2d(5, 3, 3, padding=1)\n"
        "assert layer(torch.randn(1, 5, 4, 4)).shape == (1, 3, 4, 4)\n"
        "print(kernels.extension_available(), kernels.active_isa(), kernels.supported_isas())\n"
    )
    env = {**os.environ, "BIDRN_DISABLE_EXTENSION": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "reference", "('reference',)"]


def test_missing_extension_warns_once_and_still_computes(monkeypatch):
    monkeypatch.delenv("BIDRN_DISABLE_EXTENSION", raising=False)
    monkeypatch.setattr(kernels, "_extension", None)
    monkeypatch.setattr(kernels, "_use_reference", True)
    monkeypatch.setattr(kernels, "_unavailable_reason", "not built (test)")
    monkeypatch.setattr(kernels, "_warned", False)
    layer = PackedBinaryConv2d(5, 3, 3, padding=1)
    with pytest.warns(RuntimeWarning, match="pure-torch"):
        layer(torch.randn(1, 5, 4, 4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer(torch.randn(1, 5, 4, 4))
    assert not caught
    assert kernels.active_isa() == "reference"


def test_unknown_isa_is_a_user_error():
    from bidrn.errors import BidrnError

    with pytest.raises(BidrnError, match="not available"):
        kernels.set_isa("sse1")


def test_isa_environment_variable_selects_the_kernel_set():
    code = "from bidrn.deploy import kernels; print(kernels.active_isa())"
    for requested in kernels.supported_isas():
        env = {**os.environ, "BIDRN_ISA": requested}
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert result.stdout.strip() == requested, result.stderr
