import torch

from bidrn.deploy.packing import (
    kernel_weights,
    pack_bits,
    pack_weight,
    unpack_bits,
    unpack_weight,
    words_for,
)


def test_bit_order_and_sign_of_zero():
    x = torch.zeros(1, 130)
    x[0, 0] = -1.0
    x[0, 63] = -0.5
    x[0, 64] = -2.0
    x[0, 129] = -1e-30
    x[0, 5] = -0.0  # sign(-0.0) = +1: bit stays 0
    words = pack_bits(x < 0)
    assert words.shape == (1, 3)
    assert words[0, 0].item() == 1 - 2**63  # bits 0 and 63 (int64 two's complement)
    assert words[0, 1].item() == 1
    assert words[0, 2].item() == 2
    assert words_for(130) == 3


def test_pack_unpack_round_trip():
    generator = torch.Generator().manual_seed(0)
    for channels in (1, 3, 63, 64, 65, 200):
        negative = torch.rand(4, 5, channels, generator=generator) < 0.5
        assert torch.equal(unpack_bits(pack_bits(negative), channels), negative)


def test_weight_round_trip_and_tap_sums():
    generator = torch.Generator().manual_seed(1)
    weight = torch.where(torch.rand(40, 70, 3, 2, generator=generator) < 0.3, -1.0, 1.0)
    bits = pack_weight(weight)
    assert bits.shape == (40, 3, 2, 2)
    assert torch.equal(unpack_weight(bits, 70), weight)
    layout = kernel_weights(bits, 70)
    assert layout.out_channels_padded == 64
    assert layout.weights.shape == (8, 6, 2, 8)
    # Output channel 11 sits in block 1, lane 3.
    assert torch.equal(layout.weights[1, :, :, 3], bits[11].reshape(6, 2))
    expected_sums = weight.sum(dim=1).reshape(40, 6).t().to(torch.int32)
    assert torch.equal(layout.tap_sums[:, :40], expected_sums)
    assert not layout.tap_sums[:, 40:].any()


def test_popcount_counts_every_bit_including_the_sign_bit():
    from bidrn.deploy.packing import popcount

    generator = torch.Generator().manual_seed(2)
    negative = torch.rand(7, 3, 130, generator=generator) < 0.5  # three words, the last one partial
    negative[0, 0, :64] = True  # all 64 bits: the word is -1
    words = pack_bits(negative)
    assert words[0, 0, 0].item() == -1
    counts = popcount(words)
    assert counts.shape == words.shape and counts[0, 0, 0].item() == 64
    assert torch.equal(counts.sum(dim=-1), negative.sum(dim=-1))
    edges = torch.tensor([0, 1, -(2**63), 2**63 - 1, -2])  # none, bit 0, bit 63, all but 63, all but 0
    assert popcount(edges).tolist() == [0, 1, 1, 63, 63]
    assert popcount(torch.zeros(2, 0, 3, dtype=torch.int64)).shape == (2, 0, 3)  # a sub-kernel without taps
