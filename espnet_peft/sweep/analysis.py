"""The statistics of a sweep report: seed means and spreads, bootstrap intervals of every score and
of every difference against the base model, the share of full fine-tuning's gain recovered, the
significance-aware Pareto front, and the findings that claim only differences significant after
Holm's correction within each family of comparisons (``families.py``).

Every number is of one :class:`~espnet_peft.sweep.metrics.Metric` (``analyse(metric=...)``): the
scores are read from its ``field`` and compared in its direction (``higher_is_better``). A row's
fields are generic (``target_score``, ``sources[x]["score"]``, ...); ``target_gain`` and
``forgetting`` are positive when the adapted model is better on the target and worse on a source."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..methods import gain_references
from ..scoring import UtteranceErrors, bootstrap_replicates, difference_stats, interval
from .curves import BASE, matched_learning
from .families import Families
from .metrics import Metric, report_metric
from .protocol import BOOTSTRAP_DEFAULTS


def pareto_front(points: Sequence[Sequence[float]],
                 significant: Optional[Callable[[int, int], bool]] = None) -> List[int]:
    """Indices of the points not dominated in (x, y), both to minimise. With ``significant``, j
    dominates i only when it is at least as good on both axes, strictly better on one, and
    ``significant(j, i)`` says that (one of) its strict advantages is statistically significant."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 <= y) and (x2 < x or y2 < y) and (significant is None or significant(j, i))
                        for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], points[i][1]))


def reference_summary(summaries: Sequence[Mapping[str, Any]],
                      reference: Optional[str] = None) -> Optional[Mapping[str, Any]]:
    """The run whose target gain is 100% in "gain recovered", at alpha 1: the cell ``reference``
    (the grid's ``report.reference``) when given; else a run of a method the registry marks as the
    gain reference (full fine-tuning), the cell named as the method when there is one (a grid may
    also hold variants of it, e.g. Speech-FT), else the first in grid order; ``None`` without one."""
    at1 = [s for s in summaries if s.get("alpha", 1.0) == 1.0]
    if reference is not None:
        return next((s for s in at1 if s.get("cell", s.get("tag")) == reference), None)
    refs = gain_references()
    cand = [s for s in at1 if s.get("method") in refs]
    plain = [s for s in cand if s.get("cell", s.get("tag")) == s.get("method")]
    return (plain or cand or [None])[0]


def _groups(summaries: Sequence[Mapping[str, Any]]) -> List[List[Mapping[str, Any]]]:
    """Summaries grouped by (cell, alpha), in order of first appearance: the seeds of one row."""
    order: List[Tuple[str, float]] = []
    groups: Dict[Tuple[str, float], List[Mapping[str, Any]]] = {}
    for s in summaries:
        key = (s.get("cell", s["tag"]), float(s.get("alpha", 1.0)))
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(s)
    return [groups[k] for k in order]


def _mean_sd(vals: Sequence[float]) -> Tuple[float, Optional[float]]:
    vals = [float(v) for v in vals]
    return sum(vals) / len(vals), (float(np.std(vals, ddof=1)) if len(vals) > 1 else None)


def _pooled(scores: Mapping[str, Any], sets: Sequence[str], field: str) -> float:
    """A score over several test sets together (weighted by their reference words when known)."""
    ws = [scores[s].get("words") for s in sets]
    if all(isinstance(w, (int, float)) and w > 0 for w in ws):
        return sum(scores[s][field] * w for s, w in zip(sets, ws)) / sum(ws)
    return sum(scores[s][field] for s in sets) / len(sets)


def _concat(utts: Sequence[UtteranceErrors], sets: Sequence[str]) -> UtteranceErrors:
    if len(utts) == 1:
        return utts[0]
    spk = None
    if all(u.speakers is not None for u in utts):
        spk = tuple(f"{s}/{x}" for s, u in zip(sets, utts) for x in u.speakers)
    return UtteranceErrors(tuple(f"{s}/{x}" for s, u in zip(sets, utts) for x in u.ids),
                           np.concatenate([u.errors for u in utts]), np.concatenate([u.words for u in utts]), spk)




