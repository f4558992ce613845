"""The learning-rate choice of a sweep's cells: each rate's dev score from its records, the rates
tried (past a grid's edge with ``selection.extend``), the choice made once every rate is scored
(``lr_choices.json``, final from then on) and the rate a cell's reported runs train with. With
``selection.forgetting`` the choice is forgetting-aware: the best dev score among the rates whose
forgetting on the source dev set stays within the bound (a rate past it counts as the worst score,
so the grid may extend toward gentler rates); when none does, the rate that forgets least."""
from __future__ import annotations

import json
import math
import time
from typing import Dict, List, Mapping, Optional, Tuple

from espnet_peft.sweep import at_grid_edge, lr_label, seed_mean, tuning_grid
from file_id import write_text_atomic


class RateChooser:
    """The rates of one sweep's cells: ``runs`` names the runs and their identities (RunIdentities),
    ``store`` holds their records, ``dev_label`` names what the score was measured on."""

    def __init__(self, proto, store, runs, by_name: Mapping, infeasible, dev_label: str,
                 foundation_id: Optional[str], write: bool = True):
        self.proto, self.metric, self.store, self.runs = proto, proto.selection, store, runs
        self.by_name, self.infeasible, self.dev_label = by_name, infeasible, dev_label
        self.foundation_id, self.write = foundation_id, write
        self.sel_seeds = proto.seeds[:proto.select_seeds]
        self.file = store.root / "lr_choices.json"
        self.choices: Dict[str, dict] = {}

    def load(self) -> None:
        """The choices made so far (lr_choices.json), minus those another protocol, foundation or
        identity made."""
        proto = self.proto
        self.choices = json.loads(self.file.read_text()) if self.file.is_file() else {}
        for name, rec in list(self.choices.items()):
            c = self.by_name.get(name)
            if (c is None or rec.get("declared", rec.get("grid")) != c.lrs or rec.get("extend", 0) != proto.extend
                    or rec.get("metric") != proto.metric or rec.get("set") != self.dev_label
                    or rec.get("forgetting") != proto.forgetting
                    or rec.get("seeds") != self.sel_seeds
                    or (self.foundation_id is not None and rec.get("foundation_id") != self.foundation_id)
                    or rec.get("identity", self.first_identity(c)) != self.first_identity(c)):
                del self.choices[name]

    def first_identity(self, c) -> dict:
        return self.runs.identity(c, self.sel_seeds[0])

    def dev_score(self, c, lr, s) -> Optional[float]:
        """The dev score of a rate's run: its current record (None: not run, or its record is stale); a
        run that diverged scores the worst."""
        rec = self.store.current(self.runs.tag(c, lr, s), "dev", self.runs.identity(c, s))
        if rec is None:
            return None
        if rec.get("diverged"):  # stopped on non-finite values: the worst score
            return self.metric.worst
        return rec["dev_score"]

    def dev_scores(self, c, rates) -> Dict[float, List[Optional[float]]]:
        return {lr: [self.dev_score(c, lr, s) for s in self.sel_seeds] for lr in rates}

    def dev_forgetting(self, c, lr, s) -> Optional[float]:
        """A rate's run's forgetting on the source dev set (selection.forgetting): None while not
        measured; a run that diverged forgets without bound."""
        rec = self.store.current(self.runs.tag(c, lr, s), "dev", self.runs.identity(c, s))
        if rec is None:
            return None
        return math.inf if rec.get("diverged") else rec.get("dev_forgetting")

    def forgettings(self, c, rates) -> Dict[float, List[Optional[float]]]:
        return {lr: [self.dev_forgetting(c, lr, s) for s in self.sel_seeds] for lr in rates}

    def scored(self, c, lr, s) -> bool:
        """Whether a rate's dev run has all the choice reads (its score; its forgetting when bounded)."""
        return self.dev_score(c, lr, s) is not None and (
            self.proto.forgetting is None or self.dev_forgetting(c, lr, s) is not None)

    def choice_score(self, c, lr) -> Optional[float]:
        """What the choice compares for a rate: its seed-mean dev score; with selection.forgetting, the
        worst score when its forgetting passes the bound (None while either is missing)."""
        dev = seed_mean(self.dev_scores(c, [lr])[lr])
        if self.proto.forgetting is None or dev is None:
            return dev
        forgot = seed_mean(self.forgettings(c, [lr])[lr])
        if forgot is None:
            return None
        return dev if forgot <= self.proto.forgetting["bound"] else self.metric.worst

    def tried(self, c) -> Tuple[List[float], Optional[float]]:
        """(rates, chosen): the rates tuned so far, past the grid's edge with selection.extend."""
        rates, lr = tuning_grid(c.lrs, lambda x: self.choice_score(c, x), self.metric, self.proto.extend)
        bound = self.proto.forgetting
        if lr is not None and bound is not None:
            forgot = {x: seed_mean(v) for x, v in self.forgettings(c, rates).items()}
            if all(f > bound["bound"] for f in forgot.values()):  # none within the bound: the gentlest
                lr = min(rates, key=lambda x: forgot[x])
        return rates, lr

    def decide(self, c) -> Optional[float]:
        """The cell's chosen rate, made once every rate has its dev score and final from then on;
        None while a score is missing or the best is at the grid's edge."""
        if c.name in self.choices:
            return self.choices[c.name]["lr"]
        rates, lr = self.tried(c)
        if lr is not None:
            proto, sc = self.proto, self.dev_scores(c, rates)
            self.choices[c.name] = {"lr": lr, "grid": rates, "declared": c.lrs, "extend": proto.extend,
                                    "metric": proto.metric, "set": self.dev_label, "seeds": self.sel_seeds,
                                    "scores": {lr_label(k): v for k, v in sc.items()},
                                    "foundation_id": self.foundation_id, "identity": self.first_identity(c),
                                    "chosen": time.strftime("%Y-%m-%d %H:%M:%S")}
            if proto.forgetting:
                self.choices[c.name].update(forgetting=proto.forgetting,
                                            forgetting_scores=self.forgetting_labels(c, rates))
            if self.write:  # atomically: a reader never sees half a file
                write_text_atomic(self.file, json.dumps(self.choices, indent=1) + "\n")
        return lr

    def forgetting_labels(self, c, rates) -> Optional[Dict[str, List[Optional[float]]]]:
        if self.proto.forgetting is None:
            return None
        return {lr_label(k): v for k, v in self.forgettings(c, rates).items()}

    def rate(self, c) -> Tuple[bool, Optional[float]]:
        """(ready, lr): the rate a cell's reported runs train with; not ready while it is being chosen."""
        if not c.lrs:
            return True, None
        src = self.by_name[c.parent] if c.parent else c
        lr = None if src.name in self.infeasible else self.decide(src)
        return lr is not None, lr

    def table(self, c, lr) -> dict:
        """A cell's learning-rate table for the report: the scores the choice was made on (kept with
        it), or today's while it is open; a variant names the cell it inherits from."""
        proto = self.proto
        if c.parent:
            return {"inherited_from": c.parent, "chosen": lr, "grid": c.lrs, "metric": proto.metric,
                    "set": self.dev_label}
        choice = self.choices.get(c.name)
        grid = choice.get("grid", c.lrs) if choice else self.tried(c)[0]
        sc = choice["scores"] if choice else {lr_label(k): v for k, v in self.dev_scores(c, grid).items()}
        fs = (choice.get("forgetting_scores") if choice else self.forgetting_labels(c, grid)) or {}
        bounded = {"forgetting": proto.forgetting, "forgetting_mean": {k: seed_mean(v) for k, v in fs.items()}} \
            if proto.forgetting else {}
        return {"metric": proto.metric, "set": self.dev_label, "grid": grid, "declared": c.lrs, **bounded,
                "seeds": self.sel_seeds, "scores": sc, "mean": {k: seed_mean(v) for k, v in sc.items()},
                "chosen": lr, "edge": bool(lr is not None and at_grid_edge(lr, grid)),
                "inherited_from": None, "chosen_at": (choice or {}).get("chosen")}
