"""Speech-FT stage 1: the encoder is held back for the configured number of training batches."""
from __future__ import annotations

import pytest
import torch

import espnet_peft
from espnet_peft import PeftError

from conftest import make_asr_model


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    speech = torch.randn(2, 8000, generator=g) * 0.1
    text = torch.randint(2, 10, (2, 5), generator=g)
    return speech, torch.tensor([8000, 7000]), text, torch.tensor([5, 4])


def train_steps(model, n, opt):
    model.train()
    for i in range(n):
        loss, _, _ = model(*batch(i))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


@pytest.mark.parametrize("cfg", [
    {"method": "full", "target_modules": ["encoder", "decoder", "ctc"]},
    {"method": "lora", "target_modules": ["*attn.linear_q", "*attn.linear_v"], "rank": 2},
])
def test_encoder_frozen_for_the_first_steps(cfg):
    model = make_asr_model()
    espnet_peft.apply_peft(model, dict(cfg, schedule={"frozen_encoder_steps": 2}))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters()], lr=1e-2, weight_decay=0.0)
    assert model.peft_schedule.frozen
    train_steps(model, 2, opt)
    after2 = {n: p.detach().clone() for n, p in model.named_parameters()}
    changed = {n for n in before if not torch.equal(before[n], after2[n])}
    assert changed and all(not n.startswith("encoder.") for n in changed), sorted(changed)[:5]
    assert any(n.startswith("decoder.") for n in changed)
    # evaluation passes do not count
    model.eval()
    with torch.no_grad():
        model(*batch(9))
    assert int(model.peft_schedule.batches) == 2
    train_steps(model, 1, opt)
    after3 = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert any(n.startswith("encoder.") and not torch.equal(after2[n], after3[n]) for n in after3)
    assert not model.peft_schedule.frozen


def test_schedule_state_round_trip_and_merge():
    cfg = {"method": "lora", "target_modules": ["*attn.linear_q"], "rank": 2, "schedule": {"frozen_encoder_steps": 5}}
    model = make_asr_model()
    espnet_peft.apply_peft(model, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_steps(model, 3, opt)
    state = espnet_peft.peft_state_dict(model)
    assert int(state["peft_schedule.batches"]) == 3
    fresh = make_asr_model()
    espnet_peft.apply_peft(fresh, cfg)
    espnet_peft.load_peft_state_dict(fresh, state)
    assert int(fresh.peft_schedule.batches) == 3 and fresh.peft_schedule.frozen
    espnet_peft.merge_peft(fresh)
    assert not hasattr(fresh, "peft_schedule")
    assert set(fresh.state_dict()) == set(make_asr_model().state_dict())
    assert all(p.requires_grad for p in fresh.parameters())


def test_schedule_errors():
    model = make_asr_model()
    with pytest.raises(PeftError, match="frozen_encoder_steps"):
        espnet_peft.apply_peft(model, {"method": "full", "target_modules": ["encoder"],
                                       "schedule": {"frozen_encoder_steps": -1}})
    with pytest.raises(PeftError, match="unknown schedule key"):
        espnet_peft.apply_peft(model, {"method": "full", "target_modules": ["encoder"], "schedule": {"steps": 3}})
    untouched = make_asr_model()
    with pytest.raises(PeftError, match="adapts nothing under 'encoder'"):
        espnet_peft.apply_peft(untouched, {"method": "lora", "target_modules": ["src_attn.linear_q"],
                                           "rank": 2, "schedule": {"frozen_encoder_steps": 3}})
    assert getattr(untouched, "peft_plan", None) is None and all(p.requires_grad for p in untouched.parameters())
