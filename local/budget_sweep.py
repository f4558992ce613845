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

The driver's rooms (beside it in ``local/``): ``sweep_phases`` (the phases, ``--list_phases``),
``sweep_runs`` (run names and identities, the PEFT configs), ``sweep_records`` (the record store,
the invocation log), ``sweep_recorder`` (a finished run into its record), ``sweep_rates`` (the
learning-rate choice), ``sweep_jobs`` (the job graph and the scheduler), ``sweep_estimate`` (what is
left, how long) and ``sweep_report`` (the report from the records); the metrics and the statistics
are the library's (``espnet_peft.sweep``).
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from espnet_peft.errors import PeftError
from espnet_peft.scoring import RESAMPLE_UNITS
from espnet_peft.sweep import REPORT_METRICS, expand, experiment_tag, load_grid, order_cells, protocol, reachable_rates
from file_id import file_id, recorded_foundation_id
from sweep_estimate import estimate
from sweep_jobs import JobGraph, Scheduler, run_command  # noqa: F401 (run_command: the recipe call)
from sweep_phases import PHASES, words
from sweep_rates import RateChooser
from sweep_recorder import Recorder, best_valid_acc, merged_dir, summary_path  # noqa: F401
from sweep_records import InvocationLog, RecordStore, code_commit, data_id
from sweep_report import SweepReport
from sweep_runs import RunIdentities, accepts_seed, number  # noqa: F401


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


class SweepError(Exception):
    """A sweep that cannot start (bad options, a stale cell, a missing file): its message, exit 2."""


class ListPhases(argparse.Action):
    """``--list_phases``: print the phases, in order, on one line, and exit (the launcher asks)."""

    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(" ".join(PHASES))
        parser.exit()


