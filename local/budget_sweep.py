#!/usr/bin/env python3
"""Run a budget sweep: every cell of a grid through recipe stages 10-15, then the report.

    budget_sweep.py --grid conf/sweep/embedded.yaml --out exp/sweep_child \\
        --run "./run.sh --target child" --cmd "utils/launch.py --backend local" --max_parallel 1

* cells (method x budget x allocation variant, ``espnet_peft.sweep.expand``) get a PEFT config
  each under ``<out>/configs``; a cell whose plan is impossible on the model (a budget below one
  unit per module) is reported as infeasible, not run;
* the shared work (adaptation statistics, base-model decoding) runs once, first;
* every cell runs ``<run> --stage 10 --stop_stage 15`` (and stages 11-15 again per extra
  interpolation alpha) as one job of the ``--cmd`` backend, ``--max_parallel`` at a time
  (slurm: all at once); finished cells (their summary.json exists) are skipped, so a killed
  sweep continues where it stopped;
* a cell measured on another foundation model than ``--model_config``'s (a retrained or
  re-fetched one; its ``foundation_id`` differs or was never recorded) is stale: the sweep
  stops before any compute and lists them, and ``--archive_stale`` moves those experiments to
  ``<expdir>/stale/<tag>.<id>`` (nothing is deleted) and runs them again;
* ``<out>/sweep.md``, ``sweep.png``, ``sweep.json`` hold the report, and ``--results`` (with its
  ``.png`` and ``.json`` beside it) the copy that is committed.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from espnet_peft.methods.base import PeftError  # noqa: E402
from espnet_peft.sweep import expand, load_grid, write_report  # noqa: E402
from file_id import file_id, recorded_foundation_id  # noqa: E402


def merged_dir(expdir: Path, tag: str, alpha: float) -> Path:
    return expdir / tag / ("merged" if alpha == 1.0 else f"merged_alpha{alpha:g}")


def summary_path(expdir: Path, tag: str, alpha: float) -> Path:
    return merged_dir(expdir, tag, alpha) / "summary.json"


def feasibility(cells, model_config: Path):
    """Plan every cell against the model; returns {cell name: reason} for impossible ones."""
    from espnet_peft.bin.plan import build_plan

    bad = {}
    for c in cells:
        cfg = Path("/tmp") / f"_sweep_{c.name}.yaml"
        cfg.write_text(yaml.safe_dump(c.config))
        try:
            build_plan(str(cfg), model_config)
        except PeftError as e:
            bad[c.name] = f"infeasible: {str(e).split(':')[0]}"
        finally:
            cfg.unlink(missing_ok=True)
    return bad


def recorded_foundation(expdir: Path, tag: str):
    """The foundation id an experiment was trained on; None when it never ran; "unrecorded" when
    it ran before ids were recorded."""
    exp = expdir / tag
    fid = recorded_foundation_id(exp)
    if fid is not None:
        return fid
    ran = (exp / "checkpoint.pth").is_file() or (exp / "peft_plan.json").is_file() or any(exp.glob("merged*/summary.json"))
    return "unrecorded" if ran else None


def archive(expdir: Path, tag: str, fid: str) -> Path:
    dst = expdir / "stale" / f"{tag}.{fid}"
    n = 1
    while dst.exists():
        dst, n = expdir / "stale" / f"{tag}.{fid}.{n}", n + 1
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(expdir / tag), str(dst))
    return dst


def cell_command(run: str, cfg: Path, tag: str, alphas, results: Path) -> str:
    """Training and the alpha = 1 evaluation when alpha 1 is among ``alphas`` (the ones still to
    do), then stages 11-15 for every other alpha; a trained cell that only lacks interpolation
    points (another grid ran it, or a kill came between them) is not trained again."""
    parts = []
    if 1.0 in alphas:
        parts.append(f"{run} --stage 10 --stop_stage 15 --peft_config {shlex.quote(str(cfg))} "
                     f"--tag {shlex.quote(tag)} --results {shlex.quote(str(results))}")
    for a in alphas:
        if a != 1.0:
            parts.append(f"{run} --stage 11 --stop_stage 15 --peft_config {shlex.quote(str(cfg))} "
                         f"--tag {shlex.quote(tag)} --alpha {a:g} --results {shlex.quote(str(results))}")
    return " && ".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path, help="sweep directory (configs, logs, report)")
    ap.add_argument("--run", required=True, help="the recipe command that runs one experiment (run.sh ...)")
    ap.add_argument("--cmd", default="utils/launch.py --backend local", help="job backend (cmd.sh's cuda_cmd)")
    ap.add_argument("--max_parallel", type=int, default=1, help="cells at a time (slurm: 0 = all)")
    ap.add_argument("--expdir", type=Path, default=Path("exp"))
    ap.add_argument("--tag_prefix", default="")
    ap.add_argument("--model_config", type=Path, default=Path("foundation/config.yaml"),
                    help="the model the plans are checked against")
    ap.add_argument("--results", type=Path, default=None, help="markdown file for the report (committed)")
    ap.add_argument("--dry_run", action="store_true", help="print the cells and their commands only")
    ap.add_argument("--command", default=None, help="the command line the report cites (default: this one)")
    ap.add_argument("--archive_stale", action="store_true",
                    help="move experiments of another foundation model to <expdir>/stale/ and run them again")
    args = ap.parse_args(argv)

    t0 = time.time()
    grid = load_grid(args.grid)
    try:
        cells = expand(grid)
    except PeftError as e:
        print(f"budget_sweep.py: {e}", file=sys.stderr)
        return 2
    (args.out / "configs").mkdir(parents=True, exist_ok=True)
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    status = feasibility(cells, args.model_config) if args.model_config.is_file() else {}
    model_file = args.model_config.parent / "model.pth"
    if model_file.is_file():
        current = file_id(model_file)
        stale = {}
        for c in cells:
            rec = recorded_foundation(args.expdir, args.tag_prefix + c.name)
            if rec is not None and rec != current:
                stale[args.tag_prefix + c.name] = rec
        if stale and args.dry_run:
            print(f"budget_sweep.py: stale (another foundation model): {', '.join(sorted(stale))}")
        elif stale and not args.archive_stale:
            print(f"budget_sweep.py: {len(stale)} cell(s) were trained on another foundation model than {model_file} "
                  f"(id {current}): {', '.join(f'{t} ({i})' for t, i in sorted(stale.items()))}; rerun with "
                  f"--archive_stale to move them to {args.expdir / 'stale'} and run them again", file=sys.stderr)
            return 2
        else:
            for tag, rec in sorted(stale.items()):
                print(f"budget_sweep.py: {tag}: trained on foundation {rec}, archived to {archive(args.expdir, tag, rec)}")
            runs_file = args.out / "invocations.json"
            if stale and runs_file.is_file():  # the sweep's wall time starts again with the new model
                runs_file.rename(runs_file.with_name(f"invocations.before_{current}.json"))
    todo = []
    for c in cells:
        cfg = args.out / "configs" / f"{c.name}.yaml"
        cfg.write_text(yaml.safe_dump(c.config, sort_keys=False))
        tag = args.tag_prefix + c.name
        missing = [a for a in c.alphas if not summary_path(args.expdir, tag, a).is_file()]
        state = status.get(c.name, "to run" if len(missing) == len(c.alphas) else
                           f"alphas {','.join(f'{a:g}' for a in missing)} to run" if missing else "done")
        print(f"  {c.name:<48} alphas={','.join(f'{a:g}' for a in c.alphas):<22} {state}")
        if c.name not in status and missing:
            todo.append((c, cfg, tag, missing))
    print(f"budget_sweep.py: {len(cells)} cells, {len(todo)} to run, {len(status)} infeasible")
    if args.dry_run:
        for c, cfg, tag, missing in todo:
            print(cell_command(args.run, cfg, tag, missing, args.out / "cells" / f"{c.name}.md"))
        return 0

    if todo:
        subprocess.run(f"{args.run} --prepare_only true", shell=True, check=True)  # shared work, once

    def run_cell(item):
        c, cfg, tag, missing = item
        cmd = cell_command(args.run, cfg, tag, missing, args.out / "cells" / f"{c.name}.md")
        (args.out / "cells").mkdir(exist_ok=True)
        log = args.out / "logs" / f"{c.name}.log"
        rc = subprocess.call(f"{args.cmd} {shlex.quote(str(log))} {shlex.quote(cmd)}", shell=True)
        return c.name, rc

    workers = args.max_parallel if args.max_parallel > 0 else max(1, len(todo))
    failed = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for name, rc in pool.map(run_cell, todo):
            print(f"budget_sweep.py: cell {name}: {'done' if rc == 0 else f'FAILED (exit {rc})'}", flush=True)
            if rc != 0:
                failed.append(name)
                status[name] = f"failed (see {args.out / 'logs' / (name + '.log')})"

    summaries = []
    for c in cells:
        for a in c.alphas:
            p = summary_path(args.expdir, args.tag_prefix + c.name, a)
            if p.is_file():
                s = json.loads(p.read_text())
                s.update(cell=c.name, sweep_budget=c.budget, sweep_variant=c.variant)
                summaries.append(s)
    wall = time.time() - t0
    # a resumed sweep adds its invocations up (one that only rebuilds the report is not sweep time)
    runs_file = args.out / "invocations.json"
    runs = json.loads(runs_file.read_text()) if runs_file.is_file() else []
    if todo:
        runs.append({"started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0)), "seconds": round(wall, 1),
                     "cells_run": len(todo)})
        runs_file.write_text(json.dumps(runs, indent=1) + "\n")
    total = sum(r["seconds"] for r in runs)
    this_one = f" (this one: {wall / 3600:.2f} h, {len(todo)} cells run)" if todo else ""
    # the committed copies sit beside --results: <results>.md, <results>.png, <results>.json
    copies = {k: (args.results.with_suffix(f".{k}") if args.results else args.out / f"sweep.{k}") for k in ("png", "json")}
    header = (f"# Budget sweep `{args.grid}`\n\nCommand: `{args.command or ' '.join(sys.argv)}`\n\n"
              f"Sweep wall time: {total / 3600:.2f} h over {len(runs)} invocation(s){this_one}; cells: {len(cells)} "
              f"({len(summaries)} results, {len(status)} infeasible or failed). "
              f"`*`: on the Pareto front of (target WER, source WER). Plot: [`{copies['png'].name}`]"
              f"({copies['png'].name}); every number: `{copies['json'].name}`.\n")
    paths = write_report(summaries, args.out, status, header=header)
    if args.results:
        args.results.write_text(paths["md"].read_text())
        for k, dst in copies.items():
            shutil.copyfile(paths[k], dst)
    print(f"budget_sweep.py: report {paths['md']}, plot {paths['png']}, data {paths['json']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
