import pytest
import torch

import bidrn
from bidrn.nets.transfer import transfer_weights

SMALL = {"width": 0.125, "body_input": (64, 64), "hand_input": (64, 64), "face_input": (64, 64)}


@pytest.fixture(scope="module")
def full_precision():
    torch.manual_seed(0)
    return bidrn.create_model("hand4whole", **SMALL).state_dict()


def test_bnn_style_baselines_take_every_tensor(full_precision):
    target = bidrn.create_model("bnn", **SMALL)
    state, unused = transfer_weights(full_precision, target)
    assert unused == [] and set(state) == set(target.state_dict())


def test_bidrn_branches_are_the_full_precision_conv_cut_along_the_right_axis(full_precision):
    target = bidrn.create_model("bidrn", **SMALL)
    state, unused = transfer_weights(full_precision, target)
    assert unused == []  # every full-precision tensor finds a place
    block = "body_encoder.stages.1.0"  # stage transition: fusion down (x2), down scale, fusion up (x4)
    conv1, conv3 = full_precision[f"{block}.conv1.weight"], full_precision[f"{block}.conv3.weight"]
    down = [state[f"{block}.units.0.convs.{i}.weight"] for i in range(2)]
    assert torch.equal(torch.cat(down, dim=1), conv1)  # groups of input channels, summed (Eq. 10)
    up = [state[f"{block}.units.2.convs.{i}.weight"] for i in range(4)]
    assert torch.equal(torch.cat(up, dim=0), conv3)  # groups of output channels, concatenated (Eq. 9)
    assert torch.equal(state[f"{block}.units.1.convs.0.weight"], full_precision[f"{block}.conv2.weight"])
    assert torch.equal(state[f"{block}.units.2.bn.running_var"], full_precision[f"{block}.bn3.running_var"])
    assert torch.equal(
        state[f"{block}.block_residual.projection.0.weight"], full_precision[f"{block}.shortcut.0.weight"]
    )
    face = "face_encoder.stages.1.0"  # BasicBlock stride-2 widening: down sample (x2) splits outputs
    sample = [state[f"{face}.units.0.convs.{i}.weight"] for i in range(2)]
    assert torch.equal(torch.cat(sample, dim=0), full_precision[f"{face}.conv1.weight"])
    assert torch.equal(
        state["boxnet.upsampling.1.deconv.weight"], full_precision["boxnet.upsampling.1.0.weight"]
    )
    assert torch.equal(state["boxnet.size_heads.2.out.bias"], full_precision["boxnet.size_heads.2.2.bias"])
    missing = set(target.state_dict()) - set(state)
    assert missing and all(("rprelu" in key or "projection" in key) for key in missing)


def test_an_ablation_without_block_residual_leaves_the_shortcuts_unused(full_precision):
    _, unused = transfer_weights(full_precision, bidrn.create_model("bidrn-no-br", **SMALL))
    assert unused and all(".shortcut." in key for key in unused)
