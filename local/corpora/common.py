"""Shared pieces of the corpus preparations: the transcript normaliser, audio durations and the
duration filter, deterministic speaker splits, and the writer of sorted Kaldi data directories.

Transcript convention of the project (``normalize_text``), applied after each corpus has removed
its own markers (see each module):

1. Unicode NFKC; typographic apostrophes and quotes (’ ‘ ʼ ´ `) become ``'``; ``&`` becomes ``and``.
2. Lower case.
3. Every character that is not a letter, a digit, an apostrophe or white space becomes a space
   (so ``x-ray`` -> ``x ray``, ``well,`` -> ``well``, ``U.S.`` -> ``u s``); ``_`` too.
4. Apostrophes are kept inside words (``don't``, ``it's``) and stripped at word edges
   (``'cause`` -> ``cause``, ``students'`` -> ``students``, ``'quoted'`` -> ``quoted``);
   a word that was only apostrophes disappears.
5. White space is collapsed. Digits are kept as they are (no number expansion); letters outside
   a-z (``é``) are kept.

This is the same text the project's scorer (``espnet_peft.scoring.normalize``) compares, so the
references need no further normalisation at scoring time.

Optional filler removal (``drop_fillers``): the filled pauses ``uh um uhm umm uhh hmm hm mm mmm mhm``
(the set Whisper's English normaliser removes, plus common spellings) are dropped as whole words.

Data directories (``write_kaldi_dir``): ``wav.scp``, ``text``, ``utt2spk``, ``spk2utt``, ``utt2dur``
(when durations are known), ``segments`` (only when utterances are cut out of longer recordings),
``spk2gender`` (when every speaker's gender is known); all sorted in C-locale (byte) order. Every
utterance id must start with its speaker id (Kaldi's sorting requirement), ids contain no white
space, and text is never empty.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

# ------------------------------------------------------------------------------ text
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'", "`": "'",
                              "\u201c": '"', "\u201d": '"'})
_NON_WORD = re.compile(r"[^\w'\s]|_")
FILLERS = frozenset({"uh", "um", "uhm", "umm", "uhh", "hmm", "hm", "mm", "mmm", "mhm"})


def normalize_text(text: str) -> str:
    """The project's transcript normalisation (see the module docstring)."""
    t = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    t = t.replace("&", " and ").lower()
    t = _NON_WORD.sub(" ", t)
    words = (w.strip("'") for w in t.split())
    return " ".join(w for w in words if w)


def drop_fillers(text: str) -> str:
    """Remove filled pauses (``FILLERS``) from normalised text."""
    return " ".join(w for w in text.split() if w not in FILLERS)


