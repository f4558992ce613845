#!/usr/bin/env python3
"""Run a budget sweep: every cell of a grid through recipe stages 10-15, then the report.

    budget_sweep.py --grid conf/sweep/embedded.yaml --out exp/sweep_child \\
        --run "./run.sh --target child" --cmd "utils/launch.py --backend local" --max_parallel 1 \\
        --dev_set child_dev

* cells (method x budget x allocation variant, ``espnet_peft.sweep.expand``) get a PEFT config
  each under ``<out>/configs``; a cell whose plan is impossible on the model (a budget below one
  unit per module) is reported as infeasible, not run;
* the shared work (adaptation statistics, base-model decoding of the test sets and of the dev
  set) runs once, first;
* the learning rate (grid key ``learning_rates``): every rate of a cell's grid trains with the
  first ``selection.seeds`` seed(s) and is scored on the target dev set only
  (``<run> --stage 10 --stop_stage 13 --target_test_sets <dev_set>``: train, merge, decode and
  score dev; or ``selection.metric: valid_acc``: stage 10 alone, ESPnet's best validation
  accuracy read from the training log). The best rate is chosen once every rate has its score,
  written to ``<out>/lr_choices.json`` (final from then on), and only then is any test set decoded
  with an adapted model: ``<run> --stage 12 --stop_stage 15`` for the runs already trained, stages
  10-15 for the other seeds at the chosen rate. Variants (``selection.variants: inherit``) reuse
  the rate chosen for their method's plain cell at the same budget;
* the rate and the seed reach the training as ``--peft_args "--optim_conf lr=R --seed S"``
  (ESPnet options, merged into the recipe's train config) and, for methods with a ``seed`` option
  (randomised SVD), as the seed of the cell's PEFT config; an experiment is
  ``<tag_prefix><cell>_lr<R>_s<S>``; ``exp/<tag>/config.yaml`` is checked against both;
* every run is one job of the ``--cmd`` backend (the extra interpolation alphas of an experiment
  together, one after the other), ``--max_parallel`` at a time (slurm: all at once), in priority
  order: the comparison of every method at ``priority_budgets`` (and full
  fine-tuning) first, cell by cell (its rates, its choice, its seeds), the seeds after
  ``selection.priority_seeds`` last; finished runs (their dev score or summary.json exists)
  are skipped, so a killed sweep continues where it stopped;
* the report (``espnet_peft.sweep.write_report``) has, per cell and alpha, the mean over seeds
  with the spread, bootstrap intervals from the per-utterance errors of every decoded test set
  (references and utt2spk from ``--dumpdir``), forgetting on every source test set, and the
  learning-rate choice;
* a cell measured on another foundation model than ``--model_config``'s (a retrained or
  re-fetched one; its ``foundation_id`` differs or was never recorded) is stale: the sweep
  stops before any compute and lists them, and ``--archive_stale`` moves those experiments to
  ``<expdir>/stale/<tag>.<id>`` (nothing is deleted) and runs them again;
* ``<out>/sweep.md``, ``sweep.png``, ``sweep.json`` hold the report, and ``--results`` (with its
  ``.png`` and ``.json`` beside it) the copy that is committed.
"""
from __future__ import annotations

import argparse
import heapq
import json
import math
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from espnet_peft.markers import DIVERGED  # noqa: E402
from espnet_peft.errors import PeftError  # noqa: E402
from espnet_peft.scoring import utterance_errors_files  # noqa: E402
from espnet_peft.sweep import (METRICS, at_grid_edge, expand, experiment_tag, load_grid, lr_label,  # noqa: E402
                               order_cells, priority_group, protocol, reachable_rates, seed_mean, tuning_grid,
                               write_report)
from file_id import file_id, recorded_foundation_id, write_text_atomic  # noqa: E402
from sweep_records import (DECODINGS, RecordStore, code_commit, config_hash, data_id, errors_block,  # noqa: E402
                           set_block, summaries_from_records)


def merged_dir(expdir: Path, tag: str, alpha: float) -> Path:
    return expdir / tag / ("merged" if alpha == 1.0 else f"merged_alpha{alpha:g}")


def summary_path(expdir: Path, tag: str, alpha: float) -> Path:
    return merged_dir(expdir, tag, alpha) / "summary.json"