class _Axis:
    """Shared bootstrap resamples of the base model and every row on one test set (or several
    pooled): intervals of a row, paired differences between rows or against the base."""

    def __init__(self, name: str, sets: Sequence[str], groups, boot: Mapping[str, Any], decoding: str = ""):
        """``decoding``: "" for the recipe's decoding (``_utt``), "_nolm" for the one without the LM."""
        self.name, self.sets, self.level, self.cols = name, list(sets), float(boot["level"]), {}
        self.ok, self.unit, self.note = False, boot["unit"], ""
        base = None
        for g in groups:
            for s in g:
                b = s.get("_base_utt" + decoding) or {}
                if all(x in b for x in sets):
                    base = _concat([b[x] for x in sets], sets)
                    break
            if base is not None:
                break
        if base is None:
            return
        systems = [np.asarray(base.errors)]
        self.cols[BASE] = 0
        for i, g in enumerate(groups):
            runs = []
            for s in g:
                u = s.get("_utt" + decoding) or {}
                if not all(x in u for x in sets):
                    runs = []
                    break
                runs.append(_concat([u[x] for x in sets], sets))
            if not runs or any(r.ids != base.ids or not np.array_equal(r.words, base.words) for r in runs):
                continue
            self.cols[i] = len(systems)
            systems.append(np.stack([np.asarray(r.errors) for r in runs]))
        if len(self.cols) < 2:
            return  # no row has per-utterance errors on these sets
        if self.unit != "utterance" and base.speakers is None:
            self.unit, self.note = "utterance", "no speakers (utt2spk) for a speaker-level bootstrap: utterances resampled"
        self.units = len(set(base.speakers)) if self.unit != "utterance" else len(base.ids)
        self.speakers = len(set(base.speakers)) if base.speakers is not None else None
        self.utterances = len(base.ids)
        self.point, self.reps = bootstrap_replicates(
            systems, base.words, base.speakers, unit=self.unit, n_resamples=int(boot["resamples"]),
            seed=int(boot["seed"]), resample_seeds=bool(boot["resample_seeds"]))
        self.ok = len(self.cols) > 1

    def has(self, *rows: int) -> bool:
        return self.ok and all(r in self.cols for r in rows)

    def ci(self, i: int) -> Optional[List[float]]:
        return list(interval(self.reps[:, self.cols[i]], self.level)) if self.has(i) else None

    def diff(self, i: int, j: int, value: float) -> Optional[Dict[str, Any]]:
        """Row i minus row j (either may be BASE): ``value`` (the point difference the report
        shows) with its paired bootstrap interval and p-value."""
        if not self.has(i, j):
            return None
        return difference_stats(value, self.reps[:, self.cols[i]] - self.reps[:, self.cols[j]], self.level)

    def worse(self, i: int, j: int, value: float, metric: Metric) -> Optional[Dict[str, Any]]:
        """How much worse row i is than row j in ``metric``'s direction (either may be BASE): i minus
        j when lower is better, j minus i when higher is."""
        return self.diff(j, i, value) if metric.higher_is_better else self.diff(i, j, value)

    def ratio_ci(self, i: int, ref: int, sign: int = 1) -> Optional[List[float]]:
        """Interval of (base - i) / (base - ref): the share of ref's gain that i recovers (``sign``
        -1: of a metric where higher is better, the gains are i - base and ref - base)."""
        if not self.has(i, ref):
            return None
        b = self.reps[:, self.cols[BASE]]
        den = sign * (b - self.reps[:, self.cols[ref]])
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(den > 0, sign * (b - self.reps[:, self.cols[i]]) / den, np.nan)
        return list(interval(r, self.level)) if np.isfinite(r).any() else None

    def info(self) -> Dict[str, Any]:
        return {"sets": self.sets, "unit": self.unit, "units": getattr(self, "units", None),
                "speakers": getattr(self, "speakers", None), "utterances": getattr(self, "utterances", None),
                "rows_with_utterance_scores": len(self.cols) - 1 if self.ok else 0, "note": self.note}


