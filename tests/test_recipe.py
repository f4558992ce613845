"""The embedded recipe at toy size: stages 1-15 through run.sh, and its argument errors.

The recipe is copied into a temporary directory (its data/, dump/, exp/ and RESULTS.md stay
untouched) and run with a toy foundation model (stages 6-9 retrain it in seconds)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

RECIPE = ROOT / "egs2" / "embedded" / "asr1"
TOY = ["--size", "0.01", "--pretrain", "true", "--nbpe", "40", "--foundation_config", "conf/train_foundation_toy.yaml",
       "--foundation_dir", "exp/foundation_toy", "--peft_config", "conf/peft_toy.yaml",
       "--train_config", "conf/train_peft_toy.yaml", "--decode_config", "conf/decode_toy.yaml",
       "--checkpoint", "valid.acc.best.pth", "--lm_config", "conf/train_lm_toy.yaml"]


def copy_recipe(dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("run.sh", "cmd.sh", "path.sh"):
        shutil.copy(RECIPE / name, dst / name)
    shutil.copytree(RECIPE / "local", dst / "local")
    shutil.copytree(RECIPE / "conf", dst / "conf", symlinks=False)
    (dst / "utils").symlink_to(ROOT / "local")
    return dst


def run(recipe: Path, *args, check=True):
    env = dict(os.environ, MAIN_ROOT=str(ROOT), OMP_NUM_THREADS="1")
    res = subprocess.run(["bash", "run.sh", *args], cwd=recipe, capture_output=True, text=True, env=env)
    if check and res.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    recipe = copy_recipe(tmp_path_factory.mktemp("recipe") / "embedded" / "asr1")
    res = run(recipe, *TOY)
    return recipe, res


def test_stages_1_to_15_at_toy_size(toy):
    recipe, res = toy
    exp = recipe / "exp" / "child_peft_toy"
    for f in ("peft_plan.txt", "config.yaml", "valid.acc.best.pth", "merged/model.pth", "merged/config.yaml",
              "merged/summary.json", "merged/decode/child_test/text", "merged/decode/source_test/text"):
        assert (exp / f).exists(), f
    for f in ("config.yaml", "model.pth", "bpe.model", "tokens.txt", "RESULTS.md", "lm/config.yaml", "lm/model.pth"):
        assert (recipe / "exp" / "foundation_toy" / f).exists(), f
    # the LM text shares no 5-word sequence with any evaluation sentence
    stats = json.loads((recipe / "data" / "lm_train.txt.json").read_text())
    assert stats["lines"] > 0 and stats["excluded_sentences"] > 0
    assert "language model: seq_rnn" in (recipe / "exp" / "foundation_toy" / "RESULTS.md").read_text()
    summary = json.loads((exp / "merged" / "summary.json").read_text())
    assert summary["method"] == "ssvd_o" and summary["target_test_sets"] == ["child_test"]
    for who in ("base", "adapted"):
        for s in ("child_test", "source_test"):
            assert 0 <= summary[who][s]["wer"] and summary[who][s]["utterances"] == 2
    assert set(summary["learning_forgetting"]) >= {"target_gain", "forgetting", "forgetting_rel"}
    results = (recipe / "RESULTS.md").read_text()
    assert "child_peft_toy" in results and "| ssvd_o |" in results
    # the printed table
    assert "base (foundation)" in res.stdout and "forgetting:" in res.stdout
    # per-stage logs exist
    assert (recipe / "exp" / "child_peft_toy" / "train.log").exists()
    assert list((recipe / "exp" / "base_decode").glob("log/decode.*.log"))


def test_rerun_skips_finished_decoding(toy):
    recipe, _ = toy
    res = run(recipe, *TOY, "--stage", "12", "--stop_stage", "14")
    assert "already decoded" in res.stdout and "decoding child_test" not in res.stdout
    # other decoding options (here: no LM) make the earlier results stale: decoded again
    out = recipe / "exp" / "child_peft_toy" / "merged" / "decode" / "child_test"
    sig = json.loads((out / "decode_info.json").read_text())["signature"]
    conf = yaml.safe_load((recipe / "conf" / "decode_toy.yaml").read_text())
    (recipe / "conf" / "decode_nolm.yaml").write_text(yaml.safe_dump(dict(conf, lm_weight=0.0)))
    args = [a if a != "conf/decode_toy.yaml" else "conf/decode_nolm.yaml" for a in TOY]
    res = run(recipe, *args, "--stage", "12", "--stop_stage", "12")
    assert "already decoded" not in res.stdout
    assert json.loads((out / "decode_info.json").read_text())["signature"] != sig


def test_lm_weight_without_an_lm_is_refused_before_compute(tmp_path):
    recipe = copy_recipe(tmp_path / "embedded" / "asr1")
    shutil.copytree(RECIPE / "foundation", recipe / "foundation", ignore=shutil.ignore_patterns("lm"))
    (recipe / "conf" / "decode_lm.yaml").write_text("beam_size: 2\nlm_weight: 0.3\n")
    res = run(recipe, "--stage", "12", "--decode_config", "conf/decode_lm.yaml", check=False)
    assert res.returncode != 0 and "lm_weight > 0 but foundation/lm/model.pth does not exist" in res.stderr
    assert not (recipe / "exp").exists() or not any((recipe / "exp").iterdir())


@pytest.mark.parametrize("args,message", [
    (["--stage", "16"], "unknown stage"),
    (["--stage", "x"], "must be a number"),
    (["--stage", "12", "--stop_stage", "10"], "is after"),
    (["--stage", "10", "--peft_config", "conf/peft/nonexistent.yaml"], "not found"),
    (["--stage", "10", "--train_config", "conf/none.yaml"], "not found"),
    (["--bogus_option", "1"], "unknown option --bogus_option"),
    (["--target", "adults"], "must be child or accent"),
])
def test_argument_errors(tmp_path, args, message):
    recipe = copy_recipe(tmp_path / "embedded" / "asr1")
    res = run(recipe, *args, check=False)
    assert res.returncode != 0
    assert message in res.stderr + res.stdout
    assert not (recipe / "exp").exists() or not any((recipe / "exp").iterdir())  # nothing ran


def test_invalid_peft_config_is_refused_before_training(tmp_path):
    recipe = copy_recipe(tmp_path / "embedded" / "asr1")
    (recipe / "conf" / "bad.yaml").write_text("method: lora\ntarget_modules: [x]\nrank: 2\nlearning_rate: 1\n")
    res = run(recipe, "--stage", "10", "--peft_config", "conf/bad.yaml", check=False)
    assert res.returncode != 0 and "learning_rate" in res.stderr
