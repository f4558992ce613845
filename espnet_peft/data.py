"""Checks of Kaldi-style data directories, run before any compute is spent on them."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

PathLike = Union[str, Path]


class DataError(ValueError):
    """A data directory that training or decoding would fail on (or silently misuse)."""


@dataclass
class DataReport:
    path: str
    utterances: int = 0
    seconds: float = 0.0
    problems: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_table(path: PathLike) -> Dict[str, str]:
    """``id rest-of-line`` files (wav.scp, text, utt2spk); duplicate ids are an error."""
    out: Dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            key, _, value = line.partition(" ")
            if key in out:
                raise DataError(f"{path}:{n}: duplicate id {key!r}")
            out[key] = value.strip()
    return out


def error_text(e: BaseException) -> str:
    """``str(e)``, or the type name when that fails (soundfile's ``LibsndfileError`` rebuilt from a
    DataLoader worker has a ``__str__`` that raises: ``<exception str() failed>``)."""
    try:
        return str(e) or type(e).__name__
    except Exception:  # noqa: BLE001 - a foreign __str__
        return type(e).__name__


def _audio_props(entry: str) -> Tuple[Optional[int], Optional[int], Optional[int], Optional[str]]:
    """(frames, sample rate, channels, problem) of a wav.scp entry; pipes and archives are not opened."""
    if entry.endswith("|") or ".ark:" in entry:
        return None, None, None, None
    p = Path(entry)
    if not p.is_file():
        return None, None, None, f"audio file missing: {entry}"
    try:
        import soundfile

        info = soundfile.info(str(p))
    except Exception as e:  # soundfile.LibsndfileError and friends
        return None, None, None, f"unreadable audio {entry}: {error_text(e)}"
    if info.frames == 0:
        return 0, info.samplerate, info.channels, f"empty audio: {entry}"
    return info.frames, info.samplerate, info.channels, None


def _audio_info(entry: str) -> Tuple[Optional[int], Optional[int], Optional[str]]:
    """(frames, sample rate, problem) of a wav.scp entry; pipes and archives are not opened."""
    frames, sr, _, problem = _audio_props(entry)
    return frames, sr, problem


def check_data_dir(path: PathLike, sample_rate: Optional[int] = 16000, need_text: bool = True,
                   check_audio: bool = True, max_report: int = 5) -> DataReport:
    """Everything wrong with a data directory, without raising."""
    d = Path(path)
    rep = DataReport(str(d))
    if not d.is_dir():
        rep.problems.append(f"data directory not found: {d}")
        return rep
    needed = ["wav.scp"] + (["text"] if need_text else [])
    missing = [f for f in needed if not (d / f).is_file()]
    if missing:
        rep.problems.append(f"{d}: missing {', '.join(missing)}")
        return rep
    try:
        wav = read_table(d / "wav.scp")
        text = read_table(d / "text") if need_text else {}
    except DataError as e:
        rep.problems.append(str(e))
        return rep
    utts = set(wav)
    if (d / "segments").is_file():  # utterances are segments of the recordings in wav.scp
        try:
            segs = read_table(d / "segments")
        except DataError as e:
            rep.problems.append(str(e))
            return rep
        orphans = sorted(k for k, v in segs.items() if v.split()[0] not in wav)
        if orphans:
            rep.problems.append(f"{d}/segments: {len(orphans)} segment(s) of recordings missing from wav.scp, "
                                f"e.g. {orphans[:max_report]}")
        utts = set(segs)
    rep.utterances = len(utts)
    if not wav:
        rep.problems.append(f"{d}/wav.scp is empty")
    if need_text:
        source = "segments" if (d / "segments").is_file() else "wav.scp"
        only_wav = sorted(utts - set(text))
        only_text = sorted(set(text) - utts)
        if only_wav or only_text:
            rep.problems.append(f"{d}: text and {source} ids differ: {len(only_wav)} only in {source} "
                                f"{only_wav[:max_report]}, {len(only_text)} only in text {only_text[:max_report]}")
        empty = [k for k, v in text.items() if not v]
        if empty:
            rep.problems.append(f"{d}/text: {len(empty)} empty transcript(s), e.g. {empty[:max_report]}")
    if (d / "utt2spk").is_file():
        spk = read_table(d / "utt2spk")
        if set(spk) != utts:
            rep.problems.append(f"{d}: utt2spk ids differ from the utterance ids")
    if check_audio:
        bad: List[str] = []
        rates = {}
        for key, entry in wav.items():
            frames, sr, problem = _audio_info(entry)
            if problem:
                bad.append(f"{key}: {problem}")
                continue
            if frames and sr:
                rep.seconds += frames / sr
                rates[sr] = rates.get(sr, 0) + 1
        if bad:
            rep.problems.append(f"{d}: {len(bad)} bad audio entr{'y' if len(bad) == 1 else 'ies'}: "
                                + "; ".join(bad[:max_report]))
        if sample_rate and rates and set(rates) != {sample_rate}:
            rep.problems.append(f"{d}: sample rates {sorted(rates)} found, {sample_rate} Hz expected "
                                f"(resample the audio)")
    return rep


def validate_data_triplets(triplets, sample_rate: Optional[int] = None, max_report: int = 5,
                           mono: bool = False) -> None:
    """Check ESPnet ``path,name,type`` data arguments before training: files exist, every
    ``sound`` entry is readable audio (at ``sample_rate``, and with one channel when ``mono``: a
    model trained or decoding at another rate than its frontend's is silently wrong), and all
    files of a split have the same ids."""
    problems: List[str] = []
    ids = {}
    for t in triplets or []:
        path, name, kind = t if isinstance(t, (tuple, list)) else str(t).split(",")[:3]
        p = Path(path)
        if not p.is_file():
            problems.append(f"{name}: file not found: {path}")
            continue
        if kind not in ("sound", "text", "kaldi_ark", "npy", "text_int", "text_float"):
            continue
        try:
            table = read_table(p)
        except DataError as e:
            problems.append(str(e))
            continue
        if not table:
            problems.append(f"{name}: {path} is empty")
        ids[name] = (path, set(table))
        if kind == "sound":
            bad = []
            for key, entry in table.items():
                frames, sr, channels, problem = _audio_props(entry)
                if problem:
                    bad.append(f"{key}: {problem}")
                    continue
                wrong = []
                if sample_rate and sr and sr != sample_rate:
                    wrong.append(f"{sr} Hz ({sample_rate} Hz expected)")
                if mono and channels and channels != 1:
                    wrong.append(f"{channels} channels (mono expected)")
                if wrong:
                    bad.append(f"{key}: {entry}: {', '.join(wrong)}")
            if bad:
                problems.append(f"{name} ({path}): {len(bad)} bad audio entries: " + "; ".join(bad[:max_report]))
        elif kind == "text":
            empty = [k for k, v in table.items() if not v]
            if empty:
                problems.append(f"{name} ({path}): {len(empty)} empty line(s), e.g. {empty[:max_report]}")
    names = list(ids)
    for other in names[1:]:
        (p0, a), (p1, b) = ids[names[0]], ids[other]
        if a != b:
            problems.append(f"ids differ between {p0} and {p1}: {len(a - b)} only in the first "
                            f"{sorted(a - b)[:max_report]}, {len(b - a)} only in the second {sorted(b - a)[:max_report]}")
    if problems:
        raise DataError("training data is not usable:\n  " + "\n  ".join(problems))
