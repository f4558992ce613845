#!/usr/bin/env python3
"""Format a Kaldi data directory for training / decoding (recipe stages 3-4).

* every utterance becomes 16-bit mono audio at ``--fs`` Hz: plain files already in that
  format are referenced as they are; anything else (other rates, stereo, flac/sph, Kaldi
  ``segments``, ``cmd |`` pipes) is converted once into ``<dst>/audio/``;
* with ``--filter true``, utterances shorter than ``--min_dur`` or longer than ``--max_dur``
  seconds, or with an empty transcript, are dropped and listed in ``<dst>/removed``;
* ``wav.scp``, ``text``, ``utt2spk``, ``spk2utt``, ``utt2dur`` are written, sorted;
* with ``--owsm_prefix "<eng><asr><notimestamps>"`` (OWSM / S2T models), ``text`` gets that
  prefix, ``text.ctc`` the plain transcript, ``text.prev`` ``<na>`` (unless the source has
  one), and ``text.plain`` keeps the plain transcript for scoring.

Problems (missing or unreadable audio, text / audio id mismatch) stop it with a list.
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import soundfile

from espnet_peft.data import error_text, read_table


def load_audio(entry: str, fs: int, seg: Optional[Tuple[float, float]] = None) -> Tuple[np.ndarray, bool]:
    """(mono float32 audio at fs, whether it had to be converted)."""
    if entry.endswith("|"):
        raw = subprocess.run(entry[:-1], shell=True, capture_output=True, check=True).stdout
        audio, sr = soundfile.read(io.BytesIO(raw), dtype="float32", always_2d=True)
        converted = True
    else:
        audio, sr = soundfile.read(entry, dtype="float32", always_2d=True)
        info = soundfile.info(entry)
        converted = sr != fs or audio.shape[1] != 1 or info.subtype != "PCM_16" or \
            not entry.lower().endswith(".wav")
    if seg is not None:
        start, end = seg
        audio = audio[int(round(start * sr)): (int(round(end * sr)) if end > 0 else None)]
        converted = True
    audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if sr != fs:
        import soxr

        audio = soxr.resample(audio, sr, fs).astype(np.float32)
    return audio, converted


def format_dir(src: Path, dst: Path, fs: int = 16000, do_filter: bool = False, min_dur: float = 0.3,
               max_dur: float = 30.0, owsm_prefix: str = "") -> Dict[str, int]:
    wav = read_table(src / "wav.scp")
    text = read_table(src / "text")
    spk = read_table(src / "utt2spk") if (src / "utt2spk").is_file() else {k: k for k in text}
    segments = {}
    if (src / "segments").is_file():
        for key, rest in read_table(src / "segments").items():
            rec, start, end = rest.split()
            segments[key] = (rec, float(start), float(end))
    utts = sorted(segments) if segments else sorted(wav)
    problems: List[str] = []
    if set(utts) != set(text):
        problems.append(f"text and {'segments' if segments else 'wav.scp'} ids differ: "
                        f"{sorted(set(utts) ^ set(text))[:5]}")
    dst.mkdir(parents=True, exist_ok=True)
    out_wav, out_dur, removed = {}, {}, []
    for key in utts:
        if key not in text:
            continue
        rec, seg = (segments[key][0], segments[key][1:]) if segments else (key, None)
        entry = wav.get(rec)
        if entry is None:
            problems.append(f"{key}: recording {rec} not in wav.scp")
            continue
        if not entry.endswith("|") and not Path(entry).is_file():
            problems.append(f"{key}: audio file missing: {entry}")
            continue
        try:
            audio, converted = load_audio(entry, fs, seg)
        except Exception as e:  # unreadable, failing pipe
            problems.append(f"{key}: cannot read audio {entry}: {error_text(e)}")
            continue
        dur = len(audio) / fs
        if len(audio) == 0 or (do_filter and not (min_dur <= dur <= max_dur)) or (do_filter and not text[key].strip()):
            removed.append(f"{key} duration={dur:.2f}s text_words={len(text[key].split())}")
            continue
        if converted:
            path = dst / "audio" / f"{key}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(str(path), audio, fs, subtype="PCM_16")
            out_wav[key] = str(path.resolve())
        else:
            out_wav[key] = str(Path(entry).resolve())
        out_dur[key] = dur
    if problems:
        raise SystemExit(f"format_data.py: {src} cannot be formatted ({len(problems)} problems):\n  "
                         + "\n  ".join(problems[:20]))
    if not out_wav:
        raise SystemExit(f"format_data.py: no utterance of {src} survived (see {dst / 'removed'})")
    keys = sorted(out_wav)
    spk2utt: Dict[str, List[str]] = {}
    with open(dst / "wav.scp", "w") as w, open(dst / "text", "w") as t, open(dst / "utt2spk", "w") as u, \
            open(dst / "utt2dur", "w") as d:
        for k in keys:
            w.write(f"{k} {out_wav[k]}\n")
            t.write(f"{k} {text[k]}\n")
            u.write(f"{k} {spk.get(k, k)}\n")
            d.write(f"{k} {out_dur[k]:.3f}\n")
            spk2utt.setdefault(spk.get(k, k), []).append(k)
    with open(dst / "spk2utt", "w") as s:
        for sp in sorted(spk2utt):
            s.write(f"{sp} {' '.join(spk2utt[sp])}\n")
    for extra in ("text.prev", "text.ctc"):  # OWSM-style companions travel along
        if (src / extra).is_file():
            table = read_table(src / extra)
            with open(dst / extra, "w") as fh:
                for k in keys:
                    fh.write(f"{k} {table.get(k, '<na>')}\n")
    if owsm_prefix:
        prev = read_table(src / "text.prev") if (src / "text.prev").is_file() else {}
        with open(dst / "text", "w") as t, open(dst / "text.ctc", "w") as c, open(dst / "text.prev", "w") as p, \
                open(dst / "text.plain", "w") as plain:
            for k in keys:
                t.write(f"{k} {owsm_prefix} {text[k]}\n")
                c.write(f"{k} {text[k]}\n")
                p.write(f"{k} {prev.get(k, '<na>')}\n")
                plain.write(f"{k} {text[k]}\n")
    (dst / "removed").write_text("".join(f"{r}\n" for r in removed))
    return {"kept": len(keys), "removed": len(removed)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--fs", type=int, default=16000)
    ap.add_argument("--filter", type=lambda s: s.lower() == "true", default=False)
    ap.add_argument("--min_dur", type=float, default=0.3)
    ap.add_argument("--max_dur", type=float, default=30.0)
    ap.add_argument("--owsm_prefix", default="", help='e.g. "<eng><asr><notimestamps>" for S2T models')
    args = ap.parse_args(argv)
    stats = format_dir(args.src, args.dst, args.fs, args.filter, args.min_dur, args.max_dur, args.owsm_prefix)
    print(f"format_data.py: {args.src} -> {args.dst}: {stats['kept']} utterances kept, {stats['removed']} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