def _set_rows(groups, sets: Sequence[str], boot, side: str, metric: Metric, decoding: str = "",
              fam: Optional[Families] = None, skip: Sequence[str] = (),
              given: Optional[Mapping[str, "_Axis"]] = None) -> Tuple[List[Dict[str, Any]], Dict]:
    """Per row (group) and set: the seed mean of the adapted score with its spread and interval, the
    base score, and the paired difference against the base: the gain (``side`` "target") or the
    forgetting ("source"). ``decoding`` "" reads ``adapted`` / ``base``, "_nolm" reads
    ``adapted_nolm`` / ``base_nolm``. A set that some seed of a row lacks is left out of that row.
    The tests against the base go into ``fam`` (but those of the sets in ``skip``: the headline's,
    already there). ``given``: axes already built for some of the sets (of this decoding): reused, not
    resampled again. Returns (one {set: stats} per group, {set: _Axis})."""
    given = given or {}
    axes = {x: given[x] if x in given else _Axis(x, [x], groups, boot, decoding) for x in sets}
    out = []
    for i, g in enumerate(groups):
        per = {}
        for x in sets:
            if not all(x in (s.get("adapted" + decoding) or {}) and x in (s.get("base" + decoding) or {}) for s in g):
                continue
            f = metric.field
            if not all(f in s["adapted" + decoding][x] for s in g) or f not in g[0]["base" + decoding][x]:
                continue
            vals = [s["adapted" + decoding][x][f] for s in g]
            m, sd = _mean_sd(vals)
            b = g[0]["base" + decoding][x][f]
            st = {"score": m, "sd": sd, "seeds": vals, "ci": axes[x].ci(i), "base_score": b}
            if side == "target":
                gain = metric.gain(b, m)
                st.update(gain=gain, gain_test=axes[x].worse(BASE, i, gain, metric))
            else:
                fg = metric.worse_by(m, b)
                st.update(forgetting=fg, forgetting_rel=100 * fg / b if b else None,
                          forgetting_test=axes[x].worse(i, BASE, fg, metric))
            if fam is not None and x not in skip:
                fam.add(_base_family(side, x, decoding), st["gain_test" if side == "target" else "forgetting_test"])
            per[x] = st
        out.append(per)
    return out, axes


def _base_family(side: str, x: str, decoding: str = "") -> str:
    what = "gain over the base model" if side == "target" else "forgetting against the base model"
    return f"{what} on {x}" + (" (no LM)" if decoding else "")


def _row(g: Sequence[Mapping[str, Any]], tgt: str, srcs: Sequence[str], tuning: Mapping[str, Any],
         ref_name: Optional[str], metric: Metric) -> Dict[str, Any]:
    """One report row: a (cell, alpha) group's seeds as their mean and spread, against the base."""
    s0 = g[0]
    b = s0["base"]
    f = metric.field
    cell = s0.get("cell", s0["tag"])
    t_mean, t_sd = _mean_sd([s["adapted"][tgt][f] for s in g])
    p_mean, p_sd = _mean_sd([_pooled(s["adapted"], srcs, f) for s in g])
    base_pooled = _pooled(b, srcs, f)
    forgetting = metric.worse_by(p_mean, base_pooled)
    tr = [s.get("train_wall_seconds") for s in g if s.get("train_wall_seconds")]
    t_info = tuning.get(cell) or {}
    row = {
        "cell": cell, "method": s0["method"], "budget": s0.get("sweep_budget"),
        "variant": s0.get("sweep_variant", {}), "alpha": float(s0.get("alpha", 1.0)),
        "lr": s0.get("lr"), "lr_grid": t_info.get("grid"), "lr_from": t_info.get("inherited_from"),
        "lr_at_grid_edge": t_info.get("edge", False),
        "seeds": [s.get("seed") for s in g], "n_seeds": len(g),
        "trainable": s0.get("trainable_params"), "fraction": s0.get("fraction"),
        "adapted_modules": s0.get("adapted_modules"), "left_out_modules": s0.get("left_out_modules"),
        "target_set": tgt, "target_score": t_mean, "target_score_sd": t_sd,
        "target_score_seeds": [s["adapted"][tgt][f] for s in g], "target_ci": None,
        "base_target_score": b[tgt][f], "target_gain": metric.gain(b[tgt][f], t_mean), "target_gain_test": None,
        "source_sets": list(srcs), "source_score": p_mean, "source_score_sd": p_sd, "source_ci": None,
        "base_source_score": base_pooled, "forgetting": forgetting,
        "forgetting_rel": 100 * forgetting / base_pooled if base_pooled else None,
        "forgetting_test": None,
        "sources": {},
        "gain_recovered": None, "gain_recovered_ci": None, "gain_reference": ref_name,
        "train_seconds": sum(tr) / len(tr) if tr else None,
        "checks": sorted({c for s in g for c in s.get("checks", [])}), "pareto": False, "status": "done",
    }
    for x in srcs:
        m, sd = _mean_sd([s["adapted"][x][f] for s in g])
        fg = metric.worse_by(m, b[x][f])
        row["sources"][x] = {"score": m, "sd": sd, "seeds": [s["adapted"][x][f] for s in g], "ci": None,
                             "base_score": b[x][f], "forgetting": fg,
                             "forgetting_rel": 100 * fg / b[x][f] if b[x][f] else None,
                             "forgetting_test": None}
    return row


