"""Progress lines for the recipe's long steps (synthesis, decoding): items done of the total and the
time left at the rate so far, printed at the first item, then at most every ``every`` seconds, and at
the last, so that a step never sits silent for long on the console.

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
                 clock: Callable[[], float] = time.time, out: TextIO = None):
        self.total, self.label, self.unit, self.every, self.clock = total, label, unit, every, clock
        self.out = out
        self.done, self.printed = 0, False
        self.t0 = self.last = clock()

    def line(self, what: str = "") -> str:
        left = (self.clock() - self.t0) / max(self.done, 1) * max(self.total - self.done, 0)
        detail = f" ({what})" if what else ""
        return (f"{self.label}: progress {self.done}/{self.total} {self.unit}{detail}, "
                f"about {left / 60:.1f} min left")

    def step(self, n: int = 1, what: str = "") -> bool:
        """Count ``n`` more items done; returns whether a line was printed."""
        self.done += n
        now = self.clock()
        if self.printed and now - self.last < self.every and self.done < self.total:
            return False
        self.last, self.printed = now, True
        print(self.line(what), file=self.out or sys.stdout, flush=True)
        return True
