"""Per-subspace parameter-budget allocation.

One budget (a parameter count or a fraction of the model) becomes per-module hyperparameters
for any method, so that methods are compared at matched budgets:

1. every target module gets a *group* by its role (attention, feed-forward up / down, merge,
   decoder, output; optionally split by depth into lower / upper blocks);
2. group weights split the budget; inside a group modules share equally (or by matrix size);
3. each module's share is solved into the method's largest setting that fits
   (``Method.solve``); rounding leftovers are spent one unit at a time on the modules furthest
   below their share (``Method.grow``), so the total never exceeds the budget;
4. modules named in ``overrides`` get explicit settings and are paid for first;
5. when the budget cannot give every module one unit, ``allocation.placement: all`` (the default)
   is an error naming them; ``upper_first`` / ``lower_first`` adapt the largest set of modules,
   taken deepest (shallowest) block first, in which every module gets a unit, and list the
   others in ``Plan.skipped`` (see :func:`placement_order`).

Nothing here knows a method by name: costs and settings come from the method objects.
"""
from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from torch import nn

from .config import PeftConfig
from .errors import PeftError
from .methods import get_method
from .methods.base import Method
from .names import block_index, matches, unmatched

# role groups, first match wins (ESPnet's module names: E-Branchformer, Conformer, Transformer decoder)
DEFAULT_GROUPS: Tuple[Tuple[str, str], ...] = (
    ("output", r"(^|\.)(output_layer|ctc_lo)$"),
    ("decoder", r"(^|\.)decoder\."),
    ("attn", r"(^|\.)(self_attn|src_attn|attn)\.linear_(q|k|v|out|pos|qkv)$"),
    ("ffn_up", r"(^|\.)(feed_forward(_macaron)?\.w_1|channel_proj1(\.0)?)$"),
    ("ffn_down", r"(^|\.)(feed_forward(_macaron)?\.w_2|channel_proj2)$"),
    ("merge", r"(^|\.)(merge_proj|[^.]*fusion[^.]*|[^.]*fuse[^.]*)$"),
    ("other", r".*"),
)
WEIGHT_PRESETS = {
    "uniform": None,  # every module the same share
    "groups": "equal",  # every present group the same share
    "attention": {"attn": 1.0},
    "feedforward": {"ffn_up": 1.0, "ffn_down": 1.0},
}


@dataclass
class PlanRow:
    name: str
    shape: Tuple[int, ...]
    group: str
    method: str
    hyper: Dict[str, int]
    params: int
    #: method options of this row when they are not the plan's (adapters nested in another method)
    options: Optional[Dict[str, Any]] = None
    #: the module's name before wrapping, when wrapping another module moves it (nested adapters)
    origin: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "group": self.group, "method": self.method,
                "hyper": dict(self.hyper), "params": self.params}


@dataclass
class Plan:
    """What :func:`espnet_peft.apply_peft` did: one row per adapted module."""

    method: str
    rows: List[PlanRow]
    model_params: int
    budget: Optional[int] = None
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    #: the pretrained model's tensors when PEFT was applied (see ``espnet_peft.fingerprint``)
    fingerprints: Dict[str, Tuple[float, ...]] = field(default_factory=dict)
    config: Optional[PeftConfig] = None

    @property
    def total(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def fraction(self) -> float:
        return self.total / self.model_params if self.model_params else 0.0

    def by_group(self) -> Dict[str, Tuple[int, int]]:
        out: Dict[str, Tuple[int, int]] = {}
        for r in self.rows:
            n, p = out.get(r.group, (0, 0))
            out[r.group] = (n + 1, p + r.params)
        return out

    def as_dict(self) -> Dict[str, Any]:
        return {"method": self.method, "total": self.total, "fraction": self.fraction,
                "model_params": self.model_params, "budget": self.budget,
                "rows": [r.as_dict() for r in self.rows], "skipped": [list(s) for s in self.skipped],
                "groups": {g: {"modules": n, "params": p} for g, (n, p) in self.by_group().items()}}

    def __str__(self) -> str:
        head = ("module", "shape", "group", "hyper", "params")
        lines = [(r.name, "x".join(map(str, r.shape)), r.group,
                  " ".join(f"{k}={v}" for k, v in r.hyper.items()) or "-", f"{r.params:,}") for r in self.rows]
        widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(head)]
        fmt = "  ".join(f"{{:{'>' if i == 4 else '<'}{w}}}" for i, w in enumerate(widths))
        out = [f"PEFT plan: method={self.method}, {len(self.rows)} modules", fmt.format(*head),
               fmt.format(*("-" * w for w in widths))]
        out += [fmt.format(*l) for l in lines]
        out.append(fmt.format(*("-" * w for w in widths)))
        groups = ", ".join(f"{g}: {n} modules / {p:,}" for g, (n, p) in self.by_group().items())
        budget = f" of budget {self.budget:,} ({self.total / self.budget:.1%} used)" if self.budget else ""
        out.append(f"total trainable: {self.total:,}{budget} = {self.fraction:.4%} of {self.model_params:,} "
                   f"model parameters")
        if groups:
            out.append(f"groups: {groups}")
        for name, why in self.skipped:
            out.append(f"skipped: {name} ({why})")
        return "\n".join(out)


