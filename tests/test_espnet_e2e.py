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
                      and not k.endswith("peft_adapter_config")
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


def test_a_training_reads_its_peft_config_once(world, monkeypatch):
    """One entry point, one parse: the argument check, the resume check and the model build share the
    PEFT config (a fresh run and a resumed one alike), and a rewritten file is read again."""
    import espnet_peft.config as config_mod

    root, data, pre = world["root"], world["data"], world["pre"]
    reads = []
    real = config_mod.read_config

    def counting(path, *a, **k):
        reads.append(Path(path).name)
        return real(path, *a, **k)

    monkeypatch.setattr(config_mod, "read_config", counting)
    peft_train(root, data, pre, PEFT["lora"], "once", max_epoch=1)
    assert reads.count("once.peft.yaml") == 1, reads
    reads.clear()
    peft_train(root, data, pre, PEFT["lora"], "once", max_epoch=2)  # a resume: the frozen copy is compared
    assert reads.count("once.peft.yaml") == 1, reads


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


@pytest.mark.parametrize("method", ["lora", "dora", "pissa", "ssvd", "ssvd_o"])
def test_the_training_model_starts_as_the_pretrained_model(world, tmp_path, method):
    """The model the training task builds is, before any step, the pretrained model: the pretrained
    weights are loaded before the wrappers initialise from them (a review of an ESPnet pull request
    found PiSSA initialised from the random weights, the pretrained ones loaded after), and every
    singular basis is of the pretrained weights."""
    import argparse

    import yaml
    from espnet2.tasks.asr import ASRTask

    from espnet_peft.tasks.asr import PeftASRTask

    pre = world["pre"]
    cfg = yaml.safe_load((pre / "config.yaml").read_text())
    peft = write_yaml(tmp_path / "peft.yaml", PEFT[method])
    model = PeftASRTask.build_model(argparse.Namespace(**dict(cfg, peft_config=str(peft),
                                                              pretrained_model=str(pre / "valid.loss.best.pth"))))
    stock = ASRTask.build_model(argparse.Namespace(**cfg))
    stock.load_state_dict(torch.load(pre / "valid.loss.best.pth", map_location="cpu", weights_only=True))
    model.eval()
    stock.eval()
    torch.manual_seed(0)
    speech, lengths = torch.randn(2, 16000) * 0.1, torch.tensor([16000, 12000])
    with torch.no_grad():
        got, _ = model.encode(speech, lengths)
        want, _ = stock.encode(speech, lengths)
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    wrapped = [m for m in model.modules() if hasattr(m, "delta_weight")]
    assert wrapped, "nothing was wrapped"
    stock_modules = dict(stock.named_modules())
    for name, m in model.named_modules():
        if hasattr(m, "delta_weight") and hasattr(m, "weight"):
            # the frozen weight plus what the adapter adds at initialisation is the pretrained weight
            with torch.no_grad():
                total = m.weight + m.delta_weight()
            assert torch.allclose(total, stock_modules[name].weight, atol=1e-4), name


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


# ------------------------------------------------------------------ issue 19: nothing silent
def _payload_file(path, marker):
    """A .pth whose unpickling runs ``touch marker`` (what a crafted model file can do)."""
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"encoder.weight": Payload()}, path)
    return path


def _trained(world, name, cfg=None, **kw):
    exp = world["root"] / f"exp_{name}"
    if not (exp / "valid.loss.best.pth").exists():
        exp = peft_train(world["root"], world["data"], world["pre"], cfg or PEFT["lora"], name, **kw)
    return exp


def test_merge_follows_the_frozen_config_not_the_edited_file(world, tmp_path):
    """Item 1: editing the user's PEFT config after training (LoRA alpha 4 -> 16) does not change
    the merged model: merge reads the copy frozen in the experiment."""
    import yaml

    cfg = dict(PEFT["lora"], alpha=4)
    exp = _trained(world, "lora_alpha4", cfg)
    recorded = yaml.safe_load((exp / "config.yaml").read_text())["peft_config"]
    assert Path(recorded) == exp / "peft_config.yaml"  # config.yaml names the frozen copy
    ckpt = exp / "valid.loss.best.pth"
    merge_experiment(exp / "config.yaml", ckpt, tmp_path / "before")
    write_yaml(world["root"] / "lora_alpha4.peft.yaml", dict(cfg, alpha=16))  # the user's file, edited
    merge_experiment(exp / "config.yaml", ckpt, tmp_path / "after")
    a = torch.load(tmp_path / "before" / "model.pth", weights_only=True)
    b = torch.load(tmp_path / "after" / "model.pth", weights_only=True)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_a_config_without_its_frozen_copy_is_refused(world, tmp_path):
    import shutil

    exp = _trained(world, "lora")
    copy = tmp_path / "exp"
    shutil.copytree(exp, copy, ignore=shutil.ignore_patterns("peft_config.yaml"))
    with pytest.raises(PeftError, match="PEFT config it was trained with .*missing"):
        merge_experiment(copy / "config.yaml", copy / "valid.loss.best.pth", tmp_path / "m")
    # decoding it unmerged is refused the same way, as one error line instead of a traceback (issue 40)
    from espnet_peft.bin import asr_inference

    wav = world["data"] / "source_test" / "wav.scp"
    with pytest.raises(SystemExit, match="espnet_peft.bin.asr_inference: error: .*PEFT config it was trained with"):
        asr_inference.main(["--asr_train_config", str(copy / "config.yaml"), "--asr_model_file",
                            str(copy / "valid.loss.best.pth"), "--output_dir", str(tmp_path / "dec"),
                            "--data_path_and_name_and_type", f"{wav},speech,sound"])