# ------------------------------------------------------------------------------ audio
def read_sphere_header(path) -> Dict[str, object]:
    """Fields of a NIST SPHERE header (``sample_rate``, ``sample_count``, ``sample_coding``, ...)."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if not head.startswith(b"NIST_1A"):
        raise ValueError(f"{path}: not a NIST SPHERE file")
    lines = head.split(b"\n")
    try:
        size = int(lines[1].strip())
    except (IndexError, ValueError):
        size = 1024
    if size > 1024:
        with open(path, "rb") as fh:
            lines = fh.read(size).split(b"\n")
    fields: Dict[str, object] = {"header_bytes": size}
    for raw in lines[2:]:
        line = raw.decode("latin-1").strip()
        if line.startswith("end_head"):
            break
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        key, kind, value = parts
        if kind == "-i":
            try:
                fields[key] = int(value)
            except ValueError:
                continue
        elif kind == "-r":
            try:
                fields[key] = float(value)
            except ValueError:
                continue
        else:  # -sN: a string of N characters
            m = re.match(r"-s(\d+)$", kind)
            fields[key] = value[: int(m.group(1))] if m else value
    return fields


def sphere_is_compressed(fields: Mapping[str, object]) -> bool:
    """True for shorten (or other) compressed SPHERE data, which libsndfile cannot decode."""
    coding = str(fields.get("sample_coding", "pcm")).lower()
    return "shorten" in coding or "wavpack" in coding or "shortpack" in coding


def audio_duration(path) -> float:
    """Duration in seconds from the file header (no decoding); SPHERE files via their header."""
    p = str(path)
    if p.lower().endswith((".sph", ".nist")):
        f = read_sphere_header(p)
        rate = float(f.get("sample_rate", 0) or 0)
        count = int(f.get("sample_count", 0) or 0)
        if rate <= 0:
            raise ValueError(f"{p}: SPHERE header has no sample_rate")
        return count / rate
    import soundfile

    info = soundfile.info(p)
    return info.frames / float(info.samplerate) if info.samplerate else 0.0


def duration_problem(dur: Optional[float], min_dur: float = 0.0, max_dur: Optional[float] = 30.0) -> Optional[str]:
    """Why an utterance of ``dur`` seconds is dropped, or None to keep it (None duration: keep)."""
    if dur is None:
        return None
    if dur <= 0:
        return "empty audio"
    if max_dur is not None and max_dur > 0 and dur > max_dur:
        return f"longer than {max_dur:g} s ({dur:.2f} s)"
    if min_dur and dur < min_dur:
        return f"shorter than {min_dur:g} s ({dur:.2f} s)"
    return None


def soundfile_reads(fmt: str) -> bool:
    """Whether the installed libsndfile decodes a container format (``MP3``, ``FLAC``, ``NIST``)."""
    try:
        import soundfile

        return fmt.upper() in soundfile.available_formats()
    except Exception:  # pragma: no cover - soundfile missing entirely
        return False


# ------------------------------------------------------------------------------ splits
def hash_fraction(key: str, salt: str = "espnet-peft") -> float:
    """A stable number in [0, 1) for ``key`` (SHA-1 of ``salt/key``), independent of Python's hash seed."""
    digest = hashlib.sha1(f"{salt}/{key}".encode("utf-8")).hexdigest()
    return int(digest[:12], 16) / float(16 ** 12)


def split_by_hash(key: str, fractions: Sequence[Tuple[str, float]], salt: str = "espnet-peft") -> str:
    """Threshold split: the same key always lands in the same split, whatever else is in the corpus."""
    total = sum(f for _, f in fractions)
    x = hash_fraction(key, salt) * total
    acc = 0.0
    for name, f in fractions:
        acc += f
        if x < acc:
            return name
    return fractions[-1][0]


