"""Rank agreement between two sweeps (issue 37 item 5: does the synthetic benchmark predict real
speech?): Spearman's rho against scipy's, the reference left out of the share, flipped pairs, ranks
by each quantity's direction, and the permutation p-value."""
from __future__ import annotations

import pytest
from scipy import stats

from espnet_peft.sweep.agreement import compare, flipped_pairs, permutation_p, ranks, render, spearman


def report(gains_forgetting, reference="full"):
    return {"target": "t", "protocol": {"report_reference": reference},
            "rows": [{"cell": c, "alpha": 1.0, "target_gain": g, "forgetting": f}
                     for c, (g, f) in gains_forgetting.items()]
            + [{"cell": "lora_b1pct", "alpha": 0.5, "target_gain": 1.0, "forgetting": 0.1}]}  # a curve point


SYN = {"full": (20.0, 7.0), "lora_b1pct": (14.0, 4.0), "dora_b1pct": (15.0, 4.5), "ssvd_o_b1pct": (16.0, 4.2),
       "pissa_b1pct": (10.0, 3.0)}


def test_spearman_matches_scipy_with_ties():
    a, b = [1.0, 2.0, 2.0, 5.0, 4.0], [3.0, 1.0, 2.0, 2.0, 9.0]
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
    assert list(ranks([3.0, 1.0, 3.0])) == [2.5, 1.0, 2.5]


def test_the_same_order_agrees_and_a_swapped_pair_is_named():
    real = dict(SYN, dora_b1pct=(8.0, 4.5))  # dora now gains least: it falls below lora and pissa
    share, forgetting = compare(report(SYN), report(real))
    assert "full" not in share.cells and len(share.cells) == 4  # the reference's share is 1 in both
    assert {frozenset(p) for p in share.flips} == {frozenset(p) for p in [
        ("lora_b1pct", "dora_b1pct"), ("dora_b1pct", "pissa_b1pct")]}
    assert forgetting.rho == pytest.approx(1.0) and forgetting.flips == [] and "full" in forgetting.cells
    text = render([share, forgetting], "synthetic", "real")
    assert "Pairs whose order flips (2 of 6)" in text and "Pairs whose order flips (0 of 10)" in text
    # rank 1 is the best: the highest share, the lowest forgetting
    assert "| ssvd_o_b1pct | 0.800 | 1 | 0.800 | 1 |" in text
    assert "| pissa_b1pct | 3.000 | 1 | 3.000 | 1 |" in text


def test_the_permutation_p_value_is_small_only_for_real_agreement():
    a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert permutation_p(a, a) == pytest.approx(1 / 720)  # exact: only the identity is as high
    assert permutation_p(a, a[::-1]) == 1.0
    many = list(range(10))
    assert permutation_p(many, many) < 0.001  # random permutations beyond 8 cells


def test_ties_are_not_flips_and_too_few_cells_are_said():
    assert flipped_pairs(["a", "b"], [1.0, 1.0], [2.0, 1.0]) == []
    small = {"full": (10.0, 1.0), "lora_b1pct": (5.0, 1.0)}
    share, _ = compare(report(small), report(small))
    assert "Fewer than 3 cells" in render([share], "x", "y")
