"""The job graph of a sweep: every run is a job of the ``--cmd`` backend; a cell's dev runs (its rates)
come first, the choice they allow makes its seeds' test runs ready (and its variants'), a test run
makes its other interpolation alphas ready. Jobs run in priority order (``JobKey``) through the
``Scheduler``; those past ``--last_phase`` wait for a later invocation."""
from __future__ import annotations

import heapq
import shlex
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, List, NamedTuple, Optional, Set

from espnet_peft.sweep import priority_group
from sweep_phases import phase_of
from sweep_recorder import merged_dir
from sweep_runs import Run


class JobKey(NamedTuple):
    """A job's place in the run order (smallest first): its phase, its cell's place in the grid's
    order, the step (0: a dev run, 1: a test run), then for a dev run the rate's and the seed's
    index, for a test run the seed's index and its (first) alpha."""

    phase: int
    cell: int
    step: int
    index: int
    sub: float


class RunCount(NamedTuple):
    """Runs a job stands for, for the estimate: ``kind`` dev | train (a test run that trains) |
    decode (a test run of a trained model); ``curve``: at alphas other than 1."""

    kind: str
    count: int = 1
    curve: bool = False


@dataclass
class Job:
    key: JobKey
    label: str
    cell: str
    command: str
    then: Callable[[int], List["Job"]] = lambda rc: []
    runs: List[RunCount] = field(default_factory=lambda: [RunCount("dev")])
    seconds: Optional[float] = None


