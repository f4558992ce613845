"""The embedded recipe at toy size: stages 1-15 through run.sh, its argument errors, and what the
recipe guarantees around a run (README, "Reliability"): reports under exp/, statistics keyed by
their data, a diverged run stopped before stage 11, an experiment locked while it runs and
stopped with its recipe, a finished training not re-counted.

The recipe is copied into a temporary directory (its data/, dump/, exp/ and RESULTS.md stay
untouched) and run with a toy foundation model (stages 6-9 retrain it in seconds)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT
from recipe_fixtures import copy_recipe as _copy_recipe
from recipe_fixtures import flock_free, processes_mentioning, recipe_env

RECIPE = ROOT / "egs2" / "embedded" / "asr1"
RECIPES = ["cmu_kids", "cv_accents", "embedded", "myst", "ogi_kids", "speechocean762"]
TOY = ["--size", "0.01", "--pretrain", "true", "--nbpe", "40", "--foundation_config", "conf/train_foundation_toy.yaml",
       "--foundation_dir", "exp/foundation_toy", "--peft_config", "conf/peft_toy.yaml",
       "--train_config", "conf/train_peft_toy.yaml", "--decode_config", "conf/decode_toy.yaml",
       "--checkpoint", "valid.acc.best.pth", "--lm_config", "conf/train_lm_toy.yaml"]
SOURCE_SETS = ["source_test", "source_unseen_test", "source_style_test"]  # run.sh's --source_test_sets
TARGET_SETS = ["child_unseen_test", "child_test"]  # run.sh's --target_test_sets (--target child)


def copy_recipe(dst: Path) -> Path:
    dst = _copy_recipe(RECIPE, dst)
    shutil.copy(RECIPE / "RESULTS.md", dst / "RESULTS.md")  # the committed results, as in a clone
    return dst


def run(recipe: Path, *args, check=True, env=None):
    res = subprocess.run(["bash", "run.sh", *args], cwd=recipe, capture_output=True, text=True, env=env or recipe_env())
    if check and res.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


def toy_config(recipe: Path, name: str, **changes) -> str:
    conf = yaml.safe_load((recipe / "conf" / "train_peft_toy.yaml").read_text())
    conf.update(changes)
    (recipe / "conf" / name).write_text(yaml.safe_dump(conf))
    return f"conf/{name}"


def with_option(args, option, value):
    args = list(args)
    args[args.index(option) + 1] = value
    return args


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
    assert summary["method"] == "ssvd_o" and summary["target_test_sets"] == TARGET_SETS
    assert summary["source_test_sets"] == SOURCE_SETS
    assert summary["checkpoint"] == json.loads((exp / "merged" / "merge_info.json").read_text())["model_file"].split("/")[-1]
    assert summary["checkpoint"].endswith(".pth")  # the report names the checkpoint it merged
    for who in ("base", "adapted"):
        for s in TARGET_SETS + SOURCE_SETS:
            assert 0 <= summary[who][s]["wer"] and summary[who][s]["utterances"] > 0
    assert set(summary["learning_forgetting"]) >= {"target_gain", "forgetting", "forgetting_rel"}
    results = (recipe / "exp" / "RESULTS.md").read_text()
    assert "child_peft_toy" in results and "| ssvd_o |" in results
    # the printed table
    assert "base (foundation)" in res.stdout and "forgetting:" in res.stdout
    # the job talks while it works (a line per epoch, decoding progress) and keeps quiet otherwise: no
    # failed NLTK downloads, no plan table on the console (it is in the logs)
    out = res.stdout + res.stderr
    assert re.search(r"child_peft_toy: epoch 1/\d+, train loss [0-9.]+, valid loss", res.stdout), res.stdout[-3000:]
    assert "decoding: progress" in res.stdout and "min left" in res.stdout
    assert "nltk_data" not in out and "total trainable:" not in out
    assert "total trainable:" in (exp / "merge.log").read_text() and "merged: merged model written to" in res.stdout
    # per-stage logs exist
    assert (recipe / "exp" / "child_peft_toy" / "train.log").exists()
    assert list((recipe / "exp" / "base_decode").glob("log/decode.*.log"))
    # the experiment records the driver's own command line (as ESPnet's asr.sh keeps run_args)
    command = (exp / "command.txt").read_text()
    assert "./peft_asr.sh " in command and "--target_train_set child_train" in command
    assert summary["command"] == command.strip()


def test_report_shows_forgetting_on_every_source_test_set(toy):
    """Issue 19 item 9: the summary, RESULTS.md and the printed table cover every source set."""
    recipe, res = toy
    summary = json.loads((recipe / "exp" / "child_peft_toy" / "merged" / "summary.json").read_text())
    assert set(summary["forgetting"]) == set(SOURCE_SETS)
    for s in SOURCE_SETS:
        f = summary["forgetting"][s]["forgetting"]
        assert f == pytest.approx(summary["adapted"][s]["wer"] - summary["base"][s]["wer"], abs=1e-3)
        assert f"WER points on {s}" in res.stdout and f"{s} WER" in res.stdout
        assert f"forgetting on {s}" in (recipe / "exp" / "RESULTS.md").read_text()


def test_report_shows_learning_and_forgetting_without_the_lm(toy):
    """run.sh's --nolm_decode_config conf/decode_nolm.yaml: every test set is also decoded by CTC
    greedy decoding, without the LM, base and adapted; the report shows both decodings."""
    recipe, res = toy
    exp = recipe / "exp" / "child_peft_toy"
    summary = json.loads((exp / "merged" / "summary.json").read_text())
    src, tgt = summary["source_test_sets"], summary["target_test_sets"]
    assert summary["nolm_decoding"] == "CTC greedy, no LM"
    for s in src + tgt:
        for d in (recipe / "exp" / "base_decode_nolm", exp / "merged" / "decode_nolm"):
            assert (d / s / "text").is_file() and (d / s / "result.json").is_file(), d / s
        lm, nolm = (json.loads((exp / "merged" / d / s / "decode_info.json").read_text())["signature"]
                    for d in ("decode", "decode_nolm"))
        assert lm != nolm  # (the same model and set: the decodings differ)
        for who in ("base_nolm", "adapted_nolm"):
            assert summary[who][s]["utterances"] == summary[who.split("_")[0]][s]["utterances"] > 0
    for s in src:
        f = summary["forgetting_nolm"][s]["forgetting"]
        assert f == pytest.approx(summary["adapted_nolm"][s]["wer"] - summary["base_nolm"][s]["wer"], abs=1e-3)
        assert f"forgetting on {s} (no LM)" in (recipe / "exp" / "RESULTS.md").read_text()
    for t in tgt:
        g = summary["learning_nolm"][t]["target_gain"]
        assert g == pytest.approx(summary["base_nolm"][t]["wer"] - summary["adapted_nolm"][t]["wer"], abs=1e-3)
    assert "base, no LM" in res.stdout and "without the LM (CTC greedy): forgetting:" in res.stdout


def test_main_job_never_rewrites_committed_results(toy):
    """Issue 19 item 9: reports go to exp/; the committed RESULTS.md changes only when asked, and
    then only in the sections of the targets run here."""
    recipe, _ = toy
    committed = (RECIPE / "RESULTS.md").read_text()
    assert (recipe / "RESULTS.md").read_text() == committed  # the full run left it alone
    run(recipe, *TOY, "--stage", "15", "--results", "RESULTS.md")
    updated = (recipe / "RESULTS.md").read_text()
    assert "child_peft_toy" in updated
    accent = committed[committed.index("## Target `accent"):committed.index("## Target `child")]
    assert accent in updated  # the target not run here is kept as published


def test_rerun_skips_finished_decoding(toy):
    recipe, _ = toy
    res = run(recipe, *TOY, "--stage", "12", "--stop_stage", "14")
    assert "already decoded" in res.stdout and "decoding child_unseen_test" not in res.stdout
    # other decoding options (here: LM weight 0) make the earlier results stale: decoded again
    out = recipe / "exp" / "child_peft_toy" / "merged" / "decode" / "child_test"
    sig = json.loads((out / "decode_info.json").read_text())["signature"]
    conf = yaml.safe_load((recipe / "conf" / "decode_toy.yaml").read_text())
    (recipe / "conf" / "decode_lm0.yaml").write_text(yaml.safe_dump(dict(conf, lm_weight=0.0)))
    res = run(recipe, *with_option(TOY, "--decode_config", "conf/decode_lm0.yaml"), "--stage", "12", "--stop_stage", "12")
    assert "(conf/decode_lm0.yaml)" not in res.stdout and "(conf/decode_lm0.yaml, " in res.stdout  # decoded
    assert json.loads((out / "decode_info.json").read_text())["signature"] != sig
    # the decodings without the LM (run.sh's --nolm_decode_config) do not depend on that config: kept
    assert "(conf/decode_nolm.yaml)" in res.stdout and "(conf/decode_nolm.yaml, " not in res.stdout


def test_rerun_of_a_finished_training_keeps_its_command_and_wall_time(toy):
    """Issue 19 item 8: re-running a finished stage 10 neither overwrites command.txt nor adds to
    train_wall.json."""
    recipe, _ = toy
    exp = recipe / "exp" / "child_peft_toy"
    command, wall = (exp / "command.txt").read_text(), (exp / "train_wall.json").read_text()
    run(recipe, *TOY, "--stage", "10", "--stop_stage", "10", "--nj", "1")
    assert (exp / "command.txt").read_text() == command
    assert (exp / "train_wall.json").read_text() == wall


def test_changed_peft_config_on_resume_is_refused_before_writing(toy):
    """Issue 19 item 7: the experiment's plan, config.yaml and source copy stay as they were."""
    recipe, _ = toy
    exp = recipe / "exp" / "child_peft_toy"
    kept = {f: (exp / f).read_bytes() for f in ("peft_plan.json", "peft_plan.txt", "config.yaml",
                                                  "peft_config.yaml", "peft_config.source.yaml")}
    conf = yaml.safe_load((recipe / "conf" / "peft_toy.yaml").read_text())
    (recipe / "conf" / "peft_changed.yaml").write_text(yaml.safe_dump(dict(conf, k_in=2)))
    res = run(recipe, *with_option(TOY, "--peft_config", "conf/peft_changed.yaml"), "--tag", "child_peft_toy",
              "--stage", "10", check=False)
    assert res.returncode != 0 and "another PEFT config" in res.stderr and "k_in: 4 -> 2" in res.stderr
    assert "stage 10:" not in res.stdout  # refused before the stage started
    assert {f: (exp / f).read_bytes() for f in kept} == kept


