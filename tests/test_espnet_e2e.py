"""End to end with ESPnet's own trainer and stock inference (issue: PEFT task entry points).

A tiny E-Branchformer CTC/attention model is pretrained on synthetic speech with stock
``espnet2.bin.asr_train``; every method adapts it through ``espnet_peft.bin.asr_train``; the
experiment is merged and decoded with stock ``Speech2Text``; the merged decoding must equal the
wrapped model's decoding."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
import torch

import espnet_peft
from espnet_peft.bin.merge import merge_experiment
from espnet_peft.methods.base import PeftError

from conftest import ALL_LINEAR_TARGETS, ROOT
from espnet_fixtures import data_args, make_data, peft_train, pretrain_asr, write_yaml

TARGETS = ["*attn.linear_q", "*attn.linear_v", "*attn.linear_out", "feed_forward*.w_1", "feed_forward*.w_2",
           "channel_proj1.0", "channel_proj2", "merge_proj"]
PEFT = {
    "lora": {"method": "lora", "target_modules": TARGETS, "budget": 6000},
    "dora": {"method": "dora", "target_modules": TARGETS, "budget": 6000},
    "pissa": {"method": "pissa", "target_modules": TARGETS, "budget": 6000, "svd": "randomized"},
    "ssvd": {"method": "ssvd", "target_modules": TARGETS, "budget": 6000},
    "ssvd_o": {"method": "ssvd_o", "target_modules": TARGETS, "budget": 6000, "allocation": {"inner": 0.5}},
    "full": {"method": "full", "target_modules": ["encoder"]},
    "hff": {"method": "hff", "target_modules": ["encoder"], "head_blocks": 1, "head_units": 32},
    "speechft": {"method": "full", "target_modules": ["encoder", "decoder"], "schedule": {"frozen_encoder_steps": 2}},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = make_data(root)
    pre = pretrain_asr(root, data)
    return {"root": root, "data": data, "pre": pre}


def _decode(train_config, model_file, wavs, peft: bool, monkeypatch=None):
    import espnet2.bin.asr_inference as inf

    if peft:
        from espnet_peft.tasks.asr import PeftASRTask

        monkeypatch.setattr(inf, "ASRTask", PeftASRTask)
    s2t = inf.Speech2Text(asr_train_config=str(train_config), asr_model_file=str(model_file), device="cpu",
                          beam_size=3, ctc_weight=0.3, nbest=1, maxlenratio=0.0)
    out = []
    for w in wavs:
        speech, _ = soundfile.read(w, dtype="float32")
        text, token, token_int, hyp = s2t(speech)[0]
        out.append((token_int, float(hyp.score)))
    if peft:
        monkeypatch.undo()
    return out


@pytest.mark.parametrize("method", list(PEFT))
def test_adapt_merge_decode_every_method(world, method, monkeypatch):
    root, data, pre = world["root"], world["data"], world["pre"]
    exp = peft_train(root, data, pre, PEFT[method], method)
    ckpt = exp / "valid.loss.best.pth"
    assert ckpt.exists() and (exp / "peft_plan.txt").exists()
    plan = json.loads((exp / "peft_plan.json").read_text())
    state = torch.load(ckpt, map_location="cpu")
    # the checkpoint holds the adapter state only, and exactly the planned parameter count
    n_trainable = sum(v.numel() for k, v in state.items() if not k.endswith("peft_base_fingerprint")
                      and "pissa_" not in k and "basis_check" not in k and "num_batches" not in k
                      and "running_" not in k and not k.startswith("peft_schedule."))
    assert n_trainable == plan["total"]
    size_adapter = os.path.getsize(ckpt)
    size_model = os.path.getsize(pre / "valid.loss.best.pth")
    ratio = size_adapter / size_model
    print(f"\n[{method}] adapter checkpoint {size_adapter:,} B = {ratio:.1%} of the pretrained model "
          f"({size_model:,} B); trainable {plan['total']:,} = {plan['fraction']:.2%}")
    if method not in ("full", "speechft"):
        assert ratio < 0.35
    # merge into a stock model directory and decode with stock ESPnet
    merged = exp / "merged"
    info = merge_experiment(exp / "config.yaml", ckpt, merged)
    assert info["verify_max_abs_diff"] < 1e-4
    cfg_text = (merged / "config.yaml").read_text()
    assert "peft_config" not in cfg_text and "pretrained_model" not in cfg_text
    wavs = [line.split()[1] for line in (data / "source_test" / "wav.scp").read_text().splitlines()]
    got = _decode(merged / "config.yaml", merged / "model.pth", wavs, peft=False)
    want = _decode(exp / "config.yaml", ckpt, wavs, peft=True, monkeypatch=monkeypatch)
    for (tok_m, score_m), (tok_w, score_w) in zip(got, want):
        assert tok_m == tok_w
        assert score_m == pytest.approx(score_w, abs=1e-3)


def test_merged_model_needs_no_espnet_peft(world):
    """Stock espnet2.bin.asr_inference in a fresh interpreter decodes a merged model, and
    espnet_peft is never imported."""
    root, data, pre = world["root"], world["data"], world["pre"]
    exp = peft_train(root, data, pre, PEFT["ssvd_o"], "stock_check")
    merged = exp / "merged"
    merge_experiment(exp / "config.yaml", exp / "valid.loss.best.pth", merged)
    out = root / "stock_decode"
    flag = root / "imported.txt"
    script = root / "stock_decode.py"
    script.write_text(
        "import runpy, sys\n"
        "flag = sys.argv.pop()\n"
        "try:\n"
        "    runpy.run_module('espnet2.bin.asr_inference', run_name='__main__', alter_sys=True)\n"
        "finally:\n"
        "    open(flag, 'w').write(str(any(m.startswith('espnet_peft') for m in sys.modules)))\n")
    cmd = [sys.executable, str(script), "--ngpu", "0", "--batch_size", "1", "--beam_size", "2",
           "--ctc_weight", "0.3", "--data_path_and_name_and_type", f"{data / 'source_test' / 'wav.scp'},speech,sound",
           "--asr_train_config", str(merged / "config.yaml"), "--asr_model_file", str(merged / "model.pth"),
           "--output_dir", str(out), str(flag)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=str(root))
    assert res.returncode == 0, res.stderr[-3000:]
    assert flag.read_text() == "False"
    hyps = (out / "1best_recog" / "text").read_text().splitlines()
    assert len(hyps) == 4


def test_resume_equals_uninterrupted(world):
    root, data, pre = world["root"], world["data"], world["pre"]
    cfg = PEFT["ssvd_o"]
    straight = peft_train(root, data, pre, cfg, "straight", max_epoch=2)
    resumed = peft_train(root, data, pre, cfg, "resumed", max_epoch=1)
    assert not (resumed / "2epoch.pth").exists()
    ckpt = torch.load(resumed / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert set(ckpt["model"]) == set(torch.load(resumed / "1epoch.pth", map_location="cpu"))
    resumed = peft_train(root, data, pre, cfg, "resumed", max_epoch=2)  # --resume true continues
    a = torch.load(straight / "2epoch.pth", map_location="cpu")
    b = torch.load(resumed / "2epoch.pth", map_location="cpu")
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_clear_errors(world, tmp_path, capsys):
    from espnet_peft.tasks.asr import PeftASRTask

    root, data, pre = world["root"], world["data"], world["pre"]
    conf = write_yaml(tmp_path / "t.yaml", {"max_epoch": 1, "batch_type": "unsorted", "batch_size": 2,
                                           "use_tensorboard": False})
    base = ["--config", str(conf), "--output_dir", str(tmp_path / "exp"), "--ngpu", "0"] + data_args(data)
    model = str(pre / "valid.loss.best.pth")

    def run(extra, pattern):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            PeftASRTask.main(cmd=base + extra)
        err = capsys.readouterr().err
        assert re.search(pattern, err, re.S), err[-2000:]

    # --peft_config missing, invalid, or naming nothing
    run(["--pretrained_model", model], "--peft_config is required")
    bad = write_yaml(tmp_path / "bad.yaml", {"method": "lora", "target_modules": ["nope"], "rank": 2, "lr": 3})
    run(["--pretrained_model", model, "--peft_config", str(bad)], "'lr' is not a config key")
    run(["--pretrained_model", model, "--peft_config", str(tmp_path / "missing.yaml")], "config file not found")
    # no pretrained model / wrong file
    ok = write_yaml(tmp_path / "ok.yaml", PEFT["lora"])
    run(["--peft_config", str(ok)], "--pretrained_model is required")
    run(["--peft_config", str(ok), "--pretrained_model", str(tmp_path / "nothing.pth")], "not found.*nothing.pth")
    # architecture options that contradict the pretrained model
    run(["--peft_config", str(ok), "--pretrained_model", model, "--encoder", "conformer"], r"\['encoder'\] differ")
    # --init_param would overwrite the PEFT initialisation
    run(["--peft_config", str(ok), "--pretrained_model", model, "--init_param", model], "--init_param")
    # missing audio: reported before training
    broken = tmp_path / "broken"
    broken.mkdir()
    lines = (data / "source_train" / "wav.scp").read_text().splitlines()
    (broken / "wav.scp").write_text("\n".join(lines[:-1] + [lines[-1].split()[0] + " /nonexistent.wav"]) + "\n")
    (broken / "text").write_text((data / "source_train" / "text").read_text())
    args = data_args(data)
    args[args.index(f"{data / 'source_train' / 'wav.scp'},speech,sound")] = f"{broken / 'wav.scp'},speech,sound"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        PeftASRTask.main(cmd=["--config", str(conf), "--output_dir", str(tmp_path / "exp2"), "--ngpu", "0",
                              "--peft_config", str(ok), "--pretrained_model", model] + args)
    assert "audio file missing: /nonexistent.wav" in capsys.readouterr().err
    assert not (tmp_path / "exp2").exists()  # refused before anything was written


def test_pretrained_model_and_config_disagree(world, tmp_path):
    """A model file that does not match its config is refused with the offending tensors named."""
    from espnet_peft.espnet_task import load_pretrained_weights
    from espnet_peft.tasks.asr import PeftASRTask

    pre = world["pre"]
    import argparse

    import yaml

    cfg = yaml.safe_load((pre / "config.yaml").read_text())
    cfg["encoder_conf"] = dict(cfg["encoder_conf"], num_blocks=3)
    model = PeftASRTask.build_model(argparse.Namespace(**cfg))
    with pytest.raises(PeftError, match="does not match its config.*encoders.2"):
        load_pretrained_weights(model, pre / "valid.loss.best.pth")


def test_checkpoint_from_another_base_model_is_refused(world, tmp_path):
    root, data, pre = world["root"], world["data"], world["pre"]
    exp = peft_train(root, data, pre, PEFT["lora"], "lora_other")
    # another 'pretrained' model: same architecture, other weights
    other = tmp_path / "other"
    other.mkdir()
    state = torch.load(pre / "valid.loss.best.pth", map_location="cpu")
    state = {k: (v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v) for k, v in state.items()}
    torch.save(state, other / "model.pth")
    (other / "config.yaml").write_text((pre / "config.yaml").read_text())
    with pytest.raises(PeftError, match="another base model"):
        merge_experiment(exp / "config.yaml", exp / "valid.loss.best.pth", tmp_path / "m",
                         pretrained_model=other / "model.pth")


def test_alpha_interpolation(world):
    root, data, pre = world["root"], world["data"], world["pre"]
    exp = root / "exp_lora"
    if not exp.exists():
        exp = peft_train(root, data, pre, PEFT["lora"], "lora")
    ckpt = exp / "valid.loss.best.pth"
    m0 = exp / "alpha0"
    m1 = exp / "alpha1"
    mh = exp / "alpha05"
    merge_experiment(exp / "config.yaml", ckpt, m0, alpha=0.0)
    merge_experiment(exp / "config.yaml", ckpt, m1, alpha=1.0)
    merge_experiment(exp / "config.yaml", ckpt, mh, alpha=0.5)
    pre_state = torch.load(pre / "valid.loss.best.pth", map_location="cpu")
    s0, s1, sh = (torch.load(d / "model.pth", map_location="cpu") for d in (m0, m1, mh))
    changed = [k for k in s1 if s1[k].is_floating_point() and not torch.equal(s1[k], pre_state[k])]
    assert changed
    for k in s1:
        if s1[k].is_floating_point():
            assert torch.allclose(s0[k], pre_state[k], atol=1e-6)
            assert torch.allclose(sh[k], 0.5 * (pre_state[k] + s1[k]), atol=1e-6)
