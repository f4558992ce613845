#!/usr/bin/env python3
"""Common Voice English accent sets as Kaldi data directories: per-accent test sets and a pooled
train/dev set of the same accents, speaker-disjoint from every test and dev speaker.

    common_voice.py --corpus /path/to/cv-corpus-17.0-2024-03-15/en --out data \\
        [--accents indian scottish southern_african]

Corpus: Mozilla Common Voice, English (CC0-1.0; https://commonvoice.mozilla.org/datasets): read
sentences recorded in the browser, MP3 (48 kHz in recent releases), crowd-validated. Layout of a
release (sources: ESPnet ``egs2/commonvoice/asr1/local/data.sh``, the Hugging Face
``common_voice`` loaders and dataset cards, CommonAccent's preparation of CV 11)::

    cv-corpus-<version>-<date>/en/clips/<path>.mp3
    cv-corpus-<version>-<date>/en/{validated,train,dev,test,invalidated,other}.tsv
    cv-corpus-<version>-<date>/en/clip_durations.tsv     # "clip<TAB>duration[ms]" (releases since ~v14)

TSV columns used: ``client_id`` (speaker hash), ``path``, ``sentence`` and the accent column:
``accents`` since v8 (free text chosen or typed by the speaker; several accents are joined with
``,`` -- or ``|`` in some releases -- and the predefined labels contain commas inside parentheses,
e.g. ``India and South Asia (India, Pakistan, Sri Lanka)``), ``accent`` before v8 (codes such as
``indian``, ``scotland``, ``african``). ``train/dev/test.tsv`` are Mozilla's CorporaCreator
partition of ``validated.tsv``: speaker-disjoint and sentence-disjoint, with train capped per
sentence.

Target accents (``--accents``; registry ``ACCENTS`` below, each a canonical label plus the legacy
code). Default ``indian scottish southern_african``: the three most frequent accent groups after
US, England, Canada and Australia (Common Voice 11: India and South Asia ~79k clips, Scottish
~10.8k, Southern African ~4.3k) that are clearly shifted from General American -- an L2 variety
with syllable-timed rhythm and retroflex stops (Indian), an L1 variety with a different vowel
system, tapped/trilled /r/ and lexical differences (Scottish), and the Southern African
varieties (L1 and L2); England/Canada/Australia are both closer to the pre-training data and
well covered by it. ``filipino``, ``irish``, ``singaporean``, ``hong_kong``, ``malaysian`` ... are
available too. A clip belongs to accent A when, among its accent labels that are in the registry,
A is the only accent (a clip labelled both Indian and Scottish, or Indian and US, is dropped as
ambiguous); free-text labels outside the registry (``Lancashire English``) are ignored.

Sets:

* ``cv_<accent>_test`` -- rows of ``test.tsv`` with that accent (the official test partition);
* ``cv_accents_dev``   -- rows of ``dev.tsv`` with any target accent;
* ``cv_accents_train`` -- rows of ``validated.tsv`` (``--train_source validated``, default: the
  official ``train.tsv`` keeps too little of the minority accents) or of ``train.tsv``, with any
  target accent, EXCLUDING every clip of a speaker (``client_id``) who appears anywhere in
  ``dev.tsv`` or ``test.tsv`` (any accent) and every clip whose normalised sentence is in the
  prepared dev or test sets. Train, dev and test are therefore speaker-disjoint (checked before
  writing) and the test sentences are unseen in training. (ESPnet's ``egs2/commonvoice`` trains
  on validated minus the dev/test *clips*, which keeps dev/test speakers in training; not done
  here.) ``--max_per_speaker N`` caps the train clips of one speaker (Common Voice has speakers
  with thousands of clips).

Cleaning: ``sentence`` through the project normaliser (lower case, punctuation except apostrophes
removed, typographic apostrophes unified); dropped: empty text, missing clip files, clips
outside ``--min_dur``/``--max_dur`` (default 30 s; Common Voice clips are at most ~10 s; durations
from ``clip_durations.tsv`` when present, else from the MP3 header). Every drop is listed in
``<out>/local/common_voice/``.

Audio: ``wav.scp`` lists the MP3 files. libsndfile >= 1.1 decodes MP3 (the ``soundfile`` wheels
bundle 1.2.x); preparation checks it and otherwise needs ``--mp3_cmd`` (a decoder command template
writing WAV to stdout, e.g. ``"ffmpeg -nostdin -loglevel error -i {path} -f wav -"``), which turns
every entry into a ``cmd |`` pipe. Speaker ids are ``cv`` + the first 16 hex digits of client_id;
utterance ids ``<speaker>-<clip name>``.
"""
from __future__ import annotations

import csv
import hashlib
import re
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set

try:
    from . import common
except ImportError:  # run as a script: its own folder is first on sys.path
    import common

