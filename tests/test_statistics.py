"""The statistics behind every claim of a sweep report (issue 38): the two-level bootstrap (speakers,
then utterances within each drawn speaker; seeds a level of their own), Holm's correction within a
family of comparisons, and a report that claims a difference only when the corrected test says so."""
from __future__ import annotations

import numpy as np
import pytest

from espnet_peft import scoring as S
from espnet_peft.sweep import analysis
from espnet_peft.sweep.families import Families


def clustered(seed: int = 0, speakers: int = 10, per: int = 20, effect: float = 3.0):
    """Error counts whose speakers differ a lot (a few voices dominate the errors), as real test sets do."""
    rng = np.random.default_rng(seed)
    spk = np.repeat([f"s{i}" for i in range(speakers)], per)
    words = rng.integers(4, 10, speakers * per)
    level = rng.gamma(1.0, effect, speakers)[np.repeat(np.arange(speakers), per)]
    errors = np.minimum(words, rng.poisson(level))
    return errors, words, spk


def test_two_level_counts_draw_speakers_then_their_own_utterances():
    groups = np.array([0, 0, 0, 1, 2, 2])
    counts = S.count_units(groups, 500, 6, np.random.default_rng(0))
    assert counts.shape == (500, 6) and (counts >= 0).all()
    spk_draws = np.stack([counts[:, groups == k].sum(axis=1) / (groups == k).sum() for k in range(3)], axis=1)
    assert np.allclose(spk_draws, np.round(spk_draws))  # whole draws of a speaker, each its size in utterances
    assert np.allclose(spk_draws.sum(axis=1), 3)  # three speakers drawn per resample
    assert (counts[:, :3].std(axis=0) > 0).all()  # and utterances redrawn within a speaker


def test_speaker_level_intervals_are_wider_than_utterance_ones_on_clustered_errors():
    errors, words, spk = clustered()
    width = {u: (lambda r: r["high"] - r["low"])(S.bootstrap_wer(errors, words, spk, unit=u, n_resamples=4000))
             for u in S.RESAMPLE_UNITS}
    assert width["speaker_utterance"] > 1.5 * width["utterance"]
    assert width["speaker_utterance"] >= 0.95 * width["speaker"]
    r = S.bootstrap_wer(errors, words, spk, unit="speaker_utterance", n_resamples=500)
    assert r["units"] == 10 and r["unit"] == "speaker_utterance"
    with pytest.raises(ValueError, match="speaker"):
        S.bootstrap_wer(errors, words, unit="speaker_utterance")


def test_holm_adjusts_step_down_and_stays_monotone():
    assert S.holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert S.holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert S.holm([0.6, 0.6, 0.6]) == pytest.approx([1.0, 1.0, 1.0])
    assert S.holm([]) == []


def _test(diff: float, p: float):
    return {"diff": diff, "low": diff - 1.0 if p < 0.05 else -0.5, "high": diff + 1.0, "p_value": p,
            "significant": p < 0.05, "level": 0.95, "resamples": 10000}


def _row(cell: str, forgetting: float):
    return {"cell": cell, "nolm": {"sources": {"source_test": {"forgetting": forgetting, "wer": 10 + forgetting}}}}


@pytest.mark.parametrize("others, claimed", [
    (0, True),   # alone in its family: p = 0.02 is significant
    (3, False),  # beside three other comparisons: Holm's p = 0.08, the claim disappears
])
def test_a_claim_disappears_when_its_corrected_p_value_is_above_the_level(others, claimed):
    fam = Families(0.95)
    family = "forgetting: each cell against the least-forgetting cell of its budget on source_test (no LM)"
    marginal = fam.add(family, _test(2.5, 0.02))
    rows = [(_row("lora", 3.0), marginal)] + [(_row(f"m{k}", 1.2), fam.add(family, _test(0.2, 0.6)))
                                              for k in range(others)]
    between = [{"budget": "1%", "learning": None,
                "forgetting": {"source_test": {"least": _row("ssvd_o", 0.5), "others": rows}}}]
    fam.correct()
    assert marginal["significant_uncorrected"] and marginal["family_size"] == others + 1
    assert marginal["p_holm"] == pytest.approx(0.02 * (others + 1))
    text = analysis._nolm_findings(between, ["CTC greedy"])[0]
    assert ("significantly more: lora" in text) is claimed
    assert ("no other significantly more" in text) is not claimed