def _intervals(rows: List[Dict[str, Any]], axes: Mapping[str, _Axis], tgt: str, srcs: Sequence[str],
               pooled: _Axis, ref_idx: Optional[int], fam: Families, metric: Metric) -> None:
    """Every row's bootstrap intervals and tests against the base (each in its family): the target's
    gain, the share of the reference's gain recovered, the forgetting on each source set and pooled."""
    T = axes[tgt]
    for i, r in enumerate(rows):
        r["target_ci"] = T.ci(i)
        r["target_gain_test"] = fam.add(_base_family("target", tgt), T.worse(BASE, i, r["target_gain"], metric))
        if ref_idx is not None:
            r["gain_recovered_ci"] = T.ratio_ci(i, ref_idx, metric.sign)
        for x in srcs:
            sx = r["sources"][x]
            sx["ci"] = axes[x].ci(i)
            sx["forgetting_test"] = fam.add(_base_family("source", x),
                                            axes[x].worse(i, BASE, sx["forgetting"], metric))
        r["source_ci"] = pooled.ci(i)
        if len(srcs) > 1:
            r["forgetting_test"] = fam.add(_base_family("source", "the source sets pooled"),
                                           pooled.worse(i, BASE, r["forgetting"], metric))
        else:
            r["forgetting_test"] = r["sources"][srcs[0]]["forgetting_test"]


def _dominance_tests(rows: List[Dict[str, Any]], T: _Axis, axes: Mapping[str, _Axis], pooled: _Axis,
                     srcs: Sequence[str], fam: Families, metric: Metric) -> Dict[str, Any]:
    """For each Pareto panel (the source sets pooled, and each source set when there are several):
    the y values and, for every pair (j, i) where j is at least as good as i on both axes and
    better on one, the tests of j's strict advantages, each in the panel's family."""
    panels = {}
    names = (["pooled"] if len(srcs) > 1 else []) + list(srcs)
    for k in names:
        ax_y = pooled if k == "pooled" else axes[k]
        ys = [r["source_score"] if k == "pooled" else r["sources"][k]["score"] for r in rows]
        # in the metric's direction: a smaller key is better on both axes
        xk = [metric.key(r["target_score"]) for r in rows]
        yk = [metric.key(y) for y in ys]
        tests: Dict[Tuple[int, int], List[Optional[Dict[str, Any]]]] = {}
        for i, r in enumerate(rows):
            for j, q in enumerate(rows):
                if j == i or not (xk[j] <= xk[i] and yk[j] <= yk[i]) or not (xk[j] < xk[i] or yk[j] < yk[i]):
                    continue
                ts = []
                if xk[j] < xk[i]:
                    ts.append(T.worse(i, j, metric.worse_by(r["target_score"], q["target_score"]), metric))
                if yk[j] < yk[i]:
                    ts.append(ax_y.worse(i, j, metric.worse_by(ys[i], ys[j]), metric))
                family = "Pareto dominance, target against " + ("the source sets pooled" if k == "pooled" else k)
                tests[(j, i)] = [fam.add(family, t) for t in ts]
        panels[k] = {"ys": ys, "tests": tests}
    return panels


