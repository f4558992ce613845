"""A sweep's report from its records alone: which runs it stands on (every seed and alpha of a cell at
its chosen rate), its opening (commands, finished runs, job and wall time), and the report of
``espnet_peft.sweep.write_report`` with its committed copies (``--results``)."""
from __future__ import annotations

import shutil
from typing import Dict, List, Tuple

from espnet_peft.sweep import write_report
from sweep_phases import words
from sweep_records import summaries_from_records


class SweepReport:
    """The report of one sweep: ``rates`` (RateChooser) gives each cell's rate and table, ``runs``
    (RunIdentities) the runs' names and identities, ``status`` the cells without results and why,
    ``phase(cell, seed index)`` when a cell runs (its phase's index)."""

    def __init__(self, args, proto, cells, store, runs, rates, metric, status: Dict[str, str], waiting, phase):
        self.args, self.proto, self.cells, self.store, self.runs, self.rates = args, proto, cells, store, runs, rates
        self.metric, self.status, self.waiting, self.phase = metric, status, waiting, phase
        self.by_name = {c.name: c for c in cells}

    def reported_runs(self, infeasible) -> Tuple[dict, dict]:
        """(tuning, reported): every cell's rate table, and every run the report stands on (each seed
        and alpha at the chosen rate)."""
        tuning, reported = {}, {}
        for c in self.cells:
            if c.name in infeasible:
                continue
            ok, lr = self.rates.rate(c)
            if c.lrs:
                tuning[c.name] = self.rates.table(c, lr)
            if not ok:
                self.status.setdefault(c.name, self.waiting.get(c.name, "learning-rate choice on dev incomplete"))
                continue
            for a in c.alphas:
                for s in self.proto.seeds:
                    reported[(self.runs.tag(c, lr, s), a)] = {"cell": c.name, "sweep_budget": c.budget,
                                                              "sweep_variant": c.variant, "lr": lr, "seed": s,
                                                              "identity": self.runs.identity(c, s)}
        return tuning, reported

    def header(self, summaries, copies, invocations: List[dict]) -> str:
        """The report's opening: the commands, the finished runs and their job time, the wall time."""
        a, proto = self.args, self.proto
        total = sum(r["seconds"] for r in invocations)
        # the job time of every finished run the report stands on (its current records)
        current_recs = [r for kind in ("dev", "test") for r in self.store.all(kind) if r.get("cell") in self.by_name
                        and not self.store.stale(r, self.runs.identity(self.by_name[r["cell"]], r.get("seed")))]
        job_hours = sum(r.get("job_seconds") or 0 for r in current_recs) / 3600
        tuned_text = ""
        if any(c.lrs for c in self.cells):
            sel = proto.selection
            what = f"{sel.label} on `{a.dev_set}`" if sel.source == "decode" else "ESPnet's best validation accuracy"
            if a.dev_args:
                what += f" (dev runs with `{a.dev_args}`)"
            tuned_text = (f"Learning rate: chosen per cell by {what} among its grid (table below), with seed(s) "
                          f"{', '.join(map(str, self.rates.sel_seeds))}; test sets decoded for the chosen rate only. ")
        seeds_text = (f"Seeds: {', '.join(map(str, proto.seeds))}. " if proto.seeds_declared else "")
        # the commands that ran the sweep (a report-only invocation cites them, not itself)
        commands = list(dict.fromkeys(r["command"] for r in invocations if r.get("command")))
        cited = ", ".join(f"`{c}`" for c in commands) if commands else "not recorded yet (the first invocation is running)"
        return (f"# Budget sweep `{a.grid}`\n\nCommand: {cited}\n\n"
                f"Finished runs: {len(current_recs)} ({job_hours:.2f} h of job time, the sum over their records). "
                f"Sweep wall time: {total / 3600:.2f} h over {len(invocations)} recorded invocation(s); cells: "
                f"{len(self.cells)} ({len({s['cell'] for s in summaries})} with results, {len(self.status)} "
                f"infeasible, failed, waiting or not run yet). {tuned_text}{seeds_text}Plot: [`{copies['png'].name}`]"
                f"({copies['png'].name}); every number: `{copies['json'].name}`.\n")

    def summaries(self, infeasible, notes: List[str]):
        """(tuning, summaries): the rate tables and the summaries of every reported run with a current
        record; a cell with a rate but no record yet gets a status that says so."""
        tuning, reported = self.reported_runs(infeasible)
        summaries, rec_notes = summaries_from_records(self.store, reported, self.metric)
        notes += rec_notes
        with_results = {x["cell"] for x in summaries}
        for c in self.cells:  # a rate, but no test record yet: a row that says so, not a missing row
            if c.name not in with_results and c.name not in self.status:
                self.status[c.name] = f"not run yet ({words(self.phase(c, 0))})"
        return tuning, summaries

    def write(self, tuning, summaries, invocations: List[dict]) -> Dict[str, object]:
        """<out>/sweep.{md,png,json}, and the committed copies beside --results (<results>.md, .png, .json)."""
        a, proto = self.args, self.proto
        copies = {k: (a.results.with_suffix(f".{k}") if a.results else a.out / f"sweep.{k}") for k in ("png", "json")}
        paths = write_report(summaries, a.out, self.status, header=self.header(summaries, copies, invocations),
                             tuning=tuning, bootstrap=proto.bootstrap, metric=self.metric,
                             reference=proto.report_reference, matched_share=proto.matched_share,
                             protocol_info={**proto.as_dict(), "dev_set": a.dev_set, "tag_prefix": a.tag_prefix,
                                            "order": [c.name for c in self.cells]})
        if a.results:
            a.results.write_text(paths["md"].read_text())
            for k, dst in copies.items():
                shutil.copyfile(paths[k], dst)
        return paths
