#!/usr/bin/env python3
"""Score hypotheses against references: WER / CER with the normalisation documented in
``espnet_peft.scoring`` (lower case, punctuation and <special> tokens removed).

    score.py --ref dump/raw/child_test/text --hyp exp/x/decode/child_test/text --out result.json
"""
import argparse
import sys
from pathlib import Path

from espnet_peft.scoring import score_files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, type=Path)
    ap.add_argument("--hyp", required=True, type=Path)
    ap.add_argument("--out", type=Path, default=None, help="write the result as JSON")
    args = ap.parse_args(argv)
    try:
        res = score_files(args.ref, args.hyp, args.out)
    except (ValueError, OSError) as e:
        sys.exit(f"score.py: error: {e}")
    print(f"{args.hyp}: WER {res['wer']:.2f}% CER {res['cer']:.2f}% "
          f"({res['utterances']} utterances, {res['words']} words)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
