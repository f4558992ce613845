"""Kaldi-style data preparation for the real-corpus recipes (MyST, OGI Kids, CMU Kids, Common Voice
accents, LibriSpeech forgetting sets).

Every corpus module has ``prepare(corpus_root, out_dir, **options) -> {set name: utterances}`` and a
command-line interface (``python local/corpora/<corpus>.py --corpus ROOT --out data``). The shared
pieces (the transcript normaliser, duration filters, speaker splits and the sorted Kaldi directory
writer) live in :mod:`local.corpora.common`; every cleaning rule is documented there and in the
module of the corpus it applies to.
"""