def _fronts(rows: List[Dict[str, Any]], panels: Mapping[str, Any], metric: Metric) -> Dict[str, List[str]]:
    """The Pareto fronts of the target score against the source score, each better in ``metric``'s
    direction (after :func:`_dominance_tests` and the correction); a point is dominated only by a
    difference significant after it. Marks the rows."""
    fronts = {}
    for k, p in panels.items():
        def sig(j: int, i: int, tests=p["tests"]) -> bool:
            ts = tests.get((j, i), [])
            if any(t is None for t in ts):
                return True  # no per-utterance scores for this pair: the point estimates decide
            return any(t["significant"] for t in ts)

        front = pareto_front([(metric.key(r["target_score"]), metric.key(y)) for r, y in zip(rows, p["ys"])], sig)
        fronts[k] = [_label(rows[i]) for i in front]
        for i in front:
            if k == "pooled" or len(panels) == 1:
                rows[i]["pareto"] = True
            if k != "pooled" and len(panels) > 1:
                rows[i]["sources"][k]["pareto"] = True
    return fronts


def analyse(summaries: Sequence[Mapping[str, Any]], statuses: Mapping[str, str] = (),
            tuning: Optional[Mapping[str, Mapping[str, Any]]] = None,
            bootstrap: Optional[Mapping[str, Any]] = None, metric="wer",
            reference: Optional[str] = None, matched_share: float = 0.7) -> Dict[str, Any]:
    """Everything the report shows, in ``metric`` (a report metric's name, or a :class:`Metric`):
    one row per (cell, alpha) as the mean over its seeds (with
    the spread), bootstrap intervals of every score and of every difference against the base model
    (gain on the target, forgetting on each source test set), the interval of the share of full
    fine-tuning's gain recovered, the Pareto fronts (a point is dominated only by a significant
    difference) and the generated findings. Without per-utterance errors (``_utt``) the numbers
    are reported without intervals and the fronts fall back to the point estimates."""
    boot = {**BOOTSTRAP_DEFAULTS, **dict(bootstrap or {})}
    tuning = dict(tuning or {})
    m = report_metric(metric)
    label = m.label
    groups = _groups(summaries)
    if groups:
        tgts = list(groups[0][0]["target_test_sets"])
        srcs = list(groups[0][0]["source_test_sets"])
    else:
        tgts, srcs = ["target"], ["source"]
    tgt = tgts[0]  # the headline: the first target set (the unseen-speaker set in the embedded recipe)
    ref = reference_summary([g[0] for g in groups], reference)
    ref_name = None if ref is None else ref.get("cell", ref.get("tag"))
    ref_idx = next((i for i, g in enumerate(groups) if g[0] is ref), None)
    rows = [_row(g, tgt, srcs, tuning, ref_name, m) for g in groups]
    full_gain = None if ref_idx is None else rows[ref_idx]["target_gain"]
    for r in rows:
        r["gain_recovered"] = r["target_gain"] / full_gain if full_gain and full_gain > 0 else None
    # bootstrap: the target, every source set, and the source sets pooled (the Pareto front's y)
    axes: Dict[str, _Axis] = {}
    fronts: Dict[str, List[str]] = {}
    fam = Families(float(boot["level"]))
    panels: Dict[str, Any] = {}
    if groups:
        axes = {x: _Axis(x, [x], groups, boot) for x in [tgt] + srcs}
        pooled = axes[srcs[0]] if len(srcs) == 1 else _Axis("+".join(srcs), srcs, groups, boot)
        _intervals(rows, axes, tgt, srcs, pooled, ref_idx, fam, m)
        panels = _dominance_tests(rows, axes[tgt], axes, pooled, srcs, fam, m)
    T = axes.get(tgt)
    # every target set (the headline first), and both sides again without the LM when decoded so
    targets, t_axes = _set_rows(groups, tgts, boot, "target", m, fam=fam, skip=[tgt], given=axes)
    nolm_t, nolm_t_axes = _set_rows(groups, tgts, boot, "target", m, "_nolm", fam=fam)
    nolm_s, nolm_s_axes = _set_rows(groups, srcs, boot, "source", m, "_nolm", fam=fam)
    for r, t, nt, ns in zip(rows, targets, nolm_t, nolm_s):
        r["targets"] = t
        if t.get(tgt) is not None:  # the headline's test is the row's own (one test, one family)
            t[tgt]["gain_test"] = r["target_gain_test"]
        if nt or ns:
            r["nolm"] = {"targets": nt, "sources": ns}
    decodings = sorted({s.get("nolm_decoding") for s in summaries if s.get("nolm_decoding")})
    between = _between_cells(rows, T, axes, srcs, fam, m) if rows and T and T.ok else []
    nolm_between = (_between_cells(rows, None, nolm_s_axes, srcs, fam, m, nolm=True)
                    if rows and any(r.get("nolm") for r in rows) else [])
    fam.correct()  # every claim below reads the corrected significance
    matched = {}
    if groups:
        src_axes = {("pooled" if len(srcs) > 1 else srcs[0]): (pooled, rows[0]["base_source_score"],
                                                                lambda r: r["source_score"])}
        if len(srcs) > 1:
            src_axes.update({x: (axes[x], rows[0]["sources"][x]["base_score"],
                                 lambda r, x=x: r["sources"][x]["score"]) for x in srcs})
        matched = matched_learning(rows, axes[tgt], src_axes, ref_idx, matched_share, float(boot["level"]), m.sign)
    if panels:
        fronts = _fronts(rows, panels, m)
    findings = _findings(rows, T, srcs, between, fronts, boot, m, fam) if rows else []
    if nolm_between:
        findings[-1:-1] = _nolm_findings(nolm_between, decodings)
    for name, why in dict(statuses).items():
        rows.append({"cell": name, "status": why})
    every = {**axes, **{f"{k} (other target set)": a for k, a in t_axes.items() if k != tgt},
             **{f"{k} (no LM)": a for k, a in {**nolm_t_axes, **nolm_s_axes}.items()}}
    return {"rows": rows, "target": tgt, "targets": tgts, "sources": srcs, "fronts": fronts, "findings": findings,
            "matched_learning": matched,
            "metric": m.name, "metric_label": label, "higher_is_better": m.higher_is_better,
            "metric_direction": m.better_text,
            "nolm_decoding": ", ".join(decodings) or None,
            "bootstrap": {**boot, "axes": {k: a.info() for k, a in every.items()},
                          "significant_axes": bool(T and T.ok), "correction": "holm", "families": fam.sizes()},
            "tuning": tuning}