def test_a_test_belongs_to_one_family():
    fam = Families(0.95)
    t = fam.add("a", _test(1.0, 0.01))
    with pytest.raises(ValueError, match="already in a family"):
        fam.add("b", t)
    assert fam.add("b", None) is None and fam.sizes() == {"a": 1}


def test_every_claim_of_a_report_reads_the_corrected_test(tmp_path):
    """On a sweep with per-utterance errors and speakers: every test of the analysis is in a family,
    its significance is Holm's, and the findings name the correction and the speaker count."""
    from test_sweep import utt_summary

    rng = np.random.default_rng(0)
    n = 200
    ids, words, spk = tuple(f"u{i:03d}" for i in range(n)), np.full(n, 10), tuple(f"s{i % 8}" for i in range(n))
    base = tuple(S.UtteranceErrors(ids, rng.binomial(words, p), words, spk) for p in (0.5, 0.1, 0.12))
    sums = (utt_summary("lora_b1", "lora", 0.2, [0.13, 0.15], rng, base=base, seeds=2)
            + utt_summary("pissa_b1", "pissa", 0.35, [0.25, 0.3], rng, base=base)
            + utt_summary("full", "full", 0.1, [0.3, 0.32], rng, base=base, budget=None))
    a = analysis.analyse(sums, bootstrap={"resamples": 400, "unit": "speaker_utterance"})
    fams = a["bootstrap"]["families"]
    assert a["bootstrap"]["correction"] == "holm" and sum(fams.values()) > 0
    tests = [r["target_gain_test"] for r in a["rows"]] + [
        sx["forgetting_test"] for r in a["rows"] for sx in r["sources"].values()]
    for t in tests:
        assert t["family"] in fams and t["significant"] == (t["p_holm"] < 0.05)
        assert t["p_holm"] >= t["p_value"]
    assert "Holm's correction" in a["findings"][-1] and "speakers" in a["findings"][-1]
    assert a["bootstrap"]["axes"][a["target"]]["speakers"] >= 2


def test_a_curve_is_crossed_where_it_first_reaches_the_level():
    from espnet_peft.sweep.curves import crossing

    # base 40 -> alpha 0.5: 30 -> alpha 1: 20 (target WER); source 10 -> 11 -> 16
    assert crossing([40, 30, 20], [10, 11, 16], 26) == pytest.approx(11 + 0.4 * 5)
    assert crossing([40, 30, 20], [10, 11, 16], 30) == pytest.approx(11)
    assert crossing([40, 30, 20], [10, 11, 16], 15) is None  # never that good
    assert crossing([40, 35], [10, 12], 40) == pytest.approx(10)  # the base itself is at the level


def test_forgetting_at_matched_learning_compares_cells_at_the_same_gain(tmp_path):
    """Two cells with the same forgetting per point of gain but different learning rates: at 70% of
    full fine-tuning's gain they forget the same, though their alpha-1 points differ; a curve that
    never reaches the level says so."""
    from test_sweep import utt_summary

    rng = np.random.default_rng(1)
    n = 300
    ids, words, spk = tuple(f"u{i:03d}" for i in range(n)), np.full(n, 10), tuple(f"s{i % 30}" for i in range(n))
    base = tuple(S.UtteranceErrors(ids, rng.binomial(words, p), words, spk) for p in (0.5, 0.1, 0.1))
    sums = (utt_summary("full", "full", 0.2, [0.25, 0.25], rng, n=n, base=base, budget=None)
            + utt_summary("weak", "lora", 0.45, [0.12, 0.12], rng, n=n, base=base))
    a = analysis.analyse(sums, bootstrap={"resamples": 300, "unit": "speaker_utterance"}, matched_share=0.5)
    m = a["matched_learning"]
    assert m["share"] == 0.5 and m["level_score"] == pytest.approx(
        a["rows"][0]["base_target_score"] - 0.5 * (a["rows"][0]["base_target_score"] - a["rows"][0]["target_score"]))
    full = m["cells"]["full"]["forgetting"]["pooled"]
    assert full["value"] == pytest.approx(0.5 * a["rows"][0]["forgetting"], rel=1e-6)  # halfway along a straight curve
    assert full["ci"][0] < full["value"] < full["ci"][1] and full["reached"] == 1.0
    assert m["cells"]["weak"]["forgetting"]["pooled"]["value"] is None  # 0.45 never reaches the level
