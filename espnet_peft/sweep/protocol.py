"""The selection protocol of a sweep: seeds, the learning-rate grid of each cell and the choice
made on the target dev set (extended past a grid's edge), and the bootstrap settings."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import PeftError
from ..scoring import RESAMPLE_UNITS
from .metrics import REPORT_METRICS, SELECTION_METRICS, Metric, selection_metric

SELECTION_KEYS = ("metric", "seeds", "variants", "priority_seeds", "extend", "forgetting")
FORGETTING_KEYS = ("set", "bound")
BOOTSTRAP_KEYS = ("unit", "resamples", "seed", "level", "resample_seeds")
REPORT_KEYS = ("metric", "reference", "matched_share")


@dataclass
class Protocol:
    """How a sweep trains and reports its cells (the grid's protocol keys, with defaults)."""

    seeds: List[Optional[int]] = field(default_factory=lambda: [None])  # [None]: the train config's seed
    seeds_declared: bool = False
    select_seeds: int = 1          # the first N seeds train every learning rate of the grid
    priority_seeds: int = 0        # the first N seeds of every cell run before later seeds (0: all)
    extend: int = 0                # rates a choice at a grid's edge may add past that edge (tuning_grid)
    metric: str = "dev_wer"        # a SELECTION_METRICS name: dev_wer (decode the target dev set) | valid_acc (ESPnet's)
    variants: str = "inherit"      # inherit: a variant reuses its plain cell's choice | tune: its own
    # forgetting-aware choice: {"set": a source dev set, "bound": points}: the best rate on the target dev
    # set among those whose forgetting on that set (adapted - base, in the selection metric) stays within
    # the bound; none within it: the rate that forgets least (selection.forgetting; None: target dev alone)
    forgetting: Optional[Dict[str, Any]] = None
    bootstrap: Dict[str, Any] = field(default_factory=lambda: dict(BOOTSTRAP_DEFAULTS))
    priority_budgets: List[str] = field(default_factory=list)
    report_metric: str = "wer"     # the error rate the report compares (grid key report.metric)
    report_reference: Optional[str] = None  # the cell whose gain is 100% in "gain recovered" (report.reference)
    matched_share: float = 0.7  # forgetting at matched learning: where a curve reaches this share of it (report.matched_share)

    @property
    def selection(self) -> Metric:
        """The metric the learning rates are chosen by."""
        return SELECTION_METRICS[self.metric]

    def as_dict(self) -> Dict[str, Any]:
        return {"seeds": self.seeds, "select_seeds": self.select_seeds, "priority_seeds": self.priority_seeds,
                "extend": self.extend,
                "metric": self.metric, "variants": self.variants, "bootstrap": self.bootstrap,
                "priority_budgets": self.priority_budgets, "report_metric": self.report_metric,
                "report_reference": self.report_reference, "matched_share": self.matched_share,
                **({"forgetting": self.forgetting} if self.forgetting else {})}


BOOTSTRAP_DEFAULTS = {"unit": "utterance", "resamples": 2000, "seed": 0, "level": 0.95, "resample_seeds": True}


def _section(grid: Mapping[str, Any], name: str, keys) -> Mapping[str, Any]:
    """A protocol section of the grid (a mapping of known keys; absent: empty)."""
    sec = grid.get(name) or {}
    if not isinstance(sec, Mapping) or set(sec) - set(keys):
        raise PeftError(f"{name} keys are {', '.join(keys)}, got {sec!r}")
    return sec


def _one_of(value: Any, allowed, what: str) -> Any:
    if value not in allowed:
        raise PeftError(f"{what} must be one of {', '.join(map(str, allowed))}, got {value!r}")
    return value


def protocol(grid: Mapping[str, Any]) -> Protocol:
    """The grid's protocol keys (``seeds``, ``selection``, ``bootstrap``, ``priority_budgets``),
    validated, with their defaults."""
    p = Protocol()
    seeds = grid.get("seeds")
    if seeds is not None:
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            seeds = list(range(1, seeds + 1))
        if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
            raise PeftError(f"seeds must be a count or a list of distinct non-negative integers, got {grid['seeds']!r}")
        p.seeds, p.seeds_declared = list(seeds), True
    sel = _section(grid, "selection", SELECTION_KEYS)
    p.metric = _one_of(sel.get("metric", p.metric), tuple(SELECTION_METRICS), "selection.metric")
    p.variants = _one_of(sel.get("variants", p.variants), ("inherit", "tune"), "selection.variants")
    for key, attr in (("seeds", "select_seeds"), ("priority_seeds", "priority_seeds"), ("extend", "extend")):
        least = 1 if key == "seeds" else 0
        v = sel.get(key, least)
        if not isinstance(v, int) or isinstance(v, bool) or v < least:
            raise PeftError(f"selection.{key} must be an integer >= {least}, got {v!r}")
        setattr(p, attr, v)
    if sel.get("forgetting") is not None:
        p.forgetting = forgetting_bound(sel["forgetting"], p.selection)
    if p.select_seeds > len(p.seeds):
        raise PeftError(f"selection.seeds ({p.select_seeds}) is more than the sweep's seeds ({len(p.seeds)})")
    p.bootstrap = {**BOOTSTRAP_DEFAULTS, **_section(grid, "bootstrap", BOOTSTRAP_KEYS)}
    _one_of(p.bootstrap["unit"], RESAMPLE_UNITS, "bootstrap.unit")
    if not 0 < float(p.bootstrap["level"]) < 1 or int(p.bootstrap["resamples"]) < 100:
        raise PeftError("bootstrap.level must be in (0, 1) and bootstrap.resamples at least 100")
    p.priority_budgets = [str(b) for b in (grid.get("priority_budgets") or [])]
    rep = _section(grid, "report", REPORT_KEYS)
    p.report_metric = _one_of(rep.get("metric", p.report_metric), tuple(REPORT_METRICS), "report.metric")
    p.report_reference = rep.get("reference")
    p.matched_share = float(rep.get("matched_share", p.matched_share))
    if not 0 < p.matched_share < 1:
        raise PeftError(f"report.matched_share must be in (0, 1), got {p.matched_share}")
    if p.report_reference is not None and not isinstance(p.report_reference, str):
        raise PeftError(f"report.reference must be a cell name, got {p.report_reference!r}")
    return p


def forgetting_bound(value: Any, selection: Metric) -> Dict[str, Any]:
    """``selection.forgetting``: ``{set: SOURCE_DEV_SET, bound: POINTS}``, checked."""
    if (not isinstance(value, Mapping) or set(value) != set(FORGETTING_KEYS) or not isinstance(value["set"], str)
            or not value["set"] or isinstance(value["bound"], bool) or not isinstance(value["bound"], (int, float))
            or not value["bound"] >= 0):
        raise PeftError(f"selection.forgetting must be {{set: <a source dev set>, bound: <points >= 0>}}, got {value!r}")
    if selection.source != "decode":
        raise PeftError(f"selection.forgetting needs a decoded dev score (selection.metric {selection.name} is "
                        f"ESPnet's validation): the source dev set is decoded beside the target's")
    if "_test" in value["set"]:
        raise PeftError(f"selection.forgetting.set {value['set']!r} is a test set: choices are made on dev sets")
    return {"set": value["set"], "bound": float(value["bound"])}


def lr_label(lr: Optional[float]) -> str:
    return "-" if lr is None else f"{lr:g}"


def choose_lr(scores: Mapping[float, Optional[float]], metric="dev_wer") -> Optional[float]:
    """The best learning rate by its (seed-mean) score in the direction of ``metric`` (a selection
    metric: the lowest dev WER, the highest validation accuracy); ties go to the rate listed first.
    ``None`` while any score is missing."""
    if not scores or any(v is None for v in scores.values()):
        return None
    m = selection_metric(metric)
    best = None
    for lr, v in scores.items():  # insertion order = grid order
        if best is None or m.key(v) < m.key(scores[best]):
            best = lr
    return best


def rate_beyond(grid: Sequence[float], side: str) -> float:
    """The next learning rate past the ``"low"`` or ``"high"`` end of ``grid``: one step of the
    grid's own ratio at that end, snapped to the half-decade ladder (1, 3, 10, 30, ...)."""
    g = sorted(grid)
    x = g[-1] * g[-1] / g[-2] if side == "high" else g[0] * g[0] / g[1]
    m = round(2 * math.log10(x))
    return float(f"{(1 if m % 2 == 0 else 3) * 10.0 ** (m // 2):.1e}")


def tuning_grid(grid: Sequence[float], score: Callable[[float], Optional[float]], metric="dev_wer",
                extend: int = 0) -> Tuple[List[float], Optional[float]]:
    """The rates a cell is tuned on and the rate chosen: ``(rates, chosen)``.

    Starts from ``grid``. While the best rate (``choose_lr`` on ``score(rate)``) is the smallest or
    largest tried and fewer than ``extend`` rates were added past that end, one more rate past it
    (``rate_beyond``) joins the grid, listed last so that ties keep the declared rates. ``chosen`` is
    ``None`` while a rate of ``rates`` has no score yet (those are the runs still needed). A score
    of ``Metric.worst`` (``inf``; ``-inf`` for a maximised metric), a run that diverged, ends the search at that end.
    Deterministic in the scores, so a resumed sweep reaches the same grid."""
    rates, added = list(grid), {"low": 0, "high": 0}
    while True:
        scores = {lr: score(lr) for lr in rates}
        best = choose_lr(scores, metric)
        if best is None or len(rates) < 2:
            return rates, best
        side = "high" if best == max(rates) else "low" if best == min(rates) else None
        if side is None or added[side] >= extend:
            return rates, best
        nxt = rate_beyond(rates, side)
        if nxt in rates:
            return rates, best
        rates.append(nxt)
        added[side] += 1


def reachable_rates(grid: Sequence[float], extend: int) -> List[float]:
    """Every rate ``tuning_grid`` may try: ``grid`` and up to ``extend`` rates past each end."""
    rates = list(grid)
    for side in ("low", "high") if len(grid) >= 2 else ():
        g = list(grid)
        for _ in range(extend):
            g.append(rate_beyond(g, side))
        rates += [x for x in g[len(grid):] if x not in rates]
    return rates


def seed_mean(scores: Sequence[Optional[float]]) -> Optional[float]:
    """The mean of one rate's scores over the selection seeds; ``None`` while one is missing."""
    return sum(scores) / len(scores) if None not in scores else None


def at_grid_edge(lr: float, grid: Sequence[float]) -> bool:
    """Whether a chosen rate is the smallest or largest of a grid of 3 or more rates (the best
    may lie beyond it)."""
    return len(grid) >= 3 and lr in (min(grid), max(grid))


# --------------------------------------------------------------------------- report
