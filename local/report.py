#!/usr/bin/env python3
"""Recipe stage 15: the experiment's JSON summary, the results table, a printed table.

``<merged>/summary.json`` holds every number of one experiment (base and adapted WER / CER on
every source and target test set, learning on every target set, forgetting on every source set,
trainable parameters, train time, command), all read from the experiment directory (its frozen
PEFT config, plan, train time and command) and the scores. ``<expdir>/RESULTS.md`` is regenerated
from all summaries under ``--expdir``. A committed results file is written only when asked
(``--results FILE``), and then only the sections of the targets present here change: a run on a
fresh clone never erases published results.

With ``--nolm_decode_config FILE`` (the recipe's ``--nolm_decode_config``: a second decoding without
the LM, e.g. CTC greedy) the same numbers of that decoding, read from ``--base_decode_nolm`` and
``<merged>/decode_nolm``, go into the summary as ``base_nolm``, ``adapted_nolm``,
``forgetting_nolm``, ``learning_nolm`` and ``nolm_decoding`` (what the decoding was), and into
RESULTS.md and the printed table beside the recipe's. Summaries without them (older runs, or runs
without the option) render as before.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Dict, List

from espnet_peft.scoring import learning_forgetting, text_digest
from espnet_peft.sweep import REPORT_METRICS, modules_note

from file_id import recorded_foundation_id, write_text_atomic

SECTION = re.compile(r"^## Target ", re.M)


def read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _round(v):
    return round(v, 4) if isinstance(v, float) else v


def read_scores(dirs, sets, hint: str) -> dict:
    """{name: {set: <every report metric's field: wer, cer>, utterances, words, rtf}} of the decodings in
    ``dirs`` ({name: dir}); the sweep's report compares on any of the metrics (espnet_peft.sweep.metrics)."""
    fields = [m.field for m in REPORT_METRICS.values()]
    scores = {name: {} for name in dirs}
    for s in sets:
        for name, d in dirs.items():
            r = read_json(d / s / "result.json")
            if r is None:
                raise SystemExit(f"report.py: no score for {s} in {d}: {d / s / 'result.json'} is missing ({hint})")
            if not all(math.isfinite(r[k]) for k in fields):
                raise SystemExit(f"report.py: {d / s / 'result.json'} holds a non-finite score")
            info = read_json(d / s / "decode_info.json") or {}
            hyp = d / s / "text"
            if hyp.is_file() and r.get("hypotheses") != text_digest(hyp):
                raise SystemExit(f"report.py: error: {d / s / 'result.json'} scored other hypotheses than {hyp} holds "
                                 f"(edited or decoded again after scoring): score again ({hint})")
            if info and info.get("hypotheses") not in (None, text_digest(hyp) if hyp.is_file() else None):
                raise SystemExit(f"report.py: error: {hyp} is not what its decoding wrote ({d / s / 'decode_info.json'}): "
                                 f"decode again")
            scores[name][s] = {**{k: round(r[k], 3) for k in fields}, "utterances": r["utterances"],
                               "words": r["words"], "rtf": info.get("rtf")}
    return scores


def forgetting_learning(b: dict, a: dict, src, tgt):
    """Forgetting on every source set, learning on every target set (base ``b`` vs adapted ``a``)."""
    forgetting = {s: {k: _round(v) for k, v in learning_forgetting(0.0, 0.0, b[s]["wer"], a[s]["wer"]).items()
                      if k in ("forgetting", "forgetting_rel")} for s in src}
    learning = {t: {k: _round(v) for k, v in learning_forgetting(b[t]["wer"], a[t]["wer"], 0.0, 0.0).items()
                    if k in ("target_gain", "target_gain_rel")} for t in tgt}
    return forgetting, learning


def describe_decoding(config: Path) -> str:
    """A short description of a decoding without the LM, from its decoding options."""
    import yaml

    opts = yaml.safe_load(config.read_text()) or {}
    if opts.get("ctc_greedy"):
        return "CTC greedy, no LM"
    ctc = float(opts.get("ctc_weight", 0.5))
    return f"beam search (beam {opts.get('beam_size', '?')}, CTC weight {ctc:g}), no LM"


def collect_nolm(args, src, tgt) -> dict:
    """The summary fields of the decoding without the LM (``--nolm_decode_config``), or {}."""
    if not args.nolm_decode_config:
        return {}
    config = Path(args.nolm_decode_config)
    if not config.is_file():
        raise SystemExit(f"report.py: --nolm_decode_config {config} not found")
    base = Path(args.base_decode_nolm) if args.base_decode_nolm else Path(f"{args.base_decode}_nolm")
    scores = read_scores({"base": base, "adapted": Path(args.merged) / "decode_nolm"}, src + tgt,
                         "run stages 12-14 with --nolm_decode_config")
    forgetting, learning = forgetting_learning(scores["base"], scores["adapted"], src, tgt)
    return {"nolm_decoding": describe_decoding(config), "base_nolm": scores["base"],
            "adapted_nolm": scores["adapted"], "forgetting_nolm": forgetting, "learning_nolm": learning}


def collect(args) -> dict:
    exp, merged, base = Path(args.exp), Path(args.merged), Path(args.base_decode)
    src, tgt = args.source_test_sets.split(), args.target_test_sets.split()
    scores = read_scores({"base": base, "adapted": merged / "decode"}, src + tgt, "run stages 12-14")
    nolm = collect_nolm(args, src, tgt)
    plan = read_json(exp / "peft_plan.json") or {}
    import yaml

    cfg_path = exp / "peft_config.yaml"  # the config the adapter was trained with (frozen by training)
    peft_cfg = yaml.safe_load(cfg_path.read_text()) if cfg_path.is_file() else {}
    train_cfg = yaml.safe_load((exp / "config.yaml").read_text()) if (exp / "config.yaml").is_file() else {}
    wall = read_json(exp / "train_wall.json") or {}
    b, a = scores["base"], scores["adapted"]
    # forgetting on every source set, learning on every target set
    forgetting, learning = forgetting_learning(b, a, src, tgt)
    lf = learning_forgetting(b[tgt[0]]["wer"], a[tgt[0]]["wer"], b[src[0]]["wer"], a[src[0]]["wer"])
    return {
        "recipe": args.recipe, "tag": exp.name, "method": peft_cfg.get("method", plan.get("method")),
        "peft_config": peft_cfg, "alpha": float(args.alpha),
        "trainable_params": plan.get("total"), "fraction": plan.get("fraction"),
        "model_params": plan.get("model_params"), "budget": plan.get("budget"),
        # modules adapted, and those the plan left out (allocation.placement, allow_skip, overrides)
        "adapted_modules": len(plan.get("rows") or []), "left_out_modules": len(plan.get("skipped") or []),
        "epochs": train_cfg.get("max_epoch"), "train_wall_seconds": wall.get("train_wall_seconds"),
        "source_test_sets": src, "target_test_sets": tgt, "base": b, "adapted": a,
        "forgetting": forgetting, "learning": learning,
        # the first target and source set (what the sweep report plots)
        "learning_forgetting": {k: _round(v) for k, v in lf.items()},
        # the same without the LM (--nolm_decode_config): nolm_decoding, base_nolm, adapted_nolm,
        # forgetting_nolm, learning_nolm
        **nolm,
        # the adapter checkpoint merged into the model these decodings are of (merge_info.json)
        "checkpoint": Path((read_json(merged / "merge_info.json") or {}).get("model_file") or "").name or None,
        "command": training_command(exp), "date": time.strftime("%Y-%m-%d %H:%M"),
        # the foundation model the adapter was trained on (stage 10 records it)
        "foundation_id": recorded_foundation_id(exp),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }


def training_command(exp: Path) -> str:
    """The command that trained the experiment (stage 10 keeps the driver's command line), not a
    later re-run of the report."""
    kept = exp / "command.txt"
    return kept.read_text().strip() if kept.is_file() else ""


def fmt(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def signed(x, nd=2):
    return "-" if x is None else f"{x:+.{nd}f}"


def budget_label(s: dict) -> str:
    if s.get("fraction") is None:
        return "-"
    return f"{s['trainable_params']:,} ({100 * s['fraction']:.2f}%){modules_note(s)}"


def _wer(s: dict, who: str, test_set: str):
    return (s.get(who, {}).get(test_set) or {}).get("wer")


def _forgetting(s: dict, src: str, nolm: str = ""):
    if src in (s.get("forgetting" + nolm) or {}):
        return s["forgetting" + nolm][src]["forgetting"]
    a, b = _wer(s, "adapted" + nolm, src), _wer(s, "base" + nolm, src)
    return None if a is None or b is None else a - b


def _gain(s: dict, tgt: str, nolm: str = ""):
    a, b = _wer(s, "adapted" + nolm, tgt), _wer(s, "base" + nolm, tgt)
    return None if a is None or b is None else b - a


def _ordered(groups: List[List[str]]) -> List[str]:
    out: List[str] = []
    for g in groups:
        out += [x for x in g if x not in out]
    return out


def results_sections(summaries) -> Dict[str, str]:
    """One markdown section per target (its title line is the key)."""
    by_target: Dict[str, list] = {}
    for s in summaries:
        by_target.setdefault(", ".join(s["target_test_sets"]), []).append(s)
    sections = {}
    for key, group in sorted(by_target.items()):
        tgts = group[0]["target_test_sets"]
        srcs = _ordered([s["source_test_sets"] for s in group])
        first = group[0]
        title = f"## Target `{key}` (forgetting on {', '.join(f'`{s}`' for s in srcs)})"
        base = ", ".join(f"{t} WER {fmt(_wer(first, 'base', t))}" for t in tgts + srcs)
        # the decoding without the LM, when any run of the group has it (the others show "-")
        nolm = [s for s in group if s.get("base_nolm")]
        nolm_head = ([f"gain on {t} (no LM)" for t in tgts] + [f"forgetting on {x} (no LM)" for x in srcs]
                     if nolm else [])
        head = (["experiment", "method", "trainable (fraction)", "alpha"]
                + [c for t in tgts for c in (f"{t} WER", f"gain on {t}")]
                + [c for s in srcs for c in (f"{s} WER", f"forgetting on {s}")]
                + nolm_head + [f"CER {tgts[0]}", "train time"])
        intro = [f"Base (foundation) model: {base}."]
        if nolm:
            kinds = sorted({_nolm_kind(s) for s in nolm})
            intro.append(f"Without the LM ({'; '.join(kinds)}): "
                         + ", ".join(f"{t} WER {fmt(_wer(nolm[0], 'base_nolm', t))}" for t in tgts + srcs) + ".")
        lines = [title, ""] + intro + ["", "| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
        for s in sorted(group, key=lambda s: (s["tag"], s["alpha"])):
            tt = s.get("train_wall_seconds")
            nolm_cells = ([fmt(_gain(s, t, "_nolm")) for t in tgts] + [fmt(_forgetting(s, x, "_nolm")) for x in srcs]
                          if nolm else [])
            cells = ([s["tag"], s["method"], budget_label(s), f"{s['alpha']:g}"]
                     + [c for t in tgts for c in (fmt(_wer(s, "adapted", t)), fmt(_gain(s, t)))]
                     + [c for x in srcs for c in (fmt(_wer(s, "adapted", x)), fmt(_forgetting(s, x)))]
                     + nolm_cells
                     + [fmt((s["adapted"].get(tgts[0]) or {}).get("cer")), fmt(tt / 60, 1) + " min" if tt else "-"])
            lines.append("| " + " | ".join(cells) + " |")
        cmds = sorted({s["command"] for s in group if s.get("command")})
        machines = sorted({s["machine"] for s in group})
        lines += ["", "Commands:", ""] + [f"    {c}" for c in cmds] + ["", f"Machine: {', '.join(machines)}", ""]
        sections[title.split(" (")[0]] = "\n".join(lines)
    return sections


def results_md(summaries, recipe: str, keep: str = "") -> str:
    """The results file; sections of ``keep`` (an earlier file) whose targets have no summary here
    are kept as they are."""
    header = [f"# RESULTS: {recipe}", "",
              "Generated by stage 15 (`local/report.py`) from `exp/*/merged*/summary.json`.",
              "WER in %, text normalised as in `espnet_peft/scoring.py`. Forgetting = adapted source WER - "
              "base source WER (positive: forgot), on every source test set. Gain = base target WER - adapted "
              "target WER. Columns marked (no LM), where present: the same measured with a second decoding "
              "without the LM (`--nolm_decode_config`, e.g. CTC greedy), the acoustic model's own.", ""]
    sections = {}
    if keep:
        for part in SECTION.split(keep)[1:]:
            text = ("## Target " + part).rstrip("\n") + "\n"
            sections[text.splitlines()[0].split(" (")[0]] = text
    sections.update(results_sections(summaries))
    return "\n".join(header) + "\n" + "\n".join(sections[k].rstrip("\n") + "\n" for k in sorted(sections))


def print_table(s: dict) -> None:
    src, tgt = s["source_test_sets"], s["target_test_sets"]
    b, a = s["base"], s["adapted"]
    name = f"adapted ({s['method']}, {budget_label(s)}" + (f", alpha {s['alpha']:g})" if s["alpha"] != 1 else ")")
    w = max(len(name), 18)
    cols = src + tgt
    widths = [max(18, len(c) + 5) for c in cols]
    print()
    print(f"{'':<{w}}" + "".join(f"  {c + ' WER':>{n}}" for c, n in zip(cols, widths)))
    print(f"{'base (foundation)':<{w}}" + "".join(f"  {fmt(b[c]['wer']):>{n}}" for c, n in zip(cols, widths)))
    print(f"{name:<{w}}" + "".join(f"  {fmt(a[c]['wer']):>{n}}" for c, n in zip(cols, widths)))
    nolm = s.get("base_nolm") and s.get("adapted_nolm")
    if nolm:
        for who, label in (("base_nolm", "base, no LM"), ("adapted_nolm", "adapted, no LM")):
            print(f"{label:<{w}}" + "".join(f"  {fmt(_wer(s, who, c)):>{n}}" for c, n in zip(cols, widths)))
    print(f"forgetting: {_forgetting_learning_text(s, '')}")
    if nolm:
        print(f"without the LM ({_nolm_kind(s)}): forgetting: {_forgetting_learning_text(s, '_nolm')}")
    print()


def _nolm_kind(s: dict) -> str:
    """The decoding without the LM, e.g. "CTC greedy" (its description less ", no LM")."""
    kind = s.get("nolm_decoding") or "no LM"
    return kind[:-len(", no LM")] if kind.endswith(", no LM") else kind


def _forgetting_learning_text(s: dict, nolm: str) -> str:
    parts = []
    for x in s["source_test_sets"]:
        f = s["forgetting" + nolm][x]
        rel = f.get("forgetting_rel")
        parts.append(f"{signed(f['forgetting'])} WER points on {x}" + (f" ({rel:+.1f}% relative)" if rel is not None else ""))
    gains = [f"{signed(s['learning' + nolm][t]['target_gain'])} WER points on {t}" for t in s["target_test_sets"]]
    return f"{', '.join(parts)}; learning: {', '.join(gains)}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exp", required=True)
    ap.add_argument("--merged", required=True)
    ap.add_argument("--base_decode", required=True)
    ap.add_argument("--source_test_sets", required=True)
    ap.add_argument("--target_test_sets", required=True)
    ap.add_argument("--recipe", default="")
    ap.add_argument("--expdir", default="exp")
    ap.add_argument("--results", default=None,
                    help="also update this results file (e.g. the committed RESULTS.md): the sections of the "
                         "targets reported here are replaced, the others kept (default: only <expdir>/RESULTS.md)")
    ap.add_argument("--alpha", default="1.0")
    ap.add_argument("--nolm_decode_config", default=None,
                    help="the decoding options of the second decoding without the LM (the recipe's "
                         "--nolm_decode_config): its scores are reported beside the recipe's")
    ap.add_argument("--base_decode_nolm", default=None,
                    help="the base model's decodings without the LM (default: <base_decode>_nolm)")
    args = ap.parse_args(argv)
    summary = collect(args)
    out = Path(args.merged) / "summary.json"
    write_text_atomic(out, json.dumps(summary, indent=1, allow_nan=False) + "\n")  # never half a summary
    summaries = [json.loads(p.read_text()) for p in sorted(Path(args.expdir).glob("*/merged*/summary.json"))]
    written = [Path(args.expdir) / "RESULTS.md"]
    written[0].write_text(results_md(summaries, args.recipe))
    if args.results:
        dst = Path(args.results)
        dst.write_text(results_md(summaries, args.recipe, dst.read_text() if dst.is_file() else ""))
        written.append(dst)
    print_table(summary)
    print(f"report.py: {out} and {' and '.join(map(str, written))} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
