"""Budget sweeps: grid expansion, the learning / forgetting report, the Pareto front, the plot.

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

expands into cells: one PEFT config each, named by method, budget and variant. The report
reads each cell's ``summary.json`` (recipe stage 15).
"""
from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import yaml

from .config import HYPER_KEYS
from .methods import REGISTRY
from .methods.base import PeftError

GRID_KEYS = ("methods", "configs", "budgets", "allocations", "interpolation", "name", "blocks")
BLOCK_KEYS = ("methods", "budgets", "allocations")


@dataclass
class Cell:
    name: str
    method: str
    budget: Optional[str]
    variant: Dict[str, Any]
    config: Dict[str, Any]
    alphas: List[float] = field(default_factory=lambda: [1.0])

    def as_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "method": self.method, "budget": self.budget, "variant": self.variant,
                "alphas": self.alphas}


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
    grid = yaml.safe_load(Path(path).read_text())
    if not isinstance(grid, Mapping):
        raise PeftError(f"{path}: a sweep grid must be a mapping")
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise PeftError(f"{path}: unknown grid key(s) {unknown}; valid: {', '.join(GRID_KEYS)}")
    return dict(grid)


def _expand_block(block: Mapping[str, Any], configs: Mapping[str, str], root: Path) -> List[Cell]:
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
            cells.append(Cell(label, method, None, {}, base))
            continue
        variants = list(allocations.get(method, [])) + list(allocations.get("*", [])) or [{}]
        for budget in budgets or [None]:
            for variant in variants:
                cfg = deep_update(base, variant)
                name = label
                if budget is not None:
                    cfg["budget"] = budget
                    for k in HYPER_KEYS:
                        cfg.pop(k, None)
                    name += f"_b{_slug(budget)}"
                if variant:
                    name += f"_{_slug(variant)}"
                cells.append(Cell(name, method, budget, dict(variant), cfg))
    return cells


def expand(grid: Mapping[str, Any], root: Path = Path(".")) -> List[Cell]:
    """Every cell of a grid, in a stable order; names are unique and filesystem-safe."""
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
        for c in _expand_block(block, configs, root):
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
    return cells