# --------------------------------------------------------------------------- grouping
def group_of(name: str, cfg: PeftConfig) -> str:
    group = None
    for g, patterns in (cfg.allocation.groups or {}).items():
        if any(matches(name, p) for p in patterns):
            group = g
            break
    if group is None:
        group = next(g for g, rx in DEFAULT_GROUPS if re.search(rx, name))
    depth = cfg.allocation.depth
    if depth:
        idx = block_index(name)
        if idx is not None:
            group += "@" + depth_label(idx, depth)
    return group


def depth_label(idx: int, depth: Mapping[str, Any]) -> str:
    if "split" in depth:
        return "lower" if idx < int(depth["split"]) else "upper"
    for label, (lo, hi) in (depth.get("ranges") or {}).items():
        if int(lo) <= idx <= int(hi):
            return str(label)
    return "rest"


def group_weights(groups: Dict[str, List[int]], weights: Any, check_names: bool = True) -> Dict[str, float]:
    """Weight per present group. ``groups``: group -> module indices. ``check_names``: a weight
    naming no present group is an error (off for the subsets that partial placement tries)."""
    if isinstance(weights, str):
        if weights not in WEIGHT_PRESETS:
            raise PeftError(f"unknown allocation weights preset {weights!r}; presets: {', '.join(WEIGHT_PRESETS)} "
                            f"or a mapping group -> weight")
        weights = WEIGHT_PRESETS[weights]
    if weights is None:
        return {g: float(len(ix)) for g, ix in groups.items()}
    if weights == "equal":
        return {g: 1.0 for g in groups}
    if not isinstance(weights, Mapping):
        raise PeftError("allocation.weights must be a preset name or a mapping group -> weight")
    out = {}
    bases: Dict[str, int] = {}
    for g, ix in groups.items():
        bases[g.split("@")[0]] = bases.get(g.split("@")[0], 0) + len(ix)
    for g, ix in groups.items():
        base = g.split("@")[0]
        if g in weights:
            w = float(weights[g])
        elif base in weights:  # a base group's weight is shared by its depth parts by module count
            w = float(weights[base]) * len(ix) / bases[base]
        else:
            w = float(weights.get("default", 0.0))
        if w < 0:
            raise PeftError(f"group weight for {g!r} is negative")
        out[g] = w
    known = set(groups) | {g.split("@")[0] for g in groups} | {"default"}
    unused = sorted(set(weights) - known)
    if unused and check_names:
        raise PeftError(f"allocation.weights names group(s) {unused} that no target module belongs to; "
                        f"present groups: {sorted(groups)}")
    return out


# --------------------------------------------------------------------------- planning
def resolve_budget(budget, model_params: int) -> Optional[int]:
    if budget is None:
        return None
    if isinstance(budget, float):
        return int(budget * model_params)
    return int(budget)


