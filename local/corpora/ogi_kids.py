#!/usr/bin/env python3
"""OGI / CSLU Kids' Speech (grades K-10) as Kaldi data directories, scripted and spontaneous.

    ogi_kids.py --corpus /path/to/cslu_kids --out data [--subsets scripted spontaneous]

Corpus: CSLU: Kids' Speech Version 1.1, LDC2007S18 (CSLU/OHSU licence through the LDC): ~1,100
children of the Forest Grove (Oregon) school district, kindergarten to grade 10, about 100 per
grade; each read ~60 of 319 prompts (words, sentences, digit strings) repeated after an animated
head, and ~1,000 children also gave a spontaneous monologue of about a minute (starting with the
alphabet). 16 kHz 16-bit mono RIFF wav. Layout (sources: the corpus ``readme.txt``; lhotse
``recipes/cslu_kids.py``; ESPnet ``egs2/myst_ogi_cmu_kids/asr1`` ``ogi_scripted_prepare.sh`` and
``ogi_spon_all_data_prepare.sh``; the OSU ``cslu-verifier`` data preparation)::

    <OGI>/docs/all.map                                   # prompt id -> "prompt text", e.g.  0A "Hello"
    <OGI>/docs/{00..10}-verified.txt                     # "<path to wav> <label>" per scripted file
    <OGI>/speech/scripted/<grade 00-10>/<n>/<spk>/<utt>.wav
    <OGI>/speech/spontaneous/<grade>/<n>/<spk>/<utt>.wav
    <OGI>/trans/spontaneous/<grade>/<n>/<spk>/<utt>.txt  # word-level transcript, CSLU conventions
    (labels/, misc/ empty; verify/ per-file verification, used when docs/*-verified.txt is absent)

File names are ``ks<grade><spk:2><prompt:2><take>``: speaker = the first five characters
(``ks001`` = grade code ``0`` + ``01``; grade codes 0-9 and ``a`` for grade 10), prompt = characters
6-7 (upper-cased, the key of ``all.map``), ``xx`` for the spontaneous monologue
(``ks001000.wav`` is speaker ``ks001`` reading prompt ``00``; ``ks001xx0.wav`` is its monologue).

Subsets (``--subsets``): ``scripted`` -> ``ogi_scripted_{train,dev,test}``, ``spontaneous`` ->
``ogi_spont_{train,dev,test}``.

Split: the corpus has no official partition. Default: this project's deterministic speaker split,
SHA-1 of ``ogi_kids/<speaker>`` thresholded at 80 % train / 10 % dev / 10 % test
(``common.split_by_hash``), so a child is in the same split in both subsets and the split does not
depend on which files are present. ``--split_lists DIR`` instead takes ``DIR/{train,dev,test}.list``
(utterance or speaker ids per line, e.g. ESPnet's ``egs2/myst_ogi_cmu_kids/asr1/local/
ogi_scripted_file_list``); files listed nowhere are dropped.

Cleaning, scripted: the text is the ``all.map`` prompt of the file's prompt id (quotes stripped,
project normaliser). Dropped: prompt ids missing from ``all.map`` (e.g. ``8V`` in some copies);
files whose verification label is not in ``--verify_labels`` (default ``1 4``: 1 = good, only the
target said; 4 = good with an air puff; 2 = target present plus other speech/noise and 3 = target
not said are dropped) and, with ``--require_verification true`` (default), files without a
label; utterances outside ``--min_dur``/``--max_dur`` (default 30 s).

Cleaning, spontaneous (``clean_spontaneous``; CSLU labelling conventions, tag list from the CSLU
Labeling Guide as used in the public OGI preparations): lines joined; every ``<...>`` tag removed
(``<bn> <bs> <br> <ln> <ls> <ns> <pau> <laugh> <cough> <sniff> <uu> <fp> <long> <sing> ...``,
including malformed ones seen in the corpus such as ``<long<bn>``, ``<ln>>``, ``<bs: no no>``;
tokens left with a stray ``<``/``>`` go too); ``(...)`` and ``[...]`` spans (cut-off / partial
words) removed; ``*`` marks deleted; tokens ending in ``-`` removed; project normaliser; filled
pauses dropped with ``--drop_fillers true`` (default). Empty results are dropped.
The monologues are 1-3 minutes long and the corpus has no time alignment, so by default they are
kept whole (``--spont_max_dur 0``: no length limit) as a long-form set; a model with a 30 s window
needs them cut first: align them (e.g. ``espnet2.bin.asr_align`` with
``--print_utterance_text true``) and pass the result with ``--spont_segments FILE``
(``<seg-id> <recording-id> <start> <end> [<score>] <text>`` per line; ``--min_segment_score``
drops poorly aligned segments); the output directories then have a ``segments`` file.

Every drop is listed with its reason in ``<out>/local/ogi_kids/``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

try:
    from . import common
except ImportError:  # run as a script: its own folder is first on sys.path
    import common

SUBSETS = {"scripted": "ogi_scripted", "spontaneous": "ogi_spont"}
SPLITS = (("train", 0.8), ("dev", 0.1), ("test", 0.1))
SALT = "ogi_kids"


# ------------------------------------------------------------------------------ layout
def find_root(corpus_root: Path) -> Path:
    root = Path(corpus_root)
    cands = [root] + sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [root]
    for cand in cands:
        if (cand / "speech").is_dir() and (cand / "docs").is_dir():
            return cand
    raise FileNotFoundError(f"OGI Kids' Speech not found under {root}: expected docs/ and speech/ directories")


def read_prompts(root: Path) -> Dict[str, str]:
    """``{PROMPT_ID: text}`` from ``docs/all.map`` (``0A "Hello"`` per line)."""
    f = root / "docs" / "all.map"
    if not f.is_file():
        raise FileNotFoundError(f"{f} missing (prompt texts of the scripted speech)")
    prompts: Dict[str, str] = {}
    for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, text = line.strip().partition(" ")
        if key:
            prompts[key.upper()] = text.strip().strip('"').strip()
    return prompts


def read_verification(root: Path) -> Dict[str, int]:
    """``{utt: label}`` from ``docs/*-verified.txt`` (else from per-file ``verify/**/*.txt``)."""
    labels: Dict[str, int] = {}
    for f in sorted((root / "docs").glob("*-verified.txt")):
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[-1].lstrip("-").isdigit():
                labels[Path(fields[0].replace("\\", "/")).stem] = int(fields[-1])
    if not labels and (root / "verify").is_dir():
        for f in sorted((root / "verify").rglob("*.txt")):
            first = f.read_text(encoding="utf-8", errors="replace").split()
            if first and first[0].isdigit():
                labels[f.stem] = int(first[0])
    return labels


# ------------------------------------------------------------------------------ text
def clean_spontaneous(raw: str, drop_fillers: bool = True) -> Optional[str]:
    """Clean a CSLU spontaneous transcript (rules in the module docstring); None if nothing is left."""
    text = " ".join(raw.replace("\ufeff", "").split())
    while re.search(r"<[^<>]*>", text):               # innermost first: <long<bn>> -> <long>
        text = re.sub(r"<[^<>]*>", " ", text)
    text = " ".join(w for w in text.split() if "<" not in w and ">" not in w)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    while re.search(r"\([^()]*\)", text):
        text = re.sub(r"\([^()]*\)", " ", text)
    text = re.sub(r"[\[\](){}]", " ", text).replace("*", "")
    text = " ".join(w for w in text.split() if not w.endswith("-"))
    clean = common.normalize_text(text)
    if drop_fillers:
        clean = common.drop_fillers(clean)
    return clean or None


def read_segments(path: Path, min_score: Optional[float] = None) -> Dict[str, List[Tuple[str, float, float, str]]]:
    """``{recording: [(segment id, start, end, raw text)]}`` from an aligner's segments file."""
    out: Dict[str, List[Tuple[str, float, float, str]]] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 5:
            raise ValueError(f"{path}:{n}: expected '<seg-id> <recording-id> <start> <end> [<score>] <text>'")
        seg, rec, start, end = fields[0], fields[1], float(fields[2]), float(fields[3])
        rest = fields[4:]
        score = None
        if len(rest) > 1 and re.fullmatch(r"-?\d+\.\d+", rest[0]):
            score, rest = float(rest[0]), rest[1:]
        if min_score is not None and score is not None and score < min_score:
            continue
        out.setdefault(rec, []).append((seg, start, end, " ".join(rest)))
    return out


