"""Real 1-bit inference: freeze binary layers to packed bits and run them with XOR-popcount kernels.

::

    from bidrn import deploy
    frozen = deploy.freeze(model, example_inputs=(images,))  # packed layers, BatchNorms folded
    deploy.save(frozen, "model.bidrn.safetensors", fp16=True, architecture={"name": "bidrn"})
    frozen = deploy.load("model.bidrn.safetensors")           # rebuilt with bidrn.create_model
    model, info = deploy.load_model(path)                     # any frozen file or training checkpoint

Packed layers compute exactly what the simulated binary layers compute in eval mode (the same ±1
integers, then one multiply and add per output channel). They run on the compiled kernels
(:mod:`bidrn.deploy.kernels`: AVX-512, AVX2, POPCNT, NEON or portable C++, chosen at run time) and
fall back to a pure-torch reference path when the extension is missing or disabled
(``BIDRN_DISABLE_EXTENSION=1``). See docs/deployment.md.
"""

from bidrn.deploy.freeze import freeze, frozen_layout, pack_layer
from bidrn.deploy.kernels import active_isa, extension_available, set_isa, supported_isas
from bidrn.deploy.layers import (
    PackedBinaryConv2d,
    PackedBinaryConvTranspose2d,
    PackedBinaryLayer,
    PackedBinaryLinear,
)
from bidrn.deploy.loading import FreezeError, ModelInfo, is_frozen_file, load_model
from bidrn.deploy.serialization import load, read_metadata, save

__all__ = [
    "FreezeError",
    "ModelInfo",
    "PackedBinaryConv2d",
    "PackedBinaryConvTranspose2d",
    "PackedBinaryLayer",
    "PackedBinaryLinear",
    "active_isa",
    "extension_available",
    "freeze",
    "frozen_layout",
    "is_frozen_file",
    "load",
    "load_model",
    "pack_layer",
    "read_metadata",
    "save",
    "set_isa",
    "supported_isas",
]