# accent key -> (labels of the "accents" column (lower case), legacy codes of the "accent" column)
ACCENTS: Dict[str, tuple] = {
    "indian": ({"india and south asia (india, pakistan, sri lanka)"}, {"indian"}),
    "scottish": ({"scottish english"}, {"scotland"}),
    "southern_african": ({"southern african (south africa, zimbabwe, namibia)"}, {"african"}),
    "filipino": ({"filipino", "philippino"}, {"philippines"}),
    "irish": ({"irish english"}, {"ireland"}),
    "northern_irish": ({"northern irish"}, set()),
    "welsh": ({"welsh english"}, {"wales"}),
    "singaporean": ({"singaporean english", "singaporian english"}, {"singapore"}),
    "hong_kong": ({"hong kong english"}, {"hongkong"}),
    "malaysian": ({"malaysian english"}, {"malaysia"}),
    "new_zealand": ({"new zealand english"}, {"newzealand"}),
    "west_indies": ({"west indies and bermuda (bahamas, bermuda, jamaica, trinidad)"}, {"bermuda"}),
    "australian": ({"australian english"}, {"australia"}),
    "canadian": ({"canadian english"}, {"canada"}),
    "england": ({"england english", "british english"}, {"england"}),
    "us": ({"united states english"}, {"us"}),
}
DEFAULT_ACCENTS = ("indian", "scottish", "southern_african")
_LABEL_TO_ACCENT = {lab: key for key, (labels, codes) in ACCENTS.items() for lab in labels | codes}
_SPLIT_LABELS = re.compile(r"\||,(?![^(]*\))")

csv.field_size_limit(min(sys.maxsize, 2 ** 31 - 1))


def accent_labels(raw: str) -> List[str]:
    """The accent labels of one TSV cell (``,`` outside parentheses and ``|`` separate them)."""
    return [p.strip().lower() for p in _SPLIT_LABELS.split(raw or "") if p.strip()]


def accent_of(raw: str) -> Optional[str]:
    """The registry accent of a clip, or None when it has none or several."""
    found = {_LABEL_TO_ACCENT[lab] for lab in accent_labels(raw) if lab in _LABEL_TO_ACCENT}
    return found.pop() if len(found) == 1 else None


def find_root(corpus_root: Path) -> Path:
    root = Path(corpus_root)
    for cand in (root, root / "en"):
        if (cand / "validated.tsv").is_file() or (cand / "test.tsv").is_file():
            return cand
    raise FileNotFoundError(f"Common Voice English not found under {root}: expected validated.tsv, "
                            f"train/dev/test.tsv and clips/ (in <release>/en/)")