# ------------------------------------------------------------------------------ prepare
def prepare(corpus_root: Path, out_dir: Path, subsets: Sequence[str] = ("scripted", "spontaneous"),
            verify_labels: Sequence[int] = (1, 4), require_verification: bool = True, drop_fillers: bool = True,
            min_dur: float = 0.0, max_dur: Optional[float] = 30.0, spont_max_dur: Optional[float] = None,
            spont_segments: Optional[Path] = None, min_segment_score: Optional[float] = None,
            split_lists: Optional[Path] = None) -> Dict[str, int]:
    """Write ``ogi_scripted_{train,dev,test}`` and/or ``ogi_spont_{train,dev,test}``; returns counts."""
    bad = [s for s in subsets if s not in SUBSETS]
    if bad or not subsets:
        raise ValueError(f"unknown subset(s) {bad}; choose from {list(SUBSETS)}")
    root = find_root(corpus_root)
    lists = common.read_split_lists(split_lists, [s for s, _ in SPLITS]) if split_lists else None
    log = common.PrepLog("ogi_kids")
    sets: Dict[str, List[common.Utterance]] = {}

    def split_of(utt: str, spk: str) -> Optional[str]:
        if lists is not None:
            return lists.get(utt, lists.get(spk))
        return common.split_by_hash(spk, SPLITS, SALT)

    if "scripted" in subsets:
        prefix = SUBSETS["scripted"]
        for split, _ in SPLITS:
            sets[f"{prefix}_{split}"] = []
        prompts = read_prompts(root)
        labels = read_verification(root)
        if not labels and require_verification:
            raise FileNotFoundError(f"no verification labels under {root}/docs (*-verified.txt) or {root}/verify; "
                                    f"use --require_verification false to keep unverified files")
        for wav in sorted((root / "speech" / "scripted").rglob("*.wav")):
            utt, spk = wav.stem, wav.parent.name
            if not utt.startswith(spk):
                spk = utt[:5]
            split = split_of(utt, spk)
            if split is None:
                log.drop(f"{prefix}_unlisted", utt, "not in the split lists")
                continue
            name = f"{prefix}_{split}"
            prompt = prompts.get(utt[5:7].upper())
            if prompt is None:
                log.drop(name, utt, f"prompt id {utt[5:7].upper()} not in all.map")
                continue
            label = labels.get(utt)
            if label is None and require_verification:
                log.drop(name, utt, "no verification label")
                continue
            if label is not None and label not in verify_labels:
                log.drop(name, utt, f"verification label {label}")
                continue
            text = common.normalize_text(prompt)
            if not text:
                log.drop(name, utt, "empty after cleaning")
                continue
            dur = common.audio_duration(wav)
            if log.rejects(name, utt, common.duration_problem(dur, min_dur, max_dur)):
                continue
            sets[name].append(common.Utterance(utt=utt, spk=spk, audio=str(wav.resolve()), text=text, duration=dur))

    if "spontaneous" in subsets:
        prefix = SUBSETS["spontaneous"]
        for split, _ in SPLITS:
            sets[f"{prefix}_{split}"] = []
        segs = read_segments(spont_segments, min_segment_score) if spont_segments else None
        trans_root = root / "trans" / "spontaneous"
        for wav in sorted((root / "speech" / "spontaneous").rglob("*.wav")):
            utt, spk = wav.stem, wav.parent.name
            if not utt.startswith(spk):
                spk = utt[:5]
            split = split_of(utt, spk)
            if split is None:
                log.drop(f"{prefix}_unlisted", utt, "not in the split lists")
                continue
            name = f"{prefix}_{split}"
            rel = wav.relative_to(root / "speech" / "spontaneous").with_suffix(".txt")
            trn = trans_root / rel
            if not trn.is_file():
                found = list(trans_root.rglob(f"{utt}.txt")) if trans_root.is_dir() else []
                trn = found[0] if found else trn
            if not trn.is_file():
                log.drop(name, utt, "untranscribed (no trans/spontaneous/.../*.txt)")
                continue
            try:
                rec_dur = common.audio_duration(wav)
            except Exception as e:
                log.drop(name, utt, f"unreadable audio ({e})")
                continue
            if rec_dur <= 0:
                log.drop(name, utt, "empty audio")
                continue
            if segs is None:
                text = clean_spontaneous(trn.read_text(encoding="utf-8", errors="replace"), drop_fillers)
                if text is None:
                    log.drop(name, utt, "empty after cleaning")
                    continue
                if log.rejects(name, utt, common.duration_problem(rec_dur, min_dur, spont_max_dur)):
                    continue
                sets[name].append(common.Utterance(utt=utt, spk=spk, audio=str(wav.resolve()), text=text,
                                                   duration=rec_dur))
                continue
            rec_segs = segs.get(utt)
            if not rec_segs:
                log.drop(name, utt, "no aligned segments")
                continue
            for seg, start, end, raw in rec_segs:
                seg_id = seg if seg.startswith(spk) else f"{utt}_{seg}"
                text = clean_spontaneous(raw, drop_fillers)
                end = min(end, rec_dur)
                if text is None:
                    log.drop(name, seg_id, "empty after cleaning")
                    continue
                if log.rejects(name, seg_id, common.duration_problem(end - start, min_dur, max_dur)):
                    continue
                sets[name].append(common.Utterance(utt=seg_id, spk=spk, audio=str(wav.resolve()), text=text,
                                                   duration=round(end - start, 3), rec=utt, start=start, end=end))
    return common.write_sets(out_dir, sets, log)


