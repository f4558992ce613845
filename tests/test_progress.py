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
    # the first item's time holds the start-up: no estimate from it
    assert lines[0] == "synth_corpus: progress 1/100 utterances, estimating the time left"
    assert lines[1] == "synth_corpus: progress 21/100 utterances, about 1.3 min left"  # 79 left at 1 s each
    assert lines[-1] == "synth_corpus: progress 100/100 utterances, about 0.0 min left"


def test_a_slow_start_does_not_make_the_estimate():
    """A first item that took 200 s (loading the model) and then 1 s an item: about 1.5 min left, not
    the 200-minute estimate a first-item rate gives."""
    clock, out = Clock(), io.StringIO()
    p = progress.Progress(100, "decode.py", "utterances", every=1.0, clock=clock, out=out)
    clock.t = 200.0
    p.step()
    for _ in range(9):
        clock.t += 1.0
        p.step()
    assert out.getvalue().splitlines()[-1] == "decode.py: progress 10/100 utterances, about 1.5 min left"


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
        "decode.py: progress 24/48 utterances of job 1 of 2 (merged/child_test), estimating the time left",
        "decode.py: progress 48/48 utterances of job 1 of 2, about 0.0 min left"]
