"""Hierarchical feature fusion: identity at init, no gradient into the frozen encoder, the
budget planner counts it, and the exported model rebuilds through ESPnet's class choices."""
from __future__ import annotations

import argparse

import pytest
import torch

import espnet_peft
from espnet_peft import PeftError
from espnet_peft.methods.hff import HFFEncoder, register_with_espnet

from conftest import make_asr_model
from test_schedule import batch


def test_identity_at_init_and_plan_count():
    model = make_asr_model()
    speech, lens, _, _ = batch()
    with torch.no_grad():
        ref, _ = model.encode(speech, lens)
    plan = espnet_peft.apply_peft(model, {"method": "hff", "target_modules": ["encoder"], "head_blocks": 1,
                                          "groups": 2})
    assert isinstance(model.encoder, HFFEncoder)
    assert plan.total == sum(p.numel() for p in model.parameters() if p.requires_grad)
    with torch.no_grad():
        out, _ = model.encode(speech, lens)
    assert torch.allclose(out, ref, atol=1e-6)


def test_no_gradient_reaches_the_frozen_encoder():
    model = make_asr_model()
    espnet_peft.apply_peft(model, {"method": "hff", "target_modules": ["encoder"], "head_blocks": 1})
    inner = model.encoder.encoder
    for p in inner.parameters():  # even if someone unfroze it, the no-grad forward keeps it out
        p.requires_grad_(True)
    model.train()
    loss, _, _ = model(*batch())
    loss.backward()
    assert all(p.grad is None for p in inner.parameters())
    head = [p for p in model.encoder.hff.parameters()]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head)


def test_budget_solves_head_blocks():
    model = make_asr_model()
    d = model.encoder.output_size()
    plan1 = espnet_peft.plan_peft(model, {"method": "hff", "target_modules": ["encoder"], "head_blocks": 1})
    plan = espnet_peft.plan_peft(model, {"method": "hff", "target_modules": ["encoder"],
                                         "budget": plan1.total * 2 + 10})
    assert plan.rows[0].hyper["head_blocks"] >= 2 and plan.total <= plan1.total * 2 + 10
    with pytest.raises(PeftError, match="too small"):
        espnet_peft.plan_peft(model, {"method": "hff", "target_modules": ["encoder"], "budget": 10})
    with pytest.raises(PeftError, match="fuse_blocks"):
        espnet_peft.apply_peft(make_asr_model(), {"method": "hff", "target_modules": ["encoder"], "head_blocks": 1,
                                                  "fuse_blocks": [0, 7]})
    assert d == 32


def test_state_round_trip_and_stock_rebuild():
    from espnet2.tasks.asr import ASRTask

    from espnet_peft.bin.merge import _probe

    cfg = {"method": "hff", "target_modules": ["encoder"], "head_blocks": 1}
    model = make_asr_model()
    plan = espnet_peft.apply_peft(model, cfg)
    with torch.no_grad():
        for p in model.encoder.hff.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    want = _probe(model)
    fresh = make_asr_model()
    espnet_peft.apply_peft(fresh, cfg)
    espnet_peft.load_peft_state_dict(fresh, espnet_peft.peft_state_dict(model))
    assert torch.allclose(_probe(fresh), want, atol=1e-5)
    # export: the config names the registered encoder, ESPnet's task rebuilds it
    from conftest import TINY_ASR_CONFIG

    exported = espnet_peft.get_method("hff").export_config(dict(TINY_ASR_CONFIG), plan.rows[0], plan.config.options)
    assert exported["encoder"] == "espnet_peft_hff"
    register_with_espnet()
    args = ASRTask.get_parser().parse_args([])
    for k, v in exported.items():
        setattr(args, k, v)
    args.token_list = ["<blank>", "<unk>"] + list("abcdefgh ") + ["<sos/eos>"]
    args.input_size = None
    stock = ASRTask.build_model(args)
    espnet_peft.merge_peft(model)
    stock.load_state_dict(model.state_dict())
    assert torch.allclose(_probe(stock), want, atol=1e-5)