def read_tsv(path: Path) -> Iterable[Dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            yield {k: (v or "") for k, v in row.items() if k is not None}


def read_durations(root: Path) -> Dict[str, float]:
    f = root / "clip_durations.tsv"
    out: Dict[str, float] = {}
    if not f.is_file():
        return out
    for row in read_tsv(f):
        clip = row.get("clip", "")
        ms = row.get("duration[ms]", "")
        if clip and ms.strip().replace(".", "", 1).isdigit():
            out[clip] = float(ms) / 1000.0
    return out


def speaker_id(client_id: str) -> str:
    cid = client_id.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{16,}", cid):
        cid = hashlib.sha1(client_id.encode("utf-8")).hexdigest()
    return "cv" + cid[:16]


def prepare(corpus_root: Path, out_dir: Path, accents: Sequence[str] = DEFAULT_ACCENTS,
            train_source: str = "validated", max_per_speaker: Optional[int] = None, min_dur: float = 0.0,
            max_dur: Optional[float] = 30.0, mp3_cmd: Optional[str] = None) -> Dict[str, int]:
    """Write ``cv_<accent>_test``, ``cv_accents_dev`` and ``cv_accents_train``; returns counts."""
    unknown = [a for a in accents if a not in ACCENTS]
    if unknown or not accents:
        raise ValueError(f"unknown accent(s) {unknown}; choose from {sorted(ACCENTS)}")
    if train_source not in ("validated", "train"):
        raise ValueError(f"train_source must be validated or train, got {train_source!r}")
    root = find_root(corpus_root)
    if mp3_cmd is None and not common.soundfile_reads("MP3"):
        raise SystemExit("common_voice: this libsndfile cannot decode MP3 (needs libsndfile >= 1.1, bundled with "
                         "soundfile >= 0.12); upgrade soundfile or pass --mp3_cmd 'DECODER {path} ... |'")
    targets = set(accents)
    durations = read_durations(root)
    log = common.PrepLog("common_voice")
    clips = root / "clips"

    def accent_col(row: Dict[str, str]) -> str:
        return row.get("accents") or row.get("accent") or ""

    def make(row: Dict[str, str], set_name: str) -> Optional[common.Utterance]:
        path = row.get("path", "").strip()
        spk = speaker_id(row.get("client_id", ""))
        clip = path if path.endswith(".mp3") or "." in Path(path).name else path + ".mp3"
        utt = f"{spk}-{Path(clip).stem}"
        text = common.normalize_text(row.get("sentence", ""))
        if not text:
            log.drop(set_name, utt, "empty sentence")
            return None
        audio = clips / clip
        if not audio.is_file():
            log.drop(set_name, utt, "clip file missing")
            return None
        dur = durations.get(clip, durations.get(Path(clip).name))
        if dur is None:
            try:
                dur = common.audio_duration(audio)
            except Exception as e:
                log.drop(set_name, utt, f"unreadable audio ({e})")
                return None
        if log.rejects(set_name, utt, common.duration_problem(dur, min_dur, max_dur)):
            return None
        entry = str(audio.resolve())
        if mp3_cmd is not None:
            entry = mp3_cmd.format(path=entry).rstrip().rstrip("|").rstrip() + " |"
        return common.Utterance(utt=utt, spk=spk, audio=entry, text=text, duration=dur)

    sets: Dict[str, List[common.Utterance]] = {f"cv_{a}_test": [] for a in accents}
    sets["cv_accents_dev"] = []
    sets["cv_accents_train"] = []
    held_out_speakers: Set[str] = set()
    held_out_sentences: Set[str] = set()
    test_speakers: Set[str] = set()
    for split in ("test", "dev"):
        f = root / f"{split}.tsv"
        if not f.is_file():
            raise FileNotFoundError(f"{f} missing (the official {split} partition)")
        for row in read_tsv(f):
            spk = speaker_id(row.get("client_id", ""))
            held_out_speakers.add(spk)
            if split == "test":
                test_speakers.add(spk)
            acc = accent_of(accent_col(row))
            if acc not in targets:
                continue
            name = f"cv_{acc}_test" if split == "test" else "cv_accents_dev"
            if split == "dev" and spk in test_speakers:
                log.drop(name, f"{spk}-{Path(row.get('path', '')).stem}", "speaker in test.tsv")
                continue
            u = make(row, name)
            if u is not None:
                sets[name].append(u)
                held_out_sentences.add(u.text)

    train_file = root / ("validated.tsv" if train_source == "validated" else "train.tsv")
    if not train_file.is_file():
        raise FileNotFoundError(f"{train_file} missing")
    per_speaker: Dict[str, int] = {}
    seen_paths: Set[str] = set()
    for row in read_tsv(train_file):
        acc = accent_of(accent_col(row))
        if acc not in targets:
            continue
        spk = speaker_id(row.get("client_id", ""))
        path = row.get("path", "")
        utt = f"{spk}-{Path(path).stem}"
        if path in seen_paths:
            continue
        seen_paths.add(path)
        if spk in held_out_speakers:
            log.drop("cv_accents_train", utt, "speaker in dev/test")
            continue
        if common.normalize_text(row.get("sentence", "")) in held_out_sentences:
            log.drop("cv_accents_train", utt, "sentence in dev/test")
            continue
        if max_per_speaker and per_speaker.get(spk, 0) >= max_per_speaker:
            log.drop("cv_accents_train", utt, f"more than {max_per_speaker} clips of the speaker")
            continue
        u = make(row, "cv_accents_train")
        if u is not None:
            sets["cv_accents_train"].append(u)
            per_speaker[spk] = per_speaker.get(spk, 0) + 1

    # speaker overlap check (would indicate a bug above)
    spk_sets = {name: {u.spk for u in utts} for name, utts in sets.items()}
    train_spk = spk_sets["cv_accents_train"]
    for name, spks in spk_sets.items():
        if name != "cv_accents_train" and train_spk & spks:
            raise AssertionError(f"speakers shared by cv_accents_train and {name}: {sorted(train_spk & spks)[:5]}")
    for a in accents:
        if spk_sets[f"cv_{a}_test"] & spk_sets["cv_accents_dev"]:
            raise AssertionError(f"speakers shared by cv_{a}_test and cv_accents_dev (official split violated)")
    log.notes.append(f"accents: {', '.join(accents)}; train source: {train_file.name}")
    return common.write_sets(out_dir, sets, log)


def main(argv=None) -> int:
    ap = common.base_parser(__doc__)
    ap.add_argument("--accents", nargs="+", default=list(DEFAULT_ACCENTS), choices=sorted(ACCENTS))
    ap.add_argument("--train_source", choices=["validated", "train"], default="validated",
                    help="take the training clips from validated.tsv (minus dev/test speakers) or train.tsv")
    ap.add_argument("--max_per_speaker", type=int, default=0, help="cap on train clips per speaker (0: none)")
    ap.add_argument("--mp3_cmd", default=None,
                    help="decoder command template for MP3 when libsndfile cannot read it, with {path}")
    args = ap.parse_args(argv)
    counts = prepare(args.corpus, args.out, accents=args.accents, train_source=args.train_source,
                     max_per_speaker=args.max_per_speaker or None, min_dur=args.min_dur,
                     max_dur=args.max_dur or None, mp3_cmd=args.mp3_cmd)
    common.print_counts("common_voice", counts, args.out)
    return 0


if __name__ == "__main__":
    common.run_cli(main, __file__)