def feasibility(cells, model_config: Path, config_dir: Path):
    """Plan every cell against the model; returns {cell name: reason} for impossible ones. Each cell's
    config is written into this sweep's ``config_dir`` (where its run reads it), not to a fixed name
    under /tmp that two sweeps would share."""
    from espnet_peft.bin.plan import build_plan

    bad = {}
    config_dir.mkdir(parents=True, exist_ok=True)
    for c in cells:
        cfg = config_dir / f"{c.name}.yaml"
        cfg.write_text(yaml.safe_dump(c.config, sort_keys=False))
        try:
            build_plan(str(cfg), model_config)
        except PeftError as e:
            bad[c.name] = f"infeasible: {str(e).split(':')[0]}"
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


def number(x: float) -> str:
    """A rate as ESPnet's YAML reads it back as a float (``1e-05`` is a string in YAML 1.1)."""
    return np.format_float_positional(float(x), trim="-")


def best_valid_acc(exp: Path):
    """ESPnet's best validation accuracy over the epochs of a training (its logs, a resumed run's
    earlier ones included); None when no epoch has finished."""
    best = None
    for log in sorted(exp.glob("train.log*")):
        for line in log.read_text(errors="replace").splitlines():
            if "epoch results:" not in line or "[valid]" not in line:
                continue
            m = re.search(r"(?:^|[\s,])acc=([0-9.eE+-]+)", line.split("[valid]", 1)[1].split("[", 1)[0])
            if m:
                best = float(m.group(1)) if best is None else max(best, float(m.group(1)))
    return best


def accepts_seed(config) -> bool:
    """Whether a PEFT config takes a ``seed`` option (the methods with a randomised SVD)."""
    from espnet_peft.config import PeftConfig

    try:
        PeftConfig.from_any(dict(config, seed=0))
        return True
    except PeftError:
        return False


def run_command(run: str, cfg: Path, tag: str, *, stage: int, stop_stage: int, peft_args: str = "",
                alpha: float = 1.0, results=None, test_sets=None) -> str:
    """One recipe call: ``--target_test_sets`` replaces the recipe's test sets (the dev set, while
    a learning rate is chosen), ``--peft_args`` carries the rate and seed to the training."""
    q = shlex.quote
    cmd = f"{run} --stage {stage} --stop_stage {stop_stage} --peft_config {q(str(cfg))} --tag {q(tag)}"
    if alpha != 1.0:
        cmd += f" --alpha {alpha:g}"
    if test_sets:
        cmd += f" --target_test_sets {q(test_sets)}"
    if peft_args:
        cmd += f" --peft_args {q(peft_args)}"
    if results is not None:
        cmd += f" --results {q(str(results))}"
    return cmd


