"""Run records of a budget sweep (local/sweep_records.py): a finished run survives the machine, and
a record of another foundation model, data or frozen config is stale."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from espnet_peft.scoring import UtteranceErrors

from conftest import ROOT
from test_sweep import fake_recipe, grid_file

sys.path.insert(0, str(ROOT / "local"))
import sweep_records as sr  # noqa: E402


def _set(root, name, lines, spk=True):
    d = root / "raw" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "text").write_text("".join(f"{k} {t}\n" for k, t in lines))
    if spk:
        (d / "utt2spk").write_text("".join(f"{k} {k.split('-')[0]}\n" for k, _ in lines))
    return d


def test_data_id_is_content_not_place(tmp_path):
    lines = [("a-1", "the cat"), ("b-2", "a dog ran")]
    _set(tmp_path / "m1", "x", lines)
    _set(tmp_path / "m2", "x", lines)
    assert sr.data_id(tmp_path / "m1", ["x"]) == sr.data_id(tmp_path / "m2", ["x"])  # another machine, same data
    _set(tmp_path / "m2", "x", [("a-1", "the cat"), ("b-2", "a dog sat")])
    assert sr.data_id(tmp_path / "m1", ["x"]) != sr.data_id(tmp_path / "m2", ["x"])
    (tmp_path / "m1" / "raw" / "x" / "utt2spk").write_text("a-1 a\nb-2 a\n")  # other speakers: other data
    assert sr.data_id(tmp_path / "m1", ["x"]) != sr.data_id(tmp_path / "m2", ["x"])
    with pytest.raises(FileNotFoundError, match="not formatted"):
        sr.data_id(tmp_path / "m1", ["x", "missing"])


def test_config_hash_and_staleness(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("lr: 1\n")
    b.write_text("lr: 1\n")
    assert sr.config_hash([a]) == sr.config_hash([b])  # content, not the path
    assert sr.config_hash([a]) != sr.config_hash([a], {"train_args": "--max_epoch 2"})
    b.write_text("lr: 2\n")
    assert sr.config_hash([a]) != sr.config_hash([b])
    ident = {"foundation_id": "f1", "data_id": "d1", "config_hash": "c1"}
    assert sr.RecordStore.stale(dict(ident, tag="t"), ident) == []
    for k in sr.IDENTITY:
        why = sr.RecordStore.stale(dict(ident, **{k: "other"}), ident)
        assert len(why) == 1 and why[0].startswith(k)


def test_record_round_trip_rebuilds_the_utterance_errors(tmp_path):
    store = sr.RecordStore(tmp_path / "records")
    ref = UtteranceErrors(("s1-a", "s2-b", "s2-c"), np.array([1, 0, 2]), np.array([5, 4, 6]), ("s1", "s2", "s2"))
    run = UtteranceErrors(ref.ids, np.array([0, 0, 1]), ref.words, ref.speakers)
    store.save_data({"sets": {"x": sr.set_block(ref)}, "base": {"lm": {"x": sr.errors_block(ref)}}})
    ident = {"foundation_id": "f", "data_id": "d", "config_hash": "c"}
    store.write({"kind": "test", "tag": "t_lora", "alpha": 1.0, **ident,
                 "summary": {"tag": "t_lora", "method": "lora"}, "utterances": {"lm": {"x": sr.errors_block(run)}}})
    sums, notes = sr.summaries_from_records(store, {("t_lora", 1.0): {"cell": "lora", "seed": 1, "lr": 1e-3,
                                                                       "identity": ident}})
    assert notes == [] and len(sums) == 1
    u = sums[0]["_utt"]["x"]
    assert u.ids == ref.ids and list(u.errors) == [0, 0, 1] and list(u.words) == [5, 4, 6] and u.speakers == ref.speakers
    assert list(sums[0]["_base_utt"]["x"].errors) == [1, 0, 2] and sums[0]["lr"] == 1e-3
    # a record whose references differ from data.json's is not silently aligned
    other = UtteranceErrors(ref.ids, ref.errors, np.array([5, 4, 7]), ref.speakers)
    store.save_data({"sets": {"x": sr.set_block(other)}, "base": {}})
    sums, notes = sr.summaries_from_records(store, {("t_lora", 1.0): {"cell": "lora", "seed": 1, "identity": ident}})
    assert "x" not in sums[0]["_utt"] and "do not match data.json" in notes[0]
    # a stale record is not reported
    sums, notes = sr.summaries_from_records(store, {("t_lora", 1.0): {"cell": "lora", "seed": 1,
                                                                       "identity": dict(ident, data_id="new")}})
    assert sums == [] and "stale" in notes[0] and "data_id d (now new)" in notes[0]


def test_driver_reruns_what_a_stale_record_measured(tmp_path):
    """The driver counts a current record as a finished run, on any machine; a record of another data
    set or frozen config is stale: that run is done again (and only it is reported once it is)."""
    rec = fake_recipe(tmp_path)
    grid = grid_file(rec, {"configs": {m: f"conf/peft/{m}.yaml" for m in ("lora", "full")},
                           "blocks": [{"methods": ["lora"], "budgets": ["1%"]}, {"methods": ["full"]}],
                           "learning_rates": {"lora": [1e-3, 3e-3, 1e-2], "full": [1e-4, 1e-3]},
                           "seeds": [1], "selection": {"seeds": 1}, "bootstrap": {"resamples": 100}})
    (rec / "conf" / "train.yaml").write_text("max_epoch: 2\n")
    calls = tmp_path / "calls.jsonl"
    env = dict(os.environ, CALLS=str(calls), SWEEP_OUT=str(rec / "records"))
    cmd = [sys.executable, str(ROOT / "local" / "budget_sweep.py"), "--grid", str(grid), "--out", "exp/sweep",
           "--run", "bash run.sh", "--cmd", f"{sys.executable} {ROOT / 'local' / 'launch.py'} --backend local",
           "--tag_prefix", "t_", "--model_config", "none.yaml", "--dev_set", "child_dev", "--records", "records",
           "--frozen", "conf/train.yaml", "--data_sets", "child_dev child_test source_test source_unseen_test",
           "--results", "RESULTS_sweep.md"]
    res = subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    records = sorted(p.name for p in (rec / "records").glob("*.json"))
    assert "t_lora_b1pct_lr0.003_s1.dev.json" in records and "t_lora_b1pct_lr0.003_s1.test.json" in records
    dev = json.loads((rec / "records" / "t_lora_b1pct_lr0.003_s1.dev.json").read_text())
    assert dev["dev_score"] > 0 and len(dev["utterances"]["lm"]["child_dev"]["errors"]) == 30
    test = json.loads((rec / "records" / "t_lora_b1pct_lr0.003_s1.test.json").read_text())
    assert len(test["utterances"]["lm"]["child_test"]["errors"]) == 60 and test["seed"] == 1
    data = json.loads((rec / "records" / "data.json").read_text())
    assert len(data["sets"]["child_test"]["ids"]) == 60 and "child_test" in data["base"]["lm"]
    # character errors too (the CER of any set can be bootstrapped from the records alone)
    block = test["utterances"]["lm"]["child_test"]
    cer = sr.utterances(data, "child_test", block, "cer")
    wer = sr.utterances(data, "child_test", block, "wer")
    assert cer.wer == pytest.approx(block["cer"], abs=1e-4) and wer.wer == pytest.approx(block["wer"], abs=1e-4)
    assert cer.wer != wer.wer
    assert int(cer.words.sum()) > int(wer.words.sum())
    report = (rec / "RESULTS_sweep.md").read_text()

    def dry():
        return subprocess.run(cmd + ["--dry_run"], cwd=rec, env=env, capture_output=True, text=True).stdout

    shutil.rmtree(rec / "exp")  # a new machine: the records alone
    out = dry()
    assert " 0 to run" in out and "runs left" not in out
    calls.write_text("")
    res = subprocess.run(cmd + ["--report_only"], cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0 and not calls.read_text().strip(), res.stdout + res.stderr
    assert (rec / "RESULTS_sweep.md").read_text() == report
    # the same comparison in CER, from the same records (the metric seam)
    res = subprocess.run(cmd + ["--report_only", "--metric", "cer", "--results", "RESULTS_cer.md"], cwd=rec, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    cer_md = (rec / "RESULTS_cer.md").read_text()
    assert "| child_test CER | gain |" in cer_md and "Metric: CER" in cer_md and "child_test WER" not in cer_md
    assert json.loads((rec / "RESULTS_cer.json").read_text())["metric"] == "cer"
    # another frozen config: every record is stale, every run is run again
    (rec / "conf" / "train.yaml").write_text("max_epoch: 3\n")
    out = dry()
    assert " 2 to run" in out and "lr in 0.001,0.003,0.01" in out, out
    # what is left, counted and timed from the records (stale ones time runs too): every rate of both
    # cells on dev, then each cell's seed on the model its dev run trained
    left = next(line for line in out.splitlines() if "runs left now:" in line)
    assert "priority block: 5 dev, 2 test (trained) ~" in left and "About " in left and "no record" not in left, left
    (rec / "conf" / "train.yaml").write_text("max_epoch: 2\n")
    assert " 0 to run" in dry()
    # other data (one reference changed): stale as well
    text = rec / "dump" / "raw" / "child_test" / "text"
    text.write_text(text.read_text().replace(" ", "  ", 1).replace("  ", " the ", 1))
    assert " 2 to run" in dry()
    # and the report rendered from the current records alone is the one written when they were made
    text.write_text(text.read_text().replace(" the ", " ", 1))
    (calls).write_text("")
    res = subprocess.run(cmd, cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0 and not calls.read_text().strip(), res.stdout + res.stderr
    assert (rec / "RESULTS_sweep.md").read_text() == report


def _summary(cell, method, seed, rng, n, base, rates, budget="1%"):
    """A run as the records give it: WERs and per-utterance errors of every set, with and without the LM."""
    words, ids = np.full(n, 10), tuple(f"u{i:03d}" for i in range(n))
    s = {"tag": f"{cell}_s{seed}", "cell": cell, "method": method, "alpha": 1.0, "seed": seed, "sweep_budget": budget,
         "sweep_variant": {}, "trainable_params": 100, "fraction": 0.01, "nolm_decoding": "CTC greedy, no LM",
         "target_test_sets": ["child_unseen_test", "child_test"], "source_test_sets": ["source_test"]}
    for dec in ("", "_nolm"):
        s["base" + dec], s["adapted" + dec], s["_utt" + dec], s["_base_utt" + dec] = {}, {}, {}, {}
        for x, p in rates[dec].items():
            u = UtteranceErrors(ids, rng.binomial(words, p), words)
            s["adapted" + dec][x] = {"wer": u.wer}
            s["_utt" + dec][x] = u
            s["base" + dec][x] = {"wer": base[dec][x].wer}
            s["_base_utt" + dec][x] = base[dec][x]
    return s


def test_report_headlines_the_unseen_speakers_and_reads_forgetting_without_the_lm(tmp_path):
    """The sweep report: learning on the unseen-speaker set (headline) and on the seen one, and
    forgetting on every source set with the recipe's decoding and without the LM, each with its
    paired interval; a cell that forgets the acoustic model only without the LM is found there."""
    from espnet_peft.sweep import analyse, write_report

    rng, n = np.random.default_rng(1), 300
    words, ids = np.full(n, 10), tuple(f"u{i:03d}" for i in range(n))
    base_p = {"": {"child_unseen_test": 0.4, "child_test": 0.45, "source_test": 0.08},
              "_nolm": {"child_unseen_test": 0.6, "child_test": 0.6, "source_test": 0.2}}
    base = {d: {x: UtteranceErrors(ids, rng.binomial(words, p), words) for x, p in v.items()} for d, v in base_p.items()}
    lora = {"": {"child_unseen_test": 0.3, "child_test": 0.2, "source_test": 0.085},
            "_nolm": {"child_unseen_test": 0.45, "child_test": 0.4, "source_test": 0.35}}  # forgets without the LM
    ssvd = {"": {"child_unseen_test": 0.3, "child_test": 0.2, "source_test": 0.085},
            "_nolm": {"child_unseen_test": 0.45, "child_test": 0.4, "source_test": 0.21}}
    sums = [_summary(c, m, s, rng, n, base, r) for c, m, r in (("lora_b1", "lora", lora), ("ssvd_b1", "ssvd", ssvd))
            for s in (1, 2)]
    a = analyse(sums, bootstrap={"resamples": 500})
    assert a["target"] == "child_unseen_test" and a["targets"] == ["child_unseen_test", "child_test"]
    r = {x["cell"]: x for x in a["rows"]}
    seen = r["lora_b1"]["targets"]["child_test"]
    assert seen["gain"] > 20 and seen["gain_test"]["significant"] and seen["ci"][0] < seen["score"] < seen["ci"][1]
    assert r["lora_b1"]["target_set"] == "child_unseen_test"
    f = r["lora_b1"]["nolm"]["sources"]["source_test"]
    assert f["forgetting"] > 10 and f["forgetting_test"]["significant"]
    assert not r["ssvd_b1"]["nolm"]["sources"]["source_test"]["forgetting_test"]["significant"]
    assert r["lora_b1"]["nolm"]["targets"]["child_unseen_test"]["gain_test"]["significant"]
    text = "\n".join(a["findings"])
    assert "without the LM" in text and "least ssvd_b1" in text and "significantly more: lora_b1" in text
    paths = write_report(sums, tmp_path, bootstrap={"resamples": 500})
    md = paths["md"].read_text()
    head = next(l for l in md.splitlines() if l.startswith("| cell | method"))
    assert "| child_unseen_test WER | gain |" in head and "| child_test WER | gain child_test |" in head
    assert "Without the LM (CTC greedy, no LM)" in md and "`child_unseen_test` is the headline" in md
    nolm_head = next(l for l in md.splitlines() if l.startswith("| cell | alpha |"))
    assert "forgetting source_test" in nolm_head and "gain child_test" in nolm_head
    data = json.loads(paths["json"].read_text())
    assert data["nolm_decoding"] == "CTC greedy, no LM" and data["targets"] == a["targets"]
    # older summaries (one target set, no decoding without the LM) render as before
    old = [dict((k, v) for k, v in s.items() if "nolm" not in k) for s in sums]
    for s in old:
        s["target_test_sets"] = ["child_unseen_test"]
    md = write_report(old, tmp_path / "old", bootstrap={"resamples": 200})["md"].read_text()
    assert "Without the LM" not in md and "gain child_test" not in md