def run_command(run: str, cfg, tag: str, *, stage: int, stop_stage: int, peft_args: str = "",
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
            heapq.heappush(self.ready, (j.key, self.n, j))
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
                    print(f"budget_sweep.py: {job.label}: {e}", file=sys.stderr)
                    rc = 1
                with self.cv:
                    try:
                        self.add(job.then(rc))
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


class JobGraph:
    """The jobs of one sweep invocation: ``runs`` (RunIdentities) names them, ``rates`` (RateChooser)
    says which rates to tune and which is chosen, ``recorder`` writes what each finished, ``last``:
    the last phase in scope. ``status`` and ``failed`` collect what went wrong, per job label."""

    def __init__(self, args, proto, cells, runs, rates, recorder, store, last: int, infeasible: Set[str],
                 status: Dict[str, str]):
        self.args, self.proto, self.cells, self.runs, self.rates = args, proto, cells, runs, rates
        self.recorder, self.store, self.last, self.infeasible, self.status = recorder, store, last, infeasible, status
        self.rank = {c.name: i for i, c in enumerate(cells)}
        self.children = {c.name: [x for x in cells if x.parent == c.name and x.name not in infeasible] for c in cells}
        self.seeds, self.sel_seeds = proto.seeds, rates.sel_seeds
        self.failed: List[str] = []
        self.pending: Dict[str, int] = {}    # per cell, its dev runs still running
        self.waiting: Dict[str, str] = {}    # cells waiting for a learning rate, and why
        self.out_of_scope: Set[str] = set()  # cells this invocation leaves for a later one (--last_phase)
        self.deferred: Dict[str, int] = {}   # per cell, the jobs ready now that --last_phase leaves for later
        self.attempted: Set[str] = set()     # dev runs started here: one that failed is not retried until the next

    def phase(self, c, j: int, curve: bool = False) -> int:
        """The phase (index in sweep_phases.PHASES) of a cell's run at its ``j``-th seed."""
        return phase_of(not priority_group(c, self.proto), j, self.proto.priority_seeds, curve)

    def job(self, c, key: JobKey, label: str, cmd: str, then=None, run_tag=None, records=(), runs=None) -> Job:
        """A job; ``records``: the Runs it finishes, recorded after it; ``runs``: the runs it stands
        for (default: one dev run)."""
        job = Job(key, label, c.name, cmd, runs=runs or [RunCount("dev")])

        def done(rc):
            for r in records:
                if rc == 0 or (r.kind == "dev" and self.recorder.diverged(r.tag)):
                    self.recorder.write(r, seconds=job.seconds)
            if rc != 0 and run_tag and self.recorder.diverged(run_tag):
                self.status[label] = "diverged (non-finite loss): scored as the worst rate"
            elif rc != 0:
                self.failed.append(label)
                self.status[label] = f"failed (see {self.args.out / 'logs' / (label + '.log')})"
            return self.scoped(then(rc)) if then else []
        job.then = done
        return job

    def scoped(self, jobs) -> List[Job]:
        """The jobs in this invocation's phases; the others are counted per cell in ``self.deferred``."""
        out = []
        for j in jobs:
            if j.key.phase <= self.last:
                out.append(j)
            else:
                self.deferred[j.cell] = self.deferred.get(j.cell, 0) + 1
        return out

    def tune_jobs(self, c) -> List[Job]:
        """The dev runs of the rates tried so far that have no score yet (each once per invocation)."""
        a, runs, out = self.args, self.runs, []
        dev = self.proto.selection.source == "decode"
        for i, lr in enumerate(self.rates.tried(c)[0]):
            for j, s in enumerate(self.sel_seeds):
                t = runs.tag(c, lr, s)
                if self.rates.scored(c, lr, s) or t in self.attempted:
                    continue
                self.attempted.add(t)
                bound = self.proto.forgetting  # forgetting-aware: stage 14 decodes the source dev set too
                cmd = run_command(a.run, runs.cfg_path(c, s), t, stage=10,
                                  stop_stage=(14 if bound else 13) if dev else 10,
                                  peft_args=runs.peft_args(lr, s), test_sets=a.dev_set if dev else None)
                if dev and bound:
                    cmd += f" --source_test_sets {shlex.quote(bound['set'])}"
                if a.dev_args:
                    cmd += f" {a.dev_args}"
                out.append(self.job(c, JobKey(self.phase(c, j), self.rank[c.name], 0, i, j),
                                    f"{runs.short(t)}.tune", cmd, self.after_tune(c), run_tag=t,
                                    records=[Run(c, lr, s, t, "dev")]))
        return out

    def after_tune(self, c):
        """What a cell's finished dev run makes ready: nothing while others run, a rate past the grid's
        edge, or the seeds' test runs at the chosen rate (and its variants')."""
        def then(rc):
            self.pending[c.name] -= 1
            if self.pending[c.name] > 0:
                return []
            ok, lr = self.rates.rate(c)
            if not ok:  # the best rate is at the grid's edge: one more rate past it (selection.extend)
                more = self.tune_jobs(c)
                self.pending[c.name] = len(more)
                if more:
                    print(f"budget_sweep.py: {c.name}: best rate at the edge of {', '.join(f'{x:g}' for x in c.lrs)}"
                          f" on {self.rates.dev_label}: trying {', '.join(j.label for j in more)}", flush=True)
                return more
            print(f"budget_sweep.py: {c.name}: learning rate {lr:g} chosen on {self.rates.dev_label}", flush=True)
            return self.eval_jobs(c, lr) + [x for ch in self.children[c.name] for x in self.eval_jobs(ch, lr)]
        return then

    def eval_jobs(self, c, lr) -> List[Job]:
        """Every seed's test run at the chosen rate that has no current record (its alphas after it)."""
        out, runs = [], self.runs
        for j, s in enumerate(self.seeds):
            t = runs.tag(c, lr, s)
            missing = [a for a in c.alphas if self.store.current(t, "test", runs.identity(c, s), a) is None]
            if not missing:
                continue
            if 1.0 not in missing:
                out += self.alpha_jobs(c, lr, s, j, missing)
                continue
            merged = (merged_dir(self.args.expdir, t, 1.0) / "model.pth").is_file()
            start = 10 if not runs.trained(t) else 12 if merged else 11
            cmd = run_command(self.args.run, runs.cfg_path(c, s), t, stage=start, stop_stage=15,
                              peft_args=runs.peft_args(lr, s), results=runs.cell_results(t))
            out.append(self.job(c, JobKey(self.phase(c, j), self.rank[c.name], 1, j, 1.0), runs.short(t), cmd,
                                lambda rc, args=(c, lr, s, j, missing): self.alpha_jobs(*args) if rc == 0 else [],
                                records=[Run(c, lr, s, t, "test", 1.0)],
                                runs=[RunCount("train" if start == 10 else "decode"),
                                      RunCount("decode", len(missing) - 1, True)]))
        return out

    def alpha_jobs(self, c, lr, s, j, missing) -> List[Job]:
        """The other alphas of one experiment in one job, one after the other (a run holds the
        experiment's lock)."""
        alphas = [a for a in missing if a != 1.0]
        if not alphas:
            return []
        runs, t = self.runs, self.runs.tag(c, lr, s)
        label = f"{runs.short(t)}.alpha{alphas[0]:g}" if len(alphas) == 1 else f"{runs.short(t)}.alphas"
        cmd = " && ".join(run_command(self.args.run, runs.cfg_path(c, s), t, stage=11, stop_stage=15, alpha=a,
                                      peft_args=runs.peft_args(lr, s), results=runs.cell_results(t)) for a in alphas)
        return [self.job(c, JobKey(self.phase(c, j, curve=True), self.rank[c.name], 1, j, alphas[0]),
                         label, cmd, records=[Run(c, lr, s, t, "test", a) for a in alphas],
                         runs=[RunCount("decode", len(alphas), True)])]

    def plan(self) -> List[Job]:
        """The jobs ready now (rates to tune, seeds at a chosen rate); the rest wait in ``self.waiting``."""
        initial = []
        for c in self.cells:
            if c.name in self.infeasible:
                continue
            if self.phase(c, 0) > self.last:
                self.out_of_scope.add(c.name)
                continue
            if c.lrs and not c.parent and c.name not in self.rates.choices:
                tj = self.tune_jobs(c)
                self.pending[c.name] = len(tj)
                initial += tj
            ok, lr = self.rates.rate(c)
            if ok:
                initial += self.eval_jobs(c, lr)
            else:
                self.waiting[c.name] = (f"waiting for {c.parent}'s learning-rate choice" if c.parent
                                        else "learning-rate choice on dev incomplete")
        return self.scoped(initial)
