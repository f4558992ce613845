"""An adapter loads only onto the pretrained model it was trained on: the whole model is
fingerprinted (not only the adapted modules), any change of any tensor is refused, and the error
names the modules that differ (issue 19, item 5)."""
from __future__ import annotations

import pytest
import torch

import espnet_peft
from espnet_peft import PeftError
from espnet_peft.checkpoint import install_adapter_only_checkpointing

from conftest import make_asr_model, randomize_trainables

LORA = {"method": "lora", "target_modules": ["attn.linear_q", "attn.linear_v"], "rank": 2}


def trained_state(cfg):
    model = make_asr_model()
    espnet_peft.apply_peft(model, cfg)
    randomize_trainables(model)
    return espnet_peft.peft_state_dict(model)


def base_with(change):
    """The same pretrained model with one change, wrapped like the trained one."""
    model = make_asr_model()
    with torch.no_grad():
        change(model)
    return model


@pytest.mark.parametrize("change,named", [
    (lambda m: m.encoder.encoders[0].attn.linear_k.weight.add_(0.01), r"encoder\.encoders\.0\.attn\.linear_k"),
    (lambda m: m.ctc.ctc_lo.bias.add_(0.01), r"ctc\.ctc_lo"),
    # noise far below what a float summary can tell from rounding, on an adapted weight
    (lambda m: m.encoder.encoders[1].attn.linear_q.weight.mul_(1 + 1e-6), r"encoder\.encoders\.1\.attn\.linear_q"),
], ids=["unadapted_key_projection", "ctc_head", "noise_on_adapted_weight"])
def test_another_base_model_is_refused_and_named(change, named):
    state = trained_state(LORA)
    other = base_with(change)
    espnet_peft.apply_peft(other, LORA)
    with pytest.raises(PeftError, match=rf"another base model: 1 pretrained tensor\(s\) of 1 module\(s\) differ: {named}"):
        espnet_peft.load_peft_state_dict(other, state)
    same = make_asr_model()
    espnet_peft.apply_peft(same, LORA)
    espnet_peft.load_peft_state_dict(same, state)  # the same base loads


def test_checkpoint_hooks_refuse_another_base_and_keep_averaged_records():
    """The path ESPnet's trainer takes (``load_state_dict`` on a model with the checkpoint hooks),
    including a checkpoint averaged over epochs (float64 records survive the averaging)."""
    model = make_asr_model()
    espnet_peft.apply_peft(model, LORA)
    install_adapter_only_checkpointing(model)
    state = model.state_dict()
    averaged = {k: (v + v + v) / 3 if v.is_floating_point() else v for k, v in state.items()}
    same = make_asr_model()
    espnet_peft.apply_peft(same, LORA)
    install_adapter_only_checkpointing(same)
    same.load_state_dict(averaged, strict=True)
    other = base_with(lambda m: m.decoder.output_layer.weight.add_(1e-3))
    espnet_peft.apply_peft(other, LORA)
    install_adapter_only_checkpointing(other)
    with pytest.raises(RuntimeError, match=r"another base model.*decoder\.output_layer"):
        other.load_state_dict(state, strict=True)


def test_subspace_refusal_names_the_module():
    """Without a base record (a state made by hand), SSVD-O still refuses another singular basis,
    and says in which module."""
    cfg = {"method": "ssvd_o", "target_modules": ["attn.linear_q"], "k_in": 3, "k_out": 2}
    state = {k: v for k, v in trained_state(cfg).items() if not k.endswith("peft_base_fingerprint")}
    other = make_asr_model(seed=5)
    espnet_peft.apply_peft(other, cfg)
    with pytest.raises(PeftError, match=r"^encoder\.encoders\.0\.attn\.linear_q: the adapter was trained on another "
                                        r"singular basis"):
        espnet_peft.load_peft_state_dict(other, state)


def test_record_covers_every_tensor_of_the_pretrained_model():
    """One small float64 table in the state: a row per tensor of the pretrained model."""
    model = make_asr_model()
    keys = set(model.state_dict())
    plan = espnet_peft.apply_peft(model, LORA)
    assert set(plan.fingerprints) == keys
    state = espnet_peft.peft_state_dict(model)
    (record,) = [k for k in state if k.endswith("peft_base_fingerprint")]
    assert state[record].dtype == torch.float64 and state[record].shape[0] == len(keys)
    # a model with one tensor more (or fewer) is another base model too, and it is named
    bigger = make_asr_model()
    bigger.encoder.register_buffer("extra", torch.zeros(3))
    espnet_peft.apply_peft(bigger, LORA)
    with pytest.raises(PeftError, match=r"another base model: this model has 1 tensor\(s\) it did not, "
                                        r"e.g. \['encoder.extra'\]"):
        espnet_peft.load_peft_state_dict(bigger, state)
