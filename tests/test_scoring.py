"""Confidence intervals of espnet_peft.scoring on synthetic hypotheses with a known answer: the
bootstrap interval of a WER (over utterances or speakers), the paired bootstrap of a WER
difference, seeds, determinism and speed."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from espnet_peft import scoring as S


def synthetic(n_utt=200, p=0.3, seed=0, words=(4, 16)):
    rng = np.random.default_rng(seed)
    w = rng.integers(words[0], words[1], n_utt)
    return w, rng.binomial(w, p)


def test_utterance_errors_count_as_score_does(tmp_path):
    refs = {"u1": "The cat, sat.", "u2": "a b c d", "u3": "", "u4": "hello <noise> world", "u5": "one two"}
    hyps = {"u1": "the bat sat on", "u3": "noise here", "u4": "hello world", "u5": "one"}
    u = S.utterance_errors(refs, hyps, {k: f"spk{i % 2}" for i, k in enumerate(refs)})
    assert u.ids == ("u1", "u2", "u3", "u4", "u5")
    assert u.errors.tolist() == [2, 4, 2, 0, 1] and u.words.tolist() == [3, 4, 0, 2, 2]
    assert u.wer == pytest.approx(S.score(refs, hyps)["wer"])
    assert u.speakers == ("spk0", "spk1", "spk0", "spk1", "spk0")
    with pytest.raises(ValueError, match="no reference"):
        S.utterance_errors(refs, dict(hyps, u9="x"))
    # from Kaldi-style files, speakers from utt2spk
    (tmp_path / "text").write_text("".join(f"{k} {v}\n" for k, v in refs.items()))
    (tmp_path / "hyp").write_text("".join(f"{k} {v}\n" for k, v in hyps.items()))
    (tmp_path / "utt2spk").write_text("".join(f"{k} s{i // 3}\n" for i, k in enumerate(refs)))
    f = S.utterance_errors_files(tmp_path / "text", tmp_path / "hyp", tmp_path / "utt2spk")
    assert f.errors.tolist() == u.errors.tolist() and f.speakers == ("s0", "s0", "s0", "s1", "s1")
    assert S.utterance_errors_files(tmp_path / "text", tmp_path / "hyp", tmp_path / "absent").speakers is None


def test_identical_systems_interval_around_zero_not_significant():
    words, e = synthetic()
    r = S.paired_bootstrap(e, e, words, n_resamples=2000, seed=1)
    assert r["diff"] == 0 and r["low"] <= 0 <= r["high"] and r["p_value"] == 1.0 and not r["significant"]
    # two different systems of the same quality (errors drawn from the same rate): an interval
    # around 0, not significant
    rng = np.random.default_rng(5)
    same_a, same_b = rng.binomial(words, 0.3), rng.binomial(words, 0.3)
    r = S.paired_bootstrap(same_a, same_b, words, n_resamples=4000, seed=3)
    assert r["low"] < 0 < r["high"] and not r["significant"] and r["p_value"] > 0.05


def test_clearly_fewer_errors_is_significant():
    words, worse = synthetic(p=0.3, seed=1)
    better = np.random.default_rng(2).binomial(words, 0.15)
    r = S.paired_bootstrap(worse, better, words, n_resamples=4000, seed=0)
    assert r["significant"] and r["p_value"] < 0.001
    assert r["diff"] == pytest.approx(r["wer_a"] - r["wer_b"]) and r["diff"] > 10
    assert 0 < r["low"] < r["diff"] < r["high"]
    # the other way round: the same interval mirrored
    r2 = S.paired_bootstrap(better, worse, words, n_resamples=4000, seed=0)
    assert r2["diff"] == pytest.approx(-r["diff"]) and r2["high"] == pytest.approx(-r["low"])


def test_wer_interval_contains_the_wer_and_is_deterministic():
    words, e = synthetic()
    a = S.bootstrap_wer(e, words, seed=7)
    assert a == S.bootstrap_wer(e, words, seed=7)
    assert a["low"] < a["wer"] < a["high"] and a["wer"] == pytest.approx(100 * e.sum() / words.sum())
    assert a["high"] - a["low"] < 10 and a["unit"] == "utterance" and a["units"] == 200
    b = S.bootstrap_wer(e, words, seed=8)
    assert b["low"] != a["low"] and abs(b["low"] - a["low"]) < 1
    # the utterance resamples do not depend on which other systems share them
    p1, reps1 = S.bootstrap_replicates([e], words, seed=3, n_resamples=500)
    p2, reps2 = S.bootstrap_replicates([e, e // 2], words, seed=3, n_resamples=500)
    assert np.array_equal(reps1[:, 0], reps2[:, 0])


def test_speaker_level_bootstrap_is_wider_when_errors_cluster_by_speaker():
    rng = np.random.default_rng(0)
    n_spk, per = 10, 20
    speakers = np.repeat([f"s{i}" for i in range(n_spk)], per)
    words = rng.integers(5, 12, n_spk * per)
    clustered = rng.binomial(words, np.repeat(np.linspace(0.02, 0.7, n_spk), per))
    utt = S.bootstrap_wer(clustered, words, speakers, unit="utterance", n_resamples=3000)
    spk = S.bootstrap_wer(clustered, words, speakers, unit="speaker", n_resamples=3000)
    assert spk["units"] == n_spk and utt["units"] == n_spk * per
    assert spk["wer"] == pytest.approx(utt["wer"])
    assert (spk["high"] - spk["low"]) > 2 * (utt["high"] - utt["low"])
    # errors that do not cluster: the two agree roughly
    iid = rng.binomial(words, 0.3)
    u2 = S.bootstrap_wer(iid, words, speakers, unit="utterance", n_resamples=3000)
    s2 = S.bootstrap_wer(iid, words, speakers, unit="speaker", n_resamples=3000)
    assert 0.5 < (s2["high"] - s2["low"]) / (u2["high"] - u2["low"]) < 1.6
    # a difference that holds for a few speakers only: significant over utterances, not over speakers
    gain = clustered.copy()
    gain[speakers == "s9"] = 0
    assert S.paired_bootstrap(clustered, gain, words, speakers, unit="utterance")["significant"]
    assert not S.paired_bootstrap(clustered, gain, words, speakers, unit="speaker")["significant"]
    with pytest.raises(ValueError, match="speaker"):
        S.bootstrap_wer(clustered, words, unit="speaker")
    with pytest.raises(ValueError, match="unit"):
        S.bootstrap_wer(clustered, words, unit="sentence")


def test_seeds_mean_and_seed_resampling():
    words, e1 = synthetic(p=0.3, seed=1)
    e2 = np.random.default_rng(9).binomial(words, 0.2)  # a second seed that did much better
    both = np.stack([e1, e2])
    r = S.bootstrap_wer(both, words, n_resamples=3000, seed=0)
    assert r["wer"] == pytest.approx(100 * (e1 + e2).sum() / 2 / words.sum())
    fixed = S.bootstrap_wer(both, words, n_resamples=3000, seed=0, resample_seeds=False)
    assert fixed["wer"] == pytest.approx(r["wer"])
    assert (r["high"] - r["low"]) > 1.3 * (fixed["high"] - fixed["low"])  # the seed spread widens it
    runs = [S.UtteranceErrors(tuple(f"u{i:03d}" for i in range(len(words))), e, words) for e in (e1, e2)]
    assert S.wer_interval(runs, n_resamples=3000)["wer"] == pytest.approx(r["wer"])
    base = S.UtteranceErrors(runs[0].ids, np.random.default_rng(4).binomial(words, 0.5), words)
    c = S.compare(runs, base)
    assert c["significant"] and c["diff"] < 0  # the adapted runs make fewer errors than the base
    with pytest.raises(ValueError, match="different utterances"):
        S.compare(runs, S.UtteranceErrors(runs[0].ids[1:], base.errors[1:], words[1:]))


def test_bootstrap_is_fast():
    words, a = synthetic(n_utt=200)
    b = np.random.default_rng(3).binomial(words, 0.25)
    t = time.perf_counter()
    S.paired_bootstrap(np.stack([a, b]), b, words, n_resamples=10000, seed=0)
    assert time.perf_counter() - t < 2.0  # ~0.1 s on 2 cores; generous for a loaded machine


def test_score_py_scores_several_sets_in_one_process(tmp_path):
    """Recipes score every set of a stage with one score.py (one import): a triple per set, in order."""
    script = Path(__file__).resolve().parents[1] / "local" / "score.py"
    for name, hyp in (("a", "u1 the cat\n"), ("b", "u1 a dog\n")):
        (tmp_path / f"{name}.ref").write_text("u1 the cat\n")
        (tmp_path / f"{name}.hyp").write_text(hyp)
    args = []
    for name in ("a", "b"):
        args += ["--ref", str(tmp_path / f"{name}.ref"), "--hyp", str(tmp_path / f"{name}.hyp"),
                 "--out", str(tmp_path / f"{name}.json")]
    res = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "a.json").read_text())["wer"] == 0.0
    assert json.loads((tmp_path / "b.json").read_text())["wer"] == 100.0
    assert len(res.stdout.strip().splitlines()) == 2
    res = subprocess.run([sys.executable, str(script), *args[:-2]], capture_output=True, text=True)
    assert res.returncode != 0 and "one --ref (and one --out, if any) per --hyp" in res.stderr