def _between_cells(rows, T: Optional[_Axis], axes: Mapping[str, _Axis], srcs: Sequence[str], fam: Families,
                   metric: Metric, nolm: bool = False) -> List[Dict[str, Any]]:
    """The comparisons between the plain cells of each budget (alpha 1, no variant): on the
    headline target, every cell against the best one (unless ``nolm``); on each source
    set, every cell against the one that forgets least. Each test goes into its family (one per
    question, every budget together); the claims are written after the correction."""
    out = []
    plain = [(i, r) for i, r in enumerate(rows) if not r["variant"] and r["alpha"] == 1.0 and r["budget"] is not None
             and (not nolm or r.get("nolm"))]
    suffix = " (no LM)" if nolm else ""
    for bud in dict.fromkeys(r["budget"] for _, r in plain):
        rs = [(i, r) for i, r in plain if r["budget"] == bud]
        entry: Dict[str, Any] = {"budget": bud, "learning": None, "forgetting": {}}
        if not nolm and len(rs) >= 2:
            ranked = sorted(rs, key=lambda t: metric.key(t[1]["target_score"]))
            (bi, best) = ranked[0]
            entry["learning"] = {"best": best, "others": [
                (r, fam.add(f"learning: each cell against the {metric.best_word} {metric.label} of its budget on "
                            f"{best['target_set']}",
                            T.worse(i, bi, metric.worse_by(r["target_score"], best["target_score"]), metric)))
                for i, r in ranked[1:]]}
        for x in srcs:
            score = (lambda r: r["nolm"]["sources"][x]["score"]) if nolm else (lambda r: r["sources"][x]["score"])
            have = [(i, r) for i, r in rs if not nolm or x in r["nolm"]["sources"]]
            if len(have) < 2:
                continue
            ranked = sorted(have, key=lambda t: metric.key(score(t[1])))
            (li, least) = ranked[0]
            entry["forgetting"][x] = {"least": least, "others": [
                (r, fam.add(f"forgetting: each cell against the least-forgetting cell of its budget on {x}{suffix}",
                            axes[x].worse(i, li, metric.worse_by(score(r), score(least)), metric)))
                for i, r in ranked[1:]]}
        out.append(entry)
    return out


