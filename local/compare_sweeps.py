#!/usr/bin/env python3
"""Does one sweep's ranking of methods predict another's? (``espnet_peft.sweep.agreement``)

Reads two sweep reports (the ``RESULTS_sweep_*.json`` that ``budget_sweep.py`` writes beside its
Markdown report) and prints, for the cells both hold, each cell's share of full fine-tuning's gain
and its forgetting in each, their ranks, Spearman's rank correlation with a permutation p-value, and
the pairs whose order flips. ``--out FILE`` writes the same Markdown with the two reports named.

    compare_sweeps.py --first egs2/embedded/asr1/RESULTS_sweep_embedded_child.json --first_name synthetic \\
        --second egs2/speechocean762/asr1/RESULTS_sweep_speechocean762_child.json --second_name real \\
        --out egs2/speechocean762/asr1/RESULTS_ranking.md
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from espnet_peft.sweep.agreement import compare, render


def read(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        sys.exit(f"compare_sweeps.py: no report {p} (run the sweep's report: run_sweep.sh --report_only true)")
    report = json.loads(p.read_text())
    if "rows" not in report:
        sys.exit(f"compare_sweeps.py: {p} is not a sweep report (no rows)")
    return report


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--first", required=True)
    ap.add_argument("--second", required=True)
    ap.add_argument("--first_name", default="first")
    ap.add_argument("--second_name", default="second")
    ap.add_argument("--seed", type=int, default=0, help="of the random permutations (more than 8 cells)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    first, second = read(args.first), read(args.second)
    text = (f"# {args.first_name} against {args.second_name}: the rankings of the cells both sweeps hold\n\n"
            f"`{args.first}` ({first.get('target')}) against `{args.second}` ({second.get('target')}).\n\n"
            + render(compare(first, second, seed=args.seed), args.first_name, args.second_name))
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