def test_config_edited_after_training_does_not_change_the_merged_model(toy):
    """Issue 19 item 1 at recipe level: stage 11 follows the config frozen in the experiment."""
    recipe, _ = toy
    exp = recipe / "exp" / "child_peft_toy"
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    assert Path(cfg["peft_config"]) == Path("exp/child_peft_toy/peft_config.yaml")
    before = torch.load(exp / "merged" / "model.pth", weights_only=True)
    source = recipe / "conf" / "peft_toy.yaml"
    text = source.read_text()
    try:
        source.write_text(text.replace("k_out: 4", "k_out: 2"))  # the user's file, edited after training
        run(recipe, *TOY, "--stage", "11", "--stop_stage", "11")
    finally:
        source.write_text(text)
    after = torch.load(exp / "merged" / "model.pth", weights_only=True)
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)


def test_nan_run_exits_before_stage_11(toy):
    """Issue 19 item 3: a diverged training (learning rate 1e30) stops the recipe with a clear error;
    nothing is merged, decoded or reported."""
    recipe, _ = toy
    conf = toy_config(recipe, "train_nan.yaml", optim="sgd", optim_conf={"lr": 1.0e30}, max_epoch=2)
    res = run(recipe, *with_option(TOY, "--train_config", conf), "--stage", "10", "--tag", "child_nan", check=False)
    assert res.returncode != 0
    log = (recipe / "exp" / "child_nan" / "train.log").read_text()
    assert "the run diverged" in log and "espnet_peft: error:" in log
    assert "stage 11" not in res.stdout and not (recipe / "exp" / "child_nan" / "merged").exists()
    assert json.loads((recipe / "exp" / "child_nan" / "diverged.json").read_text())["error"]
    # merging what it left is refused too
    res = run(recipe, *TOY, "--stage", "11", "--tag", "child_nan", check=False)
    assert res.returncode != 0 and "non-finite" in res.stderr


