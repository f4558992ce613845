#!/usr/bin/env python3
"""Stage 16 of the recipes: several domains served by one model, each utterance routed to its adapter.

    routed_eval.py check  --expdir exp --dumpdir dump --checkpoint valid.acc.ave.pth \\
        --adapter child=child_ssvd_o --adapter accent=accent_ssvd_o \\
        --set source_test=base --set child_test=child --set accent_test=accent
    routed_eval.py report [the same] --routed exp/routed_mixed/decode/mixed --base_decode exp/base_decode \\
        --foundation foundation/model.pth --out exp/routed_mixed

``check`` (before any compute): every adapter's experiment has the checkpoint and a merged model made
from that very checkpoint (its ``merged/merge_info.json``), every set is formatted, every set is
routed to ``base`` or to one of the adapters. ``report``: the routed decoding of the mixed set is
split back into its sets and scored; beside it, per set, the base model and every adapter's merged
model (stage 16 decodes every set with each); the pooled WER of the whole mix under each; how many
routed hypotheses equal the ones of the model they were routed to (a check of the routing: every one
should); and the memory of one model with the adapters against one merged model per adapter.
Writes ``<out>/RESULTS.md``, ``<out>/results.json`` and ``<out>/<set>/{text,result.json}``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from file_id import write_text_atomic

from espnet_peft.data import read_table
from espnet_peft.scoring import score


def pairs(specs: List[str], what: str) -> List[Tuple[str, str]]:
    out = []
    for spec in specs:
        a, sep, b = spec.partition("=")
        if not sep or not a or not b:
            sys.exit(f"routed_eval.py: --{what} wants A=B, got {spec!r}")
        out.append((a, b))
    return out


def check(args) -> Tuple[Dict[str, Path], Dict[str, str]]:
    """{adapter name: experiment dir}, {set: adapter name}; every problem named before compute."""
    adapters = {}
    for name, tag in pairs(args.adapter, "adapter"):
        if name == "base" or name in adapters:
            sys.exit(f"routed_eval.py: adapter name {name!r} is reserved or given twice")
        exp = args.expdir / tag
        ckpt = exp / args.checkpoint
        if not ckpt.is_file():
            sys.exit(f"routed_eval.py: adapter {name}: {ckpt} not found (run stage 10 for {tag})")
        info = exp / "merged" / "merge_info.json"
        if not (exp / "merged" / "model.pth").is_file() or not info.is_file():
            sys.exit(f"routed_eval.py: adapter {name}: no merged model in {exp / 'merged'} (run stage 11 for {tag})")
        merged_from = Path(json.loads(info.read_text()).get("model_file", ""))
        if merged_from.resolve() != ckpt.resolve():
            sys.exit(f"routed_eval.py: adapter {name}: {exp / 'merged'} was merged from {merged_from}, not {ckpt}: "
                     f"run stage 11 for {tag} with --checkpoint {args.checkpoint}")
        adapters[name] = exp
    if not adapters:
        sys.exit("routed_eval.py: give at least one --adapter NAME=TAG")
    sets = {}
    for s, name in pairs(args.set, "set"):
        if name != "base" and name not in adapters:
            sys.exit(f"routed_eval.py: set {s} is routed to {name!r}, which is none of base, {', '.join(adapters)}")
        if not (args.dumpdir / "raw" / s / "wav.scp").is_file():
            sys.exit(f"routed_eval.py: set {s}: {args.dumpdir / 'raw' / s / 'wav.scp'} not found (run stages 1-4)")
        sets[s] = name
    if not sets:
        sys.exit("routed_eval.py: give at least one --set SET=NAME")
    return adapters, sets


def reference(dumpdir: Path, s: str) -> Dict[str, str]:
    raw = dumpdir / "raw" / s
    return read_table(raw / "text.plain" if (raw / "text.plain").is_file() else raw / "text")


def adapter_params(ckpt: Path) -> int:
    """The numbers an adapter file holds (its records and fingerprints left out)."""
    from espnet_peft import fingerprint, provenance
    from espnet_peft.adapter_file import load_adapter

    state, _ = load_adapter(ckpt)
    _, rest = fingerprint.take(state)
    _, rest = provenance.take(rest)
    return sum(v.numel() for v in rest.values())


def model_params(path: Path) -> int:
    """The numbers a model file holds (parameters and buffers)."""
    import torch

    return sum(v.numel() for v in torch.load(path, map_location="cpu", weights_only=True).values())


def evaluate(args, adapters: Dict[str, Path], sets: Dict[str, str]) -> dict:
    """Per set and pooled: WER of the routed decoding, the base model and every merged model."""
    routed = read_table(args.routed)
    models = {"base": args.base_decode, **{n: exp / "merged" / "decode" for n, exp in adapters.items()}}
    rows, pooled_refs, pooled = [], {}, {"routed": {}, **{m: {} for m in models}}
    same = total = 0
    for s, name in sets.items():
        refs = reference(args.dumpdir, s)
        hyps = {k: routed.get(k, "") for k in refs}
        missing = [k for k in refs if k not in routed]
        if missing:
            sys.exit(f"routed_eval.py: {len(missing)} utterance(s) of {s} are not in {args.routed} (e.g. {missing[0]})")
        out = args.out / s
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "text", "".join(f"{k} {hyps[k]}\n" for k in sorted(hyps)))
        row = {"set": s, "routed_to": name, "utterances": len(refs), "routed": score(refs, hyps)}
        write_text_atomic(out / "result.json", json.dumps(row["routed"], indent=1) + "\n")
        for m, d in models.items():
            p = d / s / "text"
            if not p.is_file():
                sys.exit(f"routed_eval.py: {p} not found: the {m} model has not decoded {s} (stage 16 decodes it)")
            mh = read_table(p)
            row[m] = score(refs, mh)
            pooled[m].update({f"{s}/{k}": mh.get(k, "") for k in refs})
            if m == name:  # the model this set is routed to: the routed hypotheses must be its own
                same += sum(hyps[k] == mh.get(k) for k in refs)
                total += len(refs)
        pooled["routed"].update({f"{s}/{k}": v for k, v in hyps.items()})
        pooled_refs.update({f"{s}/{k}": v for k, v in refs.items()})
        rows.append(row)
    found = model_params(args.foundation)
    sizes = {n: adapter_params(exp / args.checkpoint) for n, exp in adapters.items()}
    return {"rows": rows, "pooled": {m: score(pooled_refs, h) for m, h in pooled.items()},
            "identical": {"same": same, "total": total}, "models": list(models), "sets": sets,
            "adapters": {n: str(exp / args.checkpoint) for n, exp in adapters.items()},
            "memory": {"foundation_params": found, "adapter_params": sizes,
                       "bank_params": found + sum(sizes.values()), "merged_models_params": found * len(sizes)}}


def render(res: dict, command: str) -> str:
    models = res["models"]
    head = ["set", "routed to", "utterances", "routed"] + [("base" if m == "base" else f"{m} merged") for m in models]
    lines = [f"Command: `{command}`", "",
             "WER per set of the mixed set: the routed decoding (one model load, each utterance with its adapter) "
             "beside the base model and each adapter's merged model on the same utterances.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(head) - 3)]
    for r in res["rows"]:
        lines.append(f"| {r['set']} | {r['routed_to']} | {r['utterances']} | **{r['routed']['wer']:.2f}** | "
                     + " | ".join(f"{r[m]['wer']:.2f}" for m in models) + " |")
    p = res["pooled"]
    lines.append(f"| all (pooled) | | {sum(r['utterances'] for r in res['rows'])} | **{p['routed']['wer']:.2f}** | "
                 + " | ".join(f"{p[m]['wer']:.2f}" for m in models) + " |")
    i, mem = res["identical"], res["memory"]
    lines += ["", f"Routed hypotheses identical to those of the model they were routed to: {i['same']} of {i['total']}.",
              "", f"Stored: one foundation model and the adapter files, {mem['bank_params']:,} numbers "
                  f"({mem['foundation_params']:,} + " + " + ".join(f"{v:,} ({n})" for n, v in mem["adapter_params"].items())
              + f"), against {mem['merged_models_params']:,} for one merged model per adapter. In memory a bank also "
                "holds the frozen singular bases of SVD-initialised adapters, rebuilt from the foundation model when "
                "they load (measured by bench/adapter_bank.py)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("check", "report"))
    ap.add_argument("--expdir", type=Path, default=Path("exp"))
    ap.add_argument("--dumpdir", type=Path, default=Path("dump"))
    ap.add_argument("--checkpoint", default="valid.acc.ave.pth", help="the adapter checkpoint of each experiment")
    ap.add_argument("--adapter", action="append", default=[], help="NAME=TAG: an adapter, its experiment's tag")
    ap.add_argument("--set", action="append", default=[], help="SET=NAME: a test set and the adapter it is routed to")
    ap.add_argument("--routed", type=Path, help="report: the routed decoding's hypotheses (text) of the mixed set")
    ap.add_argument("--base_decode", type=Path, default=Path("exp/base_decode"))
    ap.add_argument("--foundation", type=Path, default=Path("foundation/model.pth"))
    ap.add_argument("--out", type=Path, help="report: where the results go")
    ap.add_argument("--command", default="", help="the command line the report cites")
    args = ap.parse_args(argv)
    adapters, sets = check(args)
    if args.action == "check":
        return 0
    if args.routed is None or args.out is None:
        ap.error("report needs --routed and --out")
    res = evaluate(args, adapters, sets)
    res["command"] = args.command
    text = render(res, args.command or " ".join(sys.argv))
    write_text_atomic(args.out / "results.json", json.dumps(res, indent=1) + "\n")
    write_text_atomic(args.out / "RESULTS.md", "# Routed decoding\n\n" + text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
