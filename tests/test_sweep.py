"""Budget sweeps: grid expansion, the report (table, plot, Pareto front), and the driver's
skip-finished / resume / infeasible handling with a stand-in for run.sh."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import numpy as np

from espnet_peft import PeftError
from espnet_peft.scoring import UtteranceErrors
from espnet_peft.sweep import (analyse, at_grid_edge, choose_lr, expand, experiment_tag, load_grid, order_cells,
                               pareto_front, protocol, rate_beyond, sweep_rows, tuning_grid, write_report)

from conftest import ROOT
from espnet_fixtures import local_module


def grid_file(tmp_path, grid):
    p = tmp_path / "grid.yaml"
    p.write_text(yaml.safe_dump(grid))
    return p


CONFIGS = {m: f"conf/peft/{m}.yaml" for m in ("lora", "dora", "pissa", "ssvd", "ssvd_o", "full")}


def test_shipped_grids_expand():
    cells = expand(load_grid(ROOT / "conf" / "sweep" / "embedded.yaml"), root=ROOT)
    names = [c.name for c in cells]
    assert len(names) == len(set(names)) == 20
    assert "ssvd_o_b4pct_inner0.25" in names and "ssvd_b4pct_directionstail" in names and "full" in names
    by = {c.name: c for c in cells}
    assert by["ssvd_o_b4pct_inner0.25"].config["allocation"]["inner"] == 0.25
    assert by["lora_b1pct"].config["budget"] == "1%" and "rank" not in by["lora_b1pct"].config
    assert by["full"].alphas == [0.0, 0.25, 0.5, 0.75, 1.0] and by["lora_b4pct"].alphas == [1.0]
    full = expand(load_grid(ROOT / "conf" / "sweep" / "full_grid.yaml"), root=ROOT)
    assert len(full) == 4 * (3 + 3 + 3 + 5 + 8) + 1
    # the protocol: a learning-rate grid per method, variants reuse their plain cell's choice,
    # and every method at 1% and 4% (full first) runs before the variants
    grid = load_grid(ROOT / "conf" / "sweep" / "embedded.yaml")
    proto = protocol(grid)
    assert proto.seeds == [1, 2, 3] and proto.select_seeds == 1 and proto.metric == "dev_wer"
    assert by["lora_b4pct"].lrs == [1e-3, 3e-3, 1e-2] and by["full"].lrs == [1e-4, 3e-4, 1e-3]
    assert by["ssvd_o_b4pct_inner0.25"].parent == "ssvd_o_b4pct" and by["lora_b4pct"].parent is None
    order = [c.name for c in order_cells(cells, proto)]
    first = ["full"] + [f"{m}_b{b}pct" for b in (1, 4) for m in ("lora", "dora", "pissa", "ssvd", "ssvd_o")]
    assert order[:11] == first and sorted(order) == sorted(names)
    for g in ("embedded_fusion", "full_grid"):
        assert all(c.lrs for c in expand(load_grid(ROOT / "conf" / "sweep" / f"{g}.yaml"), root=ROOT))
    # every budgeted cell places a too-small budget on the deepest modules that fit
    assert all(c.config["allocation"]["placement"] == "upper_first" for c in cells if c.budget)
    assert "placement" not in (by["full"].config.get("allocation") or {})


def test_every_method_has_a_cell_at_every_budget_of_the_shipped_grid(tmp_path):
    """Issue 18 item 4: on the shipped embedded foundation, 1% is below one LoRA / DoRA / PiSSA
    unit per matrix; the grid's placement adapts fewer modules instead of an infeasible cell."""
    from espnet_peft.bin.plan import build_plan

    foundation = ROOT / "egs2" / "embedded" / "asr1" / "foundation" / "config.yaml"
    cells = expand(load_grid(ROOT / "conf" / "sweep" / "embedded.yaml"), root=ROOT)
    for c in cells:
        if c.budget != "1%" or c.variant:
            continue
        p = tmp_path / f"{c.name}.yaml"
        p.write_text(yaml.safe_dump(c.config))
        plan = build_plan(p, foundation)
        assert plan.total <= plan.budget and plan.rows, c.name
        if c.method in ("lora", "dora", "pissa"):  # fewer modules, the rest listed
            assert plan.skipped and all("placement upper_first" in why for _, why in plan.skipped), c.name
            strict = dict(c.config, allocation={k: v for k, v in c.config["allocation"].items() if k != "placement"})
            p.write_text(yaml.safe_dump(strict))
            with pytest.raises(PeftError, match="too small"):
                build_plan(p, foundation)


def test_protocol_keys_and_choice():
    base = {"methods": ["lora", "full"], "configs": CONFIGS, "budgets": ["1%"],
            "allocations": {"lora": [{}, {"allocation": {"weights": "attention"}}]}}
    p = protocol(base)
    assert p.seeds == [None] and not p.seeds_declared and p.metric == "dev_wer" and p.variants == "inherit"
    assert protocol({"seeds": 2}).seeds == [1, 2]
    for bad, msg in [({"seeds": [1, 1]}, "seeds"), ({"seeds": 0}, "seeds"), ({"selection": {"metric": "test_wer"}}, "metric"),
                     ({"seeds": [1], "selection": {"seeds": 2}}, "more than"), ({"selection": {"foo": 1}}, "selection keys"),
                     ({"bootstrap": {"unit": "word"}}, "unit"), ({"bootstrap": {"resamples": 10}}, "resamples")]:
        with pytest.raises(PeftError, match=msg):
            protocol(bad)
    with pytest.raises(PeftError, match="learning_rates names"):
        expand(dict(base, learning_rates={"dora": [1e-3]}), root=ROOT)
    with pytest.raises(PeftError, match="distinct positive"):
        expand(dict(base, learning_rates={"lora": [1e-3, -1]}), root=ROOT)
    cells = {c.name: c for c in expand(dict(base, learning_rates={"lora": [1e-3, "3e-3"], "full": 1e-4}), root=ROOT)}
    assert cells["lora_b1pct"].lrs == [1e-3, 3e-3] and cells["full"].lrs == [1e-4]
    assert cells["lora_b1pct_weightsattention"].parent == "lora_b1pct"
    tuned = {c.name: c for c in expand(dict(base, learning_rates={"lora": [1e-3]}, selection={"variants": "tune"}), root=ROOT)}
    assert tuned["lora_b1pct_weightsattention"].parent is None and tuned["full"].lrs == []
    p2 = protocol({"seeds": [1, 2]})
    c = cells["lora_b1pct"]
    assert experiment_tag("child_", c, 3e-3, 2, p2) == "child_lora_b1pct_lr0.003_s2"
    assert experiment_tag("child_", cells["full"], None, None, p) == "child_full"
    assert experiment_tag("", c, 1e-4, None, p) == "lora_b1pct_lr0.0001"
    assert choose_lr({1e-3: 30.0, 3e-3: 25.0, 1e-2: 25.0}) == 3e-3  # ties: the rate listed first
    assert choose_lr({1e-3: 30.0, 3e-3: None}) is None  # not before every rate has its dev score
    assert choose_lr({1e-3: 0.61, 3e-3: 0.64}, "valid_acc") == 3e-3  # accuracy: the highest
    assert at_grid_edge(1e-2, [1e-3, 3e-3, 1e-2]) and not at_grid_edge(3e-3, [1e-3, 3e-3, 1e-2])
    assert not at_grid_edge(1e-3, [1e-3, 3e-3])


def test_grid_errors(tmp_path):
    with pytest.raises(PeftError, match="unknown method"):
        expand({"methods": ["lorra"], "configs": CONFIGS}, root=ROOT)
    with pytest.raises(PeftError, match="no base config"):
        expand({"methods": ["lora"], "configs": {}}, root=ROOT)
    with pytest.raises(PeftError, match="interpolation names cells"):
        expand({"methods": ["lora"], "configs": CONFIGS, "budgets": ["1%"],
                "interpolation": {"cells": ["nope"], "alphas": [0.5]}}, root=ROOT)
    with pytest.raises(PeftError, match="unknown grid key"):
        load_grid(grid_file(tmp_path, {"methods": ["lora"], "budget": ["1%"]}))


