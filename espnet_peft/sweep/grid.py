"""Sweep grids: the grid file, its cells (method x budget x variant, one PEFT config each), their
order and the experiment names. See the package docstring for the grid's keys."""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import yaml

from ..config import with_settings
from ..errors import PeftError
from ..methods import REGISTRY
from .protocol import Protocol, protocol

GRID_KEYS = ("methods", "configs", "budgets", "allocations", "interpolation", "name", "blocks",
             "learning_rates", "seeds", "selection", "bootstrap", "priority_budgets", "placement", "report")
BLOCK_KEYS = ("methods", "budgets", "allocations")


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


def load_grid(path) -> Dict[str, Any]:
    from ..config import strict_yaml_load  # a key given twice is an error, not "the last one wins"

    grid = strict_yaml_load(Path(path).read_text(), path)
    if not isinstance(grid, Mapping):
        raise PeftError(f"{path}: a sweep grid must be a mapping")
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise PeftError(f"{path}: unknown grid key(s) {unknown}; valid: {', '.join(GRID_KEYS)}")
    protocol(grid)  # errors in the protocol keys before anything runs
    return dict(grid)


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


def experiment_tag(prefix: str, cell: Cell, lr: Optional[float], seed: Optional[int], proto: Protocol) -> str:
    """``<prefix><cell>[_lr<rate>][_s<seed>]``: the rate when the cell has a learning-rate grid, the
    seed when the grid declares seeds (a grid with neither keeps the plain cell name)."""
    tag = prefix + cell.name
    if cell.lrs and lr is not None:
        tag += f"_lr{lr:g}"
    if proto.seeds_declared and seed is not None:
        tag += f"_s{seed}"
    return tag
