"""Rendering of a sweep report: the markdown tables, the plot and the JSON of every number."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from .analysis import analyse
from .metrics import WER, report_metric, selection_metric
from .protocol import lr_label

def modules_note(s: Mapping[str, Any]) -> str:
    """`` on 40 of 87 modules`` when a plan left target modules out (``adapted_modules``,
    ``left_out_modules`` of a summary or a sweep row), else nothing."""
    left, n = s.get("left_out_modules") or 0, s.get("adapted_modules") or 0
    return f" on {n} of {n + left} modules" if left else ""


def _f(x, nd=2, pct=False):
    if x is None:
        return "-"
    return f"{100 * x:.0f}%" if pct else f"{x:.{nd}f}"


def _score_cell(mean, sd, ci) -> str:
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


def sweep_table(rows: Sequence[Mapping[str, Any]], target: str, source, targets: Sequence[str] = (),
                label: str = "WER") -> str:
    """The main table: one row per (cell, alpha) (seed means), then the cells not run. ``target``
    is the headline target set; the other ``targets`` get a score and a gain column each."""
    sources = [source] if isinstance(source, str) else list(source)
    others = [t for t in targets if t != target]
    done = [r for r in rows if r.get("status") == "done"]
    ref = next((r["gain_reference"] for r in done if r.get("gain_reference")), "the reference")
    head = (f"| cell | method | budget | lr | seeds | trainable (fraction) | alpha | {target} {label} | gain "
            f"| gain recovered vs {ref} | ")
    head += "".join(f"{t} {label} | gain {t} | " for t in others)
    head += "".join(f"{x} {label} | forgetting {x} | " for x in sources) + "train time | Pareto |"
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
                srcs += f"{_f(r['source_score'])} | {_diff_cell(r['forgetting'], r.get('forgetting_test'))} | "
            else:
                srcs += f"{_score_cell(sx['score'], sx['sd'], sx['ci'])} | {_diff_cell(sx['forgetting'], sx['forgetting_test'])} | "
        seeds = str(r.get("n_seeds", 1))
        tgts = ""
        for t in others:
            tx = (r.get("targets") or {}).get(t)
            tgts += ("- | - | " if tx is None else
                     f"{_score_cell(tx['score'], tx['sd'], tx['ci'])} | {_diff_cell(tx['gain'], tx['gain_test'])} | ")
        lines.append(f"| {r['cell']} | {r['method']} | {r['budget'] or '-'} | {_lr_cell(r)} | {seeds} | {tr} | "
                     f"{r['alpha']:g} | {_score_cell(r['target_score'], r.get('target_score_sd'), r.get('target_ci'))} | "
                     f"{_diff_cell(r['target_gain'], r.get('target_gain_test'))} | {rec} | {tgts}{srcs}{tt} | "
                     f"{'*' if r.get('pareto') else ''} |")
    for r in rows:
        if r.get("status") != "done":
            lines.append(f"| {r['cell']} |" + " |" * (ncol - 2) + f" {r['status']} |")
    return "\n".join(lines) + "\n"


def nolm_table(rows: Sequence[Mapping[str, Any]], targets: Sequence[str], sources: Sequence[str],
               decoding: Optional[str], label: str = "WER") -> str:
    """Learning and forgetting without the LM (the acoustic model's own), one row per (cell, alpha)
    that was decoded so: the score and paired difference against the base model decoded the same way."""
    done = [r for r in rows if r.get("status") == "done" and r.get("nolm")]
    if not done:
        return ""
    nt = [t for t in targets if any(t in r["nolm"]["targets"] for r in done)]
    ns = [x for x in sources if any(x in r["nolm"]["sources"] for r in done)]
    base = done[0]["nolm"]
    lines = [f"Without the LM ({decoding or 'no LM'}): the same models decoded by the acoustic model alone, against "
             f"the base model decoded the same way (base: "
             + ", ".join(f"{x} {d[x]['base_score']:.2f}" for d in (base["targets"], base["sources"]) for x in d)
             + ").", "",
             "| cell | alpha | " + "".join(f"{t} {label} | gain {t} | " for t in nt)
             + "".join(f"{x} {label} | forgetting {x} | " for x in ns),
             "|---|---:|" + "---:|" * (2 * (len(nt) + len(ns)))]
    for r in sorted(done, key=lambda r: (r["method"], str(r["budget"]), r["cell"], r["alpha"])):
        cells = ""
        for side, names, key in (("targets", nt, "gain"), ("sources", ns, "forgetting")):
            for x in names:
                v = r["nolm"][side].get(x)
                cells += ("- | - | " if v is None else
                          f"{_score_cell(v['score'], v['sd'], v['ci'])} | {_diff_cell(v[key], v[key + '_test'])} | ")
        lines.append(f"| {r['cell']} | {r['alpha']:g} | {cells}")
    return "\n".join(lines) + "\n"


def matched_table(m: Mapping[str, Any], label: str = "WER") -> str:
    """Forgetting at matched learning: each cell's forgetting where its curve reaches the same share of
    the reference's gain (``curves.matched_learning``)."""
    if not m or not m.get("cells"):
        return ""
    axes = list(next(iter(m["cells"].values()))["forgetting"])
    lines = [f"**Forgetting at matched learning**: each cell's forgetting ({label} points) where its learning-"
             f"forgetting curve reaches {100 * m['share']:.0f}% of full fine-tuning's gain on `{m['target_set']}` "
             f"({label} {m['level_score']:.2f}). A curve runs from the base model (alpha 0) through the "
             f"interpolation weights decoded to the adapted model (alpha 1), straight between measured points; "
             f"[...]: 95% bootstrap interval, with the share of resamples in which the curve reaches the level.", "",
             "| cell | alphas measured | " + " | ".join(f"forgetting {a}" for a in axes) + " |",
             "|---|---|" + "---:|" * len(axes)]
    def cell_text(f):
        if f["value"] is None:
            return "not reached" + (f" ({100 * f['reached']:.0f}%)" if f.get("reached") else "")
        s = f"{f['value']:+.2f}"
        if f.get("ci"):
            s += f" [{f['ci'][0]:+.2f}, {f['ci'][1]:+.2f}]"
        if f.get("reached") is not None and f["reached"] < 0.995:
            s += f" ({100 * f['reached']:.0f}% reach)"
        return s
    order = sorted(m["cells"].items(), key=lambda kv: (kv[1]["forgetting"][axes[0]]["value"] is None,
                                                       kv[1]["forgetting"][axes[0]]["value"] or 0.0))
    for cell, e in order:
        alphas = ", ".join(f"{a:g}" for a in [0.0] + e["alphas"])
        lines.append(f"| {cell} | {alphas} | " + " | ".join(cell_text(e["forgetting"][a]) for a in axes) + " |")
    return "\n".join(lines) + "\n"


def tuning_table(tuning: Mapping[str, Mapping[str, Any]]) -> str:
    """The learning-rate choice of every tuned cell: the selection score of each rate."""
    if not tuning:
        return ""
    any_t = next(iter(tuning.values()))
    metric = selection_metric(any_t.get("metric", "dev_wer"))
    what = (f"{metric.label} on the target dev set `{any_t.get('set')}`" if metric.source == "decode"
            else "ESPnet's best validation accuracy on the target dev set")
    bound = any_t.get("forgetting")
    if bound:  # selection.forgetting
        what += (f"; forgetting-aware: the best among the rates whose forgetting on the source dev set "
                 f"`{bound['set']}` is at most {bound['bound']:g} points (in parentheses), or, none being, the "
                 f"rate that forgets least")
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
            v = "-" if v is None else "diverged" if math.isinf(v) else format(v, metric.fmt)
            s = f"{lr:g}: {v}"
            f = (t.get("forgetting_mean") or {}).get(lr_label(lr))
            if bound and f is not None and not math.isinf(f):
                s += f" ({f:+.2f})"
            parts.append(f"**{s}**" if t.get("chosen") == lr else s)
        added = len(t.get("grid", [])) - len(t.get("declared") or t.get("grid", []))
        note = ("at the grid's edge" + (f" after {added} rate(s) added past it" if added else "") if t.get("edge")
                else f"{added} rate(s) added past the declared grid" if added else (t.get("note") or ""))
        lines.append(f"| {cell} | {' · '.join(parts)} | {lr_label(t.get('chosen'))} | {note} |")
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[Mapping[str, Any]], path: Path, target: str, source, title: str = "",
         metric="wer") -> None:
    """The target score against the score on every source test set (one panel each, and one for the
    source sets pooled when there are several): one marker per method, size by budget, 95%
    intervals as error bars, interpolation curves dotted, the significance-aware Pareto front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    score = report_metric(metric)
    label = score.label
    sources = [source] if isinstance(source, str) else list(source)
    done = [r for r in rows if r.get("status") == "done"]
    panels = ([("+".join(sources), None)] if len(sources) > 1 else []) + [(x, x) for x in sources]
    fig, axs = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5.5), dpi=110, squeeze=False)
    markers = dict(zip(sorted({r["method"] for r in done}), "osD^vP*Xh<>"))
    fracs = [r["fraction"] for r in done if r.get("fraction")]
    fmax = max(fracs) if fracs else 1.0

    def yv(r, x):
        if x is None or x not in (r.get("sources") or {}):
            return r["source_score"], r.get("source_ci"), r.get("pareto")
        sx = r["sources"][x]
        return sx["score"], sx.get("ci"), sx.get("pareto") if len(sources) > 1 else r.get("pareto")

    for ax, (name, x) in zip(axs[0], panels):
        for method, m in markers.items():
            rs = [r for r in done if r["method"] == method]
            sizes = [30 + 220 * math.sqrt((r.get("fraction") or fmax) / fmax) for r in rs]
            ax.scatter([r["target_score"] for r in rs], [yv(r, x)[0] for r in rs], s=sizes, marker=m, alpha=0.7,
                       label=method, edgecolors="black", linewidths=0.5, zorder=3)
            for r in rs:
                xc, (y, yc, _) = r.get("target_ci"), yv(r, x)
                if xc or yc:
                    # (a point outside its percentile interval is possible: its bar is clipped there)
                    xe = [[max(0, r["target_score"] - xc[0])], [max(0, xc[1] - r["target_score"])]] if xc else None
                    ye = [[max(0, y - yc[0])], [max(0, yc[1] - y)]] if yc else None
                    ax.errorbar([r["target_score"]], [y], xerr=xe, yerr=ye, fmt="none", ecolor="grey", elinewidth=0.7,
                                capsize=2, alpha=0.8, zorder=2)
        for cell in sorted({r["cell"] for r in done}):
            rs = sorted((r for r in done if r["cell"] == cell), key=lambda r: r["alpha"])
            if len(rs) > 1:
                ax.plot([r["target_score"] for r in rs], [yv(r, x)[0] for r in rs], ":", lw=0.8, c="grey")
            for r in rs:
                text = cell if r["alpha"] == 1.0 else f"\u03b1={r['alpha']:g}"
                ax.annotate(text, (r["target_score"], yv(r, x)[0]), xytext=(4, 4), textcoords="offset points",
                            fontsize=6, color="dimgrey")
        if done:
            base = done[0]
            by = (base["base_source_score"] if x is None
                  else base["sources"].get(x, {}).get("base_score", base["base_source_score"]))
            ax.scatter([base["base_target_score"]], [by], marker="x", s=120, c="red", label="base (not adapted)", zorder=4)
            front = sorted((r for r in done if yv(r, x)[2]),
                           key=lambda r: (score.key(r["target_score"]), score.key(yv(r, x)[0])))
            ax.plot([r["target_score"] for r in front], [yv(r, x)[0] for r in front], "k--", lw=1,
                    label="Pareto front (significant dominance)")
        ax.set_xlabel(f"{target} {label} (%)  [learning: {score.better_text}]")
        ax.set_ylabel(("source sets pooled" if x is None else x) + f" {label} (%)  [forgetting: {score.better_text}]")
        ax.grid(alpha=0.3)
    axs[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(title or "Learning vs forgetting (marker size: trainable fraction; bars: 95% intervals)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _sizes_note(boot: Mapping[str, Any]) -> str:
    """What each interval rests on: the speakers and utterances of every test set (the recipe's decoding)."""
    axes = {k.replace(" (other target set)", ""): v for k, v in (boot.get("axes") or {}).items()
            if "(no LM)" not in k and "+" not in k and v.get("utterances")}
    if not axes:
        return ""
    return ("; the intervals rest on " + ", ".join(
        f"{k}: {v['speakers']} speakers / {v['utterances']} utterances" if v.get("speakers") else
        f"{k}: {v['utterances']} utterances" for k, v in axes.items()))


def _public(s: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in s.items() if not k.startswith("_")}


def write_report(summaries: Sequence[Mapping[str, Any]], out_dir: Path, statuses: Mapping[str, str] = (),
                 title: str = "", header: str = "", tuning: Optional[Mapping[str, Mapping[str, Any]]] = None,
                 bootstrap: Optional[Mapping[str, Any]] = None, protocol_info: Optional[Mapping[str, Any]] = None,
                 metric="wer", reference: Optional[str] = None, matched_share: float = 0.7) -> Dict[str, Path]:
    """``sweep.md`` (table, learning-rate choices, findings), ``sweep.png`` (plot) and
    ``sweep.json`` (every number) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    a = analyse(summaries, statuses, tuning=tuning, bootstrap=bootstrap, metric=metric, reference=reference,
                matched_share=matched_share)
    label = a["metric_label"]
    rows, target, sources = a["rows"], a["target"], a["sources"]
    level = int(round(100 * float(a["bootstrap"]["level"])))
    sig = a["bootstrap"]["significant_axes"]
    others = [t for t in a["targets"] if t != target]
    legend = ((f"`{target}` is the headline target set (learning, gain recovered, the Pareto front); "
               f"{', '.join(f'`{t}`' for t in others)} {'is' if len(others) == 1 else 'are'} reported beside it. "
               if others else "")
              + (f"Metric: {label} (%; {a['metric_direction']}). " if a["metric"] != WER.name else "")
              + "Each row is the mean over its seeds (`seeds`), ± the sample standard deviation over seeds"
              + (f"; [...]: {level}% bootstrap interval; gain and forgetting are paired differences against the base "
                 f"model, (n.s.): not significant at the {100 - level}% level after Holm's correction within its family "
                 f"(\"What the numbers say\", last line)" if sig else
                 "; no per-utterance scores were found, so there are no intervals")
              + _sizes_note(a["bootstrap"])
              + "; `lr`: the learning rate of the cell (chosen on the target dev set when the grid tunes it); "
              f"`*`: on the Pareto front of (target {label}, source {label}"
              + (" pooled over the source sets" if len(sources) > 1 else "") + ")"
              + (", where a point is dominated only by a significant difference" if sig else "") + ".\n")
    matched = matched_table(a["matched_learning"], label)
    md = ((header + "\n" if header else "") + (matched + "\n" if matched else "") + legend + "\n"
          + sweep_table(rows, target, sources, a["targets"], label))
    nolm = nolm_table(rows, a["targets"], sources, a["nolm_decoding"], label)
    if nolm:
        md += "\n" + nolm
    if a["tuning"]:
        md += "\n" + tuning_table(a["tuning"])
    if a["findings"]:
        md += "\n### What the numbers say\n\n" + "".join(f"- {f}\n" for f in a["findings"])
    paths = {"md": out_dir / "sweep.md", "png": out_dir / "sweep.png", "json": out_dir / "sweep.json"}
    paths["md"].write_text(md)
    plot(rows, paths["png"], target, sources, title, report_metric(metric))
    data = {"metric": a["metric"], "metric_label": label, "higher_is_better": a["higher_is_better"], "rows": rows, "target": target, "targets": a["targets"], "sources": sources,
            "nolm_decoding": a["nolm_decoding"], "fronts": a["fronts"], "findings": a["findings"], "tuning": a["tuning"],
            "matched_learning": a["matched_learning"],
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