def test_killed_run_leaves_no_trainer_and_a_running_experiment_is_locked(toy):
    """Issue 19 item 8: a second run of a running experiment is refused; SIGTERM to run.sh stops the
    trainer (and everything else it started) and releases the lock."""
    recipe, _ = toy
    tag = f"child_kill{os.getpid()}"
    exp = recipe / "exp" / tag
    conf = toy_config(recipe, "train_long.yaml", max_epoch=100000)
    args = [*with_option(TOY, "--train_config", conf), "--stage", "10", "--tag", tag]
    first = subprocess.Popen(["bash", "run.sh", *args], cwd=recipe, env=recipe_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:  # the trainer is running and training
            log = exp / "train.log"
            if log.is_file() and "epoch started" in log.read_text() and \
                    any("espnet_peft.bin.asr_train" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
                        for p in processes_mentioning(f"exp/{tag}") if Path(f"/proc/{p}").exists()):
                break
            assert first.poll() is None, first.communicate()
            time.sleep(1)
        else:
            pytest.fail("the training did not start")
        second = run(recipe, *args, check=False)
        assert second.returncode != 0 and f"exp/{tag} is in use by another run" in second.stderr
        assert not flock_free(exp / "run.lock")
        first.send_signal(signal.SIGTERM)  # to run.sh only, as `kill PID` does
        out, err = first.communicate(timeout=120)
        assert first.returncode == 128 + signal.SIGTERM, out[-2000:] + err[-2000:]
        time.sleep(0.5)
        assert processes_mentioning(f"exp/{tag}") == []  # no trainer, no launcher left
        assert flock_free(exp / "run.lock")
        assert "stopped by signal" in (exp / "train.log").read_text()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        for pid in processes_mentioning(f"exp/{tag}"):  # only what this test started
            os.kill(pid, signal.SIGKILL)


def test_growing_a_data_set_recollects_its_statistics(toy):
    """Issue 19 item 2: the adaptation statistics are keyed by the data they describe."""
    recipe, _ = toy
    stats = recipe / "exp" / "stats_child_train" / "train" / "speech_shape"
    before = len(stats.read_text().splitlines())
    d = recipe / "dump" / "raw" / "child_train"
    for name in ("wav.scp", "text", "utt2spk", "utt2dur"):  # one more utterance (a copy of the first)
        first = (d / name).read_text().splitlines()[0].split(" ", 1)[1]
        with open(d / name, "a") as fh:
            fh.write(f"zzz_grown {first if name != 'utt2spk' else 'zzz_grown'}\n")
    res = run(recipe, *TOY, "--prepare_only", "true")
    assert "collecting them again" in res.stdout
    assert len(stats.read_text().splitlines()) == before + 1
    # the experiment trained on the old data is not resumed on the new data
    res = run(recipe, *TOY, "--stage", "10", "--stop_stage", "10", check=False)
    assert res.returncode != 0 and "was trained on other data" in res.stderr


def test_a_method_file_from_outside_the_package_runs_through_the_recipe(toy):
    """Issue 20: a new method file (test_registry's toy), named in ESPNET_PEFT_METHODS, is trained,
    merged, decoded and reported by the recipe without any other file of the project changed."""
    from test_registry import TOY_METHOD

    recipe, _ = toy
    plugins = recipe / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "toy_method.py").write_text(TOY_METHOD)
    (recipe / "conf" / "peft_toy_method.yaml").write_text(yaml.safe_dump(
        {"method": "toy", "target_modules": ["*attn.linear_q", "feed_forward*.w_1"], "toy_width": 2}))
    env = recipe_env(ESPNET_PEFT_METHODS="toy_method",
                     PYTHONPATH=os.pathsep.join(filter(None, [str(plugins), os.environ.get("PYTHONPATH")])))
    run(recipe, *with_option(TOY, "--peft_config", "conf/peft_toy_method.yaml"), "--stage", "10", env=env)
    exp = recipe / "exp" / "child_peft_toy_method"
    assert "PEFT plan: method=toy," in (exp / "peft_plan.txt").read_text()
    summary = json.loads((exp / "merged" / "summary.json").read_text())
    assert summary["method"] == "toy" and summary["adapted"]["child_test"]["utterances"] > 0
    assert "child_peft_toy_method" in (recipe / "exp" / "RESULTS.md").read_text()


