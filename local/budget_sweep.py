#!/usr/bin/env python3
"""Run a budget sweep: every cell of a grid through recipe stages 10-15, then the report.

    budget_sweep.py --grid conf/sweep/embedded.yaml --out exp/sweep_child \\
        --run "./run.sh --target child" --cmd "local/launch.py --backend local" --max_parallel 1 \\
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
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List

import numpy as np
import yaml

from espnet_peft.markers import DIVERGED
from espnet_peft.errors import PeftError
from espnet_peft.scoring import RESAMPLE_UNITS, utterance_errors_files
from espnet_peft.sweep import (METRICS, at_grid_edge, expand, experiment_tag, load_grid, lr_label,
                               order_cells, priority_group, protocol, reachable_rates, seed_mean, tuning_grid,
                               write_report)
from file_id import file_id, recorded_foundation_id, write_text_atomic
from sweep_records import (DECODINGS, RecordStore, code_commit, config_hash, data_id, errors_block,
                           set_block, summaries_from_records)

#: the phases of a sweep, in the order it runs them (the grid's priority order): the priority block
#: (every method at the priority budgets, and full, at the priority seeds), the later seeds of those
#: cells, the other cells (variants, other budgets) at every seed, and the interpolation curves (the
#: alphas other than 1); ``--last_phase`` stops after one of them
PHASES = ("priority_block", "later_seeds", "other_cells", "curves")
PHASE_WORDS = {"priority_block": "priority block", "later_seeds": "later seeds", "other_cells": "other cells",
               "curves": "interpolation curves"}
CURVES = PHASES.index("curves")


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


def accepts_seed(config, seeds) -> bool:
    """Whether a PEFT config takes each of ``seeds`` as its ``seed`` option: the methods with a
    randomised SVD. (A seed equal to the option's default passes even where it has no effect, so the
    sweep's own seeds are tried: SVD-initialised methods with an exact SVD refuse them.)"""
    from espnet_peft.config import PeftConfig

    try:
        for s in seeds:
            PeftConfig.from_any(dict(config, seed=s))
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


class SweepError(Exception):
    """A sweep that cannot start (bad options, a stale cell, a missing file): its message, exit 2."""


def get_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path, help="sweep directory (configs, logs, report)")
    ap.add_argument("--run", required=True, help="the recipe command that runs one experiment (run.sh ...)")
    ap.add_argument("--cmd", default=f"{shlex.quote(str(Path(__file__).with_name('launch.py')))} --backend local",
                    help="job backend (cmd.sh's cuda_cmd; default: this checkout's local/launch.py, local backend)")
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
    ap.add_argument("--dev_args", default="",
                    help="extra options for the recipe in the rate-choice (dev) runs only, e.g. a cheaper decoding "
                         "(--decode_config conf/decode_nolm.yaml); the report states them")
    ap.add_argument("--bootstrap_unit", choices=RESAMPLE_UNITS, default=None,
                    help="what the intervals resample: utterances, speakers, or speakers then utterances within "
                         "(default: the grid's bootstrap.unit)")
    ap.add_argument("--metric", choices=("wer", "cer"), default=None,
                    help="the error rate the report compares (default: the grid's report.metric, else wer)")
    ap.add_argument("--records", type=Path, default=None,
                    help="the run records (tracked, beside the recipe; default <out>/records): a finished run is its "
                         "record, and the report renders from the records alone")
    ap.add_argument("--frozen", action="append", type=Path, default=[],
                    help="a file every run's config identity includes (training and decoding configs, the LM); "
                         "a record of other contents is stale")
    ap.add_argument("--last_phase", choices=PHASES, default=PHASES[-1],
                    help="the last phase this invocation runs, of (in order) the priority block (the cells of the "
                         "priority budgets, and full, at the priority seeds), the later seeds of those cells, the "
                         "other cells (variants, other budgets) and the interpolation curves; the rest waits for a "
                         "later invocation (so that both targets' priority blocks, then their seeds, come first)")
    ap.add_argument("--priority_only", dest="last_phase", action="store_const", const=PHASES[0],
                    help="--last_phase priority_block")
    ap.add_argument("--data_sets", default="",
                    help="the sets (under --dumpdir) whose content is the data identity of every record")
    return ap