def test_crafted_pickle_in_a_model_file_does_not_run(world, tmp_path):
    """Item 4: --model_file (merge), --pretrained_model (training) and --asr_model_file (inference)
    load with weights_only=True: the payload is refused, never executed."""
    from espnet_peft.bin import asr_inference
    from espnet_peft.loading import load_state_file
    from espnet_peft.tasks.asr import PeftASRTask

    marker = tmp_path / "pwned"
    exp = _trained(world, "lora")
    evil = _payload_file(tmp_path / "evil.pth", marker)
    with pytest.raises(PeftError, match="refusing to load .*evil.pth.*Python objects"):
        load_state_file(evil)
    with pytest.raises(PeftError, match="refusing to load adapter checkpoint"):
        merge_experiment(exp / "config.yaml", evil, tmp_path / "merged")
    assert not (tmp_path / "merged" / "model.pth").exists()
    # as the pretrained model of a training run (its config beside it)
    pre_dir = tmp_path / "pre"
    pre_dir.mkdir()
    _payload_file(pre_dir / "model.pth", marker)
    (pre_dir / "config.yaml").write_text((world["pre"] / "config.yaml").read_text())
    conf = write_yaml(tmp_path / "t.yaml", {"max_epoch": 1, "batch_type": "unsorted", "batch_size": 4,
                                           "use_tensorboard": False, "use_matplotlib": False, "num_workers": 0})
    with pytest.raises(SystemExit, match="refusing to load pretrained model .*model.pth"):
        PeftASRTask.main(cmd=["--config", str(conf), "--output_dir", str(tmp_path / "exp"), "--ngpu", "0",
                              "--peft_config", str(write_yaml(tmp_path / "p.yaml", PEFT["lora"])),
                              "--pretrained_model", str(pre_dir / "model.pth")] + data_args(world["data"]))
    # as the model file of inference on an experiment
    with pytest.raises(SystemExit, match="asr_inference: error: refusing to load"):  # one line, no traceback
        asr_inference.main(["--asr_train_config", str(exp / "config.yaml"), "--asr_model_file", str(evil),
                            "--output_dir", str(tmp_path / "dec"), "--data_path_and_name_and_type",
                            f"{world['data'] / 'source_test' / 'wav.scp'},speech,sound"])
    assert not marker.exists()


def test_diverged_training_stops_and_is_never_merged(world, tmp_path, capsys):
    """Item 3: a non-finite loss stops the run with a clear error (ESPnet alone skips the step and
    carries on); merge refuses a diverged experiment and non-finite weights, and writes no NaN."""
    root, data, pre = world["root"], world["data"], world["pre"]
    with pytest.raises(SystemExit, match="the run diverged"):
        peft_train(root, data, pre, PEFT["lora"], "diverged", max_epoch=2,
                   extra=["--optim", "sgd", "--optim_conf", "lr=1.0e+30"])
    exp = root / "exp_diverged"
    assert "the run diverged" in json.loads((exp / "diverged.json").read_text())["error"]
    # an adapter checkpoint beside the record of a diverged run is not merged
    good = _trained(world, "lora") / "valid.loss.best.pth"
    (exp / "some.pth").write_bytes(good.read_bytes())
    with pytest.raises(PeftError, match="stopped on non-finite values"):
        merge_experiment(exp / "config.yaml", exp / "some.pth", tmp_path / "m0")
    # non-finite adapter weights: refused, nothing written (the verification used to pass: NaN > 1e-3
    # is False, and merge_info.json held NaN)
    state = torch.load(good, weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point() and not k.startswith("peft_"))
    state[key] = torch.full_like(state[key], float("nan"))
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(PeftError, match="non-finite"):
        merge_experiment(good.parent / "config.yaml", tmp_path / "nan.pth", tmp_path / "m1")
    assert not (tmp_path / "m1" / "merge_info.json").exists() and not (tmp_path / "m1" / "model.pth").exists()


