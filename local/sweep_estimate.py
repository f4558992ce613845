"""What is left of a sweep and how long it will take: the runs left per phase and kind, timed by
this sweep's recorded median job times."""
from __future__ import annotations

import statistics
from collections import Counter
from typing import Dict, List

from sweep_phases import CURVES, PHASES, WORDS, words

KINDS = {"dev": "dev", "train": "test (trains)", "decode": "test (trained)"}


def runs_left(graph, initial) -> Dict[str, Counter]:
    """The runs known to be left, per phase and kind (``dev``: a tuning run; ``train``: a seed's
    test run that trains; ``decode``: one whose model is trained, or another alpha): the jobs
    ready now (``initial``), and the test runs of the cells still waiting for a learning rate
    (``graph``: the JobGraph)."""
    left: Dict[str, Counter] = {}

    def add(phase, kind, n=1):
        if phase <= graph.last:
            left.setdefault(words(phase), Counter())[kind] += n
    for j in initial:
        for r in j.runs:  # a test job's other alphas are the curves'
            add(CURVES if r.curve else j.key.phase, r.kind, r.count)
    for name in graph.waiting:
        c = next(x for x in graph.cells if x.name == name)
        for j, s in enumerate(graph.seeds):
            # a tuned cell's selection seeds were trained by their dev runs
            add(graph.phase(c, j), "decode" if c.lrs and not c.parent and s in graph.sel_seeds else "train")
            add(CURVES, "decode", len(c.alphas) - 1)
    return left


def run_times(store) -> Dict[str, float]:
    """The median job time (s) of each kind of run, from a sweep's records (any identity: a timing
    stays a timing); a test record counts as ``decode`` when its dev run trained it."""
    times: Dict[str, List[float]] = {"dev": [], "train": [], "decode": []}
    devs = store.all("dev")
    trained = {rec["tag"] for rec in devs}
    times["dev"] = [rec["job_seconds"] for rec in devs if rec.get("job_seconds")]
    for rec in store.all("test"):
        if rec.get("job_seconds") and float(rec.get("alpha", 1.0)) == 1.0:  # other alphas share a job
            times["decode" if rec["tag"] in trained else "train"].append(rec["job_seconds"])
    return {k: statistics.median(v) for k, v in times.items() if v}


def estimate(graph, initial, store) -> str:
    """One line: the runs known to be left per phase, and their job time at this sweep's recorded
    medians (one job at a time); a rate past a grid's edge would add a dev run."""
    left, med = runs_left(graph, initial), run_times(store)
    parts, total, known = [], 0.0, True
    for phase in (WORDS[p] for p in PHASES):
        n = left.get(phase)
        if not n or not sum(n.values()):
            continue
        secs = sum(n[k] * med[k] for k in n if n[k] and k in med)
        known &= all(k in med for k in n if n[k])
        total += secs
        runs = ", ".join(f"{n[k]} {KINDS[k]}" for k in KINDS if n[k])
        parts.append(f"{phase}: {runs}" + (f" ~{secs / 3600:.1f} h" if secs else ""))
    times = ", ".join(f"{KINDS[k]} {med[k] / 60:.1f} min" for k in KINDS if k in med)
    return ("runs left now: " + "; ".join(parts) +
            (f". About {total / 3600:.1f} h of job time at this sweep's median run times ({times})"
             + ("" if known else ", leaving out the kinds with no record yet") if med else
             ". No record yet to time them by") + "; a rate past a grid's edge adds a dev run")