def assign_exact(keys: Iterable[str], fractions: Sequence[Tuple[str, float]], salt: str = "espnet-peft",
                 strata: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Rank split with exact proportions for small speaker sets: within each stratum, keys sorted
    by ``hash_fraction`` fill the splits in the order given (the last split takes the remainder)."""
    groups: Dict[str, List[str]] = {}
    for k in sorted(set(keys)):
        groups.setdefault(strata.get(k, "") if strata else "", []).append(k)
    total = sum(f for _, f in fractions)
    out: Dict[str, str] = {}
    for members in groups.values():
        members.sort(key=lambda k: (hash_fraction(k, salt), k))
        n = len(members)
        start = 0
        for i, (name, f) in enumerate(fractions):
            count = n - start if i == len(fractions) - 1 else int(round(n * f / total))
            for k in members[start:start + count]:
                out[k] = name
            start += count
    return out


def read_split_lists(directory, splits: Sequence[str]) -> Dict[str, str]:
    """``{id: split}`` from ``<directory>/<split>.list`` files (one id per line, first field used);
    an id in two lists is an error."""
    d = Path(directory)
    out: Dict[str, str] = {}
    for split in splits:
        f = d / f"{split}.list"
        if not f.is_file():
            continue
        for line in f.read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if not fields:
                continue
            key = fields[0]
            if key in out and out[key] != split:
                raise ValueError(f"{key} is listed in both {out[key]}.list and {split}.list under {d}")
            out[key] = split
    if not out:
        raise ValueError(f"no split lists ({', '.join(s + '.list' for s in splits)}) found in {d}")
    return out


# ------------------------------------------------------------------------------ data dirs
@dataclass
class Utterance:
    utt: str                      # utterance id (must start with spk)
    spk: str                      # speaker id
    audio: str                    # wav.scp entry of the recording: a path or a "command |" pipe
    text: str                     # normalised transcript (non-empty)
    duration: Optional[float] = None  # seconds (of the segment when cut), None if unknown
    rec: Optional[str] = None     # recording id when the utterance is a segment of a recording
    start: Optional[float] = None
    end: Optional[float] = None
    gender: Optional[str] = None  # "m" / "f" when known


def _c_sorted(keys: Iterable[str]) -> List[str]:
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def _check_id(kind: str, value: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"invalid {kind} id {value!r} (empty or contains white space)")


def write_kaldi_dir(out: Path, utterances: Iterable[Utterance]) -> int:
    """Write a sorted Kaldi data directory; returns the number of utterances. Existing Kaldi files
    of ``out`` are replaced (a stale ``segments`` from an earlier run is removed)."""
    out = Path(out)
    utts: Dict[str, Utterance] = {}
    for u in utterances:
        _check_id("utterance", u.utt)
        _check_id("speaker", u.spk)
        if not u.utt.startswith(u.spk):
            raise ValueError(f"utterance id {u.utt!r} does not start with its speaker id {u.spk!r}")
        if u.utt in utts:
            raise ValueError(f"duplicate utterance id {u.utt!r}")
        if not u.text.strip() or "\n" in u.text:
            raise ValueError(f"utterance {u.utt!r}: empty or multi-line transcript")
        if "\n" in u.audio:
            raise ValueError(f"utterance {u.utt!r}: wav.scp entry spans lines")
        utts[u.utt] = u
    if not utts:
        raise ValueError(f"{out}: no utterances to write")
    segmented = any(u.rec is not None for u in utts.values())
    recordings: Dict[str, str] = {}
    for u in utts.values():
        if segmented:
            if u.rec is None or u.start is None or u.end is None:
                raise ValueError(f"{u.utt}: a segmented directory needs rec/start/end for every utterance")
            _check_id("recording", u.rec)
            if recordings.setdefault(u.rec, u.audio) != u.audio:
                raise ValueError(f"recording {u.rec!r} has two different audio entries")
        else:
            recordings[u.utt] = u.audio
    keys = _c_sorted(utts)
    runs = [utts[k].spk for i, k in enumerate(keys) if i == 0 or utts[keys[i - 1]].spk != utts[k].spk]
    if runs != _c_sorted(set(runs)):
        raise ValueError("sorting by utterance id does not group and sort the speakers (Kaldi requirement); "
                         "use speaker ids of equal length or a separator that sorts first")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "wav.scp", "w", encoding="utf-8") as fh:
        for rec in _c_sorted(recordings):
            fh.write(f"{rec} {recordings[rec]}\n")
    with open(out / "text", "w", encoding="utf-8") as fh:
        for k in keys:
            fh.write(f"{k} {' '.join(utts[k].text.split())}\n")
    with open(out / "utt2spk", "w", encoding="utf-8") as fh:
        for k in keys:
            fh.write(f"{k} {utts[k].spk}\n")
    spk2utt: Dict[str, List[str]] = {}
    for k in keys:
        spk2utt.setdefault(utts[k].spk, []).append(k)
    with open(out / "spk2utt", "w", encoding="utf-8") as fh:
        for s in _c_sorted(spk2utt):
            fh.write(f"{s} {' '.join(spk2utt[s])}\n")
    seg_file = out / "segments"
    if segmented:
        with open(seg_file, "w", encoding="utf-8") as fh:
            for k in keys:
                u = utts[k]
                fh.write(f"{k} {u.rec} {u.start:.3f} {u.end:.3f}\n")
    elif seg_file.exists():
        seg_file.unlink()
    dur_file = out / "utt2dur"
    if all(u.duration is not None for u in utts.values()):
        with open(dur_file, "w", encoding="utf-8") as fh:
            for k in keys:
                fh.write(f"{k} {utts[k].duration:.3f}\n")
    elif dur_file.exists():
        dur_file.unlink()
    genders: Dict[str, Optional[str]] = {}
    for u in utts.values():
        genders.setdefault(u.spk, u.gender)
    g_file = out / "spk2gender"
    if all(g in ("m", "f") for g in genders.values()):
        with open(g_file, "w", encoding="utf-8") as fh:
            for s in _c_sorted(genders):
                fh.write(f"{s} {genders[s]}\n")
    elif g_file.exists():
        g_file.unlink()
    return len(keys)


class PrepLog:
    """Collects dropped utterances with their reasons and writes them, with per-set counts, under
    ``<out_dir>/local/<corpus>/`` (``removed.<set>.txt`` and ``prep_stats.json``)."""

    def __init__(self, corpus: str):
        self.corpus = corpus
        self.removed: Dict[str, List[Tuple[str, str]]] = {}
        self.kept: Dict[str, int] = {}
        self.notes: List[str] = []

    def drop(self, set_name: str, utt: str, reason: str) -> None:
        self.removed.setdefault(set_name, []).append((utt, reason))

    def rejects(self, set_name: str, utt: str, problem: Optional[str]) -> bool:
        """Drop ``utt`` when there is a ``problem`` (a reason); True when it was dropped."""
        if problem:
            self.drop(set_name, utt, problem)
        return bool(problem)

    def reasons(self, set_name: Optional[str] = None) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        sets = [set_name] if set_name else list(self.removed)
        for s in sets:
            for _, reason in self.removed.get(s, []):
                key = re.sub(r" \([^)]*\)$", "", reason)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def write(self, out_dir: Path) -> Path:
        d = Path(out_dir) / "local" / self.corpus
        d.mkdir(parents=True, exist_ok=True)
        for s, rows in self.removed.items():
            with open(d / f"removed.{s}.txt", "w", encoding="utf-8") as fh:
                for utt, reason in sorted(rows):
                    fh.write(f"{utt} {reason}\n")
        stats = {"corpus": self.corpus, "kept": dict(sorted(self.kept.items())),
                 "removed": {s: self.reasons(s) for s in sorted(self.removed)}, "notes": self.notes}
        (d / "prep_stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        return d


def write_sets(out_dir: Path, sets: Mapping[str, List[Utterance]], log: PrepLog,
               allow_empty: bool = False) -> Dict[str, int]:
    """Write every set as ``<out_dir>/<set>``; returns ``{set: utterances}`` and writes the log."""
    counts: Dict[str, int] = {}
    for name in sorted(sets):
        utts = sets[name]
        if not utts:
            if allow_empty:
                log.notes.append(f"{name}: no utterance survived; directory not written")
                counts[name] = 0
                continue
            raise SystemExit(f"{log.corpus}: set {name} is empty after filtering "
                             f"(see {Path(out_dir) / 'local' / log.corpus})")
        counts[name] = write_kaldi_dir(Path(out_dir) / name, utts)
        log.kept[name] = counts[name]
    log.write(out_dir)
    return counts


# ------------------------------------------------------------------------------ CLI helpers
def base_parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, type=Path, help="corpus root directory")
    ap.add_argument("--out", required=True, type=Path, help="output data directory (e.g. data)")
    ap.add_argument("--min_dur", type=float, default=0.0, help="drop utterances shorter than this (s)")
    ap.add_argument("--max_dur", type=float, default=30.0,
                    help="drop utterances longer than this (s; 0 disables; default: OWSM's 30 s window)")
    return ap


def str2bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def print_counts(corpus: str, counts: Mapping[str, int], out_dir: Path) -> None:
    for name in sorted(counts):
        print(f"{corpus}: {Path(out_dir) / name}: {counts[name]} utterances")


def run_cli(main, script: str) -> None:
    """Run a preparation script's ``main``; a wrong corpus path or option ends in one clear line."""
    try:
        sys.exit(main())
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"{Path(script).name}: {err}")
