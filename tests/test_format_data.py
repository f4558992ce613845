"""Recipe stages 3-4 (local/format_data.py): 16 kHz mono 16-bit audio, segments, pipes, filters."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile

from conftest import ROOT

sys.path.insert(0, str(ROOT / "local"))
from format_data import format_dir  # noqa: E402


def write(path, seconds, sr=16000, channels=1, subtype="PCM_16"):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t)
    x = np.stack([x] * channels, 1) if channels > 1 else x
    soundfile.write(path, x, sr, subtype=subtype)
    return path


def make_dir(d, entries, texts, extra=None):
    d.mkdir(parents=True, exist_ok=True)
    (d / "wav.scp").write_text("".join(f"{k} {v}\n" for k, v in sorted(entries.items())))
    (d / "text").write_text("".join(f"{k} {v}\n" for k, v in sorted(texts.items())))
    for name, table in (extra or {}).items():
        (d / name).write_text("".join(f"{k} {v}\n" for k, v in sorted(table.items())))
    return d


def test_conversion_filtering_and_owsm_text(tmp_path):
    a = write(tmp_path / "a.wav", 1.0)                          # already right: referenced as is
    b = write(tmp_path / "b.flac", 1.0, sr=8000)               # resampled
    c = write(tmp_path / "c.wav", 1.0, sr=16000, channels=2)    # down-mixed
    d = write(tmp_path / "d.wav", 0.1)                          # too short
    e = write(tmp_path / "e.wav", 40.0, sr=8000)                # too long
    src = make_dir(tmp_path / "src", {"u1": a, "u2": b, "u3": c, "u4": d, "u5": e, "u6": f"cat {a} |"},
                   {f"u{i}": f"word {i}" for i in range(1, 7)})
    stats = format_dir(src, tmp_path / "dst", do_filter=True, min_dur=0.3, max_dur=30,
                       owsm_prefix="<eng><asr><notimestamps>")
    assert stats == {"kept": 4, "removed": 2}
    wav = dict(l.split(" ", 1) for l in (tmp_path / "dst" / "wav.scp").read_text().splitlines())
    assert wav["u1"] == str(a.resolve())
    for k in ("u2", "u3", "u6"):
        info = soundfile.info(wav[k])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert abs(soundfile.info(wav["u2"]).duration - 1.0) < 0.01
    removed = (tmp_path / "dst" / "removed").read_text()
    assert "u4" in removed and "u5" in removed
    text = (tmp_path / "dst" / "text").read_text().splitlines()
    assert text[0] == "u1 <eng><asr><notimestamps> word 1"
    assert (tmp_path / "dst" / "text.ctc").read_text().splitlines()[0] == "u1 word 1"
    assert (tmp_path / "dst" / "text.prev").read_text().splitlines()[0] == "u1 <na>"
    assert (tmp_path / "dst" / "text.plain").read_text().splitlines()[0] == "u1 word 1"


def test_segments_are_cut(tmp_path):
    rec = write(tmp_path / "rec.wav", 3.0, sr=8000)
    src = make_dir(tmp_path / "src", {"rec1": rec}, {"s1": "one", "s2": "two"},
                   {"segments": {"s1": "rec1 0.0 1.0", "s2": "rec1 1.5 3.0"}})
    format_dir(src, tmp_path / "dst")
    wav = dict(l.split(" ", 1) for l in (tmp_path / "dst" / "wav.scp").read_text().splitlines())
    assert abs(soundfile.info(wav["s1"]).duration - 1.0) < 0.01
    assert abs(soundfile.info(wav["s2"]).duration - 1.5) < 0.01


def test_problems_stop_it_with_a_list(tmp_path):
    a = write(tmp_path / "a.wav", 1.0)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    src = make_dir(tmp_path / "src", {"u1": a, "u2": tmp_path / "missing.wav", "u3": bad},
                   {"u1": "x", "u2": "y", "u3": "w", "u4": "z"})
    res = subprocess.run([sys.executable, str(ROOT / "local" / "format_data.py"), str(src), str(tmp_path / "dst")],
                         capture_output=True, text=True)
    assert res.returncode != 0
    for needle in ("ids differ", "audio file missing", "cannot read audio"):
        assert needle in res.stderr
