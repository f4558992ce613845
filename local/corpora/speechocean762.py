#!/usr/bin/env python3
"""speechocean762 (English read by Mandarin-L1 speakers, half of them children) as Kaldi data directories.

    speechocean762.py --corpus /path/to/speechocean762 --out data [--dev_share 0.15] [--speed_perturb "0.9 1.1"]

Corpus: speechocean762 (Zhang et al., Interspeech 2021; OpenSLR resource 101; free for commercial and
non-commercial use): 5,000 utterances of 250 speakers (125 per split, speaker-disjoint; 52 children
aged 6-12 and 73 older speakers in each split), about 5.8 h of 16 kHz mono 16-bit PCM, simple read
sentences and digit strings in upper case. Layout (the OpenSLR tarball and the public GitHub
repository ``jimbozhang/speechocean762`` are the same tree)::

    <SPEECHOCEAN762>/{train,test}/{wav.scp,text,utt2spk,spk2age,spk2gender}
    <SPEECHOCEAN762>/WAVE/SPEAKER<spk:4>/<utt:9>.WAV      # wav.scp paths are relative to the root

The two score JSON files under ``resource/`` are for pronunciation scoring; ASR needs neither.

Sets written (speaker ids ``so<spk>``, utterance ids ``so<spk>-<utt>``, so that every utterance id
starts with its speaker id as Kaldi's sorting requires):

- ``so762_test_{child,adult}``: the official ``test/`` split by age group (never used for a choice);
- ``so762_dev_{child,adult}``: ``--dev_share`` of the ``train/`` speakers of each age group, chosen
  by SHA-1 of ``speechocean762/<spk>`` (``common.assign_exact``; 0.15 -> 8 children and 11 adults);
- ``so762_train_{child,adult}``: the remaining ``train/`` speakers;
- ``so762_train_adult_sp``: ``so762_train_adult`` plus speed-perturbed copies (``--speed_perturb``,
  sox ``speed``; ids prefixed ``sp<factor>-``, speakers too, as Kaldi's ``perturb_data_dir_speed.sh``),
  the real-speech part of the foundation model's training data;
- ``so762_test_{child,adult}_sub``: every test speaker with ``--test_subset`` of its utterances
  (children, adults; the lowest SHA-1 of ``speechocean762/<utt>``): the decoding subsets of the
  budget sweep, chosen once, balanced per speaker.

Age groups: ``child`` = 12 or younger (``--child_max_age``), ``adult`` = the rest (the corpus's 13-15
year-olds included). Text: the project normaliser (``common.normalize_text``: lower case, punctuation
removed). Problems stop the preparation with one line naming them: a missing or partial corpus
folder (a split's file, ``WAVE/``, any audio file of a kept utterance), a speaker without an age,
an age that is not a number, audio that is not 16 kHz mono.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

try:
    from . import common
except ImportError:  # run as a script: its own folder is first on sys.path
    import common

SPLIT_FILES = ("wav.scp", "text", "utt2spk", "spk2age")
RATE = 16000
SALT = "speechocean762"
GROUPS = ("child", "adult")


def find_root(corpus_root: Path) -> Path:
    """The corpus root, after checking that every file the preparation reads is there."""
    root = Path(corpus_root)
    if not root.is_dir():
        raise FileNotFoundError(f"speechocean762 not found: {root} is not a directory (OpenSLR 101, or a copy of "
                                f"github.com/jimbozhang/speechocean762; set SPEECHOCEAN762 in db.sh)")
    missing = [f"{s}/{f}" for s in ("train", "test") for f in SPLIT_FILES if not (root / s / f).is_file()]
    if not (root / "WAVE").is_dir():
        missing.append("WAVE/")
    if missing:
        raise FileNotFoundError(f"{root} is not a complete speechocean762 folder: missing {', '.join(missing)}")
    return root


def read_kv(path: Path) -> Dict[str, str]:
    """A Kaldi table (``key value...``, tab or space separated) as ``{key: value}``."""
    out: Dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.strip().split(None, 1)
        if not fields:
            continue
        if len(fields) < 2:
            raise ValueError(f"{path}:{n}: a key without a value: {line!r}")
        out[fields[0]] = fields[1].strip()
    return out


def age_groups(spk2age: Mapping[str, str], where: Path, child_max_age: int) -> Dict[str, str]:
    """``{speaker: child|adult}``; a non-numeric age is an error naming the speaker."""
    out = {}
    for spk, age in spk2age.items():
        try:
            years = int(float(age))
        except ValueError:
            raise ValueError(f"{where}: speaker {spk} has age {age!r}, not a number") from None
        out[spk] = "child" if years <= child_max_age else "adult"
    return out


def check_audio(path: Path) -> float:
    """Duration in seconds of a 16 kHz mono file; anything else is an error naming the file."""
    import soundfile

    info = soundfile.info(str(path))
    if info.samplerate != RATE or info.channels != 1:
        raise ValueError(f"{path}: {info.samplerate} Hz, {info.channels} channel(s); speechocean762 is "
                         f"{RATE} Hz mono (a damaged or converted copy?)")
    return info.frames / float(info.samplerate)


def read_split(root: Path, split: str, child_max_age: int) -> List[Tuple[str, common.Utterance]]:
    """Every utterance of ``train`` or ``test`` as ``(age group, utterance)``."""
    d = root / split
    wavs, texts, utt2spk, spk2age = (read_kv(d / f) for f in SPLIT_FILES)
    genders = read_kv(d / "spk2gender") if (d / "spk2gender").is_file() else {}
    groups = age_groups(spk2age, d / "spk2age", child_max_age)
    unknown = sorted({s for s in utt2spk.values() if s not in groups})
    if unknown:
        raise ValueError(f"{d}/spk2age has no age for speaker(s) {', '.join(unknown[:10])}: the age group "
                         f"(child <= {child_max_age}, adult) cannot be decided")
    no_audio = sorted(u for u in utt2spk if u not in wavs)
    no_text = sorted(u for u in utt2spk if u not in texts)
    if no_audio or no_text:
        raise ValueError(f"{d}: utterances without a wav.scp entry ({', '.join(no_audio[:5]) or 'none'}) or "
                         f"without text ({', '.join(no_text[:5]) or 'none'})")
    absent = [str(root / wavs[u]) for u in sorted(utt2spk) if not (root / wavs[u]).is_file()]
    if absent:
        raise FileNotFoundError(f"{len(absent)} audio file(s) of {d}/wav.scp missing (a partial copy of the "
                                f"corpus?), e.g. {absent[0]}")
    out = []
    for utt in sorted(utt2spk):
        spk = utt2spk[utt]
        g = genders.get(spk, "").lower()
        path = (root / wavs[utt]).resolve()
        out.append((groups[spk], common.Utterance(
            utt=f"so{spk}-{utt}", spk=f"so{spk}", audio=str(path), text=common.normalize_text(texts[utt]),
            duration=check_audio(path), gender=g if g in ("m", "f") else None)))
    return out


def speed_copies(utts: Sequence[common.Utterance], factors: Sequence[float]) -> List[common.Utterance]:
    """The utterances plus a sox ``speed`` copy per factor (ids and speakers prefixed ``sp<factor>-``)."""
    out = list(utts)
    for f in factors:
        p = f"sp{f:g}-"
        out += [common.Utterance(utt=p + u.utt, spk=p + u.spk, audio=f"sox {u.audio} -t wav - speed {f:g} |",
                                 text=u.text, duration=u.duration / f if u.duration else None, gender=u.gender)
                for u in utts]
    return out


def per_speaker(utts: Sequence[common.Utterance], k: int) -> List[common.Utterance]:
    """The ``k`` utterances of every speaker with the lowest hash (all of a speaker with fewer)."""
    by_spk: Dict[str, List[common.Utterance]] = {}
    for u in utts:
        by_spk.setdefault(u.spk, []).append(u)
    out = []
    for members in by_spk.values():
        out += sorted(members, key=lambda u: (common.hash_fraction(u.utt, SALT), u.utt))[:k]
    return out


def prepare(corpus_root: Path, out_dir: Path, dev_share: float = 0.15, child_max_age: int = 12,
            speed_perturb: Sequence[float] = (0.9, 1.1), min_dur: float = 0.0,
            max_dur: Optional[float] = 30.0, test_subset: Sequence[int] = (6, 3)) -> Dict[str, int]:
    """Write the ``so762_*`` sets (see the module docstring); returns ``{set name: utterances}``."""
    if not 0 < dev_share < 1:
        raise ValueError(f"dev_share must be in (0, 1), got {dev_share}")
    if any(f <= 0 or f == 1 for f in speed_perturb):
        raise ValueError(f"speed perturbation factors must be positive and not 1, got {list(speed_perturb)}")
    root = find_root(corpus_root)
    log = common.PrepLog("speechocean762")
    sets: Dict[str, List[common.Utterance]] = {f"so762_{s}_{g}": [] for s in ("train", "dev", "test") for g in GROUPS}
    train = read_split(root, "train", child_max_age)
    test = read_split(root, "test", child_max_age)
    group_of = {u.spk: g for g, u in train}
    split_of = common.assign_exact(group_of, (("train", 1 - dev_share), ("dev", dev_share)), SALT, strata=group_of)
    shared = sorted(set(group_of) & {u.spk for _, u in test})
    if shared:
        raise ValueError(f"speaker(s) {', '.join(shared)} in both train/ and test/: not the official split")
    for split, utts in (("train", train), ("test", test)):
        for group, u in utts:
            name = f"so762_{split_of[u.spk] if split == 'train' else 'test'}_{group}"
            if log.rejects(name, u.utt, common.duration_problem(u.duration, min_dur, max_dur)):
                continue
            if not u.text:
                log.drop(name, u.utt, "empty after normalisation")
                continue
            sets[name].append(u)
    if speed_perturb:
        sets["so762_train_adult_sp"] = speed_copies(sets["so762_train_adult"], speed_perturb)
    for group, k in zip(GROUPS, test_subset):
        sets[f"so762_test_{group}_sub"] = per_speaker(sets[f"so762_test_{group}"], int(k))
    log.notes.append(f"dev speakers: {sorted(s for s, v in split_of.items() if v == 'dev')}")
    return common.write_sets(out_dir, sets, log)


def main(argv=None) -> int:
    ap = common.base_parser(__doc__)
    ap.add_argument("--dev_share", type=float, default=0.15, help="share of train/ speakers per age group held out as dev")
    ap.add_argument("--child_max_age", type=int, default=12, help="oldest age counted as a child")
    ap.add_argument("--test_subset", default="6 3",
                    help="utterances per test speaker (children, adults) in so762_test_{child,adult}_sub")
    ap.add_argument("--speed_perturb", default="0.9 1.1",
                    help="speed factors of so762_train_adult_sp's extra copies ('' for none)")
    args = ap.parse_args(argv)
    factors = [float(f) for f in args.speed_perturb.split()]
    counts = prepare(args.corpus, args.out, dev_share=args.dev_share, child_max_age=args.child_max_age,
                     speed_perturb=factors, min_dur=args.min_dur, max_dur=args.max_dur or None,
                     test_subset=[int(k) for k in args.test_subset.split()])
    common.print_counts("speechocean762", counts, args.out)
    return 0


if __name__ == "__main__":
    common.run_cli(main, __file__)
