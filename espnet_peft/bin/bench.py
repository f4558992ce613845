#!/usr/bin/env python3
"""The performance benchmark's command line (the benchmark itself: :mod:`espnet_peft.bench`).

    python -m espnet_peft.bin.bench --shapes embedded,owsm_base --budget 1% --out bench_cpu
    python -m espnet_peft.bin.bench --shapes tiny --repeats 2 --out /tmp/bench   # smoke run
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import bench


def get_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="embedded,owsm_base", help="comma-separated shapes of --shapes_file")
    ap.add_argument("--shapes_file", default=str(bench.ROOT / "conf" / "bench" / "shapes.yaml"))
    ap.add_argument("--methods", default=",".join(bench.bench_rows()),
                    help="bench rows: the floor, methods, references")
    ap.add_argument("--baseline", default=next(iter(bench.registry())),
                    help="the method of the '/ <baseline>' column")
    ap.add_argument("--budget", default="1%")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=8.0, help="audio seconds per utterance")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    for flag, (o, users) in bench.knobs().items():
        ap.add_argument(f"--{flag}", default=o.bench, help=f"option {o.name!r} of {', '.join(users)}")
    ap.add_argument("--paired", action=argparse.BooleanOptionalAction, default=True,
                    help="also step a frozen copy of the base model in alternation with each method, in the "
                         "method's process, and report the ratios from these pairs (default); --no-paired "
                         "divides by the floor row, measured in another process")
    ap.add_argument("--init_only", action="store_true",
                    help="measure initialisation (and trainable parameters) only, no training steps")
    ap.add_argument("--memory", choices=("auto", "sampled"), default="auto",
                    help="training-memory reading: auto (GPU allocator, or the kernel's peak resident set "
                         "after a reset; sampling where the reset is refused) or sampled (always sample)")
    ap.add_argument("--out", type=Path, default=Path("bench_out"))
    ap.add_argument("--worker", nargs=2, metavar=("SHAPE", "METHOD"), help=argparse.SUPPRESS)
    ap.add_argument("--report_from", type=Path, metavar="BENCH_JSON",
                    help="write bench.md again from a bench.json (its own command's options), measuring nothing")
    return ap


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = get_parser()
    args = ap.parse_args(argv)
    args.argv = list(argv)
    if args.report_from:
        saved = json.loads(args.report_from.read_text())
        again = ap.parse_args(saved["argv"])
        again.argv = saved["argv"]
        again.machine = saved.get("machine")
        md = bench.report(saved["results"], again)
        (args.report_from.parent / "bench.md").write_text(md)
        print(md)
        return 0
    if args.worker:
        args.shape, args.method = args.worker
        print("BENCH_RESULT " + json.dumps(bench.worker(args)), flush=True)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    results = bench.run_rows(args, argv)
    args.machine = bench.machine_speed(args.device)  # after the rows, with the machine as they left it
    md = bench.report(results, args)
    (args.out / "bench.md").write_text(md)
    (args.out / "bench.json").write_text(json.dumps({"argv": args.argv, "machine": args.machine, "results": results},
                                                    indent=1) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
