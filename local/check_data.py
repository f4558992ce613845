#!/usr/bin/env python3
"""Check Kaldi data directories before any compute is spent (recipe stage 2).

    check_data.py [--fs 16000] data/source_train data/child_test ...

Reports, for every directory, missing files, text / wav.scp id mismatches, empty transcripts,
missing, unreadable or empty audio and unexpected sample rates (``--fs 0``: any rate, stage 3
resamples); exits 1 listing every problem.
"""
import argparse
import sys
from pathlib import Path

from espnet_peft.data import check_data_dir


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--fs", type=int, default=16000, help="expected sample rate (0: do not check)")
    args = ap.parse_args(argv)
    bad = 0
    for d in args.dirs:
        rep = check_data_dir(d, sample_rate=args.fs or None)
        status = "ok" if rep.ok else "PROBLEMS"
        print(f"{d}: {rep.utterances} utterances, {rep.seconds / 3600:.2f} h: {status}")
        for p in rep.problems:
            print(f"  - {p}", file=sys.stderr)
        bad += not rep.ok
    if bad:
        print(f"check_data.py: {bad} data director{'y is' if bad == 1 else 'ies are'} not usable", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