def test_foundation_warm_start_keeps_the_tokenizer_and_starts_from_the_weights(toy):
    """Issue 17: --foundation_init DIR trains the foundation model from DIR's weights with DIR's
    tokenizer (how the shipped foundation was trained in rounds)."""
    recipe, _ = toy
    init = recipe / "exp" / "foundation_toy"
    run(recipe, *TOY, "--foundation_init", "exp/foundation_toy", "--foundation_exp", "exp/foundation_warm",
        "--lm_config", "", "--stage", "5", "--stop_stage", "7")
    tok = recipe / "data" / "token_list" / "init"
    assert (tok / "bpe.model").read_bytes() == (init / "bpe.model").read_bytes()
    assert (tok / "tokens.txt").read_text() == (init / "tokens.txt").read_text()
    cfg = yaml.safe_load((recipe / "exp" / "foundation_warm" / "config.yaml").read_text())
    assert cfg["init_param"] == ["data/token_list/init/init_model.pth"]
    assert cfg["token_list"] == (init / "tokens.txt").read_text().split()
    res = run(recipe, *TOY, "--foundation_init", "exp/foundation_toy", "--pretrain", "false", "--stage", "10",
              check=False)
    assert res.returncode != 0 and "--foundation_init warm-starts a foundation training" in res.stderr


