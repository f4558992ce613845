"""local/progress.py: the long steps' progress lines (first item, then at most every N seconds, last)."""
from __future__ import annotations

import io

import progress  # local/ is on the path (conftest)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_lines_at_first_item_every_interval_and_last():
    clock, out = Clock(), io.StringIO()
    p = progress.Progress(100, "synth_corpus", "utterances", every=20.0, clock=clock, out=out)
    printed = []
    for i in range(100):
        clock.t += 1.0  # one second an item
        printed.append(p.step())
    lines = out.getvalue().splitlines()
    # item 1 (t=1), then t=21, 41, 61, 81, then the last (t=100)
    assert [i + 1 for i, x in enumerate(printed) if x] == [1, 21, 41, 61, 81, 100]
    assert lines[0] == "synth_corpus: progress 1/100 utterances, about 1.6 min left"  # 99 s at 1 s each
    assert lines[-1] == "synth_corpus: progress 100/100 utterances, about 0.0 min left"


def test_batches_and_detail():
    clock, out = Clock(), io.StringIO()
    p = progress.Progress(48, "decode.py", "utterances of job 1 of 2", every=20.0, clock=clock, out=out)
    clock.t = 6.0
    p.step(24, what="merged/child_test")
    clock.t = 10.0
    assert not p.step(12)  # within the interval, not the last
    clock.t = 12.0
    p.step(12)
    assert out.getvalue().splitlines() == [
        "decode.py: progress 24/48 utterances of job 1 of 2 (merged/child_test), about 0.1 min left",
        "decode.py: progress 48/48 utterances of job 1 of 2, about 0.0 min left"]
