"""The adapter bank (issue 29 item 1): several adapters of any layer method on one frozen model,
switched without reloading; unmerged outputs equal each adapter's own wrapped model, ``base`` is the
frozen model bit for bit, merged mode restores the base weights exactly, a foreign adapter is refused."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import espnet_peft
from espnet_peft.bank import AdapterBank

from conftest import ROOT, randomize_trainables

CONFIGS = {
    "lora": {"method": "lora", "target_modules": ["0", "2"], "rank": 2, "alpha": 4},
    "ssvd_o": {"method": "ssvd_o", "target_modules": ["0", "2"], "k_in": 3, "k_out": 2, "svd": "full"},
    "dora": {"method": "dora", "target_modules": ["2"], "rank": 2},
}


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16)).eval()


def trained(base, cfg, seed):
    """An adapter trained on ``base``: its state and its own wrapped model (the reference)."""
    model = copy.deepcopy(base)
    espnet_peft.apply_peft(model, cfg)
    randomize_trainables(model, scale=0.1, seed=seed)
    return espnet_peft.peft_state_dict(model), model.eval()


@torch.no_grad()
def test_each_adapter_equals_its_own_model_and_base_is_the_frozen_model():
    base = make_model()
    x = torch.randn(5, 16)
    want_base = base(x).clone()
    refs = {n: trained(base, c, seed=i + 1) for i, (n, c) in enumerate(CONFIGS.items())}
    original = {k: v.clone() for k, v in base.state_dict().items()}
    bank = AdapterBank(base)
    for n, (state, _) in refs.items():
        bank.add(n, state)
    assert set(base[2].adapters) == {"lora", "ssvd_o", "dora"}  # three methods on one module
    for sequence in (["lora", "dora", None, "ssvd_o", "lora"], ["base", "ssvd_o"]):
        for n in sequence:
            bank.activate(n)
            got = base(x)
            if n in (None, "base"):
                assert torch.equal(got, want_base)
            else:
                assert torch.allclose(got, refs[n][1](x), atol=1e-6), n
    # merged mode: the same outputs at the base model's cost; the base weights come back bit for bit
    for n in ("lora", "ssvd_o", "dora", "lora"):
        bank.merge(n)
        assert bank.merged == n and torch.allclose(base(x), refs[n][1](x), atol=1e-5), n
        assert bank.memory()["kept_for_merge"] > 0
    bank.merge(None)
    assert torch.equal(base(x), want_base)
    now = {k: v for k, v in base.state_dict().items() if not k.split(".")[1:2] == ["adapters"]}
    for k, v in original.items():
        key = k.replace("0.", "0.base.", 1) if k.startswith("0.") else k.replace("2.", "2.base.", 1)
        assert torch.equal(now[key], v), k
    mem = bank.memory()
    assert mem["base"] == sum(p.numel() for p in make_model().parameters())
    assert mem["adapter:lora"] == refs["lora"][1].peft_plan.total
    assert mem["adapter:dora"] >= refs["dora"][1].peft_plan.total and mem["kept_for_merge"] == 0


def test_a_foreign_adapter_is_refused_before_the_bank_changes():
    base = make_model(0)
    state, _ = trained(make_model(1), CONFIGS["lora"], seed=3)  # trained on another pretrained model
    bank = AdapterBank(base)
    with pytest.raises(espnet_peft.PeftError, match="'child'.*another base model|differ"):
        bank.add("child", state)
    assert bank.adapters == {} and isinstance(base[0], nn.Linear)
    good, _ = trained(base, CONFIGS["lora"], seed=4)
    bank.add("child", good)
    with pytest.raises(espnet_peft.PeftError, match="already in the bank"):
        bank.add("child", good)
    with pytest.raises(espnet_peft.PeftError, match="no adapter 'accent'"):
        bank.activate("accent")
    no_record = {k: v for k, v in good.items() if k != "peft_adapter_config"}
    with pytest.raises(espnet_peft.PeftError, match="records no PEFT config"):
        bank.add("old", no_record)


def test_an_adapter_without_its_config_record_loads_with_the_experiments_config(tmp_path):
    base = make_model()
    state, ref = trained(base, CONFIGS["lora"], seed=5)
    old = {k: v for k, v in state.items() if k != "peft_adapter_config"}  # written before states carried it
    bank = AdapterBank(base)
    bank.add("old", old, config=CONFIGS["lora"])
    bank.activate("old")
    x = torch.randn(3, 16)
    with torch.no_grad():
        assert torch.allclose(base(x), ref(x), atol=1e-6)


def test_adapter_files_are_safetensors_with_a_header_and_pth_still_loads(tmp_path):
    """Adapter files people can share (issue 29 item 3): tensors as safetensors (nothing unpickled),
    a JSON header (method, config, modules, command, foundation id); .pth adapters load as before."""
    from espnet_peft.adapter_file import load_adapter, save_adapter
    from espnet_peft.bin.export_adapter import export

    base = make_model()
    state, ref = trained(base, CONFIGS["ssvd_o"], seed=9)
    exp = tmp_path / "exp"
    exp.mkdir()
    torch.save(state, exp / "valid.acc.ave.pth")
    (exp / "command.txt").write_text("./run.sh --target child\n")
    (exp / "foundation_id").write_text("ed82c5fe6337fc9e\n")
    header = export(exp, tmp_path / "child.safetensors")
    assert header["method"] == "ssvd_o" and header["command"] == "./run.sh --target child"
    assert header["foundation_id"] == "ed82c5fe6337fc9e" and set(header["modules"]) == {"0", "2"}
    loaded, h2 = load_adapter(tmp_path / "child.safetensors")
    assert h2 == header and set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    pth, h3 = load_adapter(exp / "valid.acc.ave.pth")
    assert h3["method"] == "ssvd_o" and set(pth) == set(state)
    bank = AdapterBank(base)
    bank.add("child", loaded)
    bank.activate("child")
    x = torch.randn(4, 16)
    with torch.no_grad():
        assert torch.allclose(base(x), ref(x), atol=1e-6)
    # an old adapter (no config record) exported with its experiment's frozen config
    import yaml

    old = {k: v for k, v in state.items() if k != "peft_adapter_config"}
    torch.save(old, exp / "valid.acc.ave.pth")
    (exp / "peft_config.yaml").write_text(yaml.safe_dump(CONFIGS["ssvd_o"]))
    with pytest.raises(espnet_peft.PeftError, match="no PEFT config record"):
        export(exp, tmp_path / "old.safetensors")  # cannot be verified: refused unless trusted explicitly
    h4 = export(exp, tmp_path / "old.safetensors", trust_unverified=True)
    assert h4["config"] == CONFIGS["ssvd_o"] and "config_sha256" not in h4
    # not an adapter file: named
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(espnet_peft.PeftError, match="junk.safetensors"):
        load_adapter(tmp_path / "junk.safetensors")
    with pytest.raises(espnet_peft.PeftError, match="an adapter file is .safetensors"):
        save_adapter(tmp_path / "x.bin", state)


def test_the_bank_benchmark_runs_at_a_shape():
    """bench/adapter_bank.py at a benchmark shape with random adapters (the OWSM shapes are the same
    code at other sizes): every row of its table, the bank smaller than one merged model per adapter."""
    import re
    import subprocess
    import sys

    res = subprocess.run([sys.executable, str(ROOT / "bench" / "adapter_bank.py"), "--shape", "tiny", "--peft_config",
                          str(ROOT / "conf" / "peft" / "ssvd_o.yaml"), "--n_adapters", "3", "--repeats", "2",
                          "--seconds", "0.5", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    for row in ("switch, unmerged", "switch, merged", "frozen model", "an adapter unmerged", "an adapter merged",
                "bank of 3 adapters", "3 merged models"):
        assert row in res.stdout, row
    bank = int(re.search(r"bank of 3 adapters \(base \+ adapters\) \| ([\d,]+)", res.stdout).group(1).replace(",", ""))
    merged = int(re.search(r"3 merged models \| ([\d,]+)", res.stdout).group(1).replace(",", ""))
    assert bank < merged