def main(argv=None) -> int:
    ap = common.base_parser(__doc__)
    ap.add_argument("--subsets", nargs="+", default=["scripted", "spontaneous"], choices=sorted(SUBSETS))
    ap.add_argument("--verify_labels", nargs="+", type=int, default=[1, 4],
                    help="verification labels of scripted files to keep (1 good, 2 maybe, 3 bad, 4 puff)")
    ap.add_argument("--require_verification", type=common.str2bool, default=True,
                    help="drop scripted files without a verification label (true|false)")
    ap.add_argument("--drop_fillers", type=common.str2bool, default=True, help="remove filled pauses (true|false)")
    ap.add_argument("--spont_max_dur", type=float, default=0.0,
                    help="longest spontaneous recording kept whole (s; 0: no limit, long-form)")
    ap.add_argument("--spont_segments", type=Path, default=None, help="aligner segments of the monologues")
    ap.add_argument("--min_segment_score", type=float, default=None, help="drop segments scored below this")
    ap.add_argument("--split_lists", type=Path, default=None, help="directory with {train,dev,test}.list")
    args = ap.parse_args(argv)
    counts = prepare(args.corpus, args.out, subsets=args.subsets, verify_labels=args.verify_labels,
                     require_verification=args.require_verification, drop_fillers=args.drop_fillers,
                     min_dur=args.min_dur, max_dur=args.max_dur or None, spont_max_dur=args.spont_max_dur or None,
                     spont_segments=args.spont_segments, min_segment_score=args.min_segment_score,
                     split_lists=args.split_lists)
    common.print_counts("ogi_kids", counts, args.out)
    return 0


if __name__ == "__main__":
    common.run_cli(main, __file__)