def _nolm_findings(between: Sequence[Mapping[str, Any]], decodings) -> List[str]:
    """Forgetting without the LM (the acoustic model's own): per budget and source set, the cell
    that forgets least and those that forget significantly more (after the correction)."""
    out = []
    for e in between:
        parts = []
        for x, f in e["forgetting"].items():
            least = f["least"]
            more = [f"{r['cell']} ({_diff_text(t)})" for r, t in f["others"] if t is not None and t["significant"]]
            parts.append(f"on {x} least {least['cell']} ({least['nolm']['sources'][x]['forgetting']:+.2f})"
                         + (f", significantly more: {', '.join(more)}" if more else ", no other significantly more"))
        if parts:
            out.append(f"**{e['budget']}, without the LM** ({', '.join(decodings) or 'no LM'}): forgetting "
                       + "; ".join(parts) + ".")
    return out


def sweep_rows(summaries: Sequence[Mapping[str, Any]], statuses: Mapping[str, str] = (), **kw) -> List[Dict[str, Any]]:
    """One row per (cell, alpha) with the numbers of the report (see :func:`analyse`)."""
    return analyse(summaries, statuses, **kw)["rows"]


def _label(r: Mapping[str, Any]) -> str:
    return r["cell"] + ("" if r.get("alpha", 1.0) == 1.0 else f" (alpha {r['alpha']:g})")


def _diff_text(t: Mapping[str, Any]) -> str:
    return f"{t['diff']:+.2f} [{t['low']:+.2f}, {t['high']:+.2f}]"


