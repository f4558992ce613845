#!/usr/bin/env python3
"""MyST (My Science Tutor) children's conversational speech as Kaldi data directories.

    myst.py --corpus /path/to/MyST --out data [--drop_unintelligible true] [--drop_fillers true]

Corpus: LDC2021S05 (and the same tree in Boulder Learning's free research release): ~470 h of
conversations between 1,371 US 3rd-5th graders and a virtual science tutor, 16 kHz FLAC, one file
per student turn; 227,567 turns in 10,496 sessions, 102,433 (45 %) of them transcribed. Layout (sources: ESPnet
``egs2/myst/asr1/README.md`` and ``local/prepare_data.py``, the LDC catalogue page)::

    <MYST>/myst_child_conv_speech/data/{train,development,test}/<student>/<session>/<utt>.flac
                                                                                   /<utt>.trn
    e.g. data/test/002116/myst_002116_2014-02-27_09-29-01_LS_1.1/myst_002116_2014-02-27_09-29-01_LS_1.1_001.flac

``--corpus`` may be ``<MYST>``, ``<MYST>/myst_child_conv_speech`` or its ``data/`` directory (the
Boulder Learning release's ``corpora/myst/data/<partition>/<student>/<session>/`` is found too);
``.wav`` audio (after a flac-to-wav conversion) is accepted as well.

Sets: the corpus's own partition (speaker-disjoint): ``train`` -> ``myst_train``, ``development``
-> ``myst_dev``, ``test`` -> ``myst_test``. Speaker = ``myst_<student>``; utterance id = the file
stem (it starts with the speaker id). ``--split_lists DIR`` keeps only the utterance ids listed in
``DIR/{train,dev,test}.list`` (e.g. ESPnet's Whisper-filtered ``egs2/myst/asr1/conf/file_list``).

Cleaning (``clean_transcript``), in this order. Marker conventions: the LDC transcription symbols
(http://projects.ldc.upenn.edu/Corpus_Cookbook/transcription/symbols.html: ``absolu-`` partial
word, ``+word`` mispronounced, ``*word`` made-up word, ``{breath}`` speaker noise, ``[text]``
background, ``((text))`` best guess, ``(( ))`` unintelligible) and the markers found in MyST
transcripts by other public preparations (ESPnet ``egs2/myst/asr1/local/text_preprocess.py``,
Kid-Whisper's filtering, a Common-Voice-style MyST filter listing ``<NO_SIGNAL>``, ``<DISCARD>``,
``<SIDE_SPEECH>``, ``<INDISCERNIBLE>``, ``(*)`` ...):

1. The ``.trn`` lines are joined; angle-bracket tags are canonicalised (case, inner spaces and
   hyphens: ``<NO_ SIGNAL>``, ``< NO SIGNAL >`` and ``<no-signal>`` all read ``<no_signal>``).
2. Utterances are DROPPED (not cleaned) when
   - there is no ``.trn`` file or it is empty (untranscribed);
   - they carry ``<discard>`` (the transcriber's instruction to discard);
   - ``--drop_unintelligible true`` (default) and they contain an unintelligible or missing
     stretch: ``(())`` / ``(( ))``, ``(*)``, ``<no_signal>``, ``<inaudible>``, ``<indiscernible>``
     / ``[indiscernible]``, ``<unintelligible>``, ``<unclear...>``; the reference would lack words
     that are audible, so they are not usable as references. ``false`` removes these markers and
     keeps the rest (as ESPnet and Kid-Whisper do).
3. Removed with their content: every other ``<...>`` tag (``<laugh>``, ``<breath>``, ``<noise>``,
   ``<side_speech>``, ``<silence>``, ``<cough>``, ``<sneeze>``, ``<whisper>``, ...), ``[...]``
   and ``{...}`` annotations, ``+word+`` spans, and single-parenthesis spans ``(...)``.
   ``((words))`` (the transcriber's best guess at a difficult stretch) keeps ``words``.
4. ``*`` marks are deleted (the word stays).
5. Partial words and false starts: tokens ending in ``-`` (``th-``, ``sci-``) or starting with
   ``-`` (``-cause``) are removed; a lone ``-``/``--`` is removed.
6. Split contractions are rejoined: ``I 'M`` -> ``I'M`` (a token ``'m 're 've 'll 'd 's 't``
   attaches to the previous word).
7. The project normaliser (``common.normalize_text``: lower case, punctuation except apostrophes
   removed, hyphens to spaces), then, with ``--drop_fillers true`` (default; the filler set of
   Whisper's normaliser that published MyST WERs use), filled pauses ``um uh hmm mm ...`` go.
8. Utterances whose text is empty after cleaning are dropped, and so are utterances longer than
   ``--max_dur`` (default 30 s, OWSM's window) or shorter than ``--min_dur``.

Every drop is listed with its reason in ``<out>/local/myst/removed.<set>.txt``; the counts are in
``prep_stats.json`` there.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

try:
    from . import common
except ImportError:  # run as a script: its own folder is first on sys.path
    import common

PARTITIONS = {"train": "train", "development": "dev", "test": "test"}
AUDIO_EXTS = (".flac", ".wav")

# tags (canonical form, without brackets) that make an utterance unusable when
# drop_unintelligible is on; "discard" always does
UNINTELLIGIBLE_TAGS = ("no_signal", "inaudible", "indiscernible", "unintelligible", "unclear")
_TAG = re.compile(r"<([^<>]*)>")
_CONTRACTION = re.compile(r"^'(m|re|ve|ll|d|s|t)$", re.IGNORECASE)


def _canon_tag(inner: str) -> str:
    return re.sub(r"[\s\-_]+", "_", inner.strip().lower()).strip("_")


def _is_unintelligible_tag(tag: str) -> bool:
    return any(tag.startswith(t) for t in UNINTELLIGIBLE_TAGS)


def clean_transcript(raw: str, drop_unintelligible: bool = True, drop_fillers: bool = True
                     ) -> Tuple[Optional[str], Optional[str]]:
    """``(clean text, None)`` or ``(None, reason)`` for a MyST ``.trn`` transcript (rules above)."""
    text = " ".join(raw.replace("\ufeff", "").split())
    if not text:
        return None, "untranscribed (empty .trn)"
    tags = [_canon_tag(m) for m in _TAG.findall(text)]
    # malformed tags: an unclosed "<NO_SIGNAL" or an unopened "SILENCE>" token
    tail = re.search(r"<([^<>]*)$", text)
    if tail:
        tags.append(_canon_tag(tail.group(1)))
    stray = [w for w in _TAG.sub(" ", text).split() if "<" in w or ">" in w]
    tags += [_canon_tag(w.strip("<>")) for w in stray]
    if "discard" in tags:
        return None, "marked <discard>"
    if drop_unintelligible:
        if any(_is_unintelligible_tag(t) for t in tags):
            return None, "unintelligible or missing speech: <no_signal>/<inaudible>/<indiscernible>/<unclear>"
        if re.search(r"\(\(\s*\)\)|\(\s*\*\s*\)", text):
            return None, "unintelligible speech: (( )) or (*)"
        if re.search(r"\[\s*(indiscernible|inaudible|unintelligible)[^\]]*\]", text, re.IGNORECASE):
            return None, "unintelligible speech: [indiscernible]"
    # 3. tags and annotations
    text = _TAG.sub(" ", text)
    text = re.sub(r"<[^<>]*$", " ", text)
    text = " ".join(w for w in text.split() if "<" not in w and ">" not in w)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\+[^+\s]+\+", " ", text)
    text = re.sub(r"\(\(([^()]*)\)\)", r" \1 ", text)  # ((best guess)) keeps the words
    while re.search(r"\([^()]*\)", text):
        text = re.sub(r"\([^()]*\)", " ", text)
    text = re.sub(r"[<>\[\]{}()+]", " ", text)      # stray bracket characters
    text = text.replace("*", "")
    # 5. partial words / false starts, 6. split contractions
    words: List[str] = []
    for w in text.split():
        if w.endswith("-") or w.startswith("-"):
            continue
        if _CONTRACTION.match(w) and words:
            words[-1] += w
            continue
        words.append(w)
    clean = common.normalize_text(" ".join(words))
    if drop_fillers:
        clean = common.drop_fillers(clean)
    if not clean:
        return None, "empty after cleaning"
    return clean, None


def find_data_dir(corpus_root: Path) -> Path:
    """The directory holding train/development/test: ``root``, ``root/data`` or a ``data/`` up to two
    levels below (``myst_child_conv_speech/data`` of the LDC release, ``corpora/myst/data`` of the
    Boulder Learning release)."""
    root = Path(corpus_root)
    cands = [root, root / "data", root / "myst_child_conv_speech" / "data", root / "myst" / "data"]
    cands += sorted(root.glob("*/data")) + sorted(root.glob("*/*/data")) if root.is_dir() else []
    for cand in cands:
        if any((cand / p).is_dir() for p in PARTITIONS):
            return cand
    raise FileNotFoundError(
        f"MyST partitions ({', '.join(PARTITIONS)}) not found under {root}: expected "
        f"<MYST>/myst_child_conv_speech/data/{{train,development,test}}/<student>/<session>/*.flac")


def _read_trn(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def prepare(corpus_root: Path, out_dir: Path, drop_unintelligible: bool = True, drop_fillers: bool = True,
            min_dur: float = 0.0, max_dur: Optional[float] = 30.0, split_lists: Optional[Path] = None,
            prefix: str = "myst_") -> Dict[str, int]:
    """Write ``<out_dir>/{myst_train,myst_dev,myst_test}``; returns ``{set name: utterances}``."""
    data_dir = find_data_dir(corpus_root)
    keep_ids = common.read_split_lists(split_lists, list(PARTITIONS.values())) if split_lists else None
    log = common.PrepLog("myst")
    sets: Dict[str, List[common.Utterance]] = {}
    for part, short in PARTITIONS.items():
        part_dir = data_dir / part
        if not part_dir.is_dir():
            log.notes.append(f"partition {part} missing under {data_dir}")
            continue
        name = prefix + short
        utts: List[common.Utterance] = []
        files = sorted(p for p in part_dir.rglob("*") if p.suffix.lower() in AUDIO_EXTS and p.is_file())
        for audio in files:
            rel = audio.relative_to(part_dir).parts
            student = rel[0] if len(rel) >= 2 else audio.stem.split("_")[1] if "_" in audio.stem else "unknown"
            spk = f"myst_{student}"
            utt = audio.stem if audio.stem.startswith(spk) else f"{spk}_{audio.stem}"
            if keep_ids is not None and keep_ids.get(audio.stem, keep_ids.get(utt)) != short:
                log.drop(name, utt, "not in the split list")
                continue
            trn = audio.with_suffix(".trn")
            if not trn.is_file():
                log.drop(name, utt, "untranscribed (no .trn)")
                continue
            text, reason = clean_transcript(_read_trn(trn), drop_unintelligible, drop_fillers)
            if text is None:
                log.drop(name, utt, reason)
                continue
            try:
                dur = common.audio_duration(audio)
            except Exception as e:  # unreadable audio
                log.drop(name, utt, f"unreadable audio ({e})")
                continue
            if log.rejects(name, utt, common.duration_problem(dur, min_dur, max_dur)):
                continue
            utts.append(common.Utterance(utt=utt, spk=spk, audio=str(audio.resolve()), text=text, duration=dur))
        sets[name] = utts
    if not sets:
        raise FileNotFoundError(f"no MyST partition found under {data_dir}")
    return common.write_sets(out_dir, sets, log)


def main(argv=None) -> int:
    ap = common.base_parser(__doc__)
    ap.add_argument("--drop_unintelligible", type=common.str2bool, default=True,
                    help="drop utterances with unintelligible / missing stretches (true|false)")
    ap.add_argument("--drop_fillers", type=common.str2bool, default=True, help="remove filled pauses (true|false)")
    ap.add_argument("--split_lists", type=Path, default=None,
                    help="directory with {train,dev,test}.list utterance ids to keep")
    ap.add_argument("--prefix", default="myst_", help="prefix of the output set names")
    args = ap.parse_args(argv)
    counts = prepare(args.corpus, args.out, drop_unintelligible=args.drop_unintelligible,
                     drop_fillers=args.drop_fillers, min_dur=args.min_dur, max_dur=args.max_dur or None,
                     split_lists=args.split_lists, prefix=args.prefix)
    common.print_counts("myst", counts, args.out)
    return 0


if __name__ == "__main__":
    common.run_cli(main, __file__)
