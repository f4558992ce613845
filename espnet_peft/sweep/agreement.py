"""Does one sweep predict another? Two reports' rankings of the cells they share, side by side.

The question a synthetic benchmark has to answer before anyone trusts it: do methods rank on it as
they rank on real speech? For every cell both reports hold (at alpha 1), each quantity (the share of
the reference cell's target gain, the forgetting on the pooled source sets) is ranked within each
report; Spearman's rank correlation says how far the orders agree, with the one-sided p-value of a
permutation test (exact up to 8 cells, else 20,000 random permutations of a fixed seed) for "they
agree more than chance", and every pair of cells whose order flips between the two reports is
listed. Ties share their mean rank; a pair tied in either report is not counted as flipped."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

EXACT_UP_TO = 8
PERMUTATIONS = 20000


@dataclass(frozen=True)
class Quantity:
    name: str
    label: str
    higher_is_better: bool


QUANTITIES = (Quantity("share", "share of the reference's target gain", True),
              Quantity("forgetting", "forgetting on the source sets pooled (WER points)", False))


def reference(report: Mapping[str, Any]) -> Optional[str]:
    """The cell whose gain the report's shares are of (its protocol's ``report_reference``)."""
    return (report.get("protocol") or {}).get("report_reference")


def cell_values(report: Mapping[str, Any]) -> Dict[str, Dict[str, float]]:
    """``{cell: {"share": ..., "forgetting": ...}}`` of a report's adapted cells (alpha 1); the
    share is of the report's reference cell (``protocol.report_reference``)."""
    rows = [r for r in report["rows"] if r.get("alpha", 1.0) == 1.0 and r.get("target_gain") is not None]
    ref = next((r for r in rows if r["cell"] == reference(report)), None)
    out = {}
    for r in rows:
        share = r["target_gain"] / ref["target_gain"] if ref and ref["target_gain"] else None
        out[r["cell"]] = {"share": share, "forgetting": r.get("forgetting")}
    return out


def ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, ties sharing their mean rank."""
    v = np.asarray(values, dtype=float)
    order = np.argsort(v, kind="mergesort")
    r = np.empty(len(v))
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
            j += 1
        r[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def permutation_p(a: Sequence[float], b: Sequence[float], seed: int = 0) -> float:
    """One-sided p-value of a rank correlation at least as high as observed under random pairing."""
    rho = spearman(a, b)
    b = np.asarray(b, dtype=float)
    exact = len(b) <= EXACT_UP_TO
    if exact:  # every pairing, the observed one included
        perms = [b[list(p)] for p in itertools.permutations(range(len(b)))]
    else:
        rng = np.random.default_rng(seed)
        perms = [b[rng.permutation(len(b))] for _ in range(PERMUTATIONS)]
    hits = sum(spearman(a, p) >= rho - 1e-12 for p in perms)
    extra = 0 if exact else 1  # a sampled test counts the observed pairing once more
    return (hits + extra) / (len(perms) + extra)


def flipped_pairs(cells: Sequence[str], a: Sequence[float], b: Sequence[float]) -> List[Tuple[str, str]]:
    """The pairs ordered one way by ``a`` and the other by ``b`` (ties in either are not flips)."""
    out = []
    for i, j in itertools.combinations(range(len(cells)), 2):
        if (a[i] - a[j]) * (b[i] - b[j]) < 0:
            out.append((cells[i], cells[j]))
    return out


@dataclass
class Agreement:
    quantity: Quantity
    cells: List[str]
    first: List[float]
    second: List[float]
    rho: float
    p_value: float
    flips: List[Tuple[str, str]]


def compare(first: Mapping[str, Any], second: Mapping[str, Any], seed: int = 0,
            cells: Optional[Sequence[str]] = None) -> List[Agreement]:
    """Each quantity's agreement over the cells both reports hold (or ``cells``); the reference cell
    is left out of the share (its share is 1 in both by definition)."""
    va, vb = cell_values(first), cell_values(second)
    common = [c for c in (cells or va) if c in va and c in vb]
    ref = reference(first)
    out = []
    for q in QUANTITIES:
        cs = [c for c in common if va[c][q.name] is not None and vb[c][q.name] is not None
              and not (q.name == "share" and c == ref)]
        a, b = [va[c][q.name] for c in cs], [vb[c][q.name] for c in cs]
        if len(cs) < 3:
            out.append(Agreement(q, cs, a, b, float("nan"), float("nan"), []))
            continue
        out.append(Agreement(q, cs, a, b, spearman(a, b), permutation_p(a, b, seed), flipped_pairs(cs, a, b)))
    return out


def render(agreements: Sequence[Agreement], first_name: str, second_name: str) -> str:
    """Markdown: per quantity a table of the two values and ranks per cell, rho, p and the flips."""
    lines = []
    for ag in agreements:
        q = ag.quantity
        lines += [f"### {q.label}", ""]
        if len(ag.cells) < 3:
            lines += [f"Fewer than 3 cells in both reports ({len(ag.cells)}): no ranking to compare.", ""]
            continue
        sign = -1.0 if q.higher_is_better else 1.0  # rank 1 = best
        ra = ranks([sign * v for v in ag.first])
        rb = ranks([sign * v for v in ag.second])
        lines += [f"| cell | {first_name} | rank | {second_name} | rank |", "|---|---:|---:|---:|---:|"]
        for c, x, rx, y, ry in sorted(zip(ag.cells, ag.first, ra, ag.second, rb), key=lambda t: t[2]):
            lines.append(f"| {c} | {x:.3f} | {rx:g} | {y:.3f} | {ry:g} |")
        exact = "exact" if len(ag.cells) <= EXACT_UP_TO else f"{PERMUTATIONS:,} permutations"
        lines += ["", f"Spearman's rho over {len(ag.cells)} cells: **{ag.rho:+.2f}** (one-sided permutation "
                      f"p = {ag.p_value:.3g}, {exact}). Pairs whose order flips ({len(ag.flips)} of "
                      f"{len(ag.cells) * (len(ag.cells) - 1) // 2}): "
                      + (", ".join(f"{a} / {b}" for a, b in ag.flips) or "none")
                  + ". Ranks and flips are of the point estimates (seed means); a flip between two cells "
                    "whose own comparison is not significant in either report may be noise.", ""]
    return "\n".join(lines)