def test_lm_weight_without_an_lm_is_refused_before_compute(tmp_path):
    recipe = copy_recipe(tmp_path / "embedded" / "asr1")
    shutil.copytree(RECIPE / "foundation", recipe / "foundation", ignore=shutil.ignore_patterns("lm"))
    (recipe / "conf" / "decode_lm.yaml").write_text("beam_size: 2\nlm_weight: 0.3\n")
    res = run(recipe, "--stage", "12", "--decode_config", "conf/decode_lm.yaml", check=False)
    assert res.returncode != 0 and "lm_weight > 0 but foundation/lm/model.pth does not exist" in res.stderr
    assert not (recipe / "exp").exists() or not any((recipe / "exp").iterdir())


@pytest.mark.parametrize("args,message", [
    (["--stage", "17"], "unknown stage: stages are 1-16"),
    (["--stage", "x"], "must be a number"),
    (["--stage", "12", "--stop_stage", "10"], "is after"),
    (["--stage", "10", "--peft_config", "conf/peft/nonexistent.yaml"], "not found"),
    (["--stage", "10", "--train_config", "conf/none.yaml"], "not found"),
    (["--bogus_option", "1"], "unknown option --bogus_option"),
    (["--target", "adults"], "must be child or accent"),
    # issue 19 item 7: used at stage 11, checked before stage 1
    (["--alpha", "1.5"], "--alpha must be a number in [0, 1]"),
    (["--alpha", "-0.5"], "--alpha must be a number in [0, 1]"),
    (["--alpha", "half"], "--alpha must be a number in [0, 1]"),
    (["--nolm_decode_config", "conf/none.yaml"], "--nolm_decode_config not found"),
    (["--nolm_decode_config", "conf/decode.yaml"], "sets lm_weight > 0: it is the decoding without the LM"),
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


@pytest.mark.parametrize("name", RECIPES)
def test_recipes_reach_the_shared_driver_as_peft_asr_sh(name):
    """Issue 20: each recipe links the driver beside run.sh (as ESPnet recipes link asr.sh), passes
    its own options through parse_options, and no longer exports its command line."""
    d = ROOT / "egs2" / name / "asr1"
    assert os.readlink(d / "peft_asr.sh") == "../../../local/peft_asr.sh"
    run_sh = (d / "run.sh").read_text()
    assert "ESPNET_PEFT_RUN_CMD" not in run_sh and "while [ $# -gt 0 ]" not in run_sh
    assert "exec ./peft_asr.sh" in run_sh or 'exec "${MAIN_ROOT}/local/run_owsm.sh"' in run_sh
    assert "utils/peft_asr.sh" not in run_sh
    for shared in ("peft_asr.sh", "run_owsm.sh"):
        text = (ROOT / "local" / shared).read_text()
        assert "ESPNET_PEFT_RUN_CMD" not in text and "utils/peft_asr.sh" not in text
    assert "while [ $# -gt 0 ]" not in (ROOT / "local" / "run_owsm.sh").read_text()


# configs whose bytes are the identity of committed sweep records (a comment edit would make them
# stale): their comments keep the old name until the sweep's configs change anyway
FROZEN_BYTES = {"egs2/embedded/asr1/conf/decode_nolm.yaml"}


def test_the_shared_scripts_have_one_name():
    """Issue 27: the top-level local/ is reached from every recipe by its own name
    ("${MAIN_ROOT}/local/<script>"), never through a second name (a utils/ link) that messages,
    docs and scripts would then mix."""
    import re

    shared = {p.relative_to(ROOT / "local").as_posix() for p in (ROOT / "local").rglob("*") if p.is_file()}
    for recipe in (ROOT / "egs2").glob("*/asr1"):
        assert not (recipe / "utils").exists() and not (recipe / "utils").is_symlink(), recipe
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    bad = []
    for f in tracked:
        if not f.endswith((".sh", ".py", ".md", ".yaml", ".cfg")) or f.startswith("tests/") or f in FROZEN_BYTES:
            continue
        for n, line in enumerate((ROOT / f).read_text(errors="replace").splitlines(), 1):
            bad += [f"{f}:{n}: utils/{m}" for m in re.findall(r"(?<![\w./])utils/([\w./-]+\w)", line) if m in shared]
    assert not bad, "the shared scripts named utils/...:\n" + "\n".join(bad)


def test_help_lists_every_option_of_run_sh_and_the_driver(tmp_path):
    recipe = copy_recipe(tmp_path / "embedded" / "asr1")
    res = run(recipe, "--help")
    for option in ("--target", "--size", "stop_stage=", "peft_config=", "results=", "alpha="):
        assert option in res.stdout, option


def test_sweep_cell_configs_live_in_the_sweep_directory(tmp_path, monkeypatch):
    """Issue 19 item 8: the sweep's feasibility check writes each cell's config into the sweep's own
    directory, not to a fixed name under /tmp that two sweeps share."""
    import espnet_peft.bin.plan
    from espnet_fixtures import local_module
    from espnet_peft.sweep import expand, load_grid

    sweep = local_module("budget_sweep")
    cells = expand(load_grid(ROOT / "conf" / "sweep" / "embedded.yaml"), root=ROOT)[:2]
    planned = []
    monkeypatch.setattr(espnet_peft.bin.plan, "build_plan", lambda cfg, model: planned.append(Path(cfg)))
    assert sweep.feasibility(cells, tmp_path / "model.yaml", tmp_path / "configs") == {}
    assert planned == [tmp_path / "configs" / f"{c.name}.yaml" for c in cells]
    assert all(yaml.safe_load(p.read_text()) == c.config for p, c in zip(planned, cells))


def test_stage_16_serves_several_domains_from_one_model(toy):
    """Issue 29: stage 16 mixes test sets, decodes the mix on one load of the foundation model with each
    utterance routed to its adapter, and reports WER per set beside the base and each merged model; the
    routed hypotheses are exactly those of the model each set is routed to. Bad routes are refused
    before any decoding."""
    recipe, _ = toy
    route = ["--stage", "16", "--stop_stage", "16", "--route_adapters", "child=child_peft_toy",
             "--route_sets", "source_test=base child_test=child", "--route_name", "mixed_toy"]
    res = run(recipe, *TOY, *route)
    out = recipe / "exp" / "routed_mixed_toy"
    data = json.loads((out / "results.json").read_text())
    assert data["identical"]["same"] == data["identical"]["total"] > 0
    rows = {r["set"]: r for r in data["rows"]}
    assert rows["child_test"]["routed"]["wer"] == rows["child_test"]["child"]["wer"]
    assert rows["source_test"]["routed"]["wer"] == rows["source_test"]["base"]["wer"]
    # the single models' columns are the scores of their own decodings of the sets (stage 16 makes any missing)
    from espnet_peft.scoring import score_files

    merged = recipe / "exp" / "child_peft_toy" / "merged" / "decode" / "child_test" / "text"
    assert rows["child_test"]["child"]["wer"] == score_files(recipe / "dump" / "raw" / "child_test" / "text", merged)["wer"]
    assert data["memory"]["bank_params"] < data["memory"]["merged_models_params"] + data["memory"]["foundation_params"]
    assert "| all (pooled) |" in (out / "RESULTS.md").read_text() and "Routed hypotheses identical" in res.stdout
    utt2adapter = (recipe / "dump" / "raw" / "mixed_toy" / "utt2adapter").read_text().split()
    assert {"base", "child"} <= set(utt2adapter[1::2])
    # refused before any decoding: a set routed to an unknown adapter, a missing checkpoint
    bad = run(recipe, *TOY, *with_option(route, "--route_sets", "source_test=kids"), check=False)
    assert bad.returncode != 0 and "routed to 'kids', which is none of base, child" in bad.stderr
    bad = run(recipe, *with_option(TOY, "--checkpoint", "nothing.pth"), *route, check=False)
    assert bad.returncode != 0 and "nothing.pth not found (run stage 10 for child_peft_toy)" in bad.stderr


def test_scores_and_reports_are_never_made_of_another_models_hypotheses(toy):
    """Re-merging another checkpoint invalidates what was decoded with the old merged model: stage
    13 (or 15) then refuses, naming the stage to run, instead of scoring the old hypotheses for the
    new model; stages 12-15 then report the new one. (Last in the file: it re-decodes the toy.)"""
    recipe, _ = toy
    exp = recipe / "exp" / "child_peft_toy"
    state = torch.load(exp / "valid.acc.best.pth", map_location="cpu", weights_only=True)
    # the trained tensors change; the adapter's records (its config, the base model's fingerprint,
    # basis checks) stay as they are
    changed = {k: (v + 0.05 if torch.is_floating_point(v) and not k.startswith("peft_") and "check" not in k else v)
               for k, v in state.items()}
    torch.save(changed, exp / "perturbed.pth")
    before = (exp / "merged" / "model.pth").read_bytes()
    run(recipe, *with_option(TOY, "--checkpoint", "perturbed.pth"), "--stage", "11", "--stop_stage", "11")
    assert (exp / "merged" / "model.pth").read_bytes() != before
    assert not (exp / "merged" / "summary.json").exists() and not (exp / "merged" / "decode").exists()
    for stage in ("13", "15"):
        res = run(recipe, *with_option(TOY, "--checkpoint", "perturbed.pth"), "--stage", stage, "--stop_stage", "15",
                  check=False)
        assert res.returncode != 0 and "run stage 12" in res.stderr, res.stderr[-2000:]
    res = run(recipe, *with_option(TOY, "--checkpoint", "perturbed.pth"), "--stage", "12", "--stop_stage", "15")
    assert "report.py:" in res.stdout and (exp / "merged" / "summary.json").is_file()


@pytest.mark.parametrize("option, value", [
    ("--tag", "../../x"), ("--tag", "/tmp/elsewhere"), ("--tag", "a/b"), ("--route_name", "../x"),
    ("--route_adapters", "../a=child_lora"), ("--route_adapters", "child=../../exp2/t"),
])
def test_names_that_become_paths_are_plain_names(tmp_path, option, value):
    """Issue 40 item 5: a tag, route name or adapter name with a path in it is refused before anything
    is written (it would write outside exp/ or dump/raw/)."""
    recipe = copy_recipe(tmp_path / "embedded" / "asr1")
    before = {p for p in tmp_path.rglob("*")}
    res = run(recipe, "--stage", "16", "--stop_stage", "16", option, value, check=False)
    bad = next(part for part in value.split("=") if "/" in part)
    assert res.returncode != 0 and "must be a plain name" in res.stderr and f"'{bad}'" in res.stderr
    assert "Traceback" not in res.stderr
    assert {p for p in tmp_path.rglob("*")} == before


def test_a_refused_run_leaves_no_lock_and_no_empty_experiment(tmp_path):
    """Issue 40 item 6: a run refused after taking the experiment's lock (here stage 11 without a
    trained checkpoint) leaves neither run.lock nor an empty exp/<tag>."""
    recipe = copy_recipe(tmp_path / "embedded" / "asr1")
    res = run(recipe, "--stage", "11", "--stop_stage", "11", "--tag", "never_trained", "--decode_config",
              "conf/decode_nolm.yaml", check=False)
    assert res.returncode != 0 and "adapter checkpoint" in res.stderr
    assert not (recipe / "exp" / "never_trained").exists()


def test_resuming_with_another_train_config_is_refused(toy):
    """Issue 40 item 6: an experiment resumed with another --train_config (optimiser, schedule, epochs)
    would mix two trainings in one result; refused before anything runs, naming both."""
    recipe, _ = toy
    exp = recipe / "exp" / "child_peft_toy"
    assert (exp / "checkpoint.pth").is_file() and (exp / "train_config.yaml").is_file()
    conf = toy_config(recipe, "train_other.yaml", max_epoch=7)
    res = run(recipe, *with_option(TOY, "--train_config", conf), "--stage", "10", "--stop_stage", "10", check=False)
    assert res.returncode != 0 and "was trained with another --train_config" in res.stderr
    assert (exp / "train_config.yaml").read_text() == (recipe / "conf" / "train_peft_toy.yaml").read_text()


def test_a_budget_that_rounds_to_nothing_is_refused_before_the_statistics(toy):
    """Issue 40 item 6: a budget too small for one unit on any module used to be refused only after the
    statistics were collected; now before (here on a set whose statistics are not collected yet)."""
    recipe, _ = toy
    res = run(recipe, *TOY, "--stage", "10", "--stop_stage", "10", "--tag", "child_tiny", "--budget", "3",
              "--target_train_set", "child_dev", check=False)
    assert res.returncode != 0 and "is too small for" in res.stderr and "does not fit" in res.stderr
    assert not (recipe / "exp" / "stats_child_dev").exists()