def plan_modules(targets: Sequence[Tuple[str, nn.Module]], cfg: PeftConfig, model_params: int,
                 reserved: int = 0) -> Plan:
    """Turn matched modules and a config into a :class:`Plan` (no model is changed).

    ``reserved`` parameters of the budget are already spoken for (nested adapters).
    """
    method: Method = get_method(cfg.method)
    opts = cfg.options
    _check_patterns(cfg, [n for n, _ in targets])
    rows: List[Optional[PlanRow]] = [None] * len(targets)
    skipped: List[Tuple[str, str]] = []
    shapes = [tuple(method.shape(m)) for _, m in targets]
    groups = [group_of(n, cfg) for n, _ in targets]

    # explicit overrides first (also with a budget: they are paid for before the split)
    free: List[int] = []
    for i, (name, _) in enumerate(targets):
        ov = next((v for p, v in cfg.overrides.items() if matches(name, p)), None)
        if ov is None:
            free.append(i)
        elif ov == "skip":
            skipped.append((name, "override: skip"))
        else:  # explicit hyperparameters (canonical keys, checked by the config)
            hyper = method.explicit(shapes[i], {**cfg.hyper, **ov}, opts)
            rows[i] = PlanRow(name, shapes[i], groups[i], method.name, hyper, method.count(shapes[i], hyper, opts))

    budget = resolve_budget(cfg.budget, model_params)
    if budget is not None and reserved:
        if reserved >= budget:
            raise PeftError(f"the nested adapters alone need {reserved:,} parameters, over the budget of {budget:,}")
        budget -= reserved
    if budget is None:
        for i in free:
            hyper = method.explicit(shapes[i], cfg.hyper, opts)
            rows[i] = PlanRow(targets[i][0], shapes[i], groups[i], method.name, hyper,
                              method.count(shapes[i], hyper, opts))
    else:
        _allocate(method, opts, cfg, targets, shapes, groups, free, rows, skipped, budget, model_params)

    plan = Plan(method=method.name, rows=[r for r in rows if r is not None], model_params=model_params,
                budget=None if budget is None else budget + reserved, skipped=skipped, config=cfg)
    if not plan.rows:
        raise PeftError("the plan adapts no module (every target was skipped or had zero weight)")
    if budget is not None and plan.total > budget:
        raise PeftError(f"explicit overrides alone need {plan.total:,} parameters, over the budget of {budget:,}")
    return plan


def _check_patterns(cfg: PeftConfig, names: Sequence[str]) -> None:
    """Override and group patterns that match no target module have no effect: errors."""
    groups = cfg.allocation.groups or {}
    for what, patterns in [("overrides", list(cfg.overrides))] + \
            [(f"allocation.groups.{g}", list(p)) for g, p in groups.items()]:
        problem = unmatched(what, patterns, names, "among the target modules")
        if problem:
            raise PeftError(problem)


def _shares(cfg: PeftConfig, shapes, groups, free: Sequence[int], remaining: float, targets,
            skipped=None) -> Dict[int, float]:
    """Each module's share of ``remaining``: group weights, then equal or by size inside a group.
    Groups of weight 0 are reported in ``skipped`` (when given)."""
    members: Dict[str, List[int]] = {}
    for i in free:
        members.setdefault(groups[i], []).append(i)
    weights = group_weights(members, cfg.allocation.weights, check_names=skipped is not None)
    wsum = sum(weights.values())
    if wsum <= 0:
        raise PeftError("all allocation weights are zero")
    share: Dict[int, float] = {}
    for g, ix in members.items():
        if weights[g] == 0:
            if skipped is not None:
                skipped.extend((targets[i][0], f"group {g} has weight 0") for i in ix)
            continue
        g_budget = remaining * weights[g] / wsum
        sizes = [shapes[i][0] * (shapes[i][1] if len(shapes[i]) > 1 else 1) for i in ix]
        for i, s in zip(ix, sizes):
            share[i] = g_budget * (s / sum(sizes) if cfg.allocation.within == "size" else 1.0 / len(ix))
    return share


def placement_order(names: Sequence[str], placement: str) -> List[int]:
    """Indices of ``names`` in placement priority. Depth is the middle of a block relative to its
    stack (``encoder.encoders.5`` of 12 blocks: 5.5/12; ``decoder.decoders.2`` of 6: 2.5/6), so encoder and
    decoder blocks interleave by relative depth; ``upper_first`` takes the deepest first,
    ``lower_first`` the shallowest; modules outside numbered blocks (output layer, CTC head,
    input projection) come after every block module; ties keep the model's order."""
    stacks: Dict[str, int] = {}
    keys = []
    for n in names:
        idx = block_index(n)
        stack = n[:n.find(f".{idx}.")] if idx is not None else None
        keys.append((stack, idx))
        if idx is not None:
            stacks[stack] = max(stacks.get(stack, 0), idx + 1)
    sign = -1.0 if placement == "upper_first" else 1.0
    rank = [(1, 0.0) if idx is None else (0, sign * (idx + 0.5) / stacks[stack]) for stack, idx in keys]
    return sorted(range(len(names)), key=lambda i: (rank[i], i))