def test_pareto_front():
    pts = [(10, 5), (8, 6), (9, 4), (12, 3), (11, 7), (8, 6)]
    front = pareto_front(pts)
    assert {pts[i] for i in front} == {(8, 6), (9, 4), (12, 3)}
    assert 4 not in front  # (11, 7) is dominated by (10, 5)


def summary(tag, method, tgt, src, frac=0.01, alpha=1.0):
    return {"tag": tag, "method": method, "alpha": alpha, "trainable_params": int(frac * 1e6), "fraction": frac,
            "target_test_sets": ["child_test"], "source_test_sets": ["source_test"],
            "base": {"child_test": {"wer": 40.0}, "source_test": {"wer": 8.0}},
            "adapted": {"child_test": {"wer": tgt}, "source_test": {"wer": src}}, "train_wall_seconds": 60}


def test_report_table_plot_json(tmp_path):
    sums = [summary("lora_b1", "lora", 20.0, 9.0), summary("ssvd_o_b1", "ssvd_o", 18.0, 8.5),
            summary("full", "full", 10.0, 14.0, frac=1.0), summary("pissa_b1", "pissa", 21.0, 10.0)]
    paths = write_report(sums, tmp_path / "rep", {"dora_b1": "infeasible: budget too small"}, header="# sweep")
    md = paths["md"].read_text()
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert rows["ssvd_o_b1"].rstrip().endswith("* |") and rows["full"].rstrip().endswith("* |")
    assert not rows["pissa_b1"].rstrip().endswith("* |")  # dominated by ssvd_o_b1 on both axes
    assert "infeasible" in rows["dora_b1"]
    data = json.loads(paths["json"].read_text())
    r = {x["cell"]: x for x in data["rows"]}
    assert r["ssvd_o_b1"]["gain_recovered"] == pytest.approx((40 - 18) / (40 - 10))
    assert r["lora_b1"]["forgetting"] == pytest.approx(1.0)
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_gain_reference_is_plain_full_at_alpha_1(tmp_path):
    # a Speech-FT variant listed first, and an interpolation point of plain full, must not become
    # the 100% of "gain recovered"; the table names the reference
    sums = [summary("full_speechft", "full", 16.0, 12.0, frac=1.0), summary("full", "full", 25.0, 9.0, frac=1.0, alpha=0.5),
            summary("full", "full", 10.0, 14.0, frac=1.0), summary("lora_b1", "lora", 25.0, 9.0)]
    rows = {(r["cell"], r["alpha"]): r for r in sweep_rows(sums)}
    assert rows[("lora_b1", 1.0)]["gain_recovered"] == pytest.approx(15 / 30)
    assert rows[("full_speechft", 1.0)]["gain_recovered"] == pytest.approx(24 / 30)
    assert {r["gain_reference"] for r in rows.values()} == {"full"}
    # without a plain `full` cell the first full cell at alpha 1 is the reference, and says so
    paths = write_report(sums[:1] + sums[3:], tmp_path / "rep")
    assert "gain recovered vs full_speechft" in paths["md"].read_text()
    assert json.loads(paths["json"].read_text())["rows"][1]["gain_recovered"] == pytest.approx(15 / 24)
    assert sweep_rows(sums[3:])[0]["gain_recovered"] is None  # no full fine-tuning in the sweep


def utt_summary(cell, method, tgt_rates, src_rates, rng, n=200, budget="1%", base=(0.5, 0.1, 0.12), seeds=1):
    """Summaries (one per seed) with per-utterance errors drawn at the given error rates on a
    target set and two source sets, as the driver attaches them."""
    sets = ["child_test", "source_test", "source_unseen_test"]
    ids = tuple(f"u{i:03d}" for i in range(n))
    words = np.full(n, 10)
    spk = tuple(f"s{i % 8}" for i in range(n))
    mk = lambda p: UtteranceErrors(ids, rng.binomial(words, p), words, spk)  # noqa: E731
    out = []
    for k in range(seeds):
        rates = (tgt_rates[k] if isinstance(tgt_rates, list) else tgt_rates,) + tuple(src_rates)
        utt = {x: (r if isinstance(r, UtteranceErrors) else mk(r)) for x, r in zip(sets, rates)}
        bu = {x: b for x, b in zip(sets, base)}
        out.append({"tag": f"{cell}_s{k + 1}", "cell": cell, "method": method, "alpha": 1.0, "sweep_budget": budget,
                    "sweep_variant": {}, "lr": 3e-3, "seed": k + 1, "trainable_params": 1000, "fraction": 0.01,
                    "target_test_sets": sets[:1], "source_test_sets": sets[1:],
                    "base": {x: {"wer": b.wer, "words": int(b.words.sum())} for x, b in bu.items()},
                    "adapted": {x: {"wer": u.wer, "words": int(u.words.sum())} for x, u in utt.items()},
                    "_utt": utt, "_base_utt": bu, "train_wall_seconds": 60})
    return out