def get_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list_phases", action=ListPhases, help="print the phases (see --last_phase) and exit")
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
                    help="the target dev set the learning rates are chosen on (a selection.metric that decodes it: dev_wer)")
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
    ap.add_argument("--metric", choices=tuple(REPORT_METRICS), default=None,
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
    """One invocation of the sweep: :meth:`run` is its steps in order: :meth:`load` (grid, cells,
    protocol, data identity, feasibility, stale experiments, configs, earlier rate choices), the plan
    (the first jobs of the job graph), :meth:`prepare` (the shared work), the scheduler running
    :meth:`execute` on every job, and :meth:`report`. The work is the rooms': ``runs``
    (RunIdentities), ``rates`` (RateChooser), ``recorder`` (Recorder), ``graph`` (JobGraph),
    ``reporter`` (SweepReport)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.t0 = time.time()
        self.commit = code_commit(Path(__file__).resolve().parent)
        self.notes, self.ran_cells = [], set()
        self.last = PHASES.index(args.last_phase)  # the last phase this invocation runs
        self.current = None  # the foundation model's id (None without the model)
        self.sched = self.log = None

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
        if any(c.lrs for c in self.cells) and proto.selection.source == "decode" and not a.dev_set:
            raise SweepError(f"the grid chooses learning rates by dev {proto.selection.label}: give --dev_set "
                             f"(the target dev set)")
        (a.out / "configs").mkdir(parents=True, exist_ok=True)
        (a.out / "logs").mkdir(parents=True, exist_ok=True)
        self.store = RecordStore(a.records or a.out / "records")
        did = self.data_identity()
        self.status = feasibility(self.cells, a.model_config, a.out / "configs") if a.model_config.is_file() else {}
        self.infeasible = set(self.status)
        by_name = {c.name: c for c in self.cells}
        if proto.report_reference is not None and proto.report_reference not in by_name:
            raise SweepError(f"report.reference {proto.report_reference!r} is not a cell of {a.grid} "
                             f"(cells: {', '.join(by_name)})")
        for c in self.cells:  # a variant of an infeasible plain cell chooses its own rate
            if c.parent in self.infeasible:
                c.parent = None
        dev_label = a.dev_set if proto.selection.source == "decode" else "validation"
        self.check_foundation()
        self.runs = RunIdentities(a, proto, proto.seeds, did, self.current)
        try:
            self.runs.write_configs(self.cells, self.infeasible)
        except PeftError as e:
            raise SweepError(str(e)) from None
        self.rates = RateChooser(proto, self.store, self.runs, by_name, self.infeasible, dev_label, self.current,
                                 write=not a.dry_run)
        self.rates.load()
        self.recorder = Recorder(a, proto, self.store, self.runs, dev_label, self.commit, self.notes)
        self.graph = JobGraph(a, proto, self.cells, self.runs, self.rates, self.recorder, self.store, self.last,
                              self.infeasible, self.status)
        self.reporter = SweepReport(a, proto, self.cells, self.store, self.runs, self.rates, self.metric,
                                    self.status, self.graph.waiting, self.graph.phase)

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
            for t in dict.fromkeys(experiment_tag(a.tag_prefix, c, lr, s, self.proto)
                                   for lr in rates for s in self.proto.seeds):
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

    # ------------------------------------------------------------------ the plan
    def print_plan(self, initial) -> set:
        """One line per cell (its alphas, its rate, what is left); returns the cells with work."""
        g = self.graph
        work = {j.cell for j in initial} | set(g.waiting)
        last = words(self.last)
        for c in self.cells:
            ok, lr = self.rates.rate(c) if c.name not in self.infeasible else (False, None)
            n = sum(j.cell == c.name for j in initial)
            later = f"{g.deferred[c.name]} job(s) left after the {last}" if c.name in g.deferred else ""
            state = (self.status[c.name] if c.name in self.infeasible
                     else f"{n} run(s) to run" + (f", {later}" if later else "") if n
                     else f"after the {last} (--last_phase)" if c.name in g.out_of_scope
                     else g.waiting.get(c.name, later or "done"))
            lrs = (f"lr={lr:g}" if ok and lr is not None else f"lr from {c.parent}" if c.parent
                   else f"lr in {','.join(f'{x:g}' for x in c.lrs)}" if c.lrs else "")
            print(f"  {c.name:<44} alphas={','.join(f'{a:g}' for a in c.alphas):<20} {lrs:<26} {state}")
        print(f"budget_sweep.py: {len(self.cells)} cells, {len(work)} to run, {len(self.infeasible)} infeasible")
        if work:
            print(f"budget_sweep.py: {estimate(g, initial, self.store)}")
        return work

    def print_dry_run(self, initial) -> None:
        for j in sorted(initial, key=lambda j: j.key):
            print(j.command)
        for name in self.graph.waiting:
            print(f"# then {name}: the test sets at the chosen learning rate, seeds "
                  f"{', '.join(map(str, self.proto.seeds))}")

    def prepare(self, initial) -> None:
        """The shared work, once: adaptation statistics, base-model decoding (the test sets, the dev set)."""
        a = self.args
        subprocess.run(f"{a.run} --prepare_only true", shell=True, check=True)
        if self.proto.selection.source == "decode" and any(j.label.endswith(".tune") for j in initial):
            subprocess.run(f"{a.run} --prepare_only true --target_test_sets {shlex.quote(a.dev_set)}",
                           shell=True, check=True)

    # ------------------------------------------------------------------ running
    def execute(self, j) -> int:
        """One job through the backend (``--cmd``), its log under <out>/logs."""
        a = self.args
        (a.out / "cells").mkdir(exist_ok=True)
        self.ran_cells.add(j.cell)
        log = a.out / "logs" / f"{j.label}.log"
        t_job = time.time()
        # the backend is this process's own child (no shell between): launch.py stops the job when
        # the sweep dies, even by SIGKILL, as it does for a recipe
        rc = subprocess.call(shlex.split(a.cmd) + [str(log), j.command])
        j.seconds = time.time() - t_job
        self.log.record(len(self.ran_cells), job_done=True)
        print(f"budget_sweep.py: cell {j.label}: {'done' if rc == 0 else f'FAILED (exit {rc})'}", flush=True)
        return rc

    def schedule(self, initial) -> None:
        proto = self.proto
        possible = sum((len(c.lrs) + 2 * proto.extend) * proto.select_seeds + len(proto.seeds) * len(c.alphas)
                       for c in self.cells)
        self.sched = Scheduler(self.args.max_parallel if self.args.max_parallel > 0 else possible)
        self.sched.add(initial)
        self.sched.run(self.execute)

    def run(self) -> int:
        import espnet_peft  # which checkout's library this sweep's runs import (a pinned sweep: its worktree's)

        print(f"budget_sweep.py: code {Path(__file__).resolve().parents[1]} (commit {self.commit[:10]}), "
              f"espnet_peft from {Path(espnet_peft.__file__).resolve().parent}", flush=True)
        self.load()
        initial = self.graph.plan()
        work = self.print_plan(initial)
        if self.args.dry_run:
            self.print_dry_run(initial)
            return 0
        if self.args.report_only:
            initial, work = [], set()
        if work:
            self.prepare(initial)
        self.log = InvocationLog(self.store.root, self.t0, self.args.command or " ".join(sys.argv), self.commit)
        self.schedule(initial)
        self.report()
        return 1 if self.graph.failed or self.sched.errors else 0

    def report(self) -> None:
        """The report from the records: <out>/sweep.{md,png,json}, and the committed copies (--results)."""
        tuning, summaries = self.reporter.summaries(self.infeasible, self.notes)
        for n in self.notes:
            print(f"budget_sweep.py: {n}", file=sys.stderr)
        wall = time.time() - self.t0
        if self.ran_cells:  # a resumed sweep adds its invocations up (a report-only one is not sweep time)
            self.log.record(len(self.ran_cells))
            print(f"budget_sweep.py: this invocation: {wall / 3600:.2f} h, {len(self.ran_cells)} cells run", flush=True)
        paths = self.reporter.write(tuning, summaries, self.log.runs)
        print(f"budget_sweep.py: report {paths['md']}, plot {paths['png']}, data {paths['json']}")


def main(argv=None) -> int:
    try:
        return Sweep(get_parser().parse_args(argv)).run()
    except SweepError as e:
        print(f"budget_sweep.py: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
