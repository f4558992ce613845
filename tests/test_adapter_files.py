"""Adapter files that cannot lie (issue 40 item 2): a safetensors adapter signs its tensors; the header
must agree with the config record its tensors carry; a file without a fingerprint table or config
record is refused unless trusted explicitly (with a warning naming the skipped check); non-finite
values are refused wherever an adapter enters (file, bank); export refuses diverged runs and
checkpoints that are not its experiment's."""
from __future__ import annotations

import json
import logging

import pytest
import torch

import espnet_peft
from espnet_peft.adapter_file import HEADER_KEY, load_adapter, save_adapter
from espnet_peft.bank import AdapterBank
from espnet_peft.bin.export_adapter import export

from test_bank import CONFIGS, make_model, trained


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    d = tmp_path_factory.mktemp("adapter")
    base = make_model()
    state, _ = trained(base, CONFIGS["lora"], seed=3)
    save_adapter(d / "a.safetensors", state)
    return d, state


def rewrite(src, dst, tensors=None, header=None):
    """A copy of an adapter file with some tensors or header fields changed (what a careless edit or a
    damaged download does)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as fh:
        meta = json.loads(fh.metadata()[HEADER_KEY])
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    state.update(tensors or {})
    for k, v in (header or {}).items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    save_file(state, str(dst), metadata={HEADER_KEY: json.dumps(meta)})
    return dst


def test_a_flipped_bit_in_a_tensor_is_refused(adapter, tmp_path):
    d, state = adapter
    key = next(k for k, v in state.items() if v.is_floating_point() and k.endswith("lora_A"))
    flipped = state[key].clone()
    flipped.view(torch.int32)[0, 0] ^= 1 << 3  # one bit of one value
    bad = rewrite(d / "a.safetensors", tmp_path / "b.safetensors", tensors={key: flipped})
    with pytest.raises(espnet_peft.PeftError, match="do not match the digest"):
        load_adapter(bad)
    load_adapter(d / "a.safetensors")  # the intact file loads


def test_a_header_that_contradicts_the_record_is_refused(adapter, tmp_path):
    d, _ = adapter
    for field, value in (("method", "dora"), ("config_sha256", "0" * 64), ("config", {"method": "lora", "alpha": 16})):
        bad = rewrite(d / "a.safetensors", tmp_path / f"{field}.safetensors", header={field: value})
        with pytest.raises(espnet_peft.PeftError, match=f"header contradicts the config record.*{field}"):
            load_adapter(bad)


def test_an_unsigned_or_unrecorded_adapter_needs_explicit_trust(adapter, tmp_path, caplog):
    d, state = adapter
    unsigned = rewrite(d / "a.safetensors", tmp_path / "u.safetensors", header={"tensors_sha256": None})
    with pytest.raises(espnet_peft.PeftError, match="does not sign its tensors"):
        load_adapter(unsigned)
    no_fp = {k: v for k, v in state.items() if k != "peft_base_fingerprint"}
    save_adapter(tmp_path / "nofp.safetensors", no_fp)
    with pytest.raises(espnet_peft.PeftError, match="no base-model fingerprint table"):
        load_adapter(tmp_path / "nofp.safetensors")
    no_record = {k: v for k, v in state.items() if k != "peft_adapter_config"}
    torch.save(no_record, tmp_path / "norec.pth")
    with pytest.raises(espnet_peft.PeftError, match="no PEFT config record"):
        load_adapter(tmp_path / "norec.pth")
    with caplog.at_level(logging.WARNING):
        load_adapter(tmp_path / "nofp.safetensors", trust_unverified=True)
    assert "loaded without a base-model fingerprint table" in caplog.text


def test_non_finite_values_are_refused_by_file_and_bank(adapter, tmp_path):
    d, state = adapter
    key = next(k for k, v in state.items() if v.is_floating_point() and k.endswith("lora_B"))
    nan = dict(state, **{key: torch.full_like(state[key], float("nan"))})
    save_adapter(tmp_path / "nan.safetensors", nan)  # signed, recorded, fingerprinted: still refused
    with pytest.raises(espnet_peft.PeftError, match="non-finite values"):
        load_adapter(tmp_path / "nan.safetensors", trust_unverified=True)
    bank = AdapterBank(make_model())
    with pytest.raises(espnet_peft.PeftError, match="non-finite values"):
        bank.add("child", nan)
    assert not bank.adapters


def test_export_refuses_diverged_runs_and_foreign_checkpoints(adapter, tmp_path):
    _, state = adapter
    exp = tmp_path / "exp"
    exp.mkdir()
    torch.save(state, exp / "valid.acc.ave.pth")
    other = tmp_path / "other"
    other.mkdir()
    torch.save(state, other / "valid.acc.best.pth")
    with pytest.raises(espnet_peft.PeftError, match="is not a checkpoint of"):
        export(exp, tmp_path / "x.safetensors", checkpoint="../other/valid.acc.best.pth")
    (exp / "peft_config.yaml").write_text(json.dumps(CONFIGS["ssvd_o"]))  # the experiment trained another config
    with pytest.raises(espnet_peft.PeftError, match="another PEFT config"):
        export(exp, tmp_path / "x.safetensors")
    (exp / "peft_config.yaml").write_text(json.dumps(CONFIGS["lora"]))
    export(exp, tmp_path / "x.safetensors")
    (exp / "diverged.json").write_text("{}")
    with pytest.raises(espnet_peft.PeftError, match="diverged"):
        export(exp, tmp_path / "y.safetensors")
    assert not (tmp_path / "y.safetensors").exists()


def test_a_failed_write_is_one_error_and_leaves_nothing(adapter, tmp_path, monkeypatch):
    """Export on a full disk used to end in a raw SafetensorError; now one PeftError naming the file,
    and neither the file nor a temporary one is left."""
    import safetensors.torch

    _, state = adapter

    def full_disk(tensors, filename, metadata=None):
        open(filename, "wb").write(b"\0" * 10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(espnet_peft.PeftError, match="cannot write the adapter file .*No space left"):
        save_adapter(tmp_path / "x.safetensors", state)
    assert list(tmp_path.iterdir()) == []