def test_report_intervals_seeds_two_sources_and_significant_pareto(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    ids, words, spk = tuple(f"u{i:03d}" for i in range(n)), np.full(n, 10), tuple(f"s{i % 8}" for i in range(n))
    base = tuple(UtteranceErrors(ids, rng.binomial(words, p), words, spk) for p in (0.5, 0.1, 0.12))
    a_tgt = UtteranceErrors(ids, rng.binomial(words, 0.2), words, spk)
    a_src = UtteranceErrors(ids, rng.binomial(words, 0.13), words, spk)
    # b: a with one more error on target and source: worse on both axes by a hair (noise)
    b_tgt = UtteranceErrors(ids, a_tgt.errors + (np.arange(n) == 0), words, spk)
    b_src = UtteranceErrors(ids, a_src.errors + (np.arange(n) == 1), words, spk)
    sums = (utt_summary("lora_b1", "lora", [a_tgt, a_tgt], [a_src, 0.15], rng, base=base, seeds=2)
            + utt_summary("dora_b1", "dora", b_tgt, [b_src, 0.15], rng, base=base)
            + utt_summary("pissa_b1", "pissa", 0.35, [0.25, 0.3], rng, base=base)
            + utt_summary("full", "full", 0.1, [0.3, 0.32], rng, base=base, budget=None))
    tuning = {"lora_b1": {"metric": "dev_wer", "set": "child_dev", "grid": [1e-3, 3e-3, 1e-2],
                          "mean": {"0.001": 30.0, "0.003": 25.0, "0.01": 27.0}, "chosen": 3e-3, "edge": False},
              "dora_b1": {"metric": "dev_wer", "set": "child_dev", "grid": [1e-3, 3e-3, 1e-2],
                          "mean": {"0.001": 30.0, "0.003": 29.0, "0.01": 28.0}, "chosen": 1e-2, "edge": True}}
    a = analyse(sums, {"ssvd_b1": "infeasible: budget"}, tuning=tuning, bootstrap={"resamples": 1000})
    r = {x["cell"]: x for x in a["rows"]}
    assert r["lora_b1"]["n_seeds"] == 2 and r["lora_b1"]["target_score_sd"] == 0.0
    assert r["lora_b1"]["target_score"] == pytest.approx(a_tgt.wer)
    lo, hi = r["lora_b1"]["target_ci"]
    assert lo < r["lora_b1"]["target_score"] < hi
    # forgetting on each source set, each with its paired interval against the base model
    for x in ("source_test", "source_unseen_test"):
        sx = r["pissa_b1"]["sources"][x]
        assert sx["forgetting"] > 10 and sx["forgetting_test"]["significant"] and sx["ci"][0] < sx["score"] < sx["ci"][1]
    assert r["lora_b1"]["sources"]["source_test"]["forgetting"] == pytest.approx(a_src.wer - base[1].wer)
    assert r["full"]["target_gain_test"]["significant"] and r["full"]["gain_recovered"] == 1.0
    lo, hi = r["lora_b1"]["gain_recovered_ci"]
    assert lo < r["lora_b1"]["gain_recovered"] < hi
    # dora is behind lora on both axes by a hair: dominated on the point estimates, not significantly
    pts = [(x["target_score"], x["source_score"]) for x in a["rows"] if x["status"] == "done"]
    assert 1 not in pareto_front(pts)
    assert r["dora_b1"]["pareto"] and r["lora_b1"]["pareto"] and r["full"]["pareto"]
    assert not r["pissa_b1"]["pareto"]  # significantly worse than lora on both
    # the findings claim only significant differences
    text = "\n".join(a["findings"])
    one = next(f for f in a["findings"] if f.startswith("**1%.**"))
    assert "lowest child_test WER: lora_b1" in one and "significantly higher: pissa_b1" in one
    assert "not significantly different from it: dora_b1" in one
    assert "dora_b1 (" not in one.split("not significantly")[0]
    assert "dora_b1" in text and "edge of its grid for dora_b1" in text
    paths = write_report(sums, tmp_path / "rep", {"ssvd_b1": "infeasible: budget"}, tuning=tuning,
                         bootstrap={"resamples": 1000})
    md = paths["md"].read_text()
    head = next(l for l in md.splitlines() if l.startswith("| cell |"))
    assert "forgetting source_test" in head and "forgetting source_unseen_test" in head
    line = next(l for l in md.splitlines() if l.startswith("| lora_b1 | lora |"))  # (the main table)
    assert " ± 0.00 [" in line and "| 0.003 |" in line
    assert "**0.003: 25.00**" in md and "at the grid's edge" in md and "### What the numbers say" in md
    data = json.loads(paths["json"].read_text())
    assert all(not k.startswith("_") for s in data["summaries"] for k in s)
    assert data["tuning"]["lora_b1"]["chosen"] == 3e-3 and set(data["fronts"]) == {"pooled", "source_test",
                                                                                    "source_unseen_test"}
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    # speaker-level intervals are offered as well
    sp = analyse(sums, bootstrap={"resamples": 500, "unit": "speaker"})
    assert sp["bootstrap"]["axes"]["child_test"]["unit"] == "speaker" and sp["bootstrap"]["axes"]["child_test"]["units"] == 8


FAKE_RUN = r'''#!/usr/bin/env bash
# stands in for run.sh: records its calls, writes the summary stage 15 would write
set -euo pipefail
echo "$*" >> "$CALLS"
stage=1; alpha=1.0; tag=""; cfg=""; prepare_only=false
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2;; --alpha) alpha=$2; shift 2;; --tag) tag=$2; shift 2;;
    --peft_config) cfg=$2; shift 2;; --prepare_only) prepare_only=$2; shift 2;; *) shift;;
  esac
done
[ "$prepare_only" = true ] && exit 0
if [ -n "${HANG:-}" ]; then echo $$ > "$HANG"; sleep 300; fi
[ -n "${FAIL_TAG:-}" ] && [ "$tag" = "$FAIL_TAG" ] && exit 3
dir=exp/$tag/merged; [ "$alpha" = 1.0 ] || dir=exp/$tag/merged_alpha$alpha
mkdir -p "$dir"
[ -z "${FID:-}" ] || echo "$FID" > "exp/$tag/foundation_id"  # stage 10 records the foundation model
method=$(python3 -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['method'])" "$cfg")
python3 - "$dir/summary.json" "$tag" "$method" "$alpha" <<'PY'
import json, sys
p, tag, method, alpha = sys.argv[1:]
a = float(alpha)
json.dump({"tag": tag, "method": method, "alpha": a, "trainable_params": 1000, "fraction": 0.01,
           "target_test_sets": ["child_test"], "source_test_sets": ["source_test"],
           "base": {"child_test": {"wer": 40.0}, "source_test": {"wer": 8.0}},
           "adapted": {"child_test": {"wer": 40 - 20 * a}, "source_test": {"wer": 8 + 4 * a}}}, open(p, "w"))
PY
'''


def scratch_recipe(tmp_path, methods=("lora", "ssvd", "full")):
    """A recipe directory with the shipped PEFT configs of ``methods`` (its run.sh is the caller's)."""
    rec = tmp_path / "recipe"
    (rec / "conf" / "peft").mkdir(parents=True)
    for m in methods:
        (rec / "conf" / "peft" / f"{m}.yaml").write_text((ROOT / "conf" / "peft" / f"{m}.yaml").read_text())
    return rec


def test_a_killed_sweep_leaves_no_job_running(tmp_path):
    """Killing the sweep driver (even by SIGKILL) stops the job it started: the backend (launch.py)
    is its direct child and watches it, as it watches a recipe."""
    import signal
    import time

    rec = scratch_recipe(tmp_path)
    (rec / "run.sh").write_text(FAKE_RUN)
    grid = grid_file(rec, {"configs": {"lora": "conf/peft/lora.yaml"}, "methods": ["lora"], "budgets": ["1%"]})
    pidfile = tmp_path / "job.pid"
    env = dict(os.environ, CALLS=str(tmp_path / "calls.txt"), HANG=str(pidfile))
    cmd = [sys.executable, str(ROOT / "local" / "budget_sweep.py"), "--grid", str(grid), "--out", "exp/sweep",
           "--run", "bash run.sh", "--cmd", f"{sys.executable} {ROOT / 'local' / 'launch.py'} --backend local",
           "--model_config", "none.yaml", "--records", "records"]
    sweep = subprocess.Popen(cmd, cwd=rec, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not pidfile.is_file() or not pidfile.read_text().strip():
            assert time.time() < deadline and sweep.poll() is None, "the job never started"
            time.sleep(0.2)
        job = int(pidfile.read_text())
        os.kill(sweep.pid, signal.SIGKILL)
        sweep.wait()
        deadline = time.time() + 30
        while Path(f"/proc/{job}").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{job}").exists(), "the job outlived the sweep that started it"
    finally:
        if sweep.poll() is None:
            sweep.kill()


def test_driver_skips_finished_cells_and_resumes(tmp_path):
    rec = scratch_recipe(tmp_path)
    (rec / "run.sh").write_text(FAKE_RUN)
    grid = grid_file(rec, {"configs": {m: f"conf/peft/{m}.yaml" for m in ("lora", "ssvd", "full")},
                           "methods": ["lora", "ssvd", "full"], "budgets": ["1%"],
                           "interpolation": {"cells": ["full"], "alphas": [0, 0.5]}})
    env = dict(os.environ, CALLS=str(tmp_path / "calls.txt"), FAIL_TAG="t_ssvd_b1pct")
    cmd = [sys.executable, str(ROOT / "local" / "budget_sweep.py"), "--grid", str(grid), "--out", "exp/sweep",
           "--run", "bash run.sh", "--cmd", f"{sys.executable} {ROOT / 'local' / 'launch.py'} --backend local",
           "--tag_prefix", "t_", "--max_parallel", "2", "--model_config", "none.yaml", "--results", "RESULTS_sweep.md",
           "--records", "records"]
    res = subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 1  # one cell failed ...
    assert "cell t_ssvd_b1pct" not in res.stdout and "ssvd_b1pct: FAILED" in res.stdout
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert sum("--prepare_only true" in c for c in calls) == 1
    assert any("--alpha 0.5" in c for c in calls) and any("--alpha 0 " in c + " " for c in calls)
    md = (rec / "RESULTS_sweep.md").read_text()
    assert "lora_b1pct" in md and "failed" in md  # ... and the report says so
    assert (rec / "RESULTS_sweep.png").read_bytes()[:4] == b"\x89PNG" and "(RESULTS_sweep.png)" in md
    assert json.loads((rec / "RESULTS_sweep.json").read_text())["rows"]
    # the sweep is run again (say after a kill): finished cells are skipped, the failed one retried
    (tmp_path / "calls.txt").write_text("")
    env.pop("FAIL_TAG")
    res = subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    tagged = [c for c in calls if "--tag" in c]
    assert tagged and all("t_ssvd_b1pct" in c for c in tagged)
    data = json.loads((rec / "exp" / "sweep" / "sweep.json").read_text())
    cells = {(r["cell"], r.get("alpha")) for r in data["rows"] if r["status"] == "done"}
    assert cells == {("lora_b1pct", 1.0), ("ssvd_b1pct", 1.0), ("full", 0.0), ("full", 0.5), ("full", 1.0)}
    md = (rec / "RESULTS_sweep.md").read_text()
    assert "over 2 recorded invocation(s)" in md  # wall time adds up over resumptions
    assert [r["cells_run"] for r in json.loads((rec / "records" / "invocations.json").read_text())] == [3, 1]
    res = subprocess.run(cmd + ["--dry_run"], cwd=rec, env=env, capture_output=True, text=True)
    assert "0 to run" in res.stdout
    # a trained cell that lacks one interpolation point (killed between them: no record) only evaluates it
    shutil.rmtree(rec / "exp" / "t_full" / "merged_alpha0.5")
    (rec / "records" / "t_full.alpha0.5.test.json").unlink()
    (tmp_path / "calls.txt").write_text("")
    res = subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    calls = [c for c in (tmp_path / "calls.txt").read_text().splitlines() if "--tag" in c]
    assert len(calls) == 1 and "--alpha 0.5" in calls[0] and "--stage 11" in calls[0], calls
    # a finished run is its record: on a new machine (no exp/), nothing with a record runs again, and
    # the report rendered from the records alone is the committed one
    committed = (rec / "RESULTS_sweep.md").read_text()
    subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    committed = (rec / "RESULTS_sweep.md").read_text()
    shutil.rmtree(rec / "exp")
    (tmp_path / "calls.txt").write_text("")
    res = subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not (tmp_path / "calls.txt").read_text().strip()
    assert (rec / "RESULTS_sweep.md").read_text() == committed
    rec_file = json.loads((rec / "records" / "t_lora_b1pct.test.json").read_text())
    assert {"foundation_id", "data_id", "config_hash", "code_commit", "lr", "seed", "summary"} <= set(rec_file)
    # the report cites the commands that ran the sweep, not a later call that only rendered it
    res = subprocess.run(cmd + ["--command", "run_sweep.sh --target child"], cwd=rec, env=env,
                         capture_output=True, text=True)
    md = (rec / "RESULTS_sweep.md").read_text()
    assert "run_sweep.sh --target child" not in md and "Command: `" in md and "budget_sweep.py --grid" in md
    (rec / "records" / "t_full.test.json").unlink()
    res = subprocess.run(cmd + ["--command", "run_sweep.sh --target child"], cwd=rec, env=env,
                         capture_output=True, text=True)
    assert "`run_sweep.sh --target child`" in (rec / "RESULTS_sweep.md").read_text()


def test_seeded_configs_only_where_the_seed_has_an_effect(tmp_path):
    """Per-seed PEFT configs go only to methods whose seed does something (PiSSA's randomised SVD);
    SSVD and SSVD-O (exact Gram SVD) refuse a seed, and once got one per seed, so that every one of
    their runs failed at its first stage. Every config a run will use is checked before any starts."""
    rec = scratch_recipe(tmp_path, methods=("pissa", "ssvd", "ssvd_o"))
    (rec / "run.sh").write_text(FAKE_RUN)
    grid = {"configs": {m: f"conf/peft/{m}.yaml" for m in ("pissa", "ssvd", "ssvd_o")},
            "methods": ["pissa", "ssvd", "ssvd_o"], "budgets": ["1%"], "seeds": [1, 2]}
    cmd = [sys.executable, str(ROOT / "local" / "budget_sweep.py"), "--grid", str(grid_file(rec, grid)),
           "--out", "exp/sweep", "--run", "bash run.sh", "--cmd", f"{sys.executable} {ROOT / 'local' / 'launch.py'}",
           "--model_config", "none.yaml", "--records", "records", "--dry_run"]
    env = dict(os.environ, CALLS=str(tmp_path / "calls.txt"))
    res = subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    configs = rec / "exp" / "sweep" / "configs"
    assert sorted(p.name for p in configs.glob("*.s*.yaml")) == ["pissa_b1pct.s1.yaml", "pissa_b1pct.s2.yaml"]
    assert "configs/ssvd_o_b1pct.yaml" in res.stdout and "configs/ssvd_o_b1pct.s1.yaml" not in res.stdout
    budget_sweep = local_module("budget_sweep")
    assert budget_sweep.accepts_seed(yaml.safe_load((ROOT / "conf/peft/pissa.yaml").read_text()), [1, 2])
    assert not budget_sweep.accepts_seed(yaml.safe_load((ROOT / "conf/peft/ssvd_o.yaml").read_text()), [1, 2])
    # a config the recipe would refuse stops the sweep before its first run, naming the cell
    bad = rec / "conf" / "peft" / "ssvd.yaml"
    bad.write_text(bad.read_text() + "seed: 7\n")
    res = subprocess.run(cmd[:-1], cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "cell ssvd_b1pct" in res.stderr and "'seed' has no effect" in res.stderr, res.stderr
    assert not (tmp_path / "calls.txt").exists()


def test_driver_reports_infeasible_budgets(tmp_path):
    from conftest import TINY_ASR_CONFIG

    rec = tmp_path / "recipe"
    (rec / "conf" / "peft").mkdir(parents=True)
    for m in ("lora", "ssvd"):
        (rec / "conf" / "peft" / f"{m}.yaml").write_text((ROOT / "conf" / "peft" / f"{m}.yaml").read_text())
    (rec / "run.sh").write_text(FAKE_RUN)
    model_cfg = dict(TINY_ASR_CONFIG, token_list=["<blank>", "<unk>"] + list("abcdefgh ") + ["<sos/eos>"])
    (rec / "model.yaml").write_text(yaml.safe_dump(model_cfg))
    grid = grid_file(rec, {"configs": {"lora": "conf/peft/lora.yaml", "ssvd": "conf/peft/ssvd.yaml"},
                           "methods": ["lora", "ssvd"], "budgets": ["2%"]})
    env = dict(os.environ, CALLS=str(tmp_path / "calls.txt"))
    res = subprocess.run([sys.executable, str(ROOT / "local" / "budget_sweep.py"), "--grid", str(grid), "--out",
                          "exp/sweep", "--run", "bash run.sh", "--model_config", "model.yaml",
                          "--cmd", f"{sys.executable} {ROOT / 'local' / 'launch.py'}"],
                         cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "1 infeasible" in res.stdout
    rows = {r["cell"]: r for r in json.loads((rec / "exp" / "sweep" / "sweep.json").read_text())["rows"]}
    assert rows["lora_b2pct"]["status"].startswith("infeasible: budget")
    assert rows["ssvd_b2pct"]["status"] == "done"


def test_driver_refuses_cells_of_another_foundation_model_then_archives_them(tmp_path):
    sys.path.insert(0, str(ROOT / "local"))
    from file_id import file_id

    rec = tmp_path / "recipe"
    (rec / "conf" / "peft").mkdir(parents=True)
    (rec / "conf" / "peft" / "lora.yaml").write_text((ROOT / "conf" / "peft" / "lora.yaml").read_text())
    (rec / "run.sh").write_text(FAKE_RUN)
    (rec / "fdn").mkdir()
    model = rec / "fdn" / "model.pth"
    model.write_bytes(b"first foundation model")
    grid = grid_file(rec, {"configs": {"lora": "conf/peft/lora.yaml"}, "methods": ["lora"], "budgets": ["1%", "2%"]})
    calls = tmp_path / "calls.txt"
    env = dict(os.environ, CALLS=str(calls), FID=file_id(model))
    cmd = [sys.executable, str(ROOT / "local" / "budget_sweep.py"), "--grid", str(grid), "--out", "exp/sweep",
           "--run", "bash run.sh", "--cmd", f"{sys.executable} {ROOT / 'local' / 'launch.py'} --backend local",
           "--tag_prefix", "t_", "--model_config", "fdn/config.yaml"]
    res = subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    old_id = file_id(model)
    # a retrained foundation model: every cell is stale, refused before anything runs
    model.write_bytes(b"second foundation model")
    calls.write_text("")
    env["FID"] = file_id(model)
    res = subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "2 cell(s) were trained on another foundation model" in res.stderr
    assert "--archive_stale" in res.stderr and calls.read_text() == ""
    # --archive_stale keeps the old experiments under exp/stale and runs the cells again
    res = subprocess.run(cmd + ["--archive_stale"], cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (rec / "exp" / "stale" / f"t_lora_b1pct.{old_id}" / "merged" / "summary.json").is_file()
    assert sum("--tag" in c for c in calls.read_text().splitlines()) == 2
    assert (rec / "exp" / "t_lora_b2pct" / "foundation_id").read_text().strip() == file_id(model)
    # an experiment from before ids were recorded is stale as well
    (rec / "exp" / "t_lora_b1pct" / "foundation_id").unlink()
    res = subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "t_lora_b1pct (unrecorded)" in res.stderr


FAKE_RECIPE = r"""
# stands in for run.sh / peft_asr.sh stages 10-15 (and --prepare_only): trains (records the rate
# and seed ESPnet would get in exp/<tag>/config.yaml), merges, decodes by substituting words at an
# error rate that depends on the method, the learning rate, the seed and the set, scores, and
# writes the summary stage 15 would write. Every call is logged with the learning-rate choices
# on disk at that moment, so the test sees what was known when a set was decoded.
import json, os, random, re, sys, zlib
from pathlib import Path
import yaml

argv = sys.argv[1:]
opts = {argv[i].lstrip("-"): argv[i + 1] for i in range(0, len(argv) - 1, 2)}
choices = Path(os.environ["SWEEP_OUT"]) / "lr_choices.json"
with open(os.environ["CALLS"], "a") as fh:
    fh.write(json.dumps({"opts": opts, "choices": json.loads(choices.read_text()) if choices.is_file() else {}}) + "\n")
SOURCES = ["source_test", "source_unseen_test"]
targets = opts.get("target_test_sets", "child_test").split()
TARGET_RATE = {"lora": {0.001: 0.45, 0.003: 0.2, 0.01: 0.3}, "ssvd": {0.0003: 0.2, 0.001: 0.25, 0.003: 0.4},
               "full": {0.0001: 0.3, 0.001: 0.1}}
SOURCE_RATE = {"lora": 0.15, "ssvd": 0.2, "full": 0.35}


def decode(out, s, rate):
    (out / s).mkdir(parents=True, exist_ok=True)
    err = words = 0
    lines = []
    for line in Path(f"dump/raw/{s}/text").read_text().splitlines():
        key, text = line.split(" ", 1)
        rng = random.Random(zlib.crc32(f"{out}/{s}/{key}".encode()))
        hyp = [w if rng.random() >= rate else "zzz" for w in text.split()]
        err += sum(h == "zzz" for h in hyp)
        words += len(hyp)
        lines.append(f"{key} {' '.join(hyp)}\n")
    (out / s / "text").write_text("".join(lines))
    (out / s / "result.json").write_text(json.dumps({"wer": 100 * err / words, "cer": 0.0, "words": words,
                                                      "utterances": len(lines)}))


if opts.get("prepare_only") == "true":
    for s in targets + SOURCES:
        if not (Path("exp/base_decode") / s / "text").is_file():
            decode(Path("exp/base_decode"), s, 0.6 if s.startswith("child") else 0.1)
    sys.exit(0)
tag, stage, stop = opts["tag"], int(opts["stage"]), int(opts["stop_stage"])
if os.environ.get("FAIL_TAG") == tag:
    sys.exit(3)
alpha = float(opts.get("alpha", 1.0))
cfg = yaml.safe_load(open(opts["peft_config"]))
pa = opts.get("peft_args", "")
lr = float(re.search(r"--optim_conf lr=(\S+)", pa).group(1))
seed = int(re.search(r"--seed (\d+)", pa).group(1))
exp = Path("exp") / tag
merged = exp / ("merged" if alpha == 1.0 else f"merged_alpha{alpha:g}")
run = lambda st: stage <= st <= stop  # noqa: E731
if run(10) and os.environ.get("DIVERGE_TAG") == tag:  # the trainer's stop on a non-finite loss
    exp.mkdir(parents=True, exist_ok=True)
    (exp / "diverged.json").write_text('{"error": "non-finite loss"}')
    sys.exit(1)
if run(10):
    exp.mkdir(parents=True, exist_ok=True)
    (exp / "config.yaml").write_text(yaml.safe_dump({"optim_conf": {"lr": lr, "betas": [0.9, 0.98]}, "seed": seed}))
    (exp / "peft_config.yaml").write_text(yaml.safe_dump(cfg))
    (exp / "train_wall.json").write_text('{"train_wall_seconds": 60}')
if run(11):
    assert (exp / "train_wall.json").is_file(), "merge before training"
    merged.mkdir(parents=True, exist_ok=True)
    (merged / "model.pth").write_text("model")


def rate(s):
    base = 0.6 if s.startswith("child") else 0.1
    r = TARGET_RATE[cfg["method"]][lr] if s.startswith("child") else SOURCE_RATE[cfg["method"]]
    return base + alpha * (r - base) + 0.02 * (seed - 1)


if run(12):
    assert (merged / "model.pth").is_file()
    for s in targets + (SOURCES if stop >= 14 else []):
        decode(merged / "decode", s, rate(s))
if run(14):
    for s in SOURCES:
        decode(merged / "decode", s, rate(s))
if run(15):
    sets = targets + SOURCES
    res = lambda d, s: json.loads((d / s / "result.json").read_text())  # noqa: E731
    json.dump({"tag": tag, "method": cfg["method"], "alpha": alpha, "trainable_params": 1000, "fraction": 0.01,
               "target_test_sets": targets, "source_test_sets": SOURCES, "train_wall_seconds": 60,
               "base": {s: res(Path("exp/base_decode"), s) for s in sets},
               "adapted": {s: res(merged / "decode", s) for s in sets}}, open(merged / "summary.json", "w"))
"""


def fake_recipe(tmp_path):
    rec = scratch_recipe(tmp_path)
    (rec / "fake_recipe.py").write_text(FAKE_RECIPE)
    (rec / "run.sh").write_text(f'#!/usr/bin/env bash\nexec {sys.executable} "$(dirname "$0")/fake_recipe.py" "$@"\n')
    vocab = "the a cat dog sat ran on under big small red blue house tree".split()
    rng = np.random.default_rng(0)
    for s, n in (("child_dev", 30), ("child_test", 60), ("source_test", 60), ("source_unseen_test", 40)):
        raw = rec / "dump" / "raw" / s
        raw.mkdir(parents=True)
        keys = [f"{s}-{i:03d}" for i in range(n)]
        raw.joinpath("text").write_text("".join(f"{k} {' '.join(rng.choice(vocab, 8))}\n" for k in keys))
        raw.joinpath("utt2spk").write_text("".join(f"{k} {s}-spk{i % 5}\n" for i, k in enumerate(keys)))
    return rec


def test_driver_chooses_the_rate_on_dev_before_any_test_set_is_decoded(tmp_path):
    """The learning-rate protocol end to end with a stand-in recipe: every rate trains with seed 1
    and is decoded on the dev set only; the choice (lowest dev WER) is made and written before any
    test set is decoded with an adapted model, and only the chosen rate is ever decoded on test;
    the seeds reach the training; the report has seeds, intervals, both source sets; a re-run
    continues (a kill during the choice, a lost result) and never changes a choice made."""
    rec = fake_recipe(tmp_path)
    grid = grid_file(rec, {
        "configs": {m: f"conf/peft/{m}.yaml" for m in ("lora", "ssvd", "full")},
        "blocks": [{"methods": ["lora", "ssvd"], "budgets": ["1%"]}, {"methods": ["full"]},
                   {"methods": ["lora"], "budgets": ["1%"], "allocations": {"lora": [{"allocation": {"weights": "attention"}}]}}],
        "learning_rates": {"lora": [1e-3, 3e-3, 1e-2], "ssvd": [1e-3, 3e-3], "full": [1e-4, 1e-3]},
        "seeds": [1, 2], "selection": {"seeds": 1}, "priority_budgets": ["1%"],
        "bootstrap": {"resamples": 300}, "interpolation": {"cells": ["full"], "alphas": [0.5]}})
    calls = tmp_path / "calls.jsonl"
    env = dict(os.environ, CALLS=str(calls), SWEEP_OUT=str(rec / "exp" / "sweep" / "records"), FAIL_TAG="t_ssvd_b1pct_lr0.003_s1")
    cmd = [sys.executable, str(ROOT / "local" / "budget_sweep.py"), "--grid", str(grid), "--out", "exp/sweep",
           "--run", "bash run.sh", "--cmd", f"{sys.executable} {ROOT / 'local' / 'launch.py'} --backend local",
           "--tag_prefix", "t_", "--model_config", "none.yaml", "--results", "RESULTS_sweep.md", "--dev_set", "child_dev"]
    # the grid tunes on dev WER: without the dev set the sweep refuses before any compute
    res = subprocess.run(cmd[:-2], cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "--dev_set" in res.stderr and not calls.exists()
    res = subprocess.run(cmd + ["--dry_run"], cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0 and not calls.exists(), res.stderr
    dry = [l for l in res.stdout.splitlines() if l.startswith("bash run.sh")]
    assert len(dry) == 3 + 2 + 2 and all("--target_test_sets child_dev" in l and "--stop_stage 13" in l for l in dry)
    assert "then lora_b1pct_weightsattention" in res.stdout

    # first run: one of ssvd's dev runs fails (a kill in the middle of the choice)
    res = subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 1, res.stdout + res.stderr
    log = [json.loads(l) for l in calls.read_text().splitlines()]
    runs = [c for c in log if "tag" in c["opts"]]
    rx = re.compile(r"^t_(?P<cell>.+)_lr(?P<lr>[^_]+)_s(?P<seed>\d+)$")
    parent = {"lora_b1pct_weightsattention": "lora_b1pct"}

    def test_decoding(c):
        o = c["opts"]
        return int(o["stage"]) <= 12 <= int(o["stop_stage"]) or int(o["stage"]) <= 14 <= int(o["stop_stage"])

    for c in runs:
        m = rx.match(c["opts"]["tag"])
        cell, lr, seed = m["cell"], float(m["lr"]), int(m["seed"])
        # the rate and the seed reach the training (ESPnet options in --peft_args)
        assert re.search(rf"--optim_conf lr=\S+ --seed {seed}$", c["opts"]["peft_args"]), c
        assert float(re.search(r"lr=(\S+)", c["opts"]["peft_args"]).group(1)) == lr
        if c["opts"].get("target_test_sets") == "child_dev":
            assert seed == 1 and c["opts"]["stop_stage"] == "13" and cell not in parent
        elif test_decoding(c):  # a test set decoded by an adapted model: only after the choice, at the chosen rate
            chosen = c["choices"].get(parent.get(cell, cell))
            assert chosen is not None, f"test set decoded before the learning-rate choice: {c}"
            assert chosen["lr"] == lr and all(v is not None for vs in chosen["scores"].values() for v in vs)
    tested = {rx.match(c["opts"]["tag"])["cell"] for c in runs if test_decoding(c) and c["opts"].get("target_test_sets") != "child_dev"}
    assert tested == {"lora_b1pct", "full", "lora_b1pct_weightsattention"}  # ssvd's choice is incomplete
    # order: the priority cells (full, then every method at 1%) come before the variant, and the
    # interpolation curves (alphas other than 1) after it
    order = [(rx.match(c["opts"]["tag"])["cell"], float(c["opts"].get("alpha", 1))) for c in runs]
    variant = order.index(("lora_b1pct_weightsattention", 1.0))
    assert variant > max(i for i, (x, a) in enumerate(order) if x in ("full", "lora_b1pct") and a == 1)
    assert [a for _, a in order[:variant]] == [1.0] * variant and any(a != 1 for _, a in order[variant:])
    assert order[0][0] == "full"
    # every rate of a cell is decoded on dev, test only for the chosen one (lowest dev WER)
    choice = json.loads((rec / "exp" / "sweep" / "records" / "lr_choices.json").read_text())
    assert choice["lora_b1pct"]["lr"] == 3e-3 and choice["full"]["lr"] == 1e-3 and "ssvd_b1pct" not in choice
    assert not any((rec / "exp").glob("t_lora_b1pct_lr0.001_s*/merged/summary.json"))
    assert not (rec / "exp" / "t_lora_b1pct_lr0.001_s1" / "merged" / "decode" / "child_test").exists()
    assert sorted(p.parent.parent.name for p in (rec / "exp").glob("t_lora_b1pct_lr*/merged/summary.json")) == [
        "t_lora_b1pct_lr0.003_s1", "t_lora_b1pct_lr0.003_s2"]
    # the seed reaches the PEFT config only of methods where it has an effect (a randomised SVD:
    # test_seeded_configs_only_where_the_seed_has_an_effect); SSVD's exact SVD takes none
    ssvd_cfgs = {c["opts"]["peft_config"] for c in runs if c["opts"]["tag"].startswith("t_ssvd")}
    assert ssvd_cfgs == {"exp/sweep/configs/ssvd_b1pct.yaml"}
    assert "seed" not in yaml.safe_load((rec / "exp" / "sweep" / "configs" / "ssvd_b1pct.yaml").read_text())
    assert "seed" not in yaml.safe_load((rec / "exp" / "sweep" / "configs" / "lora_b1pct.yaml").read_text())
    md = (rec / "RESULTS_sweep.md").read_text()
    assert "learning-rate choice on dev incomplete" in md and "ssvd_b1pct_lr0.003_s1.tune" in md

    # second run: the failed dev run again, ssvd's choice, its test runs; nothing else
    env.pop("FAIL_TAG")
    # a dev score that changes after the choice (e.g. a re-decoded dev set) does not change it
    dev = rec / "exp" / "t_lora_b1pct_lr0.001_s1" / "merged" / "decode" / "child_dev" / "result.json"
    dev.write_text(json.dumps(dict(json.loads(dev.read_text()), wer=1.0)))
    n_before = len(log)
    res = subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    new = [json.loads(l) for l in calls.read_text().splitlines()][n_before:]
    tags = [c["opts"]["tag"] for c in new if "tag" in c["opts"]]
    assert tags[0] == "t_ssvd_b1pct_lr0.003_s1" and all(t.startswith("t_ssvd_b1pct_lr") for t in tags)
    assert {t for t in tags[1:]} == {"t_ssvd_b1pct_lr0.001_s1", "t_ssvd_b1pct_lr0.001_s2"}  # 0.001 has the lower dev WER
    s1 = next(c for c in new if c["opts"].get("tag") == "t_ssvd_b1pct_lr0.001_s1")
    assert s1["opts"]["stage"] == "12"  # trained and merged while choosing: decoded on test only
    data = json.loads((rec / "exp" / "sweep" / "sweep.json").read_text())
    assert data["tuning"]["lora_b1pct"]["chosen"] == 3e-3  # the choice made stays, with its scores
    assert data["tuning"]["lora_b1pct"]["mean"]["0.001"] > 20
    rows = {(r["cell"], r.get("alpha")): r for r in data["rows"]}
    lora = rows[("lora_b1pct", 1.0)]
    assert lora["lr"] == 3e-3 and lora["n_seeds"] == 2 and lora["seeds"] == [1, 2] and lora["target_score_sd"] > 0
    assert lora["target_ci"][0] < lora["target_score"] < lora["target_ci"][1]
    assert set(lora["sources"]) == {"source_test", "source_unseen_test"}
    assert all(lora["sources"][x]["forgetting_test"] is not None for x in lora["sources"])
    assert rows[("lora_b1pct_weightsattention", 1.0)]["lr"] == 3e-3
    assert rows[("lora_b1pct_weightsattention", 1.0)]["lr_from"] == "lora_b1pct"
    assert rows[("full", 0.5)]["n_seeds"] == 2 and rows[("full", 1.0)]["target_gain_test"]["significant"]
    assert rows[("ssvd_b1pct", 1.0)]["lr"] == 1e-3 and not rows[("lora_b1pct", 1.0)]["checks"]
    assert data["tuning"]["ssvd_b1pct"]["scores"]["0.003"][0] is not None
    md = (rec / "RESULTS_sweep.md").read_text()
    assert "### What the numbers say" in md and "forgetting source_unseen_test" in md and "**0.003:" in md
    assert "failed (see" not in md and "incomplete" not in md

    # a third run has nothing to do; a lost record is evaluated again, only it
    n_before = len(calls.read_text().splitlines())
    res = subprocess.run(cmd + ["--dry_run"], cwd=rec, env=env, capture_output=True, text=True)
    assert " 0 to run" in res.stdout, res.stdout
    shutil.rmtree(rec / "exp" / "t_lora_b1pct_lr0.003_s2" / "merged")
    (rec / "exp" / "sweep" / "records" / "t_lora_b1pct_lr0.003_s2.test.json").unlink()
    res = subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    new = [json.loads(l) for l in calls.read_text().splitlines()][n_before:]
    tagged = [c["opts"] for c in new if "tag" in c["opts"]]
    assert [(o["tag"], o["stage"]) for o in tagged] == [("t_lora_b1pct_lr0.003_s2", "11")]


def test_phases_run_in_the_grid_priority_order_and_each_invocation_stops_at_its_last(tmp_path):
    """--priority_only (--last_phase priority_block) runs the priority cells (every method at the
    priority budgets, and full) at the priority seeds, with no interpolation alpha, variant or later
    seed, so that another target's block can come first; --last_phase later_seeds then adds only the
    third seeds of those cells; a plain invocation runs exactly what was left: the variant, then the curve."""
    rec = fake_recipe(tmp_path)
    grid = grid_file(rec, {
        "configs": {m: f"conf/peft/{m}.yaml" for m in ("lora", "full")},
        "blocks": [{"methods": ["lora"], "budgets": ["1%"]}, {"methods": ["full"]},
                   {"methods": ["lora"], "budgets": ["1%"], "allocations": {"lora": [{"allocation": {"weights": "attention"}}]}}],
        "learning_rates": {"lora": [1e-3, 3e-3, 1e-2], "full": [1e-4, 1e-3]},
        "seeds": [1, 2, 3], "selection": {"seeds": 1, "priority_seeds": 2}, "priority_budgets": ["1%"],
        "bootstrap": {"resamples": 100}, "interpolation": {"cells": ["full"], "alphas": [0.5]}})
    calls = tmp_path / "calls.jsonl"
    env = dict(os.environ, CALLS=str(calls), SWEEP_OUT=str(rec / "exp" / "sweep" / "records"))
    cmd = [sys.executable, str(ROOT / "local" / "budget_sweep.py"), "--grid", str(grid), "--out", "exp/sweep",
           "--run", "bash run.sh", "--cmd", f"{sys.executable} {ROOT / 'local' / 'launch.py'} --backend local",
           "--tag_prefix", "t_", "--model_config", "none.yaml", "--results", "RESULTS_sweep.md", "--dev_set", "child_dev"]

    def runs():
        out = [json.loads(line)["opts"] for line in calls.read_text().splitlines()] if calls.exists() else []
        return [(o["tag"], float(o.get("alpha", 1.0)), o.get("target_test_sets") == "child_dev") for o in out if "tag" in o]

    res = subprocess.run(cmd + ["--priority_only"], cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    first = runs()
    dev = {t for t, _, d in first if d}
    test = {t for t, _, d in first if not d}
    assert dev == {"t_lora_b1pct_lr0.001_s1", "t_lora_b1pct_lr0.003_s1", "t_lora_b1pct_lr0.01_s1",
                   "t_full_lr0.0001_s1", "t_full_lr0.001_s1"}
    assert test == {"t_lora_b1pct_lr0.003_s1", "t_lora_b1pct_lr0.003_s2", "t_full_lr0.001_s1", "t_full_lr0.001_s2"}
    assert {a for _, a, _ in first} == {1.0}
    plan = {line.split()[0]: line for line in res.stdout.splitlines() if line.startswith("  ")}
    assert "after the priority block (--last_phase)" in plan["lora_b1pct_weightsattention"]
    left = next(line for line in res.stdout.splitlines() if "runs left now:" in line)
    assert "priority block: 5 dev, 2 test (trains), 2 test (trained)" in left and "later seeds" not in left, left
    # the report has a row for every cell: the variant's rate is known, its runs are for later
    row = next(line for line in (rec / "RESULTS_sweep.md").read_text().splitlines()
               if line.startswith("| lora_b1pct_weightsattention |"))
    assert row.endswith("not run yet (other cells) |"), row

    # what is left, in the order it runs: the third seeds, the variant at every seed, the curve's alpha
    res = subprocess.run(cmd + ["--dry_run"], cwd=rec, env=env, capture_output=True, text=True)
    assert ("runs left now: later seeds: 2 test (trains) ~0.0 h; other cells: 3 test (trains) ~0.0 h; "
            "interpolation curves: 3 test (trained)") in res.stdout, res.stdout
    res = subprocess.run(cmd + ["--last_phase", "later_seeds"], cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    second = runs()[len(first):]
    assert sorted(second) == [("t_full_lr0.001_s3", 1.0, False), ("t_lora_b1pct_lr0.003_s3", 1.0, False)]
    plan = {line.split()[0]: line for line in res.stdout.splitlines() if line.startswith("  ")}
    assert "after the later seeds (--last_phase)" in plan["lora_b1pct_weightsattention"]
    assert "1 run(s) to run, 2 job(s) left after the later seeds" in plan["full"], plan["full"]

    res = subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    rest = runs()[len(first) + len(second):]
    # one job at a time, so the order is the phases' order: every variant run before any alpha
    assert [(t, a) for t, a, _ in rest] == [
        ("t_lora_b1pct_weightsattention_lr0.003_s1", 1.0), ("t_lora_b1pct_weightsattention_lr0.003_s2", 1.0),
        ("t_lora_b1pct_weightsattention_lr0.003_s3", 1.0),
        ("t_full_lr0.001_s1", 0.5), ("t_full_lr0.001_s2", 0.5), ("t_full_lr0.001_s3", 0.5)]
    assert not any(d for _, _, d in rest)


def test_tuning_grid_extends_past_an_edge_until_the_best_rate_is_inside():
    assert rate_beyond([1e-3, 3e-3, 1e-2], "high") == 3e-2 and rate_beyond([1e-3, 3e-3, 1e-2], "low") == 3e-4
    assert rate_beyond([1e-4, 1e-3], "high") == 1e-2 and rate_beyond([1e-4, 3e-4, 1e-3], "high") == 3e-3
    dev = {1e-3: 20.0, 3e-3: 15.0, 1e-2: 14.0}
    # without extend the declared grid decides, even at its edge
    assert tuning_grid([1e-3, 3e-3, 1e-2], dev.get, extend=0) == ([1e-3, 3e-3, 1e-2], 1e-2)
    # at the high edge: one more rate, not scored yet, so no choice
    assert tuning_grid([1e-3, 3e-3, 1e-2], dev.get, extend=1) == ([1e-3, 3e-3, 1e-2, 3e-2], None)
    # worse past the edge: the declared edge rate is now inside what was tried
    assert tuning_grid([1e-3, 3e-3, 1e-2], {**dev, 3e-2: 16.0}.get, extend=1)[1] == 1e-2
    # better past the edge: taken, and no further rate with extend 1
    assert tuning_grid([1e-3, 3e-3, 1e-2], {**dev, 3e-2: 12.0}.get, extend=1) == ([1e-3, 3e-3, 1e-2, 3e-2], 3e-2)
    assert tuning_grid([1e-3, 3e-3, 1e-2], {**dev, 3e-2: 12.0}.get, extend=2)[0][-1] == 1e-1
    # a diverged rate (inf) never wins; a maximised metric extends the same way
    assert tuning_grid([1e-3, 3e-3, 1e-2], {**dev, 3e-2: float("inf")}.get, extend=3)[1] == 1e-2
    acc = {1e-3: 0.9, 3e-3: 0.8, 1e-2: 0.7, 3e-4: 0.85}
    assert tuning_grid([1e-3, 3e-3, 1e-2], acc.get, "valid_acc", extend=1) == ([1e-3, 3e-3, 1e-2, 3e-4], 1e-3)


def test_driver_extends_a_grid_at_its_edge_on_dev_only_and_scores_a_diverged_rate_worst(tmp_path):
    """selection.extend: a best rate at the grid's edge adds a rate past it (dev runs only); the
    choice is made on every rate tried, before any test set is decoded; a run that diverges is
    the worst rate of its cell, not a failure of the sweep."""
    rec = fake_recipe(tmp_path)
    grid = grid_file(rec, {
        "configs": {m: f"conf/peft/{m}.yaml" for m in ("lora", "ssvd", "full")},
        "blocks": [{"methods": ["lora", "ssvd"], "budgets": ["1%"]}, {"methods": ["full"]}],
        "learning_rates": {"lora": [1e-3, 3e-3], "ssvd": [1e-3, 3e-3], "full": [1e-4, 1e-3]},
        "seeds": [1], "selection": {"seeds": 1, "extend": 1}, "bootstrap": {"resamples": 100}})
    calls = tmp_path / "calls.jsonl"
    env = dict(os.environ, CALLS=str(calls), SWEEP_OUT=str(rec / "exp" / "sweep" / "records"), DIVERGE_TAG="t_full_lr0.01_s1")
    cmd = [sys.executable, str(ROOT / "local" / "budget_sweep.py"), "--grid", str(grid), "--out", "exp/sweep",
           "--run", "bash run.sh", "--cmd", f"{sys.executable} {ROOT / 'local' / 'launch.py'} --backend local",
           "--tag_prefix", "t_", "--model_config", "none.yaml", "--results", "RESULTS_sweep.md", "--dev_set", "child_dev"]
    res = subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    runs = [json.loads(l) for l in calls.read_text().splitlines()]
    runs = [c for c in runs if "tag" in c["opts"]]
    dev_tags = [c["opts"]["tag"] for c in runs if c["opts"].get("target_test_sets") == "child_dev"]
    assert sorted(dev_tags) == sorted(["t_lora_b1pct_lr0.001_s1", "t_lora_b1pct_lr0.003_s1", "t_lora_b1pct_lr0.01_s1",
                                       "t_ssvd_b1pct_lr0.001_s1", "t_ssvd_b1pct_lr0.003_s1", "t_ssvd_b1pct_lr0.0003_s1",
                                       "t_full_lr0.0001_s1", "t_full_lr0.001_s1", "t_full_lr0.01_s1"])
    for c in runs:  # test sets only after the final choice, at the chosen rate
        if c["opts"].get("target_test_sets") != "child_dev" and int(c["opts"]["stop_stage"]) >= 12:
            cell, lr = re.match(r"^t_(.+)_lr([^_]+)_s1$", c["opts"]["tag"]).groups()
            assert c["choices"].get(cell, {}).get("lr") == float(lr), c
    choice = json.loads((rec / "exp" / "sweep" / "records" / "lr_choices.json").read_text())
    assert choice["lora_b1pct"]["lr"] == 3e-3 and choice["lora_b1pct"]["grid"] == [1e-3, 3e-3, 1e-2]
    assert choice["ssvd_b1pct"]["lr"] == 3e-4 and choice["ssvd_b1pct"]["declared"] == [1e-3, 3e-3]
    assert choice["full"]["lr"] == 1e-3 and choice["full"]["scores"]["0.01"] == [float("inf")]
    md = (rec / "RESULTS_sweep.md").read_text()
    assert "0.01: diverged" in md and "at the grid's edge after 1 rate(s) added past it" in md
    assert "failed (see" not in md
    # the same grid without extend is another protocol: its choices are made again, from the
    # declared rates only (their dev runs exist: nothing trains)
    grid.write_text(grid.read_text().replace("extend: 1", "extend: 0"))
    n = len(calls.read_text().splitlines())
    res = subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    choice = json.loads((rec / "exp" / "sweep" / "records" / "lr_choices.json").read_text())
    assert choice["ssvd_b1pct"]["lr"] == 1e-3 and choice["ssvd_b1pct"]["grid"] == [1e-3, 3e-3]
    new = [json.loads(l)["opts"] for l in calls.read_text().splitlines()[n:]]
    assert not any(o.get("target_test_sets") == "child_dev" for o in new if "tag" in o)


def test_valid_acc_selection_reads_espnet_training_logs(tmp_path):
    """selection.metric: valid_acc reads ESPnet's per-epoch validation accuracy (a resumed run's
    earlier log included) instead of decoding the dev set."""
    sys.path.insert(0, str(ROOT / "local"))
    from budget_sweep import best_valid_acc, number

    line = ("[vm] 2026-12-01 10:02:33,184 (trainer:394) INFO: {e}epoch results: [train] loss_ctc=99.5, acc=0.9, "
            "loss=84.0, [valid] loss_ctc=84.3, cer_ctc=0.92, loss_att=62.7, acc={a}, cer=0.83, wer=1.0, loss=69.2, "
            "time=10.84 seconds, total_count=13\n")
    assert best_valid_acc(tmp_path) is None
    (tmp_path / "train.log.1").write_text(line.format(e=1, a=0.41) + line.format(e=2, a=0.58))
    (tmp_path / "train.log").write_text("INFO: something else acc=0.99\n" + line.format(e=3, a=0.55))
    assert best_valid_acc(tmp_path) == 0.58  # the train acc (0.9) and other lines are not read
    assert number(1e-5) == "0.00001" and yaml.safe_load(number(3e-4)) == 3e-4  # YAML reads it back as a float


def test_file_id_hashes_a_file_once_until_it_changes(tmp_path, monkeypatch):
    """One decoding call runs several processes that each need a model's identity: the file is read
    once (the identity cached in memory and on disk), and read again when it is rewritten (a
    retrained model keeps its path)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))
    import file_id as fid

    monkeypatch.setenv("ESPNET_PEFT_CACHE", str(tmp_path / "cache"))

    model = tmp_path / "model.pth"
    model.write_bytes(b"a" * 1000)
    reads = []
    real_open = open

    def counting_open(path, *a, **k):
        reads.append(path)
        return real_open(path, *a, **k)

    monkeypatch.setattr(fid, "open", counting_open, raising=False)
    first = fid.file_id(model)
    assert fid.file_id(model) == first and fid.file_id(str(model)) == first
    assert len(reads) == 1
    fid._ids.clear()  # as in a new process: the on-disk cache answers
    assert fid.file_id(model) == first and len(reads) == 1
    model.write_bytes(b"b" * 1000)  # same size, new content
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 1_000_000))
    second = fid.file_id(model)
    assert second != first and len(reads) == 2
    # the recorded id of an experiment, shared by the report and the sweep
    assert fid.recorded_foundation_id(tmp_path) is None
    (tmp_path / "foundation_id").write_text(second + "\n")
    assert fid.recorded_foundation_id(tmp_path) == second