def _findings(rows, T: _Axis, srcs: Sequence[str], between: Sequence[Mapping[str, Any]], fronts, boot,
              metric: Metric, fam: Families) -> List[str]:
    """A short "what the numbers say" that claims only differences significant after Holm's
    correction within each family of comparisons (the last line states the families)."""
    tgt = rows[0]["target_set"]
    label = metric.label
    level = int(round(100 * float(boot["level"])))
    out = []
    if not (T and T.ok):
        return ["No per-utterance scores were found, so no difference is claimed as significant; the table "
                "gives point estimates only."]
    b = rows[0]
    spk = f" ({T.speakers} speakers)" if getattr(T, "speakers", None) else ""
    out.append(f"Base model: {tgt}{spk} {label} {b['base_target_score']:.2f}; "
               + "; ".join(f"{x} {label} {b['sources'][x]['base_score']:.2f}" for x in srcs) + ".")
    ref = next((r for r in rows if r["cell"] == r.get("gain_reference") and r["alpha"] == 1.0), None)
    if ref is not None and ref["target_gain_test"]:
        t = ref["target_gain_test"]
        out.append(f"Full fine-tuning (`{ref['cell']}`) {metric.improves_word} {tgt} {label} to "
                   f"{ref['target_score']:.2f}, a gain of "
                   f"{_diff_text(t)}" + ("" if t["significant"] else " (not significant)") + ".")
    for e in between:
        parts = []
        rs = [r for r in rows if r["budget"] == e["budget"] and not r["variant"] and r["alpha"] == 1.0]
        no_gain = [r["cell"] for r in sorted(rs, key=lambda r: metric.key(r["target_score"]))
                   if r["target_gain_test"] and not r["target_gain_test"]["significant"]]
        if e["learning"]:
            best = e["learning"]["best"]
            worse = [f"{r['cell']} ({_diff_text(t)})" for r, t in e["learning"]["others"] if t and t["significant"]]
            same = [r["cell"] for r, t in e["learning"]["others"] if t and not t["significant"]]
            parts.append(f"{metric.best_word} {tgt} {label}: {best['cell']} ({best['target_score']:.2f})"
                         + (f"; significantly {metric.worse_word}: {', '.join(worse)}" if worse else "")
                         + (f"; not significantly different from it: {', '.join(same)}" if same else ""))
        if no_gain:
            parts.append(f"no significant gain over the base model: {', '.join(no_gain)}")
        for x in srcs:
            f = e["forgetting"].get(x)
            if f:
                least = f["least"]
                more = [f"{r['cell']} ({_diff_text(t)})" for r, t in f["others"] if t is not None and t["significant"]]
                parts.append(f"forgetting on {x}: least {least['cell']} ({least['sources'][x]['forgetting']:+.2f})"
                             + (f", significantly more: {', '.join(more)}" if more else
                                ", no other cell forgets significantly more"))
            none = [r["cell"] for r in sorted(rs, key=lambda r: metric.key(r["sources"][x]["score"]))
                    if r["sources"][x]["forgetting_test"] and not r["sources"][x]["forgetting_test"]["significant"]]
            if none:
                parts.append(f"no significant forgetting on {x}: {', '.join(none)}")
        if parts:
            out.append(f"**{e['budget']}.** " + "; ".join(parts) + ".")
    for k, names in fronts.items():
        what = f"target {label} against the source sets pooled" if k == "pooled" else f"target {label} against {k} {label}"
        out.append(f"Pareto front ({what}; a point counts as dominated only by a significant difference): "
                   f"{', '.join(names)}.")
    edge = [r["cell"] for r in rows if r.get("lr_at_grid_edge") and r["alpha"] == 1.0]
    if edge:
        out.append(f"The learning rate chosen on dev is at the edge of its grid for {', '.join(edge)}: "
                   f"a better one may lie beyond it.")
    single = [r["cell"] for r in rows if r["n_seeds"] < 2 and r["alpha"] == 1.0]
    if single:
        out.append(f"Only one seed so far: {', '.join(single)} (no spread; intervals carry test sampling only).")
    checks = [f"{r['cell']}: {c}" for r in rows for c in r.get("checks", [])]
    if checks:
        out.append("Check: " + "; ".join(checks) + ".")
    unit = {"utterance": "utterances", "speaker": "speakers (each with all its utterances)",
            "speaker_utterance": "speakers, then utterances within each drawn speaker"}.get(T.unit, T.unit + "s")
    sizes = fam.sizes()
    out.append(f"Statistics: {level}% percentile intervals from {int(boot['resamples'])} bootstrap resamples of "
               f"{unit}" + (", each cell's seeds resampled as a level of their own" if boot["resample_seeds"] else "")
               + f" ({tgt}: {T.speakers or '?'} speakers, {T.utterances} utterances). Differences are paired. "
               f"\"Significant\" means significant after Holm's correction at the {100 - level}% level within each "
               f"family of comparisons ({len(sizes)} families, {sum(sizes.values())} comparisons; e.g. "
               + "; ".join(f"{n}: {k}" for k, n in list(sizes.items())[:3])
               + "; every family with its size in the JSON's `bootstrap.families`); the intervals shown are "
               f"the uncorrected {level}% ones.")
    return out
