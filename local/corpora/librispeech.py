#!/usr/bin/env python3
"""LibriSpeech test-clean / test-other (the forgetting sets) as Kaldi data directories.

    librispeech.py --corpus /path/to/LibriSpeech --out data [--sets test-clean test-other]

Corpus (OpenSLR SLR12, CC BY 4.0, https://www.openslr.org/12): read audiobook speech, 16 kHz
FLAC. Layout (as extracted from the OpenSLR tarballs)::

    LibriSpeech/<set>/<reader>/<chapter>/<reader>-<chapter>-<nnnn>.flac
    LibriSpeech/<set>/<reader>/<chapter>/<reader>-<chapter>.trans.txt   # "<utt-id> <UPPER CASE TEXT>"
    LibriSpeech/SPEAKERS.TXT                                             # "ID | SEX | SUBSET | MINUTES | NAME"

``--corpus`` may point at ``LibriSpeech/`` or at the directory that contains it.

Sets: the corpus's own partitions; ``test-clean`` (2,620 utterances, 40 readers, 5.4 h) and
``test-other`` (2,939 utterances, 33 readers, 5.1 h) are written as ``librispeech_test_clean`` and
``librispeech_test_other`` (``--prefix``). Speaker = reader id; ``spk2gender`` from SPEAKERS.TXT.

Cleaning: the transcripts are already upper-case words with apostrophes; they go through the
project normaliser (lower case). Utterances without a transcript line or audio file are dropped,
as are utterances longer than ``--max_dur`` (default 30 s, OWSM's window: a handful of test-clean /
test-other utterances are 30-35 s long; ``--max_dur 0`` keeps the sets complete). Every drop is
listed in ``<out>/local/librispeech/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

try:
    from . import common
except ImportError:  # run as a script: its own folder is first on sys.path
    import common

DEFAULT_SETS = ("test-clean", "test-other")


def find_root(corpus_root: Path, sets: Sequence[str]) -> Path:
    """The directory that holds the set directories (``LibriSpeech/``)."""
    root = Path(corpus_root)
    for cand in (root, root / "LibriSpeech"):
        if any((cand / s).is_dir() for s in sets):
            return cand
    raise FileNotFoundError(f"LibriSpeech sets {list(sets)} not found under {root} (nor {root / 'LibriSpeech'})")


def read_genders(root: Path) -> Dict[str, str]:
    genders: Dict[str, str] = {}
    f = root / "SPEAKERS.TXT"
    if not f.is_file():
        return genders
    for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(";") or "|" not in line:
            continue
        fields = [x.strip() for x in line.split("|")]
        if len(fields) >= 2 and fields[1].upper() in ("M", "F"):
            genders[fields[0]] = fields[1].lower()
    return genders


def prepare(corpus_root: Path, out_dir: Path, sets: Sequence[str] = DEFAULT_SETS, prefix: str = "librispeech_",
            min_dur: float = 0.0, max_dur: Optional[float] = 30.0) -> Dict[str, int]:
    """Write ``<out_dir>/<prefix><set>`` for every set; returns ``{set name: utterances}``."""
    root = find_root(corpus_root, sets)
    genders = read_genders(root)
    log = common.PrepLog("librispeech")
    out_sets: Dict[str, List[common.Utterance]] = {}
    for s in sets:
        set_dir = root / s
        if not set_dir.is_dir():
            raise FileNotFoundError(f"LibriSpeech set {s} not found: {set_dir}")
        name = prefix + s.replace("-", "_")
        utts: List[common.Utterance] = []
        audio = {p.stem: p for p in set_dir.glob("*/*/*.flac")}
        seen = set()
        for trans in sorted(set_dir.glob("*/*/*.trans.txt")):
            for line in trans.read_text(encoding="utf-8").splitlines():
                utt, _, raw = line.strip().partition(" ")
                if not utt:
                    continue
                seen.add(utt)
                path = audio.get(utt)
                if path is None:
                    log.drop(name, utt, "no audio file")
                    continue
                text = common.normalize_text(raw)
                if not text:
                    log.drop(name, utt, "empty transcript")
                    continue
                dur = common.audio_duration(path)
                if log.rejects(name, utt, common.duration_problem(dur, min_dur, max_dur)):
                    continue
                spk = utt.split("-")[0]
                utts.append(common.Utterance(utt=utt, spk=spk, audio=str(path.resolve()), text=text,
                                             duration=dur, gender=genders.get(spk)))
        for utt in sorted(set(audio) - seen):
            log.drop(name, utt, "no transcript")
        out_sets[name] = utts
    return common.write_sets(out_dir, out_sets, log)


def main(argv=None) -> int:
    ap = common.base_parser(__doc__)
    ap.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS), help="LibriSpeech partitions to prepare")
    ap.add_argument("--prefix", default="librispeech_", help="prefix of the output set names")
    args = ap.parse_args(argv)
    counts = prepare(args.corpus, args.out, sets=args.sets, prefix=args.prefix, min_dur=args.min_dur,
                     max_dur=args.max_dur or None)
    common.print_counts("librispeech", counts, args.out)
    return 0


if __name__ == "__main__":
    common.run_cli(main, __file__)