class Scheduler:
    """Runs jobs ``workers`` at a time, always the ready job with the smallest key; a finished job
    may make new jobs ready (its ``then(rc)`` returns them)."""

    def __init__(self, workers: int):
        self.workers, self.ready, self.n, self.running = max(1, workers), [], 0, 0
        self.cv = threading.Condition()
        self.errors = []

    def add(self, jobs) -> None:
        for j in jobs:
            heapq.heappush(self.ready, (j["key"], self.n, j))
            self.n += 1

    def run(self, execute) -> None:
        def worker():
            while True:
                with self.cv:
                    while not self.ready and self.running:
                        self.cv.wait()
                    if not self.ready:
                        self.cv.notify_all()
                        return
                    job = heapq.heappop(self.ready)[2]
                    self.running += 1
                try:
                    rc = execute(job)
                except Exception as e:  # noqa: BLE001 - a job that cannot start is a failed job
                    print(f"budget_sweep.py: {job['label']}: {e}", file=sys.stderr)
                    rc = 1
                with self.cv:
                    try:
                        self.add(job["then"](rc))
                    except Exception as e:  # noqa: BLE001
                        self.errors.append(e)
                    finally:
                        self.running -= 1
                        self.cv.notify_all()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.errors:
            raise self.errors[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path, help="sweep directory (configs, logs, report)")
    ap.add_argument("--run", required=True, help="the recipe command that runs one experiment (run.sh ...)")
    ap.add_argument("--cmd", default="utils/launch.py --backend local", help="job backend (cmd.sh's cuda_cmd)")
    ap.add_argument("--max_parallel", type=int, default=1, help="runs at a time (slurm: 0 = all)")
    ap.add_argument("--expdir", type=Path, default=Path("exp"))
    ap.add_argument("--tag_prefix", default="")
    ap.add_argument("--model_config", type=Path, default=Path("foundation/config.yaml"),
                    help="the model the plans are checked against")
    ap.add_argument("--results", type=Path, default=None, help="markdown file for the report (committed)")
    ap.add_argument("--dry_run", action="store_true", help="print the cells and their commands only")
    ap.add_argument("--report_only", action="store_true",
                    help="run nothing: write the report from the records (e.g. with newer report code, or while "
                         "another machine runs the sweep)")
    ap.add_argument("--command", default=None, help="the command line the report cites (default: this one)")
    ap.add_argument("--archive_stale", action="store_true",
                    help="move experiments of another foundation model to <expdir>/stale/ and run them again")
    ap.add_argument("--dev_set", default=None,
                    help="the target dev set the learning rates are chosen on (selection.metric: dev_wer)")
    ap.add_argument("--dumpdir", type=Path, default=Path("dump"),
                    help="formatted data: references and utt2spk of the test sets, for the intervals")
    ap.add_argument("--train_args", default="",
                    help="extra ESPnet training options for every run (sent with the rate and seed in --peft_args)")
    ap.add_argument("--bootstrap_unit", choices=("utterance", "speaker"), default=None,
                    help="resample utterances or speakers for the intervals (default: the grid's bootstrap.unit)")
    ap.add_argument("--metric", choices=("wer", "cer"), default=None,
                    help="the error rate the report compares (default: the grid's report.metric, else wer)")
    ap.add_argument("--records", type=Path, default=None,
                    help="the run records (tracked, beside the recipe; default <out>/records): a finished run is its "
                         "record, and the report renders from the records alone")
    ap.add_argument("--frozen", action="append", type=Path, default=[],
                    help="a file every run's config identity includes (training and decoding configs, the LM); "
                         "a record of other contents is stale")
    ap.add_argument("--data_sets", default="",
                    help="the sets (under --dumpdir) whose content is the data identity of every record")
    args = ap.parse_args(argv)

    t0 = time.time()
    try:
        grid = load_grid(args.grid)
        proto = protocol(grid)
        cells = order_cells(expand(grid), proto)
    except PeftError as e:
        print(f"budget_sweep.py: {e}", file=sys.stderr)
        return 2
    if args.bootstrap_unit:
        proto.bootstrap["unit"] = args.bootstrap_unit
    metric = args.metric or proto.report_metric
    if any(c.lrs for c in cells) and proto.metric == "dev_wer" and not args.dev_set:
        print("budget_sweep.py: the grid chooses learning rates by dev WER: give --dev_set (the target dev set)",
              file=sys.stderr)
        return 2
    (args.out / "configs").mkdir(parents=True, exist_ok=True)
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    store = RecordStore(args.records or args.out / "records")
    try:
        if args.report_only and not all((args.dumpdir / "raw" / x / "text").is_file() for x in args.data_sets.split()):
            # a clone without the data: the records' own data identity (they are checked against each other)
            did = store.load_data().get("data_id") or data_id(args.dumpdir, args.data_sets.split())
            print(f"budget_sweep.py: no formatted data in {args.dumpdir}: the records' data id {did} is taken")
        else:
            did = data_id(args.dumpdir, args.data_sets.split())
        for f in args.frozen:
            if not f.is_file():
                raise FileNotFoundError(f"{f} (a --frozen file)")
    except FileNotFoundError as e:
        print(f"budget_sweep.py: not found: {e}", file=sys.stderr)
        return 2
    commit = code_commit(Path(__file__).resolve().parent)
    status = feasibility(cells, args.model_config, args.out / "configs") if args.model_config.is_file() else {}
    infeasible = set(status)
    by_name = {c.name: c for c in cells}
    if proto.report_reference is not None and proto.report_reference not in by_name:
        print(f"budget_sweep.py: report.reference {proto.report_reference!r} is not a cell of {args.grid} "
              f"(cells: {', '.join(by_name)})", file=sys.stderr)
        return 2
    rank = {c.name: i for i, c in enumerate(cells)}
    for c in cells:  # a variant of an infeasible plain cell chooses its own rate
        if c.parent in infeasible:
            c.parent = None
    children = {c.name: [x for x in cells if x.parent == c.name and x.name not in infeasible] for c in cells}
    seeds, sel_seeds = proto.seeds, proto.seeds[:proto.select_seeds]
    dev_label = args.dev_set if proto.metric == "dev_wer" else "validation"

    def tag(c, lr, seed):
        return experiment_tag(args.tag_prefix, c, lr, seed, proto)

    model_file = args.model_config.parent / "model.pth"
    current = None
    if model_file.is_file():
        current = file_id(model_file)
        stale = {}
        for c in cells:
            for t in dict.fromkeys(tag(c, lr, s) for lr in (reachable_rates(c.lrs, proto.extend) or [None]) for s in seeds):
                rec = recorded_foundation(args.expdir, t)
                if rec is not None and rec != current:
                    stale[t] = rec
        if stale and args.dry_run:
            print(f"budget_sweep.py: stale (another foundation model): {', '.join(sorted(stale))}")
        elif stale and not args.archive_stale:
            print(f"budget_sweep.py: {len(stale)} cell(s) were trained on another foundation model than {model_file} "
                  f"(id {current}): {', '.join(f'{t} ({i})' for t, i in sorted(stale.items()))}; rerun with "
                  f"--archive_stale to move them to {args.expdir / 'stale'} and run them again", file=sys.stderr)
            return 2
        else:
            for t, rec in sorted(stale.items()):
                print(f"budget_sweep.py: {t}: trained on foundation {rec}, archived to {archive(args.expdir, t, rec)}")
            runs_file = store.root / "invocations.json"
            if stale and runs_file.is_file():  # the sweep's wall time starts again with the new model
                runs_file.rename(runs_file.with_name(f"invocations.before_{current}.json"))

    # the PEFT configs: one per cell, one per seed for methods with a seed option
    seeded = {}
    for c in cells:
        (args.out / "configs" / f"{c.name}.yaml").write_text(yaml.safe_dump(c.config, sort_keys=False))
        seeded[c.name] = proto.seeds_declared and c.name not in infeasible and accepts_seed(c.config)
        for s in seeds if seeded[c.name] else []:
            (args.out / "configs" / f"{c.name}.s{s}.yaml").write_text(yaml.safe_dump(dict(c.config, seed=s), sort_keys=False))

    def cfg_path(c, s) -> Path:
        return args.out / "configs" / (f"{c.name}.s{s}.yaml" if seeded[c.name] else f"{c.name}.yaml")

    idents = {}

    def identity(c, s) -> dict:
        """What every record of this cell and seed must have been measured on (else it is stale)."""
        if (c.name, s) not in idents:
            idents[(c.name, s)] = {"foundation_id": current, "data_id": did, "config_hash": config_hash(
                [cfg_path(c, s)] + list(args.frozen), {"train_args": args.train_args})}
        return idents[(c.name, s)]

    def peft_args(lr, s) -> str:
        parts = ([f"--optim_conf lr={number(lr)}"] if lr is not None else []) + ([f"--seed {s}"] if s is not None else [])
        return " ".join(parts + ([args.train_args] if args.train_args else []))

    # the learning-rate choice: made once every rate has its dev score, then final (lr_choices.json)
    choices_file = store.root / "lr_choices.json"
    choices = json.loads(choices_file.read_text()) if choices_file.is_file() else {}
    for name, rec in list(choices.items()):
        c = by_name.get(name)
        if (c is None or rec.get("declared", rec.get("grid")) != c.lrs or rec.get("extend", 0) != proto.extend
                or rec.get("metric") != proto.metric or rec.get("set") != dev_label
                or rec.get("seeds") != sel_seeds or (current is not None and rec.get("foundation_id") != current)
                or rec.get("identity", identity(c, sel_seeds[0])) != identity(c, sel_seeds[0])):
            del choices[name]

    def trained(t) -> bool:
        return (args.expdir / t / "train_wall.json").is_file()

    def dev_score(c, lr, s):
        """The dev score of a rate's run: its current record (None: not run, or its record is stale)."""
        rec = store.current(tag(c, lr, s), "dev", identity(c, s))
        if rec is None:
            return None
        if rec.get("diverged"):  # stopped on non-finite values: the worst score
            return math.inf if METRICS[proto.metric] == "min" else -math.inf
        return rec["dev_score"]

    def dev_scores(c, rates):
        return {lr: [dev_score(c, lr, s) for s in sel_seeds] for lr in rates}

    utts, notes = {}, []

    def utt(hyp_dir: Path, x: str, unit: str = "word"):
        """Per-utterance errors (words, or characters) of a decoding of set x (None without its
        reference or hypotheses)."""
        key = (str(hyp_dir), x, unit)
        if key not in utts:
            raw = args.dumpdir / "raw" / x
            ref = raw / "text.plain" if (raw / "text.plain").is_file() else raw / "text"
            hyp = hyp_dir / x / "text"
            utts[key] = None
            if ref.is_file() and hyp.is_file():
                try:
                    utts[key] = utterance_errors_files(ref, hyp, raw / "utt2spk", unit)
                except (ValueError, OSError) as e:
                    notes.append(f"{hyp}: {e}")
        return utts[key]

    def record_data(sets) -> None:
        """data.json: the sets' utterances and the base model's errors, for every decoding."""
        data = store.load_data()
        if data.get("data_id") != did or data.get("foundation_id") != current:
            data = {"data_id": did, "foundation_id": current, "sets": {}, "base": {}}
        for dec, sub in DECODINGS.items():
            base = args.expdir / ("base_decode" if dec == "lm" else f"base_{sub}")
            for x in sets:
                u = utt(base, x)
                if u is None:
                    continue
                data["sets"].setdefault(x, set_block(u, utt(base, x, "char")))
                data["base"].setdefault(dec, {})[x] = errors_block(u, utt(base, x, "char"))
        store.save_data(data)

    def write_record(c, lr, s, t, kind, alpha=1.0, seconds=None) -> None:
        """The record of a finished run (a dev score, or a seed's test decoding at one alpha)."""
        exp = args.expdir / t
        wall = json.loads((exp / "train_wall.json").read_text()) if (exp / "train_wall.json").is_file() else {}
        rec = {"kind": kind, "tag": t, "cell": c.name, "lr": lr, "seed": s, "alpha": alpha, **identity(c, s),
               "code_commit": commit, "train_wall_seconds": wall.get("train_wall_seconds"),
               "job_seconds": None if seconds is None else round(seconds, 1),
               "written": time.strftime("%Y-%m-%d %H:%M:%S")}
        merged = merged_dir(args.expdir, t, alpha)
        if kind == "dev":
            rec.update(metric=proto.metric, dev_set=dev_label, diverged=(exp / DIVERGED).is_file(), dev_score=None)
            if not rec["diverged"] and proto.metric == "dev_wer":
                p = merged / "decode" / args.dev_set / "result.json"
                if not p.is_file():
                    return
                rec["dev_score"] = json.loads(p.read_text())["wer"]
                u = utt(merged / "decode", args.dev_set)
                rec["utterances"] = ({"lm": {args.dev_set: errors_block(u, utt(merged / "decode", args.dev_set, "char"))}}
                                     if u is not None else {})
                record_data([args.dev_set])
            elif not rec["diverged"]:
                rec["dev_score"] = best_valid_acc(exp)
                if rec["dev_score"] is None:
                    return
        else:
            p = summary_path(args.expdir, t, alpha)
            if not p.is_file():
                return
            sm = json.loads(p.read_text())
            checks, cfg = [], exp / "config.yaml"
            trained_cfg = (yaml.safe_load(cfg.read_text()) or {}) if cfg.is_file() else {}
            tlr, tseed = (trained_cfg.get("optim_conf") or {}).get("lr"), trained_cfg.get("seed")
            if lr is None and tlr is not None:
                rec["lr"] = float(tlr)  # the train config's rate (the grid gives none)
            elif lr is not None and tlr is not None and abs(float(tlr) - lr) > 1e-9 * lr:
                checks.append(f"{t} trained with lr {tlr}, not {lr:g}")
            if s is not None and tseed is not None and int(tseed) != s:
                checks.append(f"{t} trained with seed {tseed}, not {s}")
            sets = list(sm.get("target_test_sets", [])) + list(sm.get("source_test_sets", []))
            rec.update(summary=sm, checks=checks, utterances={
                dec: {x: errors_block(u, utt(merged / sub, x, "char")) for x in sets if (u := utt(merged / sub, x)) is not None}
                for dec, sub in DECODINGS.items()})
            record_data(sets)
        store.write(rec)

    def tried(c):
        """(rates, chosen): the rates tuned so far, past the grid's edge with selection.extend."""
        return tuning_grid(c.lrs, lambda lr: seed_mean(dev_scores(c, [lr])[lr]), proto.metric, proto.extend)

    def decide(c):
        if c.name in choices:
            return choices[c.name]["lr"]
        rates, lr = tried(c)
        if lr is not None:
            sc = dev_scores(c, rates)
            choices[c.name] = {"lr": lr, "grid": rates, "declared": c.lrs, "extend": proto.extend,
                               "metric": proto.metric, "set": dev_label, "seeds": sel_seeds,
                               "scores": {lr_label(k): v for k, v in sc.items()}, "foundation_id": current,
                               "identity": identity(c, sel_seeds[0]),
                               "chosen": time.strftime("%Y-%m-%d %H:%M:%S")}
            if not args.dry_run:  # atomically: a reader never sees half a file
                write_text_atomic(choices_file, json.dumps(choices, indent=1) + "\n")
        return lr

    def rate(c):
        """(ready, lr): the rate a cell's reported runs train with; not ready while it is being chosen."""
        if not c.lrs:
            return True, None
        src = by_name[c.parent] if c.parent else c
        lr = None if src.name in infeasible else decide(src)
        return lr is not None, lr

    failed, ran_cells, pending = [], set(), {}

    def job(c, key, label, cmd, then=None, run_tag=None, records=()):
        """A job; ``records``: (cell, lr, seed, tag, kind, alpha) of the runs it finishes, recorded after it."""
        def done(rc):
            for r in records:
                if rc == 0 or (r[4] == "dev" and (args.expdir / r[3] / DIVERGED).is_file()):
                    write_record(*r, seconds=entry.get("seconds"))
            if rc != 0 and run_tag and (args.expdir / run_tag / DIVERGED).is_file():
                status[label] = "diverged (non-finite loss): scored as the worst rate"
            elif rc != 0:
                failed.append(label)
                status[label] = f"failed (see {args.out / 'logs' / (label + '.log')})"
            return then(rc) if then else []
        entry = {"key": key, "label": label, "cell": c.name, "command": cmd, "then": done}
        return entry

    def short(t) -> str:
        return t[len(args.tag_prefix):]

    def major(j) -> int:
        return 1 if proto.priority_seeds and j >= proto.priority_seeds else 0

    attempted = set()  # dev runs started by this invocation: one that failed is not retried until the next

    def tune_jobs(c):
        out = []
        for i, lr in enumerate(tried(c)[0]):
            for j, s in enumerate(sel_seeds):
                t = tag(c, lr, s)
                if dev_score(c, lr, s) is None and t not in attempted:
                    attempted.add(t)
                    cmd = run_command(args.run, cfg_path(c, s), t, stage=10,
                                      stop_stage=13 if proto.metric == "dev_wer" else 10, peft_args=peft_args(lr, s),
                                      test_sets=args.dev_set if proto.metric == "dev_wer" else None)
                    out.append(job(c, (0, priority_group(c, proto), 0, rank[c.name], 0, i, j), f"{short(t)}.tune", cmd,
                                   after_tune(c), run_tag=t, records=[(c, lr, s, t, "dev")]))
        return out

    def after_tune(c):
        def then(rc):
            pending[c.name] -= 1
            if pending[c.name] > 0:
                return []
            ok, lr = rate(c)
            if not ok:  # the best rate is at the grid's edge: one more rate past it (selection.extend)
                more = tune_jobs(c)
                pending[c.name] = len(more)
                if more:
                    print(f"budget_sweep.py: {c.name}: best rate at the edge of {', '.join(f'{x:g}' for x in c.lrs)}"
                          f" on {dev_label}: trying {', '.join(j['label'] for j in more)}", flush=True)
                return more
            print(f"budget_sweep.py: {c.name}: learning rate {lr:g} chosen on {dev_label}", flush=True)
            return eval_jobs(c, lr) + [x for ch in children[c.name] for x in eval_jobs(ch, lr)]
        return then

    def eval_jobs(c, lr):
        out = []
        for j, s in enumerate(seeds):
            t = tag(c, lr, s)
            missing = [a for a in c.alphas if store.current(t, "test", identity(c, s), a) is None]
            if not missing:
                continue
            results = args.out / "cells" / f"{short(t)}.md"

            def alpha_jobs(c=c, t=t, s=s, j=j, results=results, missing=missing):
                # the other alphas of one experiment in one job, one after the other (a run holds
                # the experiment's lock)
                alphas = [a for a in missing if a != 1.0]
                if not alphas:
                    return []
                label = f"{short(t)}.alpha{alphas[0]:g}" if len(alphas) == 1 else f"{short(t)}.alphas"
                return [job(c, (major(j), priority_group(c, proto), 1, rank[c.name], 1, j, alphas[0]), label,
                            " && ".join(run_command(args.run, cfg_path(c, s), t, stage=11, stop_stage=15, alpha=a,
                                                    peft_args=peft_args(lr, s), results=results) for a in alphas),
                            records=[(c, lr, s, t, "test", a) for a in alphas])]
            if 1.0 in missing:
                start = 10 if not trained(t) else 12 if (merged_dir(args.expdir, t, 1.0) / "model.pth").is_file() else 11
                out.append(job(c, (major(j), priority_group(c, proto), 0, rank[c.name], 1, j, 1.0), short(t),
                               run_command(args.run, cfg_path(c, s), t, stage=start, stop_stage=15,
                                           peft_args=peft_args(lr, s), results=results),
                               lambda rc, f=alpha_jobs: f() if rc == 0 else [], records=[(c, lr, s, t, "test", 1.0)]))
            else:
                out += alpha_jobs()
        return out

    initial, waiting = [], {}
    for c in cells:
        if c.name in infeasible:
            continue
        if c.lrs and not c.parent and c.name not in choices:
            tj = tune_jobs(c)
            pending[c.name] = len(tj)
            initial += tj
        ok, lr = rate(c)
        if ok:
            initial += eval_jobs(c, lr)
        else:
            waiting[c.name] = (f"waiting for {c.parent}'s learning-rate choice" if c.parent
                               else "learning-rate choice on dev incomplete")
    work = {j["cell"] for j in initial} | set(waiting)
    for c in cells:
        ok, lr = rate(c) if c.name not in infeasible else (False, None)
        n = sum(j["cell"] == c.name for j in initial)
        state = (status[c.name] if c.name in infeasible else f"{n} run(s) to run" if n
                 else waiting.get(c.name, "done"))
        lrs = (f"lr={lr:g}" if ok and lr is not None else f"lr from {c.parent}" if c.parent
               else f"lr in {','.join(f'{x:g}' for x in c.lrs)}" if c.lrs else "")
        print(f"  {c.name:<44} alphas={','.join(f'{a:g}' for a in c.alphas):<20} {lrs:<26} {state}")
    print(f"budget_sweep.py: {len(cells)} cells, {len(work)} to run, {len(infeasible)} infeasible")
    if args.dry_run:
        for j in sorted(initial, key=lambda j: j["key"]):
            print(j["command"])
        for name in waiting:
            print(f"# then {name}: the test sets at the chosen learning rate, seeds {', '.join(map(str, seeds))}")
        return 0

    if args.report_only:
        initial, work = [], set()
    if work:  # shared work, once: adaptation statistics, base-model decoding (the test sets, the dev set)
        subprocess.run(f"{args.run} --prepare_only true", shell=True, check=True)
        if proto.metric == "dev_wer" and any(j["label"].endswith(".tune") for j in initial):
            subprocess.run(f"{args.run} --prepare_only true --target_test_sets {shlex.quote(args.dev_set)}",
                           shell=True, check=True)

    # this invocation's entry in invocations.json, kept up to date after every job: a sweep killed
    # part-way still counts the time of the jobs it finished, and names its command
    runs_file = store.root / "invocations.json"
    runs = json.loads(runs_file.read_text()) if runs_file.is_file() else []
    entry = {"started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0)), "seconds": 0.0, "cells_run": 0,
             "jobs": 0, "command": args.command or " ".join(sys.argv), "code_commit": commit}
    entry_lock = threading.Lock()

    def record_invocation() -> None:
        with entry_lock:
            entry.update(seconds=round(time.time() - t0, 1), cells_run=len(ran_cells))
            if entry not in runs:
                runs.append(entry)
            write_text_atomic(runs_file, json.dumps(runs, indent=1) + "\n")

    def execute(j):
        (args.out / "cells").mkdir(exist_ok=True)
        ran_cells.add(j["cell"])
        log = args.out / "logs" / f"{j['label']}.log"
        t_job = time.time()
        rc = subprocess.call(f"{args.cmd} {shlex.quote(str(log))} {shlex.quote(j['command'])}", shell=True)
        j["seconds"] = time.time() - t_job
        entry["jobs"] += 1
        record_invocation()
        print(f"budget_sweep.py: cell {j['label']}: {'done' if rc == 0 else f'FAILED (exit {rc})'}", flush=True)
        return rc

    possible = sum((len(c.lrs) + 2 * proto.extend) * len(sel_seeds) + len(seeds) * len(c.alphas) for c in cells)
    sched = Scheduler(args.max_parallel if args.max_parallel > 0 else possible)
    sched.add(initial)
    sched.run(execute)

    # the report: every reported run at the chosen rate, from its record
    tuning, reported = {}, {}

    for c in cells:
        if c.name in infeasible:
            continue
        ok, lr = rate(c)
        if c.lrs and c.parent:
            tuning[c.name] = {"inherited_from": c.parent, "chosen": lr, "grid": c.lrs, "metric": proto.metric,
                              "set": dev_label}
        elif c.lrs:  # the scores the choice was made on (kept with it), or today's while it is open
            grid = choices[c.name].get("grid", c.lrs) if c.name in choices else tried(c)[0]
            sc = (choices[c.name]["scores"] if c.name in choices
                  else {lr_label(k): v for k, v in dev_scores(c, grid).items()})
            tuning[c.name] = {"metric": proto.metric, "set": dev_label, "grid": grid, "declared": c.lrs,
                              "seeds": sel_seeds, "scores": sc, "mean": {k: seed_mean(v) for k, v in sc.items()},
                              "chosen": lr, "edge": bool(lr is not None and at_grid_edge(lr, grid)),
                              "inherited_from": None, "chosen_at": (choices.get(c.name) or {}).get("chosen")}
        if not ok:
            status.setdefault(c.name, waiting.get(c.name, "learning-rate choice on dev incomplete"))
            continue
        for a in c.alphas:
            for s in seeds:
                reported[(tag(c, lr, s), a)] = {"cell": c.name, "sweep_budget": c.budget, "sweep_variant": c.variant,
                                                "lr": lr, "seed": s, "identity": identity(c, s)}
    summaries, rec_notes = summaries_from_records(store, reported, metric)
    notes += rec_notes
    for n in notes:
        print(f"budget_sweep.py: {n}", file=sys.stderr)

    wall = time.time() - t0
    # a resumed sweep adds its invocations up (one that only rebuilds the report is not sweep time)
    if ran_cells:
        record_invocation()
    total = sum(r["seconds"] for r in runs)
    # the job time of every finished run the report stands on (its current records)
    current_recs = [r for kind in ("dev", "test") for r in store.all(kind) if r.get("cell") in by_name
                    and not store.stale(r, identity(by_name[r["cell"]], r.get("seed")))]
    job_hours = sum(r.get("job_seconds") or 0 for r in current_recs) / 3600
    if ran_cells:  # (the report itself depends on the records alone)
        print(f"budget_sweep.py: this invocation: {wall / 3600:.2f} h, {len(ran_cells)} cells run", flush=True)
    # the committed copies sit beside --results: <results>.md, <results>.png, <results>.json
    copies = {k: (args.results.with_suffix(f".{k}") if args.results else args.out / f"sweep.{k}") for k in ("png", "json")}
    tuned_text = ""
    if any(c.lrs for c in cells):
        what = f"WER on `{args.dev_set}`" if proto.metric == "dev_wer" else "ESPnet's best validation accuracy"
        tuned_text = (f"Learning rate: chosen per cell by {what} among its grid (table below), with seed(s) "
                      f"{', '.join(map(str, sel_seeds))}; test sets decoded for the chosen rate only. ")
    seeds_text = (f"Seeds: {', '.join(map(str, seeds))}. " if proto.seeds_declared else "")
    # the commands that ran the sweep (a report-only invocation cites them, not itself)
    commands = list(dict.fromkeys(r["command"] for r in runs if r.get("command")))
    cited = ", ".join(f"`{c}`" for c in commands) if commands else "not recorded yet (the first invocation is running)"
    header = (f"# Budget sweep `{args.grid}`\n\nCommand: {cited}\n\n"
              f"Finished runs: {len(current_recs)} ({job_hours:.2f} h of job time, the sum over their records). "
              f"Sweep wall time: {total / 3600:.2f} h over {len(runs)} recorded invocation(s); cells: {len(cells)} "
              f"({len({s['cell'] for s in summaries})} with results, {len(status)} infeasible, failed or waiting). "
              f"{tuned_text}{seeds_text}Plot: [`{copies['png'].name}`]"
              f"({copies['png'].name}); every number: `{copies['json'].name}`.\n")
    paths = write_report(summaries, args.out, status, header=header, tuning=tuning, bootstrap=proto.bootstrap,
                         metric=metric, reference=proto.report_reference,
                         protocol_info={**proto.as_dict(), "dev_set": args.dev_set, "tag_prefix": args.tag_prefix,
                                        "order": [c.name for c in cells]})
    if args.results:
        args.results.write_text(paths["md"].read_text())
        for k, dst in copies.items():
            shutil.copyfile(paths[k], dst)
    print(f"budget_sweep.py: report {paths['md']}, plot {paths['png']}, data {paths['json']}")
    return 1 if failed or sched.errors else 0


if __name__ == "__main__":
    sys.exit(main())
