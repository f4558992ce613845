"""Hierarchical feature fusion: identity at init, no gradient into the frozen encoder, the
budget planner counts it, and the exported model rebuilds through ESPnet's class choices."""
from __future__ import annotations

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


def test_adapters_on_upper_blocks_only():
    from espnet_peft.methods import LoRALinear

    model = make_asr_model()
    cfg = {"method": "hff", "target_modules": ["encoder"], "head_blocks": 1,
           "adapters": {"method": "lora", "rank": 2, "target_modules": ["attn.linear_q", "attn.linear_v"],
                        "from_block": 1}}
    plan = espnet_peft.apply_peft(model, cfg)
    names = [r.name for r in plan.rows]
    assert names[0] == "encoder" and set(names[1:]) == {"encoder.encoder.encoders.1.attn.linear_q",
                                                        "encoder.encoder.encoders.1.attn.linear_v"}
    assert isinstance(model.encoder.encoder.encoders[1].attn.linear_q, LoRALinear)
    assert not isinstance(model.encoder.encoder.encoders[0].attn.linear_q, LoRALinear)
    assert plan.total == sum(p.numel() for p in model.parameters() if p.requires_grad)
    inner = model.encoder.encoder
    with torch.no_grad():
        for m in (inner.encoders[1].attn.linear_q, inner.encoders[1].attn.linear_v):
            m.lora_B.normal_()
    model.train()
    loss, _, _ = model(*batch())
    loss.backward()
    lora = inner.encoders[1].attn.linear_q
    assert lora.lora_A.grad is not None and lora.lora_A.grad.abs().sum() > 0  # gradient reaches block 1 ...
    assert all(p.grad is None for p in inner.encoders[0].parameters())      # ... and stops there
    # budget: the head is solved from what the adapters leave
    budgeted = espnet_peft.plan_peft(make_asr_model(), dict(cfg, head_blocks=None, budget=plan.total + 100))
    assert budgeted.total <= plan.total + 100 and len(budgeted.rows) == 3
    # state round trip and merge: the adapters fold into the inner encoder's weights
    state = espnet_peft.peft_state_dict(model)
    fresh = make_asr_model()
    espnet_peft.apply_peft(fresh, cfg)
    espnet_peft.load_peft_state_dict(fresh, state)
    from espnet_peft.bin.merge import _probe

    want = _probe(model)
    assert torch.allclose(_probe(fresh), want, atol=1e-5)
    espnet_peft.merge_peft(fresh)
    assert not any(isinstance(m, LoRALinear) for m in fresh.modules())
    assert torch.allclose(_probe(fresh), want, atol=1e-4)
    with pytest.raises(PeftError, match="explicit sizes"):
        espnet_peft.plan_peft(make_asr_model(), dict(cfg, adapters={"method": "lora", "budget": 100,
                                                                    "target_modules": ["attn.linear_q"]}))
