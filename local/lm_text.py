#!/usr/bin/env python3
"""Text for the embedded foundation model's language model, disjoint from every evaluation text.

The acoustic model of the embedded benchmark sees 2,400 distinct sentences; most of its word
errors on the source test set are misspellings of seen words ("suport", "strugle") and homophones
("their" for "there"), which more text fixes and more audio does not. This builds a larger,
domain-neutral English text from WordNet (``wordnet-base``):

* every example sentence (the corpus builder's sentence pool, without its length limits), and
* every gloss (definition), split into clauses at ``;``, parenthesised asides removed,

normalised exactly like the corpus text (``synth_corpus.normalize_text``). Lines that overlap any
``--exclude`` text (Kaldi ``text`` files: the dev and test sets of every domain) are dropped: a
line is dropped when it contains any ``--ngram``-word sequence of an excluded sentence, or the
whole of an excluded sentence shorter than that. Training texts (source and target) may stay.

    lm_text.py --out data/lm_train.txt --exclude data/source_test/text --exclude data/child_test/text

``--fraction`` keeps a random share of the lines (the recipe passes its ``--size`` below 1).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path
from typing import Iterable, Iterator, List, Sequence, Set, Tuple

from synth_corpus import WORDNET_DIR, CorpusError, normalize_text

_PAREN = re.compile(r"\([^()]*\)")


def wordnet_lines(wordnet_dir: Path = WORDNET_DIR, min_words: int = 2) -> Iterator[str]:
    """Normalised example sentences and gloss clauses of every synset, in file order."""
    files = [wordnet_dir / f"data.{pos}" for pos in ("noun", "verb", "adj", "adv")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise CorpusError(f"WordNet data files missing: {missing} (apt-get install wordnet-base)")
    for f in files:
        with open(f, encoding="latin-1") as fh:
            for line in fh:
                if line.startswith("  ") or "|" not in line:
                    continue
                gloss = line.split("|", 1)[1]
                pieces = re.findall(r'"([^"]+)"', gloss)
                pieces += _PAREN.sub(" ", re.sub(r'"[^"]*"', " ", gloss)).split(";")
                for p in pieces:
                    t = normalize_text(p)
                    if t and len(t.split()) >= min_words:
                        yield t


def read_kaldi_text(path: Path) -> List[str]:
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            out.append(parts[1])
    return out


def _ngrams(words: Sequence[str], n: int) -> Iterable[Tuple[str, ...]]:
    return (tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def overlap_filter(lines: Iterable[str], excluded: Iterable[str], n: int) -> Tuple[List[str], int]:
    """Drop lines holding an n-gram of an excluded sentence (the whole sentence if shorter)."""
    grams: Set[Tuple[str, ...]] = set()
    short: Set[Tuple[str, ...]] = set()
    for s in excluded:
        w = s.split()
        if len(w) >= n:
            grams.update(_ngrams(w, n))
        elif w:
            short.add(tuple(w))
    short_lens = sorted({len(s) for s in short})
    kept, dropped = [], 0
    for line in lines:
        w = line.split()
        hit = any(g in grams for g in _ngrams(w, n)) or any(
            g in short for k in short_lens for g in _ngrams(w, k))
        if hit:
            dropped += 1
        else:
            kept.append(line)
    return kept, dropped


def build(out: Path, exclude: Sequence[Path], ngram: int = 5, seed: int = 1, fraction: float = 1.0,
          wordnet_dir: Path = WORDNET_DIR) -> dict:
    if ngram < 2:
        raise ValueError(f"--ngram must be at least 2, got {ngram}")
    if not 0 < fraction <= 1:
        raise ValueError(f"--fraction must be in (0, 1], got {fraction}")
    excluded = [s for p in exclude for s in read_kaldi_text(p)]
    if not excluded:
        raise CorpusError("no excluded sentences read: pass the dev/test text files with --exclude")
    lines = sorted(set(wordnet_lines(wordnet_dir)))
    kept, dropped = overlap_filter(lines, excluded, ngram)
    random.Random(seed).shuffle(kept)
    kept = kept[:max(1, round(fraction * len(kept)))]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(f"lm{i:07d} {s}\n" for i, s in enumerate(kept)), encoding="utf-8")
    tmp.replace(out)
    stats = {"lines": len(kept), "words": sum(len(s.split()) for s in kept), "dropped_overlapping": dropped,
             "excluded_sentences": len(excluded), "ngram": ngram, "fraction": fraction, "exclude": [str(p) for p in exclude]}
    out.with_name(out.name + ".json").write_text(json.dumps(stats, indent=1) + "\n")
    return stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="Kaldi-style text file (id, words) to write")
    ap.add_argument("--exclude", type=Path, action="append", default=[], required=True,
                    help="Kaldi text file whose sentences must not leak into the LM text (repeatable)")
    ap.add_argument("--ngram", type=int, default=5, help="overlap unit of the exclusion filter (words)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fraction", type=float, default=1.0, help="keep this share of the lines (toy corpora)")
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.exclude if not p.is_file()]
    if missing:
        ap.error(f"--exclude files not found: {missing}")
    try:
        stats = build(args.out, args.exclude, args.ngram, args.seed, args.fraction)
    except (CorpusError, ValueError) as e:
        print(f"lm_text.py: {e}", file=sys.stderr)
        return 1
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
