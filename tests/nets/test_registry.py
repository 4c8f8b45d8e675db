import pytest
import torch

import bidrn
from bidrn.binary import BinaryConvTranspose2d, BinaryLayer, BinaryLinear
from bidrn.errors import BidrnError
from bidrn.nets.bidrn import BiDRNEncoder
from bidrn.nets.pruning import pruned_fraction
from bidrn.nets.resnet import ResNet

SMALL = {"width": 0.125, "body_input": (96, 64), "hand_input": (64, 64), "face_input": (64, 64)}

PAPER_VARIANTS = [
    "hand4whole", "hand4whole-r18", "hand4whole-l1prune",
    "bnn", "xnor", "dorefa", "bireal", "reactnet", "recu", "fda",
    "bidrn", "bidrn-base-lcr", "bidrn-dscr", "bidrn-fur", "bidrn-fdr", "bidrn-relu", "bidrn-prelu",
    "bidrn-no-br", "bidrn-binary-br", "bidrn-body-only", "bidrn-hand-only", "bidrn-face-only",
    "bidrn-fp-boxnet",
]  # fmt: skip


def test_every_paper_variant_is_registered():
    assert set(PAPER_VARIANTS) <= set(bidrn.list_models())


@pytest.mark.parametrize("name", bidrn.list_models())
def test_forward_backward_reaches_every_trainable_parameter(name):
    torch.manual_seed(0)
    model = bidrn.create_model(name, **SMALL).train()
    out = model(torch.rand(2, 3, 192, 128))
    generator = torch.Generator().manual_seed(1)
    loss = 0.0
    for value in out.as_dict().values():
        assert torch.isfinite(value).all()
        if value.requires_grad:
            loss = loss + (value * torch.randn(value.shape, generator=generator)).sum()
    loss.backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{param_name} receives no gradient"
        assert torch.isfinite(param.grad).all(), param_name
    silent = [n for n, p in model.named_parameters() if not p.grad.any()]
    if name == "bidrn-relu":
        # sign(ReLU(x)) = +1 everywhere: binary convs see a constant; a few RPReLU slopes may never
        # see a negative input, but every latent weight still learns through its scale α.
        silent = [n for n in silent if not n.endswith("slope")]
    assert not silent, f"zero gradient in {silent[:5]}"


def test_pruned_weights_are_zero_and_get_zero_gradient():
    torch.manual_seed(0)
    model = bidrn.create_model("hand4whole-l1prune", **SMALL)
    for encoder in (model.body_encoder, model.hand_encoder, model.face_encoder):
        assert pruned_fraction(encoder) == pytest.approx(0.9, abs=0.01)
    assert pruned_fraction(model.boxnet) == 0
    conv = model.body_encoder.stages[0][0].conv2
    assert torch.all(conv.weight[conv.weight_mask == 0] == 0)
    model(torch.rand(1, 3, 192, 128)).shape.sum().backward()
    assert torch.all(conv.weight_orig.grad[conv.weight_mask == 0] == 0)


@pytest.mark.parametrize("name", ["bidrn", "xnor", "recu", "fda", "reactnet"])
def test_binarized_model_is_deterministic_in_eval_mode(name):
    torch.manual_seed(0)
    model = bidrn.create_model(name, **SMALL).eval()
    images = torch.rand(2, 3, 192, 128)
    first, second = model(images).as_dict(), model(images).as_dict()
    for key, value in first.items():
        assert torch.equal(value, second[key]), key


def count(model, kind) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def test_variants_differ_where_the_paper_says():
    bnn = bidrn.create_model("bnn", **SMALL)
    assert isinstance(bnn.body_encoder, ResNet) and count(bnn.boxnet, BinaryLayer) == 0
    assert count(bnn.body_encoder.stem, BinaryLayer) == 0
    assert bnn.body_encoder.stages[1][0].shortcut[0].method.name == "bnn"

    model = bidrn.create_model("bidrn", **SMALL)
    assert isinstance(model.body_encoder, BiDRNEncoder) and model.face_encoder.depth == 18
    assert count(model.boxnet, BinaryConvTranspose2d) == 3 and count(model.boxnet, BinaryLinear) == 3
    heads = (model.body_position, model.body_rotation, model.hand_rotation, model.face_regressor)
    assert all(count(head, BinaryLayer) == 0 for head in heads)

    hand_only = bidrn.create_model("bidrn-hand-only", **SMALL)
    assert isinstance(hand_only.hand_encoder, BiDRNEncoder)
    assert isinstance(hand_only.body_encoder, ResNet) and isinstance(hand_only.face_encoder, ResNet)
    assert count(bidrn.create_model("bidrn-fp-boxnet", **SMALL).boxnet, BinaryLayer) == 0


def test_overrides_set_sizes_and_crop_is_twice_the_body_input():
    model = bidrn.create_model("bidrn", width=0.25, body_input=(128, 96))
    assert model.config.crop_input == (256, 192) and model.body_encoder.out_channels == 512
    assert model(torch.rand(1, 3, 256, 192)).joint_img.shape == (1, 65, 3)


def test_unknown_names_and_overrides_are_user_errors():
    with pytest.raises(BidrnError, match="unknown model 'resnet-1000'"):
        bidrn.create_model("resnet-1000")
    with pytest.raises(BidrnError, match="unknown model override"):
        bidrn.create_model("bidrn", depth=34)
    with pytest.raises(BidrnError, match="at least 32 pixels"):
        bidrn.create_model("bidrn", body_input=(16, 16))
