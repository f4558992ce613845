"""Budget sweeps: grid expansion, the report (table, plot, Pareto front), and the driver's
skip-finished / resume / infeasible handling with a stand-in for run.sh."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from espnet_peft import PeftError
from espnet_peft.sweep import expand, load_grid, pareto_front, sweep_rows, write_report

from conftest import ROOT


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


def test_driver_skips_finished_cells_and_resumes(tmp_path):
    rec = tmp_path / "recipe"
    (rec / "conf" / "peft").mkdir(parents=True)
    for m in ("lora", "ssvd", "full"):
        (rec / "conf" / "peft" / f"{m}.yaml").write_text((ROOT / "conf" / "peft" / f"{m}.yaml").read_text())
    (rec / "run.sh").write_text(FAKE_RUN)
    grid = grid_file(rec, {"configs": {m: f"conf/peft/{m}.yaml" for m in ("lora", "ssvd", "full")},
                           "methods": ["lora", "ssvd", "full"], "budgets": ["1%"],
                           "interpolation": {"cells": ["full"], "alphas": [0, 0.5]}})
    env = dict(os.environ, CALLS=str(tmp_path / "calls.txt"), FAIL_TAG="t_ssvd_b1pct")
    cmd = [sys.executable, str(ROOT / "local" / "budget_sweep.py"), "--grid", str(grid), "--out", "exp/sweep",
           "--run", "bash run.sh", "--cmd", f"{sys.executable} {ROOT / 'local' / 'launch.py'} --backend local",
           "--tag_prefix", "t_", "--max_parallel", "2", "--model_config", "none.yaml", "--results", "RESULTS_sweep.md"]
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
    assert "over 2 invocation(s)" in md and "1 cells run" in md  # wall time adds up over resumptions
    res = subprocess.run(cmd + ["--dry_run"], cwd=rec, env=env, capture_output=True, text=True)
    assert "0 to run" in res.stdout
    # a trained cell that lacks one interpolation point (killed between them) only evaluates it
    shutil.rmtree(rec / "exp" / "t_full" / "merged_alpha0.5")
    (tmp_path / "calls.txt").write_text("")
    res = subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    calls = [c for c in (tmp_path / "calls.txt").read_text().splitlines() if "--tag" in c]
    assert len(calls) == 1 and "--alpha 0.5" in calls[0] and "--stage 11" in calls[0], calls
    res = subprocess.run(cmd + ["--command", "run_sweep.sh --target child"], cwd=rec, env=env,
                         capture_output=True, text=True)
    assert "Command: `run_sweep.sh --target child`" in (rec / "RESULTS_sweep.md").read_text()


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
