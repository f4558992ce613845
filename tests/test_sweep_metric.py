"""The metric seam of a sweep report: one ``Metric`` (name, label, the fields it reads, its direction)
drives the rate choice, the comparisons, the findings and the Pareto front. A score where higher is
better (an accuracy) is analysed in its own direction: the same sweep scored as accuracy (100 - WER,
hits instead of errors per utterance) gives the same gains, tests and front as its WER, and the best
cell is the one with the highest score."""
from __future__ import annotations

import numpy as np
import pytest

from espnet_peft.scoring import UtteranceErrors
from espnet_peft.sweep import (REPORT_METRICS, SELECTION_METRICS, Metric, analyse, choose_lr, pareto_front,
                               report_metric, tuning_grid, write_report)

ACC = Metric("acc", "Accuracy", "acc", higher_is_better=True, errors="hits", lengths="words")
SETS = ["child_test", "source_test"]


def summaries(rng, n=160):
    """Three cells at one budget and full fine-tuning, with per-utterance errors; each summary also
    carries its accuracy (``acc`` = 100 - WER, from the hits = words - errors)."""
    ids, words, spk = tuple(f"u{i:03d}" for i in range(n)), np.full(n, 10), tuple(f"s{i % 8}" for i in range(n))
    mk = lambda p: UtteranceErrors(ids, rng.binomial(words, p), words, spk)  # noqa: E731
    base = {"child_test": mk(0.5), "source_test": mk(0.1)}
    cells = {"a_b1": ("lora", "1%", 0.15, 0.2), "b_b1": ("dora", "1%", 0.3, 0.11), "c_b1": ("pissa", "1%", 0.32, 0.25),
             "full": ("full", None, 0.1, 0.3)}
    out = []
    for cell, (method, budget, tgt, src) in cells.items():
        utt = {"child_test": mk(tgt), "source_test": mk(src)}
        out.append({"tag": cell, "cell": cell, "method": method, "alpha": 1.0, "sweep_budget": budget,
                    "sweep_variant": {}, "seed": 1, "trainable_params": 1000, "fraction": 0.01,
                    "target_test_sets": SETS[:1], "source_test_sets": SETS[1:],
                    "base": {x: {"wer": b.wer, "acc": 100 - b.wer} for x, b in base.items()},
                    "adapted": {x: {"wer": u.wer, "acc": 100 - u.wer} for x, u in utt.items()},
                    "_utt": utt, "_base_utt": base})
    return out


def as_accuracy(s):
    """The same summary whose per-utterance numbers are hits (what an accuracy's bootstrap reads)."""
    hits = lambda u: UtteranceErrors(u.ids, u.words - u.errors, u.words, u.speakers)  # noqa: E731
    return dict(s, _utt={x: hits(u) for x, u in s["_utt"].items()},
                _base_utt={x: hits(u) for x, u in s["_base_utt"].items()})


def test_the_metrics_are_looked_up_by_name_with_their_fields_and_direction():
    assert report_metric("wer") is REPORT_METRICS["wer"] and report_metric(ACC) is ACC
    assert (REPORT_METRICS["cer"].errors, REPORT_METRICS["cer"].lengths) == ("char_errors", "chars")
    assert not REPORT_METRICS["wer"].higher_is_better and SELECTION_METRICS["valid_acc"].higher_is_better
    assert ACC.gain(50.0, 80.0) == 30.0 and ACC.worse_by(70.0, 80.0) == 10.0 and ACC.worst == -np.inf
    with pytest.raises(ValueError, match="unknown report metric"):
        report_metric("bleu")
    # the rate choice and the grid's extension follow the selection metric's direction
    assert choose_lr({1e-3: 0.61, 3e-3: 0.64}, "valid_acc") == 3e-3 and choose_lr({1e-3: 0.61, 3e-3: 0.64}) == 1e-3
    acc = {1e-3: 0.7, 3e-3: 0.8, 1e-2: 0.9}
    assert tuning_grid([1e-3, 3e-3, 1e-2], acc.get, "valid_acc", extend=1) == ([1e-3, 3e-3, 1e-2, 3e-2], None)
    # a point's keys: the front of a higher-is-better metric keeps the highest scores
    pts = [(80.0, 90.0), (85.0, 88.0), (70.0, 95.0), (60.0, 80.0)]
    front = pareto_front([(ACC.key(x), ACC.key(y)) for x, y in pts])
    assert sorted(front) == [0, 1, 2] and front[0] == 1  # (60, 80) is dominated; the best target first


def test_a_higher_is_better_metric_is_analysed_in_its_own_direction(tmp_path):
    sums = summaries(np.random.default_rng(0))
    boot = {"resamples": 300, "unit": "speaker_utterance"}
    w = analyse(sums, bootstrap=boot, metric="wer")
    a = analyse([as_accuracy(s) for s in sums], bootstrap=boot, metric=ACC)
    assert a["metric"] == "acc" and a["higher_is_better"] and not w["higher_is_better"]
    rows_w, rows_a = ({r["cell"]: r for r in x["rows"]} for x in (w, a))
    for cell, r in rows_a.items():
        q = rows_w[cell]
        assert r["target_score"] == pytest.approx(100 - q["target_score"])
        # better is higher: a gain raises the accuracy, forgetting lowers it; both read as in WER
        assert r["target_gain"] == pytest.approx(r["target_score"] - r["base_target_score"])
        assert r["target_gain"] == pytest.approx(q["target_gain"]) and r["forgetting"] == pytest.approx(q["forgetting"])
        assert r["gain_recovered"] == pytest.approx(q["gain_recovered"])
        for key in ("target_gain_test", "forgetting_test"):
            assert r[key]["diff"] == pytest.approx(q[key]["diff"])
            assert (r[key]["low"], r[key]["high"]) == pytest.approx((q[key]["low"], q[key]["high"]))
            assert r[key]["significant"] == q[key]["significant"]
        assert r["pareto"] == q["pareto"], cell
    assert a["fronts"] == w["fronts"]
    # the best cell of the budget is the one with the HIGHEST accuracy, and the finding says so
    plain = [r for r in a["rows"] if r["budget"] == "1%"]
    best = max(plain, key=lambda r: r["target_score"])["cell"]
    assert best == "a_b1"
    learning = next(f for f in a["findings"] if f.startswith("**1%.**"))
    assert f"highest child_test Accuracy: {best} (" in learning and "significantly lower: " in learning
    assert "lowest" not in learning
    assert "Full fine-tuning (`full`) raises child_test Accuracy" in " ".join(a["findings"])
    # the front holds the best target score (full) and the least forgetting (b_b1); c_b1 is dominated
    assert rows_a["full"]["pareto"] and rows_a["b_b1"]["pareto"] and not rows_a["c_b1"]["pareto"]
    # the matched-learning level lies above the base for a metric that rises with learning
    m = a["matched_learning"]
    assert m["level_score"] > rows_a["full"]["base_target_score"]
    assert m["cells"]["full"]["forgetting"]["source_test"]["value"] == pytest.approx(
        w["matched_learning"]["cells"]["full"]["forgetting"]["source_test"]["value"])
    md = write_report([as_accuracy(s) for s in sums], tmp_path, bootstrap=boot, metric=ACC)["md"].read_text()
    assert "Metric: Accuracy (%; higher is better)" in md and "| child_test Accuracy |" in md