def test_truncated_checkpoints_name_the_file(world, tmp_path, capsys):
    """Item 7: a truncated adapter checkpoint and a truncated resume checkpoint are named, and the
    intact N.epoch.pth beside the latter is offered."""
    import shutil

    root, data, pre = world["root"], world["data"], world["pre"]
    good = _trained(world, "lora") / "valid.loss.best.pth"
    data_bytes = good.read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data_bytes[: len(data_bytes) // 2])
    with pytest.raises(PeftError, match=r"cannot read adapter checkpoint .*trunc.pth: the file is truncated or corrupt"):
        merge_experiment(good.parent / "config.yaml", tmp_path / "trunc.pth", tmp_path / "m")
    exp = peft_train(root, data, pre, PEFT["lora"], "resume_trunc", max_epoch=1)
    ckpt = (exp / "checkpoint.pth").read_bytes()
    (exp / "checkpoint.pth").write_bytes(ckpt[: len(ckpt) // 3])
    capsys.readouterr()
    with pytest.raises(SystemExit, match=r"cannot resume from .*checkpoint.pth: the file is truncated.*"
                                         r"Intact epoch checkpoints beside it: 1epoch.pth"):
        peft_train(root, data, pre, PEFT["lora"], "resume_trunc", max_epoch=2)
    shutil.rmtree(exp)


def test_resume_with_a_changed_peft_config_fails_before_writing(world, capsys):
    """Item 7: the plan, config.yaml and frozen config of the experiment are left as they were."""
    root, data, pre = world["root"], world["data"], world["pre"]
    exp = peft_train(root, data, pre, PEFT["lora"], "resume_cfg", max_epoch=1)
    kept = {f: (exp / f).read_bytes() for f in ("config.yaml", "peft_plan.json", "peft_plan.txt", "peft_config.yaml")}
    capsys.readouterr()
    with pytest.raises(SystemExit):
        peft_train(root, data, pre, dict(PEFT["lora"], budget=3000), "resume_cfg", max_epoch=2)
    assert re.search(r"holds a run trained with another PEFT config.*budget: 6000 -> 3000", capsys.readouterr().err)
    assert {f: (exp / f).read_bytes() for f in kept} == kept


def test_collect_stats_on_bad_audio_names_the_file(world, tmp_path, capsys):
    """Item 7: statistics runs check their audio before compute (no `<exception str() failed>`)."""
    from espnet_peft.tasks.asr import PeftASRTask

    data = world["data"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    lines = (data / "source_train" / "wav.scp").read_text().splitlines()
    (bad / "wav.scp").write_text("\n".join(lines[:-1] + [f"{lines[-1].split()[0]} {tmp_path / 'bad.wav'}"]) + "\n")
    (bad / "text").write_text((data / "source_train" / "text").read_text())
    args = data_args(data)
    args[args.index(f"{data / 'source_train' / 'wav.scp'},speech,sound")] = f"{bad / 'wav.scp'},speech,sound"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        PeftASRTask.main(cmd=["--collect_stats", "true", "--pretrained_model", str(world["pre"] / "valid.loss.best.pth"),
                              "--normalize", "none", "--output_dir", str(tmp_path / "stats"), "--ngpu", "0",
                              "--batch_type", "unsorted", "--batch_size", "4"] + args)
    err = capsys.readouterr().err
    assert f"unreadable audio {tmp_path / 'bad.wav'}" in err and "str() failed" not in err


def _foreign_audio_dir(world, tmp_path, sr=44100, channels=2):
    """The source training set with its last utterance replaced by 44.1 kHz stereo audio."""
    import numpy as np

    data = world["data"]
    d = tmp_path / "foreign"
    d.mkdir()
    wav = tmp_path / "cd_quality.wav"
    t = np.arange(sr) / sr
    soundfile.write(str(wav), np.stack([0.1 * np.sin(2 * np.pi * 220 * t)] * channels, 1), sr)
    lines = (data / "source_train" / "wav.scp").read_text().splitlines()
    (d / "wav.scp").write_text("\n".join(lines[:-1] + [f"{lines[-1].split()[0]} {wav}"]) + "\n")
    (d / "text").write_text((data / "source_train" / "text").read_text())
    return d, wav


def test_audio_at_another_rate_or_stereo_is_refused(world, tmp_path, capsys):
    """Item 6 (recipe-visible part): asr_train and asr_inference given 44.1 kHz stereo audio directly
    refuse it, naming the file (they would train / decode at the wrong rate)."""
    from espnet_peft.bin import asr_inference
    from espnet_peft.tasks.asr import PeftASRTask

    data = world["data"]
    d, wav = _foreign_audio_dir(world, tmp_path)
    args = data_args(data)
    args[args.index(f"{data / 'source_train' / 'wav.scp'},speech,sound")] = f"{d / 'wav.scp'},speech,sound"
    conf = write_yaml(tmp_path / "t.yaml", {"max_epoch": 1, "batch_type": "unsorted", "batch_size": 4,
                                           "use_tensorboard": False, "use_matplotlib": False, "num_workers": 0})
    capsys.readouterr()
    with pytest.raises(SystemExit):
        PeftASRTask.main(cmd=["--config", str(conf), "--output_dir", str(tmp_path / "exp"), "--ngpu", "0",
                              "--peft_config", str(write_yaml(tmp_path / "p.yaml", PEFT["lora"])),
                              "--pretrained_model", str(world["pre"] / "valid.loss.best.pth")] + args)
    err = capsys.readouterr().err
    assert f"{wav}: 44100 Hz (16000 Hz expected), 2 channels (mono expected)" in err
    assert not (tmp_path / "exp").exists()
    exp = _trained(world, "lora")
    with pytest.raises(SystemExit, match="44100 Hz .* 2 channels"):
        asr_inference.main(["--asr_train_config", str(exp / "config.yaml"),
                            "--asr_model_file", str(exp / "valid.loss.best.pth"), "--output_dir", str(tmp_path / "dec"),
                            "--data_path_and_name_and_type", f"{d / 'wav.scp'},speech,sound"])


def test_text_the_tokenizer_cannot_spell_is_a_warning(world, tmp_path, caplog):
    """Item 6 (recipe-visible part): non-ASCII characters the tokenizer maps to <unk> are reported
    (a warning: see PeftTaskMixin.check_data for why it is not an error)."""
    import logging
    import shutil

    from espnet_peft.tasks.asr import PeftASRTask

    data = world["data"]
    d = tmp_path / "accented"
    shutil.copytree(data / "source_train", d)
    lines = (d / "text").read_text().splitlines()
    key, words = lines[0].split(" ", 1)
    (d / "text").write_text("\n".join([f"{key} café {words}"] + lines[1:]) + "\n")
    args = data_args(data)
    args[args.index(f"{data / 'source_train' / 'text'},text,text")] = f"{d / 'text'},text,text"
    parser = PeftASRTask.get_parser()
    ns = parser.parse_args(["--output_dir", str(tmp_path / "exp"), "--pretrained_model",
                            str(world["pre"] / "valid.loss.best.pth"),
                            "--peft_config", str(write_yaml(tmp_path / "p.yaml", PEFT["lora"]))] + args)
    with caplog.at_level(logging.WARNING, logger="espnet_peft"):
        PeftASRTask.check_peft_args(ns, parser)
    assert any("tokenizer does not know (é)" in r.getMessage() and key in r.getMessage() for r in caplog.records)


def test_a_merge_swaps_in_a_whole_directory_or_leaves_the_old_one(world, tmp_path, monkeypatch):
    """Issue 40 item 1: the merged directory is built beside the old one and swapped in by renames.
    A merge that fails at any point (here: in verification, the last step before the swap) leaves
    the old directory exactly as it was, decodings included; a finished one replaces it, and
    nothing made from the old model survives; leftovers of a killed merge are cleared."""
    import espnet_peft.bin.merge as merge_cli

    exp = _trained(world, "swap")
    ckpt = exp / "valid.loss.best.pth"
    merged = tmp_path / "merged"
    merge_experiment(exp / "config.yaml", ckpt, merged)
    (merged / "decode" / "child_test").mkdir(parents=True)
    (merged / "decode" / "child_test" / "text").write_text("u1 from the old model\n")
    before = {p.relative_to(merged): p.read_bytes() for p in merged.rglob("*") if p.is_file()}

    def broken(*a, **k):
        raise merge_cli.PeftError("verification failed (injected)")

    monkeypatch.setattr(merge_cli, "_verify", broken)
    with pytest.raises(merge_cli.PeftError, match="injected"):
        merge_experiment(exp / "config.yaml", ckpt, merged, alpha=0.5)
    assert {p.relative_to(merged): p.read_bytes() for p in merged.rglob("*") if p.is_file()} == before
    assert not list(tmp_path.glob(".merged.*"))
    monkeypatch.undo()
    (tmp_path / ".merged.new.99999").mkdir()  # a merge killed mid-way, earlier
    info = merge_experiment(exp / "config.yaml", ckpt, merged, alpha=0.5)
    assert not (merged / "decode").exists()  # what was made from the old model went with it
    assert json.loads((merged / "merge_info.json").read_text())["alpha"] == info["alpha"] == 0.5
    assert sorted(p.name for p in merged.iterdir()) == ["config.yaml", "merge_info.json", "model.pth"]
    assert not list(tmp_path.glob(".merged.*"))