def _allocate(method: Method, opts, cfg: PeftConfig, targets, shapes, groups, free: List[int],
              rows: List[Optional[PlanRow]], skipped, budget: int, model_params: int = 0) -> None:
    spent = sum(r.params for r in rows if r is not None)
    remaining = budget - spent
    if remaining <= 0 and spent > 0:
        raise PeftError(f"budget {budget:,} is used up by overrides ({spent:,}); nothing left for "
                        f"{len(free)} other modules")
    units = {sh: method.count(sh, _unit(method, sh, opts), opts) for sh in {shapes[i] for i in free}}
    smallest = min(units.values())
    if remaining < smallest:  # no placement or skipping helps: not one module can get a unit
        what = f"budget {budget:,}"
        if isinstance(cfg.budget, float):  # a fraction of the model, rounded down to whole parameters
            what = f"budget {cfg.budget:g} of {model_params:,} model parameters ({budget:,} parameters)"
        left = f" leaves {remaining:,} after overrides, which" if spent else ""
        raise PeftError(f"{what}{left} is too small for {method.name} on any target module: it is below one unit, "
                        f"which costs at least {smallest:,} parameters. Raise the budget")

    def solve(share):
        solved, small = {}, []
        for i, s in share.items():
            hyper = method.solve(shapes[i], s, opts)
            if hyper is None:
                small.append((targets[i][0], shapes[i], s))
            else:
                solved[i] = PlanRow(targets[i][0], shapes[i], groups[i], method.name, hyper,
                                    method.count(shapes[i], hyper, opts))
        return solved, small

    zero: List[Tuple[str, str]] = []
    share = _shares(cfg, shapes, groups, free, remaining, targets, zero)
    solved, too_small = solve(share)
    placement = cfg.allocation.placement
    if too_small and placement != "all":  # the largest set, in priority order, where every module gets a unit
        order = [free[j] for j in placement_order([targets[i][0] for i in free], placement) if free[j] in share]
        lo, hi, best = 1, len(order) - 1, None
        while lo <= hi:
            k = (lo + hi) // 2
            sh = _shares(cfg, shapes, groups, order[:k], remaining, targets)
            got, small = solve(sh)
            if small:
                hi = k - 1
            else:
                lo, best = k + 1, (k, sh, got)
        if best is None:
            smallest = min(method.count(sh, _unit(method, sh, opts), opts) for _, sh, _ in too_small)
            raise PeftError(f"budget {budget:,} is too small for {method.name} on any target module: one unit "
                            f"costs at least {smallest:,} parameters. Raise the budget")
        k, share, solved = best
        skipped.extend((targets[i][0], f"placement {placement}: the budget gives one unit to {k} of "
                        f"{len(order)} modules") for i in order[k:])
        too_small = []
    skipped.extend(zero)
    for i, row in solved.items():
        rows[i] = row
    if too_small and not cfg.allow_skip:
        lines = "; ".join(f"{n} {'x'.join(map(str, sh))} gets {s:,.0f}" for n, sh, s in too_small[:8])
        more = f" (+{len(too_small) - 8} more)" if len(too_small) > 8 else ""
        smallest = min(method.count(sh, _unit(method, sh, opts), opts) for _, sh, _ in too_small)
        raise PeftError(f"budget {budget:,} is too small for {method.name}: {len(too_small)} module(s) cannot "
                        f"receive one unit ({smallest:,} parameters): {lines}{more}. Raise the budget, target fewer "
                        f"modules, set allocation.placement: upper_first (or lower_first) to adapt as many "
                        f"modules as fit, or allow_skip: true")
    skipped.extend((n, f"share {s:,.0f} below one unit") for n, _, s in too_small)
    _spend_leftover(method, opts, rows, share, budget - sum(r.params for r in rows if r is not None))


def _unit(method: Method, shape, opts):
    """The smallest setting of a method on a shape (the one unit a module must receive)."""
    lo, hi = 1, 1
    while method.solve(shape, hi, opts) is None:
        hi *= 2
        if hi > 1 << 40:
            raise PeftError(f"{method.name}: no setting fits shape {shape}")
    while lo < hi:
        mid = (lo + hi) // 2
        if method.solve(shape, mid, opts) is None:
            lo = mid + 1
        else:
            hi = mid
    return method.solve(shape, lo, opts)


def _spend_leftover(method: Method, opts, rows: List[Optional[PlanRow]], share: Dict[int, float], left: int) -> None:
    """Grow modules one unit at a time, furthest below their share first, while it fits."""
    heap = [(-(share[i] - rows[i].params), i) for i in share if rows[i] is not None]
    heapq.heapify(heap)
    while heap and left > 0:
        _, i = heapq.heappop(heap)
        row = rows[i]
        nxt = method.grow(row.shape, row.hyper, opts)
        if nxt is None:
            continue
        cost = method.count(row.shape, nxt, opts) - row.params
        if cost > left:
            continue  # this module's next unit does not fit; others may
        row.hyper, row.params, left = nxt, row.params + cost, left - cost
        heapq.heappush(heap, (-(share[i] - row.params), i))
