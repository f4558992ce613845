"""Every wrapper works in the dtype (and on the device) of the layer it wraps: in float64, merged
outputs equal the wrapped outputs to 1e-12 and DoRA's merged row norms equal its magnitude vector
to 1e-12 (a float32 row norm misses by 1e-7)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import espnet_peft
from espnet_peft.methods import DoRALinear

from conftest import ALL_LINEAR_TARGETS, ENCODERS, encode, make_asr_model, randomize_trainables

HYPER = {"lora": {"r": 4}, "dora": {"r": 4}, "pissa": {"r": 4}, "ssvd": {"k": 6}, "ssvd_o": {"k_in": 6, "k_out": 4}}


@pytest.mark.parametrize("method", list(HYPER))
def test_float64_wrapper_merges_exactly(method):
    torch.manual_seed(0)
    layer = espnet_peft.get_method(method).wrap(nn.Linear(40, 24).double(), HYPER[method], {})
    randomize_trainables(layer, scale=0.1)
    assert all(p.dtype == torch.float64 for p in layer.parameters())
    x = torch.randn(7, 40, dtype=torch.float64)
    with torch.no_grad():
        wrapped = layer(x)
        merged = layer.merge()
        assert merged.weight.dtype == torch.float64
        assert (merged(x) - wrapped).abs().max() < 1e-12
    if isinstance(layer, DoRALinear):
        norms = torch.linalg.vector_norm(merged.weight, dim=1)
        assert (norms - layer.lora_magnitude).abs().max() < 1e-12


@pytest.mark.parametrize("method", list(HYPER))
def test_float64_encoder_merges_exactly(method, features):
    enc = ENCODERS["ebf"]().double()
    espnet_peft.apply_peft(enc, {"method": method, "target_modules": ALL_LINEAR_TARGETS["ebf"], "budget": 6000})
    randomize_trainables(enc)
    x, lens = features
    with torch.no_grad():
        wrapped = encode(enc, x.double(), lens)
        espnet_peft.merge_peft(enc)
        assert (encode(enc, x.double(), lens) - wrapped).abs().max() < 1e-12


def test_float64_hff_head_follows_the_encoder():
    model = make_asr_model().double()
    espnet_peft.apply_peft(model, {"method": "hff", "target_modules": ["encoder"], "head_blocks": 1})
    assert {p.dtype for p in model.encoder.hff.parameters()} == {torch.float64}
    randomize_trainables(model)
    speech, lens = torch.randn(2, 16000, dtype=torch.float64) * 0.1, torch.tensor([16000, 12000])
    with torch.no_grad():
        wrapped, _ = model.encode(speech, lens)
        espnet_peft.merge_peft(model)
        merged, _ = model.encode(speech, lens)
    assert wrapped.dtype == torch.float64 and (merged - wrapped).abs().max() < 1e-12