class Sweep:
    """One invocation of the sweep: its grid and protocol, the identity every record must match, the
    jobs (learning-rate tuning, then the seeds' test decodings), and the report from the records.

    :meth:`run` is the whole invocation; the steps in order are :meth:`load` (grid, cells, protocol,
    data identity, feasibility, stale experiments, configs, earlier rate choices), :meth:`plan`
    (the first jobs), :meth:`prepare` (the shared work), the scheduler running :meth:`execute` on
    every job, and :meth:`report`."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.t0 = time.time()
        self.commit = code_commit(Path(__file__).resolve().parent)
        self.utts, self.notes, self.idents = {}, [], {}
        self.failed, self.ran_cells, self.pending, self.waiting = [], set(), {}, {}
        self.last = PHASES.index(args.last_phase)  # the last phase this invocation runs
        self.out_of_scope = set()  # cells this invocation leaves for a later one (--last_phase)
        self.deferred = {}  # per cell, the jobs ready now that --last_phase leaves for later
        self.attempted = set()  # dev runs started by this invocation: one that failed is not retried until the next
        self.current = None  # the foundation model's id (None without the model)
        self.sched = None

    # ------------------------------------------------------------------ the grid and what is known
    def load(self) -> None:
        a = self.args
        try:
            self.grid = load_grid(a.grid)
            self.proto = protocol(self.grid)
            self.cells = order_cells(expand(self.grid), self.proto)
        except PeftError as e:
            raise SweepError(str(e)) from None
        proto = self.proto
        if a.bootstrap_unit:
            proto.bootstrap["unit"] = a.bootstrap_unit
        self.metric = a.metric or proto.report_metric
        if any(c.lrs for c in self.cells) and proto.metric == "dev_wer" and not a.dev_set:
            raise SweepError("the grid chooses learning rates by dev WER: give --dev_set (the target dev set)")
        (a.out / "configs").mkdir(parents=True, exist_ok=True)
        (a.out / "logs").mkdir(parents=True, exist_ok=True)
        self.store = RecordStore(a.records or a.out / "records")
        self.did = self.data_identity()
        self.status = feasibility(self.cells, a.model_config, a.out / "configs") if a.model_config.is_file() else {}
        self.infeasible = set(self.status)
        self.by_name = {c.name: c for c in self.cells}
        if proto.report_reference is not None and proto.report_reference not in self.by_name:
            raise SweepError(f"report.reference {proto.report_reference!r} is not a cell of {a.grid} "
                             f"(cells: {', '.join(self.by_name)})")
        self.rank = {c.name: i for i, c in enumerate(self.cells)}
        for c in self.cells:  # a variant of an infeasible plain cell chooses its own rate
            if c.parent in self.infeasible:
                c.parent = None
        self.children = {c.name: [x for x in self.cells if x.parent == c.name and x.name not in self.infeasible]
                         for c in self.cells}
        self.seeds, self.sel_seeds = proto.seeds, proto.seeds[:proto.select_seeds]
        self.dev_label = a.dev_set if proto.metric == "dev_wer" else "validation"
        self.check_foundation()
        self.write_configs()
        self.load_choices()

    def data_identity(self) -> str:
        """The data id every record must carry; a clone without the formatted data takes the records' own."""
        a, sets = self.args, self.args.data_sets.split()
        try:
            if a.report_only and not all((a.dumpdir / "raw" / x / "text").is_file() for x in sets):
                # a clone without the data: the records' own data identity (they are checked against each other)
                did = self.store.load_data().get("data_id") or data_id(a.dumpdir, sets)
                print(f"budget_sweep.py: no formatted data in {a.dumpdir}: the records' data id {did} is taken")
            else:
                did = data_id(a.dumpdir, sets)
            for f in a.frozen:
                if not f.is_file():
                    raise FileNotFoundError(f"{f} (a --frozen file)")
        except FileNotFoundError as e:
            raise SweepError(f"not found: {e}") from None
        return did

    def check_foundation(self) -> None:
        """Experiments trained on another foundation model than ``--model_config``'s are stale: refused,
        or archived with --archive_stale (the sweep's wall time starts again)."""
        a = self.args
        model_file = a.model_config.parent / "model.pth"
        if not model_file.is_file():
            return
        self.current = file_id(model_file)
        stale = {}
        for c in self.cells:
            rates = reachable_rates(c.lrs, self.proto.extend) or [None]
            for t in dict.fromkeys(self.tag(c, lr, s) for lr in rates for s in self.seeds):
                rec = recorded_foundation(a.expdir, t)
                if rec is not None and rec != self.current:
                    stale[t] = rec
        if stale and a.dry_run:
            print(f"budget_sweep.py: stale (another foundation model): {', '.join(sorted(stale))}")
        elif stale and not a.archive_stale:
            raise SweepError(f"{len(stale)} cell(s) were trained on another foundation model than {model_file} "
                             f"(id {self.current}): {', '.join(f'{t} ({i})' for t, i in sorted(stale.items()))}; "
                             f"rerun with --archive_stale to move them to {a.expdir / 'stale'} and run them again")
        else:
            for t, rec in sorted(stale.items()):
                print(f"budget_sweep.py: {t}: trained on foundation {rec}, archived to {archive(a.expdir, t, rec)}")
            runs_file = self.store.root / "invocations.json"
            if stale and runs_file.is_file():  # the sweep's wall time starts again with the new model
                runs_file.rename(runs_file.with_name(f"invocations.before_{self.current}.json"))

    def write_configs(self) -> None:
        """The PEFT configs: one per cell, one per seed for methods with a seed option. Every config a
        run will train with is checked as the recipe checks it, before any run starts (the seeded ones
        by ``accepts_seed``, the others here)."""
        from espnet_peft.config import PeftConfig

        self.seeded = {}
        configs = self.args.out / "configs"
        for c in self.cells:
            path = configs / f"{c.name}.yaml"
            path.write_text(yaml.safe_dump(c.config, sort_keys=False))
            feasible = c.name not in self.infeasible
            self.seeded[c.name] = self.proto.seeds_declared and feasible and accepts_seed(c.config, self.seeds)
            for s in self.seeds if self.seeded[c.name] else []:
                (configs / f"{c.name}.s{s}.yaml").write_text(yaml.safe_dump(dict(c.config, seed=s), sort_keys=False))
            if feasible and not self.seeded[c.name]:
                try:
                    PeftConfig.from_any(c.config)
                except PeftError as e:
                    raise SweepError(f"cell {c.name}: {path}: {e}") from None

    def load_choices(self) -> None:
        """The learning-rate choices made so far (lr_choices.json), minus those another protocol,
        foundation or identity made."""
        proto = self.proto
        self.choices_file = self.store.root / "lr_choices.json"
        self.choices = json.loads(self.choices_file.read_text()) if self.choices_file.is_file() else {}
        for name, rec in list(self.choices.items()):
            c = self.by_name.get(name)
            if (c is None or rec.get("declared", rec.get("grid")) != c.lrs or rec.get("extend", 0) != proto.extend
                    or rec.get("metric") != proto.metric or rec.get("set") != self.dev_label
                    or rec.get("seeds") != self.sel_seeds
                    or (self.current is not None and rec.get("foundation_id") != self.current)
                    or rec.get("identity", self.identity(c, self.sel_seeds[0])) != self.identity(c, self.sel_seeds[0])):
                del self.choices[name]

    # ------------------------------------------------------------------ names and identities
    def tag(self, c, lr, seed) -> str:
        return experiment_tag(self.args.tag_prefix, c, lr, seed, self.proto)

    def short(self, t) -> str:
        return t[len(self.args.tag_prefix):]

    def cfg_path(self, c, s) -> Path:
        return self.args.out / "configs" / (f"{c.name}.s{s}.yaml" if self.seeded[c.name] else f"{c.name}.yaml")

    def identity(self, c, s) -> dict:
        """What every record of this cell and seed must have been measured on (else it is stale)."""
        if (c.name, s) not in self.idents:
            self.idents[(c.name, s)] = {"foundation_id": self.current, "data_id": self.did, "config_hash": config_hash(
                [self.cfg_path(c, s)] + list(self.args.frozen), {"train_args": self.args.train_args})}
        return self.idents[(c.name, s)]

    def peft_args(self, lr, s) -> str:
        parts = ([f"--optim_conf lr={number(lr)}"] if lr is not None else []) + ([f"--seed {s}"] if s is not None else [])
        return " ".join(parts + ([self.args.train_args] if self.args.train_args else []))

    def trained(self, t) -> bool:
        return (self.args.expdir / t / "train_wall.json").is_file()

    # ------------------------------------------------------------------ scores and records
    def dev_score(self, c, lr, s):
        """The dev score of a rate's run: its current record (None: not run, or its record is stale)."""
        rec = self.store.current(self.tag(c, lr, s), "dev", self.identity(c, s))
        if rec is None:
            return None
        if rec.get("diverged"):  # stopped on non-finite values: the worst score
            return math.inf if METRICS[self.proto.metric] == "min" else -math.inf
        return rec["dev_score"]

    def dev_scores(self, c, rates):
        return {lr: [self.dev_score(c, lr, s) for s in self.sel_seeds] for lr in rates}

    def utt(self, hyp_dir: Path, x: str, unit: str = "word"):
        """Per-utterance errors (words, or characters) of a decoding of set x (None without its
        reference or hypotheses)."""
        key = (str(hyp_dir), x, unit)
        if key not in self.utts:
            raw = self.args.dumpdir / "raw" / x
            ref = raw / "text.plain" if (raw / "text.plain").is_file() else raw / "text"
            hyp = hyp_dir / x / "text"
            self.utts[key] = None
            if ref.is_file() and hyp.is_file():
                try:
                    self.utts[key] = utterance_errors_files(ref, hyp, raw / "utt2spk", unit)
                except (ValueError, OSError) as e:
                    self.notes.append(f"{hyp}: {e}")
        return self.utts[key]

    def errors(self, hyp_dir: Path, x: str):
        """The record block of a decoding of set x (None without it)."""
        u = self.utt(hyp_dir, x)
        return None if u is None else errors_block(u, self.utt(hyp_dir, x, "char"))

    def record_data(self, sets) -> None:
        """data.json: the sets' utterances and the base model's errors, for every decoding."""
        data = self.store.load_data()
        if data.get("data_id") != self.did or data.get("foundation_id") != self.current:
            data = {"data_id": self.did, "foundation_id": self.current, "sets": {}, "base": {}}
        for dec, sub in DECODINGS.items():
            base = self.args.expdir / ("base_decode" if dec == "lm" else f"base_{sub}")
            for x in sets:
                u = self.utt(base, x)
                if u is None:
                    continue
                data["sets"].setdefault(x, set_block(u, self.utt(base, x, "char")))
                data["base"].setdefault(dec, {})[x] = errors_block(u, self.utt(base, x, "char"))
        self.store.save_data(data)

    def write_record(self, c, lr, s, t, kind, alpha=1.0, seconds=None) -> None:
        """The record of a finished run (a dev score, or a seed's test decoding at one alpha)."""
        exp = self.args.expdir / t
        wall = json.loads((exp / "train_wall.json").read_text()) if (exp / "train_wall.json").is_file() else {}
        rec = {"kind": kind, "tag": t, "cell": c.name, "lr": lr, "seed": s, "alpha": alpha, **self.identity(c, s),
               "code_commit": self.commit, "train_wall_seconds": wall.get("train_wall_seconds"),
               "job_seconds": None if seconds is None else round(seconds, 1),
               "written": time.strftime("%Y-%m-%d %H:%M:%S")}
        done = self.dev_record(rec, exp) if kind == "dev" else self.test_record(rec, exp, alpha)
        if done:
            self.store.write(rec)

    def dev_record(self, rec: dict, exp: Path) -> bool:
        """Fills a dev record: the dev score (WER of the merged model, or the best validation
        accuracy), or the divergence; False while the run has no score."""
        a, proto = self.args, self.proto
        rec.update(metric=proto.metric, dev_set=self.dev_label, diverged=(exp / DIVERGED).is_file(), dev_score=None)
        if rec["diverged"]:
            return True
        if proto.metric != "dev_wer":
            rec["dev_score"] = best_valid_acc(exp)
            return rec["dev_score"] is not None
        decoded = merged_dir(a.expdir, rec["tag"], 1.0) / "decode"
        p = decoded / a.dev_set / "result.json"
        if not p.is_file():
            return False
        rec["dev_score"] = json.loads(p.read_text())["wer"]
        block = self.errors(decoded, a.dev_set)
        rec["utterances"] = {"lm": {a.dev_set: block}} if block is not None else {}
        self.record_data([a.dev_set])
        return True

    def test_record(self, rec: dict, exp: Path, alpha: float) -> bool:
        """Fills a test record: the run's summary, every decoding's per-utterance errors and the checks
        of the rate and seed it trained with; False while it has no summary."""
        p = summary_path(self.args.expdir, rec["tag"], alpha)
        if not p.is_file():
            return False
        t, lr, s = rec["tag"], rec["lr"], rec["seed"]
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
        merged = merged_dir(self.args.expdir, t, alpha)
        utterances = {}
        for dec, sub in DECODINGS.items():
            blocks = {x: self.errors(merged / sub, x) for x in sets}
            utterances[dec] = {x: b for x, b in blocks.items() if b is not None}
        rec.update(summary=sm, checks=checks, utterances=utterances)
        self.record_data(sets)
        return True

    # ------------------------------------------------------------------ the learning-rate protocol
    def tried(self, c):
        """(rates, chosen): the rates tuned so far, past the grid's edge with selection.extend."""
        return tuning_grid(c.lrs, lambda lr: seed_mean(self.dev_scores(c, [lr])[lr]), self.proto.metric,
                           self.proto.extend)

    def decide(self, c):
        """The cell's chosen rate, made once every rate has its dev score and final from then on;
        None while a score is missing or the best is at the grid's edge."""
        if c.name in self.choices:
            return self.choices[c.name]["lr"]
        rates, lr = self.tried(c)
        if lr is not None:
            proto, sc = self.proto, self.dev_scores(c, rates)
            self.choices[c.name] = {"lr": lr, "grid": rates, "declared": c.lrs, "extend": proto.extend,
                                    "metric": proto.metric, "set": self.dev_label, "seeds": self.sel_seeds,
                                    "scores": {lr_label(k): v for k, v in sc.items()}, "foundation_id": self.current,
                                    "identity": self.identity(c, self.sel_seeds[0]),
                                    "chosen": time.strftime("%Y-%m-%d %H:%M:%S")}
            if not self.args.dry_run:  # atomically: a reader never sees half a file
                write_text_atomic(self.choices_file, json.dumps(self.choices, indent=1) + "\n")
        return lr

    def rate(self, c):
        """(ready, lr): the rate a cell's reported runs train with; not ready while it is being chosen."""
        if not c.lrs:
            return True, None
        src = self.by_name[c.parent] if c.parent else c
        lr = None if src.name in self.infeasible else self.decide(src)
        return lr is not None, lr

    # ------------------------------------------------------------------ jobs
    def phase(self, c, j, alpha=False) -> int:
        """The index in PHASES of a cell's run at its ``j``-th seed (another alpha: the curves)."""
        if alpha:
            return CURVES
        if priority_group(c, self.proto):
            return 2
        return 1 if self.proto.priority_seeds and j >= self.proto.priority_seeds else 0

    def job(self, c, key, label, cmd, then=None, run_tag=None, records=(), runs=None) -> dict:
        """A job; ``records``: (cell, lr, seed, tag, kind, alpha) of the runs it finishes, recorded after it;
        ``runs``: the (kind, count, other alpha) of the runs it stands for (default: one dev run)."""
        entry = {"key": key, "label": label, "cell": c.name, "command": cmd,
                 "runs": runs or [("dev", 1, False)]}

        def done(rc):
            for r in records:
                if rc == 0 or (r[4] == "dev" and (self.args.expdir / r[3] / DIVERGED).is_file()):
                    self.write_record(*r, seconds=entry.get("seconds"))
            if rc != 0 and run_tag and (self.args.expdir / run_tag / DIVERGED).is_file():
                self.status[label] = "diverged (non-finite loss): scored as the worst rate"
            elif rc != 0:
                self.failed.append(label)
                self.status[label] = f"failed (see {self.args.out / 'logs' / (label + '.log')})"
            return self.scoped(then(rc)) if then else []
        entry["then"] = done
        return entry

    def in_scope(self, key) -> bool:
        """Whether a job (by its key, which starts with its phase) runs in this invocation."""
        return key[0] <= self.last

    def scoped(self, jobs) -> list:
        """The jobs in scope; the others are counted per cell in ``self.deferred``."""
        out = []
        for j in jobs:
            if self.in_scope(j["key"]):
                out.append(j)
            else:
                self.deferred[j["cell"]] = self.deferred.get(j["cell"], 0) + 1
        return out

    def tune_jobs(self, c) -> list:
        """The dev runs of the rates tried so far that have no score yet (each once per invocation)."""
        a, proto, out = self.args, self.proto, []
        dev = proto.metric == "dev_wer"
        for i, lr in enumerate(self.tried(c)[0]):
            for j, s in enumerate(self.sel_seeds):
                t = self.tag(c, lr, s)
                if self.dev_score(c, lr, s) is not None or t in self.attempted:
                    continue
                self.attempted.add(t)
                cmd = run_command(a.run, self.cfg_path(c, s), t, stage=10, stop_stage=13 if dev else 10,
                                  peft_args=self.peft_args(lr, s), test_sets=a.dev_set if dev else None)
                if a.dev_args:
                    cmd += f" {a.dev_args}"
                out.append(self.job(c, (self.phase(c, j), self.rank[c.name], 0, i, j),
                                    f"{self.short(t)}.tune", cmd, self.after_tune(c), run_tag=t,
                                    records=[(c, lr, s, t, "dev")]))
        return out

    def after_tune(self, c):
        """What a cell's finished dev run makes ready: nothing while others run, a rate past the grid's
        edge, or the seeds' test runs at the chosen rate (and its variants')."""
        def then(rc):
            self.pending[c.name] -= 1
            if self.pending[c.name] > 0:
                return []
            ok, lr = self.rate(c)
            if not ok:  # the best rate is at the grid's edge: one more rate past it (selection.extend)
                more = self.tune_jobs(c)
                self.pending[c.name] = len(more)
                if more:
                    print(f"budget_sweep.py: {c.name}: best rate at the edge of {', '.join(f'{x:g}' for x in c.lrs)}"
                          f" on {self.dev_label}: trying {', '.join(j['label'] for j in more)}", flush=True)
                return more
            print(f"budget_sweep.py: {c.name}: learning rate {lr:g} chosen on {self.dev_label}", flush=True)
            return self.eval_jobs(c, lr) + [x for ch in self.children[c.name] for x in self.eval_jobs(ch, lr)]
        return then

    def eval_jobs(self, c, lr) -> list:
        """Every seed's test run at the chosen rate that has no current record (its alphas after it)."""
        out = []
        for j, s in enumerate(self.seeds):
            t = self.tag(c, lr, s)
            missing = [a for a in c.alphas if self.store.current(t, "test", self.identity(c, s), a) is None]
            if not missing:
                continue
            if 1.0 not in missing:
                out += self.alpha_jobs(c, lr, s, j, missing)
                continue
            merged = (merged_dir(self.args.expdir, t, 1.0) / "model.pth").is_file()
            start = 10 if not self.trained(t) else 12 if merged else 11
            cmd = run_command(self.args.run, self.cfg_path(c, s), t, stage=start, stop_stage=15,
                              peft_args=self.peft_args(lr, s), results=self.cell_results(t))
            out.append(self.job(c, (self.phase(c, j), self.rank[c.name], 1, j, 1.0),
                                self.short(t), cmd,
                                lambda rc, args=(c, lr, s, j, missing): self.alpha_jobs(*args) if rc == 0 else [],
                                records=[(c, lr, s, t, "test", 1.0)],
                                runs=[("train" if start == 10 else "decode", 1, False),
                                      ("decode", len(missing) - 1, True)]))
        return out

    def cell_results(self, t) -> Path:
        return self.args.out / "cells" / f"{self.short(t)}.md"

    def alpha_jobs(self, c, lr, s, j, missing) -> list:
        """The other alphas of one experiment in one job, one after the other (a run holds the
        experiment's lock)."""
        alphas = [a for a in missing if a != 1.0]
        if not alphas:
            return []
        t = self.tag(c, lr, s)
        label = f"{self.short(t)}.alpha{alphas[0]:g}" if len(alphas) == 1 else f"{self.short(t)}.alphas"
        cmd = " && ".join(run_command(self.args.run, self.cfg_path(c, s), t, stage=11, stop_stage=15, alpha=a,
                                      peft_args=self.peft_args(lr, s), results=self.cell_results(t)) for a in alphas)
        return [self.job(c, (self.phase(c, j, alpha=True), self.rank[c.name], 1, j, alphas[0]),
                         label, cmd, records=[(c, lr, s, t, "test", a) for a in alphas],
                         runs=[("decode", len(alphas), True)])]

    def plan(self) -> list:
        """The jobs ready now (rates to tune, seeds at a chosen rate); the rest wait in ``self.waiting``."""
        initial = []
        for c in self.cells:
            if c.name in self.infeasible:
                continue
            if self.phase(c, 0) > self.last:
                self.out_of_scope.add(c.name)
                continue
            if c.lrs and not c.parent and c.name not in self.choices:
                tj = self.tune_jobs(c)
                self.pending[c.name] = len(tj)
                initial += tj
            ok, lr = self.rate(c)
            if ok:
                initial += self.eval_jobs(c, lr)
            else:
                self.waiting[c.name] = (f"waiting for {c.parent}'s learning-rate choice" if c.parent
                                        else "learning-rate choice on dev incomplete")
        return self.scoped(initial)

    def print_plan(self, initial) -> set:
        """One line per cell (its alphas, its rate, what is left); returns the cells with work."""
        work = {j["cell"] for j in initial} | set(self.waiting)
        last = PHASE_WORDS[PHASES[self.last]]
        for c in self.cells:
            ok, lr = self.rate(c) if c.name not in self.infeasible else (False, None)
            n = sum(j["cell"] == c.name for j in initial)
            later = f"{self.deferred[c.name]} job(s) left after the {last}" if c.name in self.deferred else ""
            state = (self.status[c.name] if c.name in self.infeasible
                     else f"{n} run(s) to run" + (f", {later}" if later else "") if n
                     else f"after the {last} (--last_phase)" if c.name in self.out_of_scope
                     else self.waiting.get(c.name, later or "done"))
            lrs = (f"lr={lr:g}" if ok and lr is not None else f"lr from {c.parent}" if c.parent
                   else f"lr in {','.join(f'{x:g}' for x in c.lrs)}" if c.lrs else "")
            print(f"  {c.name:<44} alphas={','.join(f'{a:g}' for a in c.alphas):<20} {lrs:<26} {state}")
        print(f"budget_sweep.py: {len(self.cells)} cells, {len(work)} to run, {len(self.infeasible)} infeasible")
        if work:
            print(f"budget_sweep.py: {self.estimate(initial)}")
        return work

    def runs_left(self, initial) -> Dict[str, Counter]:
        """The runs known to be left, per phase and kind (``dev``: a tuning run; ``train``: a seed's
        test run that trains; ``decode``: one whose model is trained, or another alpha): the jobs
        ready now, and the test runs of the cells still waiting for a learning rate."""
        left: Dict[str, Counter] = {}

        def add(phase, kind, n=1):
            if phase <= self.last:
                left.setdefault(PHASE_WORDS[PHASES[phase]], Counter())[kind] += n
        for j in initial:
            for kind, n, alpha in j["runs"]:  # a test job's other alphas are the curves'
                add(CURVES if alpha else j["key"][0], kind, n)
        for name in self.waiting:
            c = self.by_name[name]
            for j, s in enumerate(self.seeds):
                # a tuned cell's selection seeds were trained by their dev runs
                add(self.phase(c, j), "decode" if c.lrs and not c.parent and s in self.sel_seeds else "train")
                add(CURVES, "decode", len(c.alphas) - 1)
        return left

    def run_times(self) -> Dict[str, float]:
        """The median job time (s) of each kind of run, from this sweep's records (any identity:
        a timing stays a timing); a test record counts as ``decode`` when its dev run trained it."""
        times: Dict[str, List[float]] = {"dev": [], "train": [], "decode": []}
        devs = self.store.all("dev")
        trained = {rec["tag"] for rec in devs}
        times["dev"] = [rec["job_seconds"] for rec in devs if rec.get("job_seconds")]
        for rec in self.store.all("test"):
            if rec.get("job_seconds") and float(rec.get("alpha", 1.0)) == 1.0:  # other alphas share a job
                times["decode" if rec["tag"] in trained else "train"].append(rec["job_seconds"])
        return {k: statistics.median(v) for k, v in times.items() if v}

    def estimate(self, initial) -> str:
        """One line: the runs known to be left per phase, and their job time at this sweep's recorded
        medians (one job at a time); a rate past a grid's edge would add a dev run."""
        left, med = self.runs_left(initial), self.run_times()
        words = {"dev": "dev", "train": "test (trains)", "decode": "test (trained)"}
        parts, total, known = [], 0.0, True
        for phase in PHASE_WORDS.values():
            n = left.get(phase)
            if not n or not sum(n.values()):
                continue
            secs = sum(n[k] * med[k] for k in n if n[k] and k in med)
            known &= all(k in med for k in n if n[k])
            total += secs
            runs = ", ".join(f"{n[k]} {words[k]}" for k in words if n[k])
            parts.append(f"{phase}: {runs}" + (f" ~{secs / 3600:.1f} h" if secs else ""))
        times = ", ".join(f"{words[k]} {med[k] / 60:.1f} min" for k in words if k in med)
        return ("runs left now: " + "; ".join(parts) +
                (f". About {total / 3600:.1f} h of job time at this sweep's median run times ({times})"
                 + ("" if known else ", leaving out the kinds with no record yet") if med else
                 ". No record yet to time them by") + "; a rate past a grid's edge adds a dev run")

    def print_dry_run(self, initial) -> None:
        for j in sorted(initial, key=lambda j: j["key"]):
            print(j["command"])
        for name in self.waiting:
            print(f"# then {name}: the test sets at the chosen learning rate, seeds {', '.join(map(str, self.seeds))}")

    def prepare(self, initial) -> None:
        """The shared work, once: adaptation statistics, base-model decoding (the test sets, the dev set)."""
        a = self.args
        subprocess.run(f"{a.run} --prepare_only true", shell=True, check=True)
        if self.proto.metric == "dev_wer" and any(j["label"].endswith(".tune") for j in initial):
            subprocess.run(f"{a.run} --prepare_only true --target_test_sets {shlex.quote(a.dev_set)}",
                           shell=True, check=True)

    # ------------------------------------------------------------------ running
    def open_invocation(self) -> None:
        """This invocation's entry in invocations.json, kept up to date after every job: a sweep killed
        part-way still counts the time of the jobs it finished, and names its command."""
        self.runs_file = self.store.root / "invocations.json"
        self.runs = json.loads(self.runs_file.read_text()) if self.runs_file.is_file() else []
        self.entry = {"started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.t0)), "seconds": 0.0,
                      "cells_run": 0, "jobs": 0, "command": self.args.command or " ".join(sys.argv),
                      "code_commit": self.commit}
        self.entry_lock = threading.Lock()

    def record_invocation(self) -> None:
        with self.entry_lock:
            self.entry.update(seconds=round(time.time() - self.t0, 1), cells_run=len(self.ran_cells))
            if self.entry not in self.runs:
                self.runs.append(self.entry)
            write_text_atomic(self.runs_file, json.dumps(self.runs, indent=1) + "\n")

    def execute(self, j) -> int:
        """One job through the backend (``--cmd``), its log under <out>/logs."""
        a = self.args
        (a.out / "cells").mkdir(exist_ok=True)
        self.ran_cells.add(j["cell"])
        log = a.out / "logs" / f"{j['label']}.log"
        t_job = time.time()
        # the backend is this process's own child (no shell between): launch.py stops the job when
        # the sweep dies, even by SIGKILL, as it does for a recipe
        rc = subprocess.call(shlex.split(a.cmd) + [str(log), j["command"]])
        j["seconds"] = time.time() - t_job
        self.entry["jobs"] += 1
        self.record_invocation()
        print(f"budget_sweep.py: cell {j['label']}: {'done' if rc == 0 else f'FAILED (exit {rc})'}", flush=True)
        return rc

    def schedule(self, initial) -> None:
        proto = self.proto
        possible = sum((len(c.lrs) + 2 * proto.extend) * len(self.sel_seeds) + len(self.seeds) * len(c.alphas)
                       for c in self.cells)
        self.sched = Scheduler(self.args.max_parallel if self.args.max_parallel > 0 else possible)
        self.sched.add(initial)
        self.sched.run(self.execute)

    def run(self) -> int:
        import espnet_peft  # which checkout's library this sweep's runs import (a pinned sweep: its worktree's)

        print(f"budget_sweep.py: code {Path(__file__).resolve().parents[1]} (commit {self.commit[:10]}), "
              f"espnet_peft from {Path(espnet_peft.__file__).resolve().parent}", flush=True)
        self.load()
        initial = self.plan()
        work = self.print_plan(initial)
        if self.args.dry_run:
            self.print_dry_run(initial)
            return 0
        if self.args.report_only:
            initial, work = [], set()
        if work:
            self.prepare(initial)
        self.open_invocation()
        self.schedule(initial)
        self.report()
        return 1 if self.failed or self.sched.errors else 0

    # ------------------------------------------------------------------ the report
    def tuning_entry(self, c, lr) -> dict:
        """A cell's learning-rate table: the scores the choice was made on (kept with it), or today's
        while it is open; a variant names the cell it inherits from."""
        proto = self.proto
        if c.parent:
            return {"inherited_from": c.parent, "chosen": lr, "grid": c.lrs, "metric": proto.metric,
                    "set": self.dev_label}
        choice = self.choices.get(c.name)
        grid = choice.get("grid", c.lrs) if choice else self.tried(c)[0]
        sc = choice["scores"] if choice else {lr_label(k): v for k, v in self.dev_scores(c, grid).items()}
        return {"metric": proto.metric, "set": self.dev_label, "grid": grid, "declared": c.lrs,
                "seeds": self.sel_seeds, "scores": sc, "mean": {k: seed_mean(v) for k, v in sc.items()},
                "chosen": lr, "edge": bool(lr is not None and at_grid_edge(lr, grid)),
                "inherited_from": None, "chosen_at": (choice or {}).get("chosen")}

    def reported_runs(self):
        """(tuning, reported): every cell's rate table, and every run the report stands on (each seed
        and alpha at the chosen rate)."""
        tuning, reported = {}, {}
        for c in self.cells:
            if c.name in self.infeasible:
                continue
            ok, lr = self.rate(c)
            if c.lrs:
                tuning[c.name] = self.tuning_entry(c, lr)
            if not ok:
                self.status.setdefault(c.name, self.waiting.get(c.name, "learning-rate choice on dev incomplete"))
                continue
            for a in c.alphas:
                for s in self.seeds:
                    reported[(self.tag(c, lr, s), a)] = {"cell": c.name, "sweep_budget": c.budget,
                                                         "sweep_variant": c.variant, "lr": lr, "seed": s,
                                                         "identity": self.identity(c, s)}
        return tuning, reported

    def header(self, summaries, copies) -> str:
        """The report's opening: the commands, the finished runs and their job time, the wall time."""
        a, proto = self.args, self.proto
        total = sum(r["seconds"] for r in self.runs)
        # the job time of every finished run the report stands on (its current records)
        current_recs = [r for kind in ("dev", "test") for r in self.store.all(kind) if r.get("cell") in self.by_name
                        and not self.store.stale(r, self.identity(self.by_name[r["cell"]], r.get("seed")))]
        job_hours = sum(r.get("job_seconds") or 0 for r in current_recs) / 3600
        tuned_text = ""
        if any(c.lrs for c in self.cells):
            what = f"WER on `{a.dev_set}`" if proto.metric == "dev_wer" else "ESPnet's best validation accuracy"
            if a.dev_args:
                what += f" (dev runs with `{a.dev_args}`)"
            tuned_text = (f"Learning rate: chosen per cell by {what} among its grid (table below), with seed(s) "
                          f"{', '.join(map(str, self.sel_seeds))}; test sets decoded for the chosen rate only. ")
        seeds_text = (f"Seeds: {', '.join(map(str, self.seeds))}. " if proto.seeds_declared else "")
        # the commands that ran the sweep (a report-only invocation cites them, not itself)
        commands = list(dict.fromkeys(r["command"] for r in self.runs if r.get("command")))
        cited = ", ".join(f"`{c}`" for c in commands) if commands else "not recorded yet (the first invocation is running)"
        return (f"# Budget sweep `{a.grid}`\n\nCommand: {cited}\n\n"
                f"Finished runs: {len(current_recs)} ({job_hours:.2f} h of job time, the sum over their records). "
                f"Sweep wall time: {total / 3600:.2f} h over {len(self.runs)} recorded invocation(s); cells: "
                f"{len(self.cells)} ({len({s['cell'] for s in summaries})} with results, {len(self.status)} "
                f"infeasible, failed, waiting or not run yet). {tuned_text}{seeds_text}Plot: [`{copies['png'].name}`]"
                f"({copies['png'].name}); every number: `{copies['json'].name}`.\n")

    def report(self) -> None:
        """The report from the records: <out>/sweep.{md,png,json}, and the committed copies (--results)."""
        a, proto = self.args, self.proto
        tuning, reported = self.reported_runs()
        summaries, rec_notes = summaries_from_records(self.store, reported, self.metric)
        self.notes += rec_notes
        with_results = {x["cell"] for x in summaries}
        for c in self.cells:  # a rate, but no test record yet: a row that says so, not a missing row
            if c.name not in with_results and c.name not in self.status:
                self.status[c.name] = f"not run yet ({PHASE_WORDS[PHASES[self.phase(c, 0)]]})"
        for n in self.notes:
            print(f"budget_sweep.py: {n}", file=sys.stderr)
        wall = time.time() - self.t0
        if self.ran_cells:  # a resumed sweep adds its invocations up (a report-only one is not sweep time)
            self.record_invocation()
            print(f"budget_sweep.py: this invocation: {wall / 3600:.2f} h, {len(self.ran_cells)} cells run", flush=True)
        # the committed copies sit beside --results: <results>.md, <results>.png, <results>.json
        copies = {k: (a.results.with_suffix(f".{k}") if a.results else a.out / f"sweep.{k}") for k in ("png", "json")}
        paths = write_report(summaries, a.out, self.status, header=self.header(summaries, copies), tuning=tuning,
                             bootstrap=proto.bootstrap, metric=self.metric, reference=proto.report_reference,
                             matched_share=proto.matched_share,
                             protocol_info={**proto.as_dict(), "dev_set": a.dev_set, "tag_prefix": a.tag_prefix,
                                            "order": [c.name for c in self.cells]})
        if a.results:
            a.results.write_text(paths["md"].read_text())
            for k, dst in copies.items():
                shutil.copyfile(paths[k], dst)
        print(f"budget_sweep.py: report {paths['md']}, plot {paths['png']}, data {paths['json']}")


def main(argv=None) -> int:
    try:
        return Sweep(get_parser().parse_args(argv)).run()
    except SweepError as e:
        print(f"budget_sweep.py: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
