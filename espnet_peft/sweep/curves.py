"""Each cell's learning-forgetting curve and the forgetting at matched learning.

A cell's curve runs from the base model (alpha 0: the interpolation toward the pretrained weights
gives the foundation model back exactly, no gain and no forgetting) through every interpolation
weight that was decoded (Speech-FT stage 2) to the adapted model (alpha 1). Comparing methods at
one point each compares them at their own, most aggressive learning; comparing them where their
curves reach the same target gain (``share`` of the reference's, full fine-tuning's) asks how much
each forgets *for a given amount of learning*. Between measured points the curve is taken as
straight (the report says which points were measured); a cell whose curve never reaches the level
is reported as such. The interval of each value comes from the same bootstrap replicates as the
rest of the report: the crossing is found again on every replicate."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..scoring import interval

BASE = -1  # the base (not adapted) model's column in a bootstrap axis (analysis._Axis)


def crossing(xs: Sequence[float], ys: Sequence[float], level: float) -> Optional[float]:
    """Where a curve whose target scores ``xs`` (lower is better: a score where higher is better
    comes negated) start at the base (index 0) first comes down to ``level``: the source value
    ``ys`` interpolated there (None when it never does)."""
    for k in range(1, len(xs)):
        x0, x1 = xs[k - 1], xs[k]
        if x1 <= level:
            if x0 <= level:
                return float(ys[k - 1])
            t = (x0 - level) / (x0 - x1)
            return float(ys[k - 1] + t * (ys[k] - ys[k - 1]))
    return None


def curves(rows: Sequence[Mapping[str, Any]]) -> Dict[str, List[Tuple[float, int]]]:
    """``{cell: [(alpha, row index), ...]}`` sorted by alpha, for every cell with rows."""
    out: Dict[str, List[Tuple[float, int]]] = {}
    for i, r in enumerate(rows):
        if r.get("status", "done") == "done":
            out.setdefault(r["cell"], []).append((float(r["alpha"]), i))
    return {c: sorted(v) for c, v in out.items()}


def matched_learning(rows: Sequence[Mapping[str, Any]], target_axis, source_axes: Mapping[str, Any],
                     reference: Optional[int], share: float = 0.7, level: float = 0.95,
                     sign: int = 1) -> Dict[str, Any]:
    """Every cell's forgetting on each source axis (a set, or the sets pooled) where its curve reaches
    ``share`` of the reference row's target gain; point values from the rows, intervals from the axes'
    bootstrap replicates (``BASE`` column = the base model). ``sign``: the metric's (``Metric.sign``:
    -1 where higher is better). Returns ``{"share", "level_score", "cells": {cell: {"alphas",
    "forgetting": {axis: {"value", "ci", "reached"}}}}}``."""
    if reference is None or not rows:
        return {}
    ref = rows[reference]
    base_t = ref["base_target_score"]
    gain = sign * (base_t - ref["target_score"])
    if gain <= 0:
        return {}
    lvl = base_t - sign * share * gain
    out: Dict[str, Any] = {"share": share, "level_score": lvl, "target_set": ref["target_set"], "cells": {}}
    T = target_axis
    for cell, pts in curves(rows).items():
        idx = [i for _, i in pts]
        xs = [sign * base_t] + [sign * rows[i]["target_score"] for i in idx]
        entry = {"alphas": [a for a, _ in pts], "forgetting": {}}
        for name, (A, base_src, ys_of) in source_axes.items():
            ys = [base_src] + [ys_of(rows[i]) for i in idx]
            v = crossing(xs, ys, sign * lvl)
            res: Dict[str, Any] = {"value": None if v is None else sign * (v - base_src), "ci": None, "reached": None}
            if T is not None and A is not None and T.has(BASE, *idx) and A.has(BASE, *idx):
                tb = T.reps[:, T.cols[BASE]]
                ab = A.reps[:, A.cols[BASE]]
                tr = T.reps[:, [T.cols[i] for i in idx]]
                ar = A.reps[:, [A.cols[i] for i in idx]]
                rg = T.reps[:, T.cols[reference]]
                vals = []
                for b in range(tb.shape[0]):
                    g = sign * (tb[b] - rg[b])
                    if not np.isfinite(g) or g <= 0:
                        continue
                    c = crossing([sign * tb[b]] + list(sign * tr[b]), [ab[b]] + list(ar[b]), sign * tb[b] - share * g)
                    vals.append(np.nan if c is None else sign * (c - ab[b]))
                vals = np.asarray(vals, dtype=np.float64)
                if vals.size:
                    res["reached"] = float(np.isfinite(vals).mean())
                    if np.isfinite(vals).any():
                        res["ci"] = list(interval(vals[np.isfinite(vals)], level))
            entry["forgetting"][name] = res
        out["cells"][cell] = entry
    return out
