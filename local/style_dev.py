#!/usr/bin/env python3
"""A source-domain dev set of another sentence style, for choices that must not favour the corpus's
own WordNet style (the language-model weight of the embedded foundation model).

The sentences (``local/style_dev_sentences.txt`` of the embedded recipe: everyday sentences written
for this set, every word one of the source training text's) are read twice: by one of the first six
training voices and by one held-out voice (``source_unseen_test``'s), without speed perturbation.
A dev set only: no training text and no test set contains these sentences; decisions read it beside
``source_dev``.

    style_dev.py --sentences local/style_dev_sentences.txt --train_text data/source_train/text \\
        --out data/source_style_dev --wavdir downloads/wav/source_style_dev
"""
import argparse
import sys
from pathlib import Path

import synth_corpus as sc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sentences", required=True, type=Path)
    ap.add_argument("--train_text", required=True, type=Path, help="the source training set's Kaldi text")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--wavdir", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    sents = [l.strip() for l in args.sentences.read_text().splitlines() if l.strip()]
    train = [l.split(maxsplit=1)[1] if " " in l else "" for l in args.train_text.read_text().splitlines()]
    vocab, train_set = {w for t in train for w in t.split()}, set(train)
    bad = [s for s in sents if any(w not in vocab for w in s.split()) or s in train_set]
    if bad:
        sys.exit(f"style_dev.py: {len(bad)} sentence(s) use a word the source training text lacks or are "
                 f"training sentences, e.g. '{bad[0]}'")
    seen, unseen = sc.SOURCE_TRAIN_VOICES[:6], sc.SOURCE_UNSEEN_VOICES
    jobs = []
    for i, text in enumerate(sents):
        for voice, tag in ((seen[i % len(seen)], "seen"), (unseen[i % len(unseen)], "heldout")):
            utt = f"{voice.name}-style_{tag}_{i:03d}"
            job = sc.Job(utt, text, voice, None, str(args.wavdir / f"{utt}.wav"), args.seed)
            job.params = sc.draw_params(job)
            jobs.append(job)
    done = dict(sc.render(jobs))
    sc.write_data_dir(args.out, jobs, done)
    print(f"style_dev.py: {args.out}: {len(done)} utterances, {sum(done.values()) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
