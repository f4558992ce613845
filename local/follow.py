#!/usr/bin/env python3
"""Print a running job's progress where the user looks: one line per new event of its log.

The recipe's jobs write their logs to files (``exp/<tag>/train.log``, ``.../log/decode.1.log``); the
console would stay silent for minutes. ``follow.py`` reads a log as it grows and prints:

* ``--kind train``: one line per finished epoch (ESPnet's "Nepoch results" line): the epoch, the
  training loss, the validation loss and accuracy, and the epoch's wall time; and within an epoch,
  at most every ``--every`` seconds, the batches done and their loss (ESPnet's "Nepoch:train:A-Bbatch"
  lines), so the console is never silent for longer than an epoch's log interval;
* ``--kind decode``: each progress line ``decode.py`` writes (utterances done, estimated time left).

It stops when the job's process (``--pid``) or its own parent (the recipe) is gone, after a last
read, so a line written just before the job ended is still printed.

    follow.py --log exp/x/train.log --kind train --pid 1234 --prefix "stage 10"
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

from launch import alive as pid_alive

EPOCH = re.compile(r"(\d+)epoch results: \[train\](?P<train>.*?)\[valid\](?P<valid>.*?)(\[time\](?P<time>.*))?$")
BATCHES = re.compile(r"(\d+)epoch:train:(\d+)-(\d+)batch:(?P<fields>.*)$")


def _field(text: str, key: str) -> Optional[str]:
    m = re.search(rf"(?:^|[\s,]){key}=([-+0-9.eE]+)", text or "")
    return m.group(1) if m else None


def epoch_line(line: str, max_epoch: Optional[int] = None) -> Optional[str]:
    """The progress line of an ESPnet "Nepoch results" log line (None for any other line)."""
    m = EPOCH.search(line)
    if not m:
        return None
    parts = [f"epoch {m.group(1)}" + (f"/{max_epoch}" if max_epoch else "")]
    loss = _field(m.group("train"), "loss")
    if loss:
        parts.append(f"train loss {float(loss):.2f}")
    vloss, vacc = _field(m.group("valid"), "loss"), _field(m.group("valid"), "acc")
    if vloss:
        parts.append(f"valid loss {float(vloss):.2f}")
    if vacc:
        parts.append(f"valid acc {float(vacc):.3f}")
    took = re.search(r"time=([0-9.]+) (minutes|seconds|hours)", m.group("time") or "")
    if took:
        parts.append(f"{took.group(1)} {took.group(2)}")
    return ", ".join(parts)


def batch_line(line: str, max_epoch: Optional[int] = None) -> Optional[str]:
    """The progress line of an ESPnet "Nepoch:train:A-Bbatch" log line (None for any other line)."""
    m = BATCHES.search(line)
    if not m:
        return None
    loss = _field(m.group("fields"), "loss")
    epoch = f"epoch {m.group(1)}" + (f"/{max_epoch}" if max_epoch else "")
    return f"{epoch}: {m.group(3)} batches done" + (f", train loss {float(loss):.2f}" if loss else "")


def decode_line(line: str) -> Optional[str]:
    """``decode.py``'s own progress lines, as they are."""
    return line.split("decode.py: ", 1)[1].strip() if "decode.py: progress" in line else None


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(256)


def lines(path: Path, alive, poll: float = 2.0, from_end: bool = False) -> Iterator[str]:
    """The lines appended to ``path`` (which may not exist yet) while ``alive()``, then the rest;
    ``from_end``: what the file holds already is an earlier run's (skipped unless it is rewritten:
    a file that shrank or whose first bytes changed is read again from its start)."""
    pos, buf, head = 0, "", b""
    if from_end and path.is_file():
        pos, head = path.stat().st_size, _head(path)
    while True:
        running = alive()
        if path.is_file():
            now = _head(path)
            if path.stat().st_size < pos or not now.startswith(head[:len(now)]) or not head.startswith(now[:len(head)]):
                pos, buf = 0, ""  # rotated or rewritten: start again
            with open(path, encoding="utf-8", errors="replace") as fh:
                fh.seek(pos)
                buf += fh.read()
                pos = fh.tell()
            head = _head(path)
            *done, buf = buf.split("\n")
            yield from done
        if not running:
            return
        time.sleep(poll)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", required=True, type=Path)
    ap.add_argument("--kind", choices=("train", "decode"), required=True)
    ap.add_argument("--pid", type=int, default=None, help="the job's process: stop when it is gone")
    ap.add_argument("--max_epoch", type=int, default=None)
    ap.add_argument("--prefix", default="")
    ap.add_argument("--poll", type=float, default=2.0)
    ap.add_argument("--every", type=float, default=20.0,
                    help="--kind train: the least seconds between two within-epoch progress lines")
    ap.add_argument("--from_end", action="store_true", help="skip what the log holds already (an earlier run's)")
    args = ap.parse_args(argv)
    parent, stop = os.getppid(), []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))  # the job ended: a last read, then exit

    def alive() -> bool:
        return not stop and os.getppid() == parent and (args.pid is None or pid_alive(args.pid))

    def max_epoch() -> Optional[int]:
        """--max_epoch, else the training's own config.yaml (ESPnet writes it beside the log)."""
        if args.max_epoch is None:
            cfg = args.log.parent / "config.yaml"
            m = re.search(r"^max_epoch: (\d+)", cfg.read_text(errors="replace"), re.M) if cfg.is_file() else None
            args.max_epoch = int(m.group(1)) if m else None
        return args.max_epoch

    last = [time.time()]

    def render(line: str) -> Optional[str]:
        if args.kind == "decode":
            return decode_line(line)
        text = epoch_line(line, max_epoch())
        if text is None and time.time() - last[0] >= args.every:  # within an epoch: now and then
            text = batch_line(line, max_epoch())
        return text

    for line in lines(args.log, alive, args.poll, args.from_end):
        text = render(line)
        if text:
            last[0] = time.time()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            print(f"{stamp} {args.prefix + ': ' if args.prefix else ''}{text}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
