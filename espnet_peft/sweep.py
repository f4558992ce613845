"""Budget sweeps: grid expansion, the tuning protocol, the learning / forgetting report with
confidence intervals, the significance-aware Pareto front, the plot.

A grid (``conf/sweep/*.yaml``)::

    methods: [lora, dora, pissa, ssvd, ssvd_o, full]
    configs: {lora: conf/peft/lora.yaml, ...}     # the base PEFT config of each method
                                                  # ({config: FILE, name: LABEL} renames its cells)
    budgets: ["0.5%", "1%", "2%", "4%"]           # for every budgeted method
    allocations:                                   # extra variants; each is a partial PEFT config
      ssvd_o: [{allocation: {inner: 0.0}}, {allocation: {inner: 0.25}}, ...]
      ssvd: [{directions: top}, {directions: tail}]
      "*": [{allocation: {weights: uniform}}, {allocation: {weights: attention}}]   # every budgeted method
    interpolation: {cells: [full, ssvd_o_b1pct_inner0.5], alphas: [0, 0.25, 0.5, 0.75, 1]}
    # the protocol (all optional):
    learning_rates: {lora: [1.0e-3, 3.0e-3, 1.0e-2], full: [1.0e-4, 3.0e-4, 1.0e-3]}
                                                  # per method (or cell label): the grid each cell
                                                  # is tuned on, on the target dev set
    seeds: [1, 2, 3]                               # every reported cell is the mean over these
    selection: {metric: dev_wer, seeds: 1, variants: inherit, priority_seeds: 2}
    bootstrap: {unit: utterance, resamples: 2000, seed: 0, level: 0.95, resample_seeds: true}
    priority_budgets: ["1%", "4%"]                 # these cells (and full) run first
    placement: upper_first                         # a budget below one unit per target module adapts
                                                   # the deepest modules that fit (allocation.placement
                                                   # of every budgeted cell; default: all, i.e. infeasible)

expands into cells: one PEFT config each, named by method, budget and variant. The report
reads each experiment's ``summary.json`` (recipe stage 15), one per cell, seed and alpha, and
the per-utterance errors the driver attaches to them (``_utt``, ``_base_utt``).
"""
from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import yaml

from .config import with_settings
from .methods import REGISTRY
from .methods.base import PeftError
from .scoring import UtteranceErrors, bootstrap_replicates, difference_stats, interval

GRID_KEYS = ("methods", "configs", "budgets", "allocations", "interpolation", "name", "blocks",
             "learning_rates", "seeds", "selection", "bootstrap", "priority_budgets", "placement")
BLOCK_KEYS = ("methods", "budgets", "allocations")
SELECTION_KEYS = ("metric", "seeds", "variants", "priority_seeds", "extend")
BOOTSTRAP_KEYS = ("unit", "resamples", "seed", "level", "resample_seeds")
METRICS = {"dev_wer": "min", "valid_acc": "max"}


@dataclass
class Cell:
    name: str
    method: str
    budget: Optional[str]
    variant: Dict[str, Any]
    config: Dict[str, Any]
    alphas: List[float] = field(default_factory=lambda: [1.0])
    label: str = ""                                   # the method's label in the grid (configs: {name: ...})
    lrs: List[float] = field(default_factory=list)    # the learning-rate grid ([]: the train config's)
    parent: Optional[str] = None                      # the cell whose chosen learning rate this one reuses

    def as_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "method": self.method, "budget": self.budget, "variant": self.variant,
                "alphas": self.alphas, "learning_rates": self.lrs, "lr_from": self.parent}


@dataclass
class Protocol:
    """How a sweep trains and reports its cells (the grid's protocol keys, with defaults)."""

    seeds: List[Optional[int]] = field(default_factory=lambda: [None])  # [None]: the train config's seed
    seeds_declared: bool = False
    select_seeds: int = 1          # the first N seeds train every learning rate of the grid
    priority_seeds: int = 0        # the first N seeds of every cell run before later seeds (0: all)
    extend: int = 0                # rates a choice at a grid's edge may add past that edge (tuning_grid)
    metric: str = "dev_wer"        # dev_wer (decode the target dev set) | valid_acc (ESPnet's validation)
    variants: str = "inherit"      # inherit: a variant reuses its plain cell's choice | tune: its own
    bootstrap: Dict[str, Any] = field(default_factory=lambda: dict(BOOTSTRAP_DEFAULTS))
    priority_budgets: List[str] = field(default_factory=list)

    def as_dict(self) -> Dict[str, Any]:
        return {"seeds": self.seeds, "select_seeds": self.select_seeds, "priority_seeds": self.priority_seeds,
                "extend": self.extend,
                "metric": self.metric, "variants": self.variants, "bootstrap": self.bootstrap,
                "priority_budgets": self.priority_budgets}


BOOTSTRAP_DEFAULTS = {"unit": "utterance", "resamples": 2000, "seed": 0, "level": 0.95, "resample_seeds": True}


