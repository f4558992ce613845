"""Progress lines for the recipe's long steps (synthesis, decoding): items done of the total and the
time left, printed at the first item, then at most every ``every`` seconds, and at the last, so that a
step never sits silent for long on the console. The time left is estimated from the rate after the
first item (whose time holds the start-up: loading a model, importing ESPnet) once ``settle`` more
items are done; before that the line says it is estimating.

    progress = Progress(len(jobs), "synth_corpus", "utterances")
    for batch in ...:
        progress.step(len(batch))
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


class Progress:
    def __init__(self, total: int, label: str, unit: str, every: float = 20.0,
                 clock: Callable[[], float] = time.time, out: TextIO = None, settle: int = 3):
        self.total, self.label, self.unit, self.every, self.clock = total, label, unit, every, clock
        self.out, self.settle = out, settle
        self.done, self.printed = 0, False
        self.t0 = self.last = clock()
        self.first = None  # (time, items done) at the first step: the rate is measured from there

    def line(self, what: str = "") -> str:
        detail = f" ({what})" if what else ""
        head = f"{self.label}: progress {self.done}/{self.total} {self.unit}{detail}, "
        if self.done >= self.total:
            return head + "about 0.0 min left"
        t1, d1 = self.first
        if self.done - d1 < self.settle:
            return head + "estimating the time left"
        left = (self.clock() - t1) / (self.done - d1) * (self.total - self.done)
        return head + f"about {left / 60:.1f} min left"

    def step(self, n: int = 1, what: str = "") -> bool:
        """Count ``n`` more items done; returns whether a line was printed."""
        self.done += n
        now = self.clock()
        if self.first is None:
            self.first = (now, self.done)
        if self.printed and now - self.last < self.every and self.done < self.total:
            return False
        self.last, self.printed = now, True
        print(self.line(what), file=self.out or sys.stdout, flush=True)
        return True
