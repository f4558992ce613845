#!/usr/bin/env python3
"""CMU Kids (children reading sentences aloud) as Kaldi data directories.

    cmu_kids.py --corpus /path/to/cmu_kids --out data [--text_source prompt|spoken]

Corpus: The CMU Kids Corpus, LDC97S63 (LDC licence): 5,180 utterances of 76 children aged 6-11
(24 boys, 52 girls) reading Weekly-Reader sentences for the LISTEN reading tutor; 44 "SUM95"
speakers (good readers, 3,333 utterances) and 32 "FP" speakers (Fort Pitt school, errorful
reading and dialect, 1,847 utterances). 16 kHz NIST SPHERE. Layout (sources: LDC catalogue
docs KIDS.TXT / TABLES.TXT; lhotse ``recipes/cmu_kids.py``; ESPnet ``egs2/cmu_kids/asr1``
``local/cmu_kids_data_prepare.sh``; Kaldi ``egs/cmu_cslu_kids``)::

    <CMU_KIDS>/cmu_kids/kids/<spk>/signal/<utt>.sph      # audio
    <CMU_KIDS>/cmu_kids/kids/<spk>/trans/<utt>.trn       # what was actually said (noise tags, phones)
    <CMU_KIDS>/cmu_kids/tables/sentence.tbl              # "<prompt id>\\t<count>\\t<sentence>"
    <CMU_KIDS>/cmu_kids/tables/speaker.tbl               # 2 header lines, "<spk>\\t<SUM95|FP>\\t<grade/age>\\t..."
    <CMU_KIDS>/cmu_kids/tables/transcrp.tbl              # "<utt> <spoken transcript>" (all .trn in one file)

``--corpus`` may also point at the inner ``cmu_kids/``. Utterance ids are
``<spk:4><prompt:3><bin:1>`` (``fabm2aa1``): speaker ``fabm`` (first letter = gender), prompt
``2aa`` (the key of sentence.tbl), bin 1 = read as prompted with no noise or mispronunciation,
bin 2 = with noise, deviations or non-dictionary pronunciations.

Audio: libsndfile (``soundfile``) reads uncompressed NIST SPHERE PCM, which is what the LDC97S63
files are (ESPnet's ``sph2wav.py`` reads them as raw PCM), so ``wav.scp`` lists the ``.sph``
files themselves. Shorten-compressed SPHERE (``sample_coding`` ``pcm,embedded-shorten-...``)
cannot be read by libsndfile: such files are written as ``sph2pipe -f wav -p -c 1 FILE |`` pipes
when ``sph2pipe`` is on PATH (or given with ``--sph2pipe``), and preparation stops with an
explanation otherwise. Durations come from the SPHERE header.

Text (``--text_source``): ``prompt`` (default; what ESPnet's ``egs2/cmu_kids`` and lhotse use) =
the sentence.tbl prompt of the utterance; ``spoken`` = the ``.trn`` transcript with bracketed noise
tags (``[...]``, ``<...>``, ``+...+``) removed; utterances whose ``.trn`` contains a phonetic
transcription (a token with ``/``, used where the child's pronunciation is not a dictionary word)
are dropped in that mode (that notation is taken from the corpus description and should be
checked against ``doc/`` on a real copy). ``--bins`` keeps bin 1 and/or 2 (default both).
Project normaliser on either text; empty results and utterances outside ``--min_dur``/``--max_dur``
(default 30 s) are dropped; every drop is listed in ``<out>/local/cmu_kids/``.

Split: the corpus has no official partition. Default: this project's deterministic speaker split,
stratified by population (SUM95 / FP from speaker.tbl): within each population speakers are
ordered by SHA-1 of ``cmu_kids/<speaker>`` and the first 80 % go to train, the next 10 % to dev,
the rest to test (``common.assign_exact``; 76 speakers -> about 60/8/8). ``--split_lists DIR``
instead takes ``DIR/{train,dev,test}.list`` (utterance or speaker ids, e.g. ESPnet's
``egs2/cmu_kids/asr1/conf/file_list``, which are utterance lists). Sets: ``cmu_kids_{train,dev,test}``.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

try:
    from . import common
except ImportError:  # run as a script: its own folder is first on sys.path
    import common

SPLITS = (("train", 0.8), ("dev", 0.1), ("test", 0.1))
SALT = "cmu_kids"


def find_root(corpus_root: Path) -> Path:
    root = Path(corpus_root)
    for cand in (root, root / "cmu_kids"):
        if (cand / "kids").is_dir():
            return cand
    raise FileNotFoundError(f"CMU Kids not found under {root}: expected kids/<speaker>/signal/*.sph "
                            f"(or cmu_kids/kids/...)")


def _tables_dir(root: Path) -> Path:
    for name in ("tables", "table"):
        if (root / name).is_dir():
            return root / name
    return root / "tables"


def read_sentences(root: Path) -> Dict[str, str]:
    f = _tables_dir(root) / "sentence.tbl"
    if not f.is_file():
        raise FileNotFoundError(f"{f} missing (the prompt sentences)")
    out: Dict[str, str] = {}
    for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.rstrip("\r").split("\t")
        if len(fields) >= 3 and fields[0].strip():
            out[fields[0].strip()] = fields[-1].strip()
    return out


def read_populations(root: Path) -> Dict[str, str]:
    f = _tables_dir(root) / "speaker.tbl"
    out: Dict[str, str] = {}
    if not f.is_file():
        return out
    for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1] in ("SUM95", "FP"):
            out[fields[0]] = fields[1]
    return out


def clean_spoken(raw: str) -> Optional[str]:
    """Spoken transcript -> text, or None when it holds a phonetic transcription."""
    text = " ".join(raw.split())
    text = re.sub(r"\[[^\]]*\]|<[^<>]*>|\+[^+\s]+\+", " ", text)
    if "/" in text:
        return None
    return common.normalize_text(text)


def prepare(corpus_root: Path, out_dir: Path, text_source: str = "prompt", bins: Sequence[int] = (1, 2),
            min_dur: float = 0.0, max_dur: Optional[float] = 30.0, split_lists: Optional[Path] = None,
            sph2pipe: Optional[str] = None) -> Dict[str, int]:
    """Write ``<out_dir>/cmu_kids_{train,dev,test}``; returns ``{set name: utterances}``."""
    if text_source not in ("prompt", "spoken"):
        raise ValueError(f"text_source must be prompt or spoken, got {text_source!r}")
    root = find_root(corpus_root)
    sentences = read_sentences(root)
    populations = read_populations(root)
    sph2pipe = sph2pipe or shutil.which("sph2pipe")
    log = common.PrepLog("cmu_kids")
    files = sorted((root / "kids").glob("*/signal/*.sph"))
    if not files:
        raise FileNotFoundError(f"no kids/<speaker>/signal/*.sph under {root}")
    speakers = sorted({f.parent.parent.name for f in files})
    if split_lists:
        lists = common.read_split_lists(split_lists, [s for s, _ in SPLITS])
        split_of = lambda utt, spk: lists.get(utt, lists.get(spk))  # noqa: E731
    else:
        assignment = common.assign_exact(speakers, SPLITS, SALT, strata=populations)
        split_of = lambda utt, spk: assignment[spk]  # noqa: E731
    sets: Dict[str, List[common.Utterance]] = {f"cmu_kids_{s}": [] for s, _ in SPLITS}
    for sph in files:
        spk, utt = sph.parent.parent.name, sph.stem
        split = split_of(utt, spk)
        if split is None:
            log.drop("cmu_kids_unlisted", utt, "not in the split lists")
            continue
        name = f"cmu_kids_{split}"
        if not utt.startswith(spk) or len(utt) < len(spk) + 4:
            log.drop(name, utt, "unexpected file name")
            continue
        prompt_id, bin_char = utt[len(spk):len(spk) + 3], utt[len(spk) + 3]
        if bin_char.isdigit() and int(bin_char) not in bins:
            log.drop(name, utt, f"bin {bin_char}")
            continue
        if text_source == "prompt":
            sentence = sentences.get(prompt_id)
            if sentence is None:
                log.drop(name, utt, f"prompt {prompt_id} not in sentence.tbl")
                continue
            text = common.normalize_text(sentence)
        else:
            trn = sph.parent.parent / "trans" / f"{utt}.trn"
            if not trn.is_file():
                log.drop(name, utt, "untranscribed (no .trn)")
                continue
            text = clean_spoken(trn.read_text(encoding="utf-8", errors="replace"))
            if text is None:
                log.drop(name, utt, "phonetic transcription in .trn")
                continue
        if not text:
            log.drop(name, utt, "empty after cleaning")
            continue
        try:
            header = common.read_sphere_header(sph)
        except ValueError as e:
            log.drop(name, utt, f"unreadable audio ({e})")
            continue
        rate = float(header.get("sample_rate", 0) or 0)
        dur = int(header.get("sample_count", 0) or 0) / rate if rate > 0 else 0.0
        if log.rejects(name, utt, common.duration_problem(dur, min_dur, max_dur)):
            continue
        if common.sphere_is_compressed(header):
            if not sph2pipe:
                raise SystemExit(
                    f"cmu_kids: {sph} is shorten-compressed SPHERE ({header.get('sample_coding')}), which libsndfile "
                    f"cannot decode; install sph2pipe (it ships with Kaldi's tools/, or build it from the LDC "
                    f"sources) and put it on PATH or pass --sph2pipe, or convert the corpus to wav first")
            audio = f"{sph2pipe} -f wav -p -c 1 {sph.resolve()} |"
        else:
            audio = str(sph.resolve())
        gender = spk[0].lower() if spk[0].lower() in ("m", "f") else None
        sets[name].append(common.Utterance(utt=utt, spk=spk, audio=audio, text=text, duration=dur, gender=gender))
    return common.write_sets(out_dir, sets, log)


def main(argv=None) -> int:
    ap = common.base_parser(__doc__)
    ap.add_argument("--text_source", choices=["prompt", "spoken"], default="prompt",
                    help="reference text: the prompt sentence or the spoken transcript")
    ap.add_argument("--bins", nargs="+", type=int, default=[1, 2], help="transcription bins to keep (1, 2)")
    ap.add_argument("--split_lists", type=Path, default=None, help="directory with {train,dev,test}.list")
    ap.add_argument("--sph2pipe", default=None, help="sph2pipe binary for shorten-compressed SPHERE files")
    args = ap.parse_args(argv)
    counts = prepare(args.corpus, args.out, text_source=args.text_source, bins=args.bins, min_dur=args.min_dur,
                     max_dur=args.max_dur or None, split_lists=args.split_lists, sph2pipe=args.sph2pipe)
    common.print_counts("cmu_kids", counts, args.out)
    return 0


if __name__ == "__main__":
    common.run_cli(main, __file__)