def _slug(value: Any) -> str:
    if isinstance(value, Mapping):
        return "_".join(_slug(v) if k in ("allocation",) else f"{k}{_slug(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "-".join(_slug(v) for v in value)
    s = str(value).replace("%", "pct")
    return re.sub(r"[^A-Za-z0-9.+-]", "", s)


def deep_update(base: Dict[str, Any], extra: Mapping[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_update(dict(out[k]), v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def modules_note(s: Mapping[str, Any]) -> str:
    """`` on 40 of 87 modules`` when a plan left target modules out (``adapted_modules``,
    ``left_out_modules`` of a summary or a sweep row), else nothing."""
    left, n = s.get("left_out_modules") or 0, s.get("adapted_modules") or 0
    return f" on {n} of {n + left} modules" if left else ""


def load_grid(path) -> Dict[str, Any]:
    grid = yaml.safe_load(Path(path).read_text())
    if not isinstance(grid, Mapping):
        raise PeftError(f"{path}: a sweep grid must be a mapping")
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise PeftError(f"{path}: unknown grid key(s) {unknown}; valid: {', '.join(GRID_KEYS)}")
    protocol(grid)  # errors in the protocol keys before anything runs
    return dict(grid)


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
    sel = grid.get("selection") or {}
    if not isinstance(sel, Mapping) or set(sel) - set(SELECTION_KEYS):
        raise PeftError(f"selection keys are {', '.join(SELECTION_KEYS)}, got {sel!r}")
    p.metric = sel.get("metric", p.metric)
    if p.metric not in METRICS:
        raise PeftError(f"selection.metric must be one of {', '.join(METRICS)}, got {p.metric!r}")
    p.variants = sel.get("variants", p.variants)
    if p.variants not in ("inherit", "tune"):
        raise PeftError(f"selection.variants must be inherit or tune, got {p.variants!r}")
    for key, attr in (("seeds", "select_seeds"), ("priority_seeds", "priority_seeds"), ("extend", "extend")):
        least = 1 if key == "seeds" else 0
        v = sel.get(key, least)
        if not isinstance(v, int) or isinstance(v, bool) or v < least:
            raise PeftError(f"selection.{key} must be an integer >= {least}, got {v!r}")
        setattr(p, attr, v)
    if p.select_seeds > len(p.seeds):
        raise PeftError(f"selection.seeds ({p.select_seeds}) is more than the sweep's seeds ({len(p.seeds)})")
    boot = grid.get("bootstrap") or {}
    if not isinstance(boot, Mapping) or set(boot) - set(BOOTSTRAP_KEYS):
        raise PeftError(f"bootstrap keys are {', '.join(BOOTSTRAP_KEYS)}, got {boot!r}")
    p.bootstrap = {**BOOTSTRAP_DEFAULTS, **boot}
    if p.bootstrap["unit"] not in ("utterance", "speaker"):
        raise PeftError(f"bootstrap.unit must be utterance or speaker, got {p.bootstrap['unit']!r}")
    if not 0 < float(p.bootstrap["level"]) < 1 or int(p.bootstrap["resamples"]) < 100:
        raise PeftError("bootstrap.level must be in (0, 1) and bootstrap.resamples at least 100")
    p.priority_budgets = [str(b) for b in (grid.get("priority_budgets") or [])]
    return p


def _learning_rates(grid: Mapping[str, Any]) -> Dict[str, List[float]]:
    lrs = grid.get("learning_rates") or {}
    if not isinstance(lrs, Mapping):
        raise PeftError(f"learning_rates must map a method (or cell label) to a list of rates, got {lrs!r}")
    out = {}
    for k, v in lrs.items():
        vals = v if isinstance(v, list) else [v]
        try:
            vals = [float(x) for x in vals]
        except (TypeError, ValueError):
            raise PeftError(f"learning_rates.{k}: not numbers: {v!r}") from None
        if not vals or any(x <= 0 or not math.isfinite(x) for x in vals) or len(set(vals)) != len(vals):
            raise PeftError(f"learning_rates.{k} must list distinct positive rates, got {v!r}")
        out[str(k)] = vals
    return out


def _expand_block(block: Mapping[str, Any], configs: Mapping[str, str], root: Path,
                  placement: Optional[str] = None) -> List[Cell]:
    methods = list(block.get("methods") or [])
    if not methods:
        raise PeftError("a grid (or block) lists no methods")
    bad = [m for m in methods if m not in REGISTRY]
    if bad:
        raise PeftError(f"unknown method(s) in the grid: {bad}; known: {', '.join(REGISTRY)}")
    budgets = [str(b) for b in (block.get("budgets") or [])]
    allocations = block.get("allocations") or {}
    cells: List[Cell] = []
    for method in methods:
        entry = configs.get(method)
        if entry is None:
            raise PeftError(f"the grid gives no base config for {method!r} (configs: {{{method}: FILE}})")
        path, label = (entry.get("config"), entry.get("name", method)) if isinstance(entry, Mapping) else (entry, method)
        base = yaml.safe_load((root / path).read_text())
        if base.get("method") != method:
            raise PeftError(f"{path} is a {base.get('method')!r} config, the grid uses it for {method!r}")
        if not REGISTRY[method].budgeted:
            cells.append(Cell(label, method, None, {}, base, label=label))
            continue
        variants = list(allocations.get(method, [])) + list(allocations.get("*", [])) or [{}]
        for budget in budgets or [None]:
            for variant in variants:
                cfg = deep_update(base, variant)
                name = label
                if budget is not None:  # the budget replaces explicit sizes (of any registered method)
                    cfg = with_settings(cfg, {"budget": budget})
                    if placement and "placement" not in (cfg.get("allocation") or {}):
                        cfg = with_settings(cfg, {"allocation.placement": placement})
                    name += f"_b{_slug(budget)}"
                if variant:
                    name += f"_{_slug(variant)}"
                cells.append(Cell(name, method, budget, dict(variant), cfg, label=label))
    return cells


def expand(grid: Mapping[str, Any], root: Path = Path(".")) -> List[Cell]:
    """Every cell of a grid, in a stable order; names are unique and filesystem-safe. Each cell
    carries its learning-rate grid (``learning_rates`` by cell label, else by method) and, with
    ``selection.variants: inherit``, the plain cell (same label and budget, no variant) whose
    chosen rate it reuses."""
    configs = grid.get("configs") or {}
    blocks = grid.get("blocks")
    if blocks is None:
        blocks = [{k: grid[k] for k in BLOCK_KEYS if k in grid}]
    elif any(k in grid for k in BLOCK_KEYS):
        raise PeftError(f"a grid with blocks gives {', '.join(BLOCK_KEYS)} inside the blocks only")
    cells: List[Cell] = []
    seen: Dict[str, Cell] = {}
    for block in blocks:
        unknown = sorted(set(block) - set(BLOCK_KEYS))
        if unknown:
            raise PeftError(f"unknown block key(s) {unknown}; valid: {', '.join(BLOCK_KEYS)}")
        for c in _expand_block(block, configs, root, grid.get("placement")):
            if c.name in seen:
                if seen[c.name].config != c.config:
                    raise PeftError(f"two blocks give cell {c.name!r} different configs")
                continue
            seen[c.name] = c
            cells.append(c)
    names = [c.name for c in cells]
    interp = grid.get("interpolation") or {}
    if interp:
        alphas = sorted({float(a) for a in interp.get("alphas", [])} | {1.0})
        chosen = interp.get("cells") or []
        missing = [c for c in chosen if c not in names]
        if missing:
            raise PeftError(f"interpolation names cells that the grid does not have: {missing}; cells: {names}")
        for c in cells:
            if c.name in chosen:
                c.alphas = alphas
    lrs = _learning_rates(grid)
    known = {c.label for c in cells} | {c.method for c in cells}
    unknown = sorted(set(lrs) - known)
    if unknown:
        raise PeftError(f"learning_rates names {unknown}, which no cell of the grid has (methods or labels: "
                        f"{', '.join(sorted(known))})")
    proto = protocol(grid)
    plain = {(c.label, c.budget): c for c in cells if not c.variant}
    for c in cells:
        c.lrs = list(lrs.get(c.label, lrs.get(c.method, [])))
        p = plain.get((c.label, c.budget))
        if c.variant and c.lrs and proto.variants == "inherit" and p is not None:
            c.parent = p.name
    return cells


def order_cells(cells: Sequence[Cell], proto: Protocol) -> List[Cell]:
    """The order in which a sweep runs its cells: first the comparison of every method at the
    priority budgets (the unbudgeted plain cells, i.e. full fine-tuning, then each priority budget
    in turn, methods in grid order), then every other cell in grid order. Without priority budgets
    the grid order is kept."""
    if not proto.priority_budgets:
        return list(cells)
    first = [c for c in cells if not c.variant and c.budget is None]
    for b in proto.priority_budgets:
        first += [c for c in cells if not c.variant and c.budget == b]
    chosen = {c.name for c in first}
    return first + [c for c in cells if c.name not in chosen]


def priority_group(cell: Cell, proto: Protocol) -> int:
    """0 for the cells of the first comparison (see :func:`order_cells`), 1 for the others."""
    if not proto.priority_budgets:
        return 0
    return 0 if not cell.variant and (cell.budget is None or cell.budget in proto.priority_budgets) else 1


def lr_label(lr: Optional[float]) -> str:
    return "-" if lr is None else f"{lr:g}"


def experiment_tag(prefix: str, cell: Cell, lr: Optional[float], seed: Optional[int], proto: Protocol) -> str:
    """``<prefix><cell>[_lr<rate>][_s<seed>]``: the rate when the cell has a learning-rate grid, the
    seed when the grid declares seeds (a grid with neither keeps the plain cell name)."""
    tag = prefix + cell.name
    if cell.lrs and lr is not None:
        tag += f"_lr{lr:g}"
    if proto.seeds_declared and seed is not None:
        tag += f"_s{seed}"
    return tag


def choose_lr(scores: Mapping[float, Optional[float]], metric: str = "dev_wer") -> Optional[float]:
    """The best learning rate by its (seed-mean) score: the lowest dev WER or the highest
    validation accuracy; ties go to the rate listed first. ``None`` while any score is missing."""
    if not scores or any(v is None for v in scores.values()):
        return None
    sign = 1.0 if METRICS[metric] == "min" else -1.0
    best = None
    for lr, v in scores.items():  # insertion order = grid order
        if best is None or sign * v < sign * scores[best]:
            best = lr
    return best


def rate_beyond(grid: Sequence[float], side: str) -> float:
    """The next learning rate past the ``"low"`` or ``"high"`` end of ``grid``: one step of the
    grid's own ratio at that end, snapped to the half-decade ladder (1, 3, 10, 30, ...)."""
    g = sorted(grid)
    x = g[-1] * g[-1] / g[-2] if side == "high" else g[0] * g[0] / g[1]
    m = round(2 * math.log10(x))
    return float(f"{(1 if m % 2 == 0 else 3) * 10.0 ** (m // 2):.1e}")


def tuning_grid(grid: Sequence[float], score: Callable[[float], Optional[float]], metric: str = "dev_wer",
                extend: int = 0) -> Tuple[List[float], Optional[float]]:
    """The rates a cell is tuned on and the rate chosen: ``(rates, chosen)``.

    Starts from ``grid``. While the best rate (``choose_lr`` on ``score(rate)``) is the smallest or
    largest tried and fewer than ``extend`` rates were added past that end, one more rate past it
    (``rate_beyond``) joins the grid, listed last so that ties keep the declared rates. ``chosen`` is
    ``None`` while a rate of ``rates`` has no score yet (those are the runs still needed). A score
    of ``inf`` (``-inf`` for a maximised metric), a run that diverged, ends the search at that end.
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


def reference_summary(summaries: Sequence[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    """The run whose target gain is 100% in "gain recovered": full fine-tuning at alpha 1, the cell
    named ``full`` when there is one (a grid may also hold variants of it, e.g. Speech-FT), else the
    first full cell in grid order; ``None`` when the sweep has no full fine-tuning."""
    fulls = [s for s in summaries if s.get("method") == "full" and s.get("alpha", 1.0) == 1.0]
    plain = [s for s in fulls if s.get("cell", s.get("tag")) == "full"]
    return (plain or fulls or [None])[0]


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


def _pooled(scores: Mapping[str, Any], sets: Sequence[str]) -> float:
    """WER over several test sets together (weighted by their reference words when known)."""
    ws = [scores[s].get("words") for s in sets]
    if all(isinstance(w, (int, float)) and w > 0 for w in ws):
        return sum(scores[s]["wer"] * w for s, w in zip(sets, ws)) / sum(ws)
    return sum(scores[s]["wer"] for s in sets) / len(sets)


def _concat(utts: Sequence[UtteranceErrors], sets: Sequence[str]) -> UtteranceErrors:
    if len(utts) == 1:
        return utts[0]
    spk = None
    if all(u.speakers is not None for u in utts):
        spk = tuple(f"{s}/{x}" for s, u in zip(sets, utts) for x in u.speakers)
    return UtteranceErrors(tuple(f"{s}/{x}" for s, u in zip(sets, utts) for x in u.ids),
                           np.concatenate([u.errors for u in utts]), np.concatenate([u.words for u in utts]), spk)


BASE = -1  # the base (not adapted) model's column in an axis


class _Axis:
    """Shared bootstrap resamples of the base model and every row on one test set (or several
    pooled): intervals of a row, paired differences between rows or against the base."""

    def __init__(self, name: str, sets: Sequence[str], groups, boot: Mapping[str, Any]):
        self.name, self.sets, self.level, self.cols = name, list(sets), float(boot["level"]), {}
        self.ok, self.unit, self.note = False, boot["unit"], ""
        base = None
        for g in groups:
            for s in g:
                b = s.get("_base_utt") or {}
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
                u = s.get("_utt") or {}
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
        if self.unit == "speaker" and base.speakers is None:
            self.unit, self.note = "utterance", "no speakers (utt2spk) for a speaker-level bootstrap: utterances resampled"
        self.units = len(set(base.speakers)) if self.unit == "speaker" else len(base.ids)
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

    def ratio_ci(self, i: int, ref: int) -> Optional[List[float]]:
        """Interval of (base - i) / (base - ref): the share of ref's gain that i recovers."""
        if not self.has(i, ref):
            return None
        b = self.reps[:, self.cols[BASE]]
        den = b - self.reps[:, self.cols[ref]]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(den > 0, (b - self.reps[:, self.cols[i]]) / den, np.nan)
        return list(interval(r, self.level)) if np.isfinite(r).any() else None

    def info(self) -> Dict[str, Any]:
        return {"sets": self.sets, "unit": self.unit, "units": getattr(self, "units", None),
                "rows_with_utterance_scores": len(self.cols) - 1 if self.ok else 0, "note": self.note}


def analyse(summaries: Sequence[Mapping[str, Any]], statuses: Mapping[str, str] = (),
            tuning: Optional[Mapping[str, Mapping[str, Any]]] = None,
            bootstrap: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Everything the report shows: one row per (cell, alpha) as the mean over its seeds (with
    the spread), bootstrap intervals of every WER and of every difference against the base model
    (gain on the target, forgetting on each source test set), the interval of the share of full
    fine-tuning's gain recovered, the Pareto fronts (a point is dominated only by a significant
    difference) and the generated findings. Without per-utterance errors (``_utt``) the numbers
    are reported without intervals and the fronts fall back to the point estimates."""
    boot = {**BOOTSTRAP_DEFAULTS, **dict(bootstrap or {})}
    tuning = dict(tuning or {})
    groups = _groups(summaries)
    rows: List[Dict[str, Any]] = []
    if groups:
        tgt = groups[0][0]["target_test_sets"][0]
        srcs = list(groups[0][0]["source_test_sets"])
    else:
        tgt, srcs = "target", ["source"]
    ref = reference_summary([g[0] for g in groups])
    ref_name = None if ref is None else ref.get("cell", ref.get("tag"))
    ref_idx = next((i for i, g in enumerate(groups) if g[0] is ref), None)
    for g in groups:
        s0 = g[0]
        b = s0["base"]
        cell = s0.get("cell", s0["tag"])
        t_mean, t_sd = _mean_sd([s["adapted"][tgt]["wer"] for s in g])
        p_mean, p_sd = _mean_sd([_pooled(s["adapted"], srcs) for s in g])
        base_pooled = _pooled(b, srcs)
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
            "target_set": tgt, "target_wer": t_mean, "target_wer_sd": t_sd,
            "target_wer_seeds": [s["adapted"][tgt]["wer"] for s in g], "target_ci": None,
            "base_target_wer": b[tgt]["wer"], "target_gain": b[tgt]["wer"] - t_mean, "target_gain_test": None,
            "source_sets": srcs, "source_wer": p_mean, "source_wer_sd": p_sd, "source_ci": None,
            "base_source_wer": base_pooled, "forgetting": p_mean - base_pooled,
            "forgetting_rel": 100 * (p_mean - base_pooled) / base_pooled if base_pooled else None,
            "forgetting_test": None,
            "sources": {},
            "gain_recovered": None, "gain_recovered_ci": None, "gain_reference": ref_name,
            "train_seconds": sum(tr) / len(tr) if tr else None,
            "checks": sorted({c for s in g for c in s.get("checks", [])}), "pareto": False, "status": "done",
        }
        for x in srcs:
            m, sd = _mean_sd([s["adapted"][x]["wer"] for s in g])
            row["sources"][x] = {"wer": m, "sd": sd, "seeds": [s["adapted"][x]["wer"] for s in g], "ci": None,
                                 "base_wer": b[x]["wer"], "forgetting": m - b[x]["wer"],
                                 "forgetting_rel": 100 * (m - b[x]["wer"]) / b[x]["wer"] if b[x]["wer"] else None,
                                 "forgetting_test": None}
        rows.append(row)
    full_gain = None if ref_idx is None else rows[ref_idx]["target_gain"]
    for r in rows:
        r["gain_recovered"] = r["target_gain"] / full_gain if full_gain and full_gain > 0 else None

    # bootstrap: the target, every source set, and the source sets pooled (the Pareto front's y)
    axes: Dict[str, _Axis] = {}
    if groups:
        axes[tgt] = _Axis(tgt, [tgt], groups, boot)
        for x in srcs:
            axes[x] = _Axis(x, [x], groups, boot)
        pooled = axes[srcs[0]] if len(srcs) == 1 else _Axis("+".join(srcs), srcs, groups, boot)
    T = axes.get(tgt)
    for i, r in enumerate(rows):
        r["target_ci"] = T.ci(i)
        r["target_gain_test"] = T.diff(BASE, i, r["target_gain"])
        if ref_idx is not None:
            r["gain_recovered_ci"] = T.ratio_ci(i, ref_idx)
        for x in srcs:
            sx = r["sources"][x]
            sx["ci"] = axes[x].ci(i)
            sx["forgetting_test"] = axes[x].diff(i, BASE, sx["forgetting"])
        r["source_ci"] = pooled.ci(i)
        r["forgetting_test"] = pooled.diff(i, BASE, r["forgetting"])

    def significance(ax_y: _Axis, ys: Sequence[float]):
        def sig(j: int, i: int) -> bool:
            tests = []
            if rows[j]["target_wer"] < rows[i]["target_wer"]:
                tests.append(T.diff(i, j, rows[i]["target_wer"] - rows[j]["target_wer"]))
            if ys[j] < ys[i]:
                tests.append(ax_y.diff(i, j, ys[i] - ys[j]))
            if any(t is None for t in tests):
                return True  # no per-utterance scores for this pair: the point estimates decide
            return any(t["significant"] for t in tests)
        return sig

    fronts: Dict[str, List[str]] = {}
    if rows:
        ys = [r["source_wer"] for r in rows]
        front = pareto_front([(r["target_wer"], y) for r, y in zip(rows, ys)], significance(pooled, ys))
        for i in front:
            rows[i]["pareto"] = True
        fronts["pooled" if len(srcs) > 1 else srcs[0]] = [_label(rows[i]) for i in front]
        if len(srcs) > 1:
            for x in srcs:
                ys = [r["sources"][x]["wer"] for r in rows]
                f = pareto_front([(r["target_wer"], y) for r, y in zip(rows, ys)], significance(axes[x], ys))
                fronts[x] = [_label(rows[i]) for i in f]
                for i in f:
                    rows[i]["sources"][x]["pareto"] = True
    findings = _findings(rows, T, axes, srcs, fronts, boot) if rows else []
    for name, why in dict(statuses).items():
        rows.append({"cell": name, "status": why})
    return {"rows": rows, "target": tgt, "sources": srcs, "fronts": fronts, "findings": findings,
            "bootstrap": {**boot, "axes": {k: a.info() for k, a in axes.items()},
                          "significant_axes": bool(T and T.ok)},
            "tuning": tuning}


def sweep_rows(summaries: Sequence[Mapping[str, Any]], statuses: Mapping[str, str] = (), **kw) -> List[Dict[str, Any]]:
    """One row per (cell, alpha) with the numbers of the report (see :func:`analyse`)."""
    return analyse(summaries, statuses, **kw)["rows"]


def _label(r: Mapping[str, Any]) -> str:
    return r["cell"] + ("" if r.get("alpha", 1.0) == 1.0 else f" (alpha {r['alpha']:g})")


def _diff_text(t: Mapping[str, Any]) -> str:
    return f"{t['diff']:+.2f} [{t['low']:+.2f}, {t['high']:+.2f}]"


def _findings(rows, T: _Axis, axes: Mapping[str, _Axis], srcs: Sequence[str], fronts, boot) -> List[str]:
    """A short "what the numbers say" that claims only significant differences (paired
    bootstrap, p < 1 - level; each comparison on its own, not corrected for multiplicity)."""
    tgt = rows[0]["target_set"]
    level = int(round(100 * float(boot["level"])))
    out = []
    if not (T and T.ok):
        return [f"No per-utterance scores were found, so no difference is claimed as significant; the table "
                f"gives point estimates only."]
    b = rows[0]
    out.append(f"Base model: {tgt} WER {b['base_target_wer']:.2f}; "
               + "; ".join(f"{x} WER {b['sources'][x]['base_wer']:.2f}" for x in srcs) + ".")
    ref = next((r for r in rows if r["cell"] == r.get("gain_reference") and r["alpha"] == 1.0), None)
    if ref is not None and ref["target_gain_test"]:
        t = ref["target_gain_test"]
        out.append(f"Full fine-tuning (`{ref['cell']}`) lowers {tgt} WER to {ref['target_wer']:.2f}, a gain of "
                   f"{_diff_text(t)}" + ("" if t["significant"] else " (not significant)") + ".")
    plain = [(i, r) for i, r in enumerate(rows) if not r["variant"] and r["alpha"] == 1.0 and r["budget"] is not None]
    budgets = list(dict.fromkeys(r["budget"] for _, r in plain))
    for bud in budgets:
        rs = sorted([(i, r) for i, r in plain if r["budget"] == bud], key=lambda t: t[1]["target_wer"])
        parts = []
        no_gain = [r["cell"] for _, r in rs if r["target_gain_test"] and not r["target_gain_test"]["significant"]]
        if len(rs) >= 2:
            (bi, best) = rs[0]
            worse, same = [], []
            for i, r in rs[1:]:
                t = T.diff(i, bi, r["target_wer"] - best["target_wer"])
                if t is None:
                    continue
                (worse if t["significant"] else same).append(f"{r['cell']} ({_diff_text(t)})" if t["significant"]
                                                             else r["cell"])
            parts.append(f"lowest {tgt} WER: {best['cell']} ({best['target_wer']:.2f})"
                         + (f"; significantly higher: {', '.join(worse)}" if worse else "")
                         + (f"; not significantly different from it: {', '.join(same)}" if same else ""))
        if no_gain:
            parts.append(f"no significant gain over the base model: {', '.join(no_gain)}")
        for x in srcs:
            A = axes[x]
            fs = sorted(rs, key=lambda t: t[1]["sources"][x]["wer"])
            none = [r["cell"] for _, r in fs if r["sources"][x]["forgetting_test"]
                    and not r["sources"][x]["forgetting_test"]["significant"]]
            if len(fs) >= 2:
                (li, least) = fs[0]
                more = []
                for i, r in fs[1:]:
                    t = A.diff(i, li, r["sources"][x]["wer"] - least["sources"][x]["wer"])
                    if t is not None and t["significant"]:
                        more.append(f"{r['cell']} ({_diff_text(t)})")
                parts.append(f"forgetting on {x}: least {least['cell']} ({least['sources'][x]['forgetting']:+.2f})"
                             + (f", significantly more: {', '.join(more)}" if more else
                                ", no other cell forgets significantly more"))
            if none:
                parts.append(f"no significant forgetting on {x}: {', '.join(none)}")
        if parts:
            out.append(f"**{bud}.** " + "; ".join(parts) + ".")
    for k, names in fronts.items():
        what = "target WER against the source sets pooled" if k == "pooled" else f"target WER against {k} WER"
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
    out.append(f"Intervals: {level}% bootstrap over {T.unit}s ({int(boot['resamples'])} resamples"
               + (", seeds resampled too" if boot["resample_seeds"] else "") + "); differences by paired bootstrap, "
               f"uncorrected for the number of comparisons.")
    return out


def _f(x, nd=2, pct=False):
    if x is None:
        return "-"
    return f"{100 * x:.0f}%" if pct else f"{x:.{nd}f}"


def _wer_cell(mean, sd, ci) -> str:
    s = f"{mean:.2f}" + (f" ± {sd:.2f}" if sd is not None else "")
    return s + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _diff_cell(value, test) -> str:
    if value is None:
        return "-"
    s = f"{value:+.2f}"
    if test:
        s += f" [{test['low']:+.2f}, {test['high']:+.2f}]" + ("" if test["significant"] else " (n.s.)")
    return s


def _lr_cell(r) -> str:
    if r.get("lr") is None:
        return "-"
    s = f"{r['lr']:g}"
    if r.get("lr_from"):
        s += f" (of {r['lr_from']})"
    elif r.get("lr_at_grid_edge"):
        s += " (edge)"
    return s


def sweep_table(rows: Sequence[Mapping[str, Any]], target: str, source) -> str:
    """The main table: one row per (cell, alpha) (seed means), then the cells not run."""
    sources = [source] if isinstance(source, str) else list(source)
    done = [r for r in rows if r.get("status") == "done"]
    ref = next((r["gain_reference"] for r in done if r.get("gain_reference")), "full")
    head = (f"| cell | method | budget | lr | seeds | trainable (fraction) | alpha | {target} WER | gain "
            f"| gain recovered vs {ref} | ")
    head += "".join(f"{x} WER | forgetting {x} | " for x in sources) + "train time | Pareto |"
    ncol = head.count("|") - 1
    lines = [head, "|" + "---|" * 3 + "---:|" * (ncol - 4) + ":-:|"]
    for r in sorted(done, key=lambda r: (r["method"], str(r["budget"]), r["cell"], r["alpha"])):
        tr = f"{r['trainable']:,} ({100 * r['fraction']:.2f}%){modules_note(r)}" if r.get("fraction") is not None else "-"
        tt = f"{r['train_seconds'] / 60:.1f} min" if r.get("train_seconds") else "-"
        rec = _f(r["gain_recovered"], pct=True)
        if r.get("gain_recovered_ci") and r["gain_recovered"] is not None:
            lo, hi = r["gain_recovered_ci"]
            rec += f" [{100 * lo:.0f}, {100 * hi:.0f}%]"
        srcs = ""
        for x in sources:
            sx = (r.get("sources") or {}).get(x)
            if sx is None:  # a summary without this set (single-source rows of older sweeps)
                srcs += f"{_f(r['source_wer'])} | {_diff_cell(r['forgetting'], r.get('forgetting_test'))} | "
            else:
                srcs += f"{_wer_cell(sx['wer'], sx['sd'], sx['ci'])} | {_diff_cell(sx['forgetting'], sx['forgetting_test'])} | "
        seeds = str(r.get("n_seeds", 1))
        lines.append(f"| {r['cell']} | {r['method']} | {r['budget'] or '-'} | {_lr_cell(r)} | {seeds} | {tr} | "
                     f"{r['alpha']:g} | {_wer_cell(r['target_wer'], r.get('target_wer_sd'), r.get('target_ci'))} | "
                     f"{_diff_cell(r['target_gain'], r.get('target_gain_test'))} | {rec} | {srcs}{tt} | "
                     f"{'*' if r.get('pareto') else ''} |")
    for r in rows:
        if r.get("status") != "done":
            lines.append(f"| {r['cell']} |" + " |" * (ncol - 2) + f" {r['status']} |")
    return "\n".join(lines) + "\n"


def tuning_table(tuning: Mapping[str, Mapping[str, Any]]) -> str:
    """The learning-rate choice of every tuned cell: the selection score of each rate."""
    if not tuning:
        return ""
    any_t = next(iter(tuning.values()))
    metric = any_t.get("metric", "dev_wer")
    what = (f"WER on the target dev set `{any_t.get('set')}`" if metric == "dev_wer"
            else "ESPnet's best validation accuracy on the target dev set")
    lines = [f"Learning-rate choice per cell ({what}, mean over the selection seeds; the test sets are decoded "
             f"for the chosen rate only):", "",
             "| cell | score per learning rate | chosen | note |", "|---|---|---:|---|"]
    for cell, t in tuning.items():
        if t.get("inherited_from"):
            lines.append(f"| {cell} | | {lr_label(t.get('chosen'))} | the rate chosen for {t['inherited_from']} |")
            continue
        parts = []
        for lr in t.get("grid", []):
            v = (t.get("mean") or {}).get(lr_label(lr))
            v = ("-" if v is None else "diverged" if math.isinf(v) else f"{v:.4g}" if metric == "valid_acc"
                 else f"{v:.2f}")
            s = f"{lr:g}: {v}"
            parts.append(f"**{s}**" if t.get("chosen") == lr else s)
        added = len(t.get("grid", [])) - len(t.get("declared") or t.get("grid", []))
        note = ("at the grid's edge" + (f" after {added} rate(s) added past it" if added else "") if t.get("edge")
                else f"{added} rate(s) added past the declared grid" if added else (t.get("note") or ""))
        lines.append(f"| {cell} | {' · '.join(parts)} | {lr_label(t.get('chosen'))} | {note} |")
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[Mapping[str, Any]], path: Path, target: str, source, title: str = "") -> None:
    """Target WER against the WER on every source test set (one panel each, and one for the
    source sets pooled when there are several): one marker per method, size by budget, 95%
    intervals as error bars, interpolation curves dotted, the significance-aware Pareto front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = [source] if isinstance(source, str) else list(source)
    done = [r for r in rows if r.get("status") == "done"]
    panels = ([("+".join(sources), None)] if len(sources) > 1 else []) + [(x, x) for x in sources]
    fig, axs = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5.5), dpi=110, squeeze=False)
    markers = dict(zip(sorted({r["method"] for r in done}), "osD^vP*Xh<>"))
    fracs = [r["fraction"] for r in done if r.get("fraction")]
    fmax = max(fracs) if fracs else 1.0

    def yv(r, x):
        if x is None or x not in (r.get("sources") or {}):
            return r["source_wer"], r.get("source_ci"), r.get("pareto")
        sx = r["sources"][x]
        return sx["wer"], sx.get("ci"), sx.get("pareto") if len(sources) > 1 else r.get("pareto")

    for ax, (name, x) in zip(axs[0], panels):
        for method, m in markers.items():
            rs = [r for r in done if r["method"] == method]
            sizes = [30 + 220 * math.sqrt((r.get("fraction") or fmax) / fmax) for r in rs]
            ax.scatter([r["target_wer"] for r in rs], [yv(r, x)[0] for r in rs], s=sizes, marker=m, alpha=0.7,
                       label=method, edgecolors="black", linewidths=0.5, zorder=3)
            for r in rs:
                xc, (y, yc, _) = r.get("target_ci"), yv(r, x)
                if xc or yc:
                    xe = [[r["target_wer"] - xc[0]], [xc[1] - r["target_wer"]]] if xc else None
                    ye = [[y - yc[0]], [yc[1] - y]] if yc else None
                    ax.errorbar([r["target_wer"]], [y], xerr=xe, yerr=ye, fmt="none", ecolor="grey", elinewidth=0.7,
                                capsize=2, alpha=0.8, zorder=2)
        for cell in sorted({r["cell"] for r in done}):
            rs = sorted((r for r in done if r["cell"] == cell), key=lambda r: r["alpha"])
            if len(rs) > 1:
                ax.plot([r["target_wer"] for r in rs], [yv(r, x)[0] for r in rs], ":", lw=0.8, c="grey")
            for r in rs:
                text = cell if r["alpha"] == 1.0 else f"\u03b1={r['alpha']:g}"
                ax.annotate(text, (r["target_wer"], yv(r, x)[0]), xytext=(4, 4), textcoords="offset points",
                            fontsize=6, color="dimgrey")
        if done:
            base = done[0]
            by = base["base_source_wer"] if x is None else base["sources"].get(x, {}).get("base_wer", base["base_source_wer"])
            ax.scatter([base["base_target_wer"]], [by], marker="x", s=120, c="red", label="base (not adapted)", zorder=4)
            front = sorted((r for r in done if yv(r, x)[2]), key=lambda r: (r["target_wer"], yv(r, x)[0]))
            ax.plot([r["target_wer"] for r in front], [yv(r, x)[0] for r in front], "k--", lw=1,
                    label="Pareto front (significant dominance)")
        ax.set_xlabel(f"{target} WER (%)  [learning: lower is better]")
        ax.set_ylabel(("source sets pooled" if x is None else x) + " WER (%)  [forgetting: lower is better]")
        ax.grid(alpha=0.3)
    axs[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(title or "Learning vs forgetting (marker size: trainable fraction; bars: 95% intervals)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _public(s: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in s.items() if not k.startswith("_")}


def write_report(summaries: Sequence[Mapping[str, Any]], out_dir: Path, statuses: Mapping[str, str] = (),
                 title: str = "", header: str = "", tuning: Optional[Mapping[str, Mapping[str, Any]]] = None,
                 bootstrap: Optional[Mapping[str, Any]] = None, protocol_info: Optional[Mapping[str, Any]] = None
                 ) -> Dict[str, Path]:
    """``sweep.md`` (table, learning-rate choices, findings), ``sweep.png`` (plot) and
    ``sweep.json`` (every number) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    a = analyse(summaries, statuses, tuning=tuning, bootstrap=bootstrap)
    rows, target, sources = a["rows"], a["target"], a["sources"]
    level = int(round(100 * float(a["bootstrap"]["level"])))
    sig = a["bootstrap"]["significant_axes"]
    legend = ("Each row is the mean over its seeds (`seeds`), ± the sample standard deviation over seeds"
              + (f"; [...]: {level}% bootstrap interval; gain and forgetting are paired differences against the base "
                 f"model, (n.s.): not significant at the {100 - level}% level" if sig else
                 "; no per-utterance scores were found, so there are no intervals")
              + "; `lr`: the learning rate of the cell (chosen on the target dev set when the grid tunes it); "
              "`*`: on the Pareto front of (target WER, source WER"
              + (" pooled over the source sets" if len(sources) > 1 else "") + ")"
              + (", where a point is dominated only by a significant difference" if sig else "") + ".\n")
    md = (header + "\n" if header else "") + legend + "\n" + sweep_table(rows, target, sources)
    if a["tuning"]:
        md += "\n" + tuning_table(a["tuning"])
    if a["findings"]:
        md += "\n### What the numbers say\n\n" + "".join(f"- {f}\n" for f in a["findings"])
    paths = {"md": out_dir / "sweep.md", "png": out_dir / "sweep.png", "json": out_dir / "sweep.json"}
    paths["md"].write_text(md)
    plot(rows, paths["png"], target, sources, title)
    data = {"rows": rows, "fronts": a["fronts"], "findings": a["findings"], "tuning": a["tuning"],
            "bootstrap": a["bootstrap"], "protocol": dict(protocol_info or {}),
            "summaries": [_public(s) for s in summaries]}
    paths["json"].write_text(json.dumps(data, indent=1, default=_json_default) + "\n")
    return paths


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