# --------------------------------------------------------------------------- report
def pareto_front(points: Sequence[Sequence[float]]) -> List[int]:
    """Indices of the points not dominated in (x, y), both to minimise."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 <= y) and (x2 < x or y2 < y) for j, (x2, y2) in enumerate(points) if j != i)
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


def sweep_rows(summaries: Sequence[Mapping[str, Any]], statuses: Mapping[str, str] = ()) -> List[Dict[str, Any]]:
    """One row per (cell, alpha) with the numbers of the report, gain recovered against
    :func:`reference_summary` (each row names it)."""
    rows = []
    ref = reference_summary(summaries)
    full_target = None if ref is None else ref["adapted"][ref["target_test_sets"][0]]["wer"]
    ref_name = None if ref is None else ref.get("cell", ref.get("tag"))
    for s in summaries:
        tgt, src = s["target_test_sets"][0], s["source_test_sets"][0]
        b, a = s["base"], s["adapted"]
        gain = b[tgt]["wer"] - a[tgt]["wer"]
        full_gain = None if full_target is None else b[tgt]["wer"] - full_target
        rows.append({
            "cell": s.get("cell", s["tag"]), "method": s["method"], "budget": s.get("sweep_budget"),
            "variant": s.get("sweep_variant", {}), "alpha": s.get("alpha", 1.0),
            "trainable": s.get("trainable_params"), "fraction": s.get("fraction"),
            "target_wer": a[tgt]["wer"], "source_wer": a[src]["wer"], "base_target_wer": b[tgt]["wer"],
            "base_source_wer": b[src]["wer"], "target_gain": gain, "forgetting": a[src]["wer"] - b[src]["wer"],
            "forgetting_rel": 100 * (a[src]["wer"] - b[src]["wer"]) / b[src]["wer"] if b[src]["wer"] else None,
            "gain_recovered": gain / full_gain if full_gain and full_gain > 0 else None,
            "gain_reference": ref_name,
            "train_seconds": s.get("train_wall_seconds"), "status": "done",
        })
    for name, why in dict(statuses).items():
        rows.append({"cell": name, "status": why})
    return rows


def _f(x, nd=2, pct=False):
    if x is None:
        return "-"
    return f"{100 * x:.0f}%" if pct else f"{x:.{nd}f}"


def sweep_table(rows: Sequence[Mapping[str, Any]], target: str, source: str) -> str:
    done = [r for r in rows if r.get("status") == "done"]
    ref = next((r["gain_reference"] for r in done if r.get("gain_reference")), "full")
    lines = [f"| cell | method | budget | trainable (fraction) | alpha | {target} WER | gain | {source} WER "
             f"| forgetting | gain recovered vs {ref} | train time | Pareto |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|:-:|"]
    front = set(pareto_front([(r["target_wer"], r["source_wer"]) for r in done]))
    for i, r in sorted(enumerate(done), key=lambda t: (t[1]["method"], str(t[1]["budget"]), t[1]["cell"], t[1]["alpha"])):
        tr = f"{r['trainable']:,} ({100 * r['fraction']:.2f}%)" if r.get("fraction") is not None else "-"
        tt = f"{r['train_seconds'] / 60:.1f} min" if r.get("train_seconds") else "-"
        lines.append(f"| {r['cell']} | {r['method']} | {r['budget'] or '-'} | {tr} | {r['alpha']:g} | "
                     f"{_f(r['target_wer'])} | {_f(r['target_gain'])} | {_f(r['source_wer'])} | {_f(r['forgetting'])} | "
                     f"{_f(r['gain_recovered'], pct=True)} | {tt} | {'*' if i in front else ''} |")
    for r in rows:
        if r.get("status") != "done":
            lines.append(f"| {r['cell']} | | | | | | | | | | | {r['status']} |")
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[Mapping[str, Any]], path: Path, target: str, source: str, title: str = "") -> None:
    """Target WER vs source WER: one marker per method, size by budget, the Pareto front drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.get("status") == "done"]
    markers = dict(zip(sorted({r["method"] for r in done}), "osD^vP*Xh<>"))
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    fracs = [r["fraction"] for r in done if r.get("fraction")]
    fmax = max(fracs) if fracs else 1.0
    for method, m in markers.items():
        rs = [r for r in done if r["method"] == method]
        sizes = [30 + 220 * math.sqrt((r.get("fraction") or fmax) / fmax) for r in rs]
        ax.scatter([r["target_wer"] for r in rs], [r["source_wer"] for r in rs], s=sizes, marker=m, alpha=0.7,
                   label=method, edgecolors="black", linewidths=0.5)
    # interpolation curves (one cell, several alphas) joined and labelled by alpha; cells by name
    for cell in sorted({r["cell"] for r in done}):
        rs = sorted((r for r in done if r["cell"] == cell), key=lambda r: r["alpha"])
        if len(rs) > 1:
            ax.plot([r["target_wer"] for r in rs], [r["source_wer"] for r in rs], ":", lw=0.8, c="grey")
        for r in rs:
            text = cell if r["alpha"] == 1.0 else f"\u03b1={r['alpha']:g}"
            ax.annotate(text, (r["target_wer"], r["source_wer"]), xytext=(4, 4), textcoords="offset points",
                        fontsize=6, color="dimgrey")
    if done:
        base = done[0]
        ax.scatter([base["base_target_wer"]], [base["base_source_wer"]], marker="x", s=120, c="red",
                   label="base (not adapted)")
        pts = [(r["target_wer"], r["source_wer"]) for r in done]
        front = pareto_front(pts)
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "k--", lw=1, label="Pareto front")
    ax.set_xlabel(f"{target} WER (%)  [learning: lower is better]")
    ax.set_ylabel(f"{source} WER (%)  [forgetting: lower is better]")
    ax.set_title(title or "Learning vs forgetting (marker size: trainable fraction)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(summaries: Sequence[Mapping[str, Any]], out_dir: Path, statuses: Mapping[str, str] = (),
                 title: str = "", header: str = "") -> Dict[str, Path]:
    """``sweep.md`` (table), ``sweep.png`` (plot) and ``sweep.json`` (every number) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = sweep_rows(summaries, statuses)
    if summaries:
        target, source = summaries[0]["target_test_sets"][0], summaries[0]["source_test_sets"][0]
    else:
        target, source = "target", "source"
    md = (header + "\n" if header else "") + sweep_table(rows, target, source)
    paths = {"md": out_dir / "sweep.md", "png": out_dir / "sweep.png", "json": out_dir / "sweep.json"}
    paths["md"].write_text(md)
    plot(rows, paths["png"], target, source, title)
    paths["json"].write_text(json.dumps({"rows": rows, "summaries": list(summaries)}, indent=1) + "\n")
    return paths
