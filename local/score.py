#!/usr/bin/env python3
"""Score hypotheses against references: WER / CER with the normalisation documented in
``espnet_peft.scoring`` (lower case, punctuation and <special> tokens removed).

    score.py --ref dump/raw/child_test/text --hyp exp/x/decode/child_test/text --out result.json

Several sets in one process (the library is imported once): repeat the three options, one triple
per set, in the same order; each is scored and reported in turn, and the first error stops it.
"""
import argparse
import sys
from pathlib import Path

from espnet_peft.scoring import score_files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, type=Path, action="append")
    ap.add_argument("--hyp", required=True, type=Path, action="append")
    ap.add_argument("--out", type=Path, action="append", default=None,
                    help="write the result as JSON (with several sets: one per --hyp)")
    args = ap.parse_args(argv)
    outs = args.out or [None] * len(args.hyp)
    if not len(args.ref) == len(args.hyp) == len(outs):
        ap.error("give one --ref (and one --out, if any) per --hyp")
    for ref, hyp, out in zip(args.ref, args.hyp, outs):
        try:
            res = score_files(ref, hyp, out)
        except (ValueError, OSError) as e:
            sys.exit(f"score.py: error: {e}")
        print(f"{hyp}: WER {res['wer']:.2f}% CER {res['cer']:.2f}% "
              f"({res['utterances']} utterances, {res['words']} words)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
