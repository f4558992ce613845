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

from conftest import ROOT

RECIPE = ROOT / "egs2" / "embedded" / "asr1"
TOY = ["--size", "0.01", "--pretrain", "true", "--nbpe", "30", "--foundation_config", "conf/train_foundation_toy.yaml",
       "--foundation_dir", "exp/foundation_toy", "--peft_config", "conf/peft_toy.yaml",
       "--train_config", "conf/train_peft_toy.yaml", "--decode_config", "conf/decode_toy.yaml",
       "--checkpoint", "valid.acc.best.pth"]


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
    for f in ("config.yaml", "model.pth", "bpe.model", "tokens.txt", "RESULTS.md"):
        assert (recipe / "exp" / "foundation_toy" / f).exists(), f
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
    assert "already decoded" in res.stdout


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
