"""Hypotheses have provenance (issue 40 item 4): decode_info.json signs the hypotheses its decoding wrote;
an edited or replaced hypotheses file is decoded again (decode.py), refused by scoring (score.py), and
a score of other hypotheses than the file holds is refused by the report (report.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from espnet_fixtures import local_module
from espnet_peft.scoring import text_digest

ROOT = Path(__file__).resolve().parents[1]


def decoded(tmp_path: Path, hyps: str = "u1 the cat sat\nu2 a dog\n") -> Path:
    """A decoding directory as decode.py --merge leaves it: text and a decode_info.json signing it."""
    d = tmp_path / "decode" / "child_test"
    d.mkdir(parents=True)
    (d / "text").write_text(hyps)
    (d / "decode_info.json").write_text(json.dumps({"signature": "sig", "hypotheses": text_digest(d / "text")}))
    (tmp_path / "ref").write_text("u1 the cat sat\nu2 a dog\n")
    return d


def score(tmp_path: Path, d: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "local" / "score.py"), "--ref", str(tmp_path / "ref"),
                           "--hyp", str(d / "text"), "--out", str(d / "result.json")], capture_output=True, text=True)


def test_an_edited_hypotheses_file_is_refused_by_scoring_and_decoded_again(tmp_path):
    d = decoded(tmp_path)
    decode = local_module("decode")
    assert decode.finished(d, "sig")
    res = score(tmp_path, d)
    assert res.returncode == 0, res.stderr
    assert json.loads((d / "result.json").read_text())["hypotheses"] == text_digest(d / "text")
    (d / "text").write_text("u1 the cat sat\nu2 a dog\n".replace("dog", "cat"))  # edited after decoding
    res = score(tmp_path, d)
    assert res.returncode != 0 and "error:" in res.stderr and "edited or replaced" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not decode.finished(d, "sig")  # stages 12 and 14 decode it again


def test_the_report_refuses_a_score_of_other_hypotheses(tmp_path):
    d = decoded(tmp_path)
    assert score(tmp_path, d).returncode == 0
    report = local_module("report")
    scores = report.read_scores({"adapted": d.parent}, ["child_test"], "run stage 13")
    assert scores["adapted"]["child_test"]["wer"] == 0.0
    # decoded again after scoring (new text, new signature): the old result.json no longer describes it
    (d / "text").write_text("u1 the cat\nu2 a dog\n")
    (d / "decode_info.json").write_text(json.dumps({"signature": "sig", "hypotheses": text_digest(d / "text")}))
    with pytest.raises(SystemExit, match="scored other hypotheses"):
        report.read_scores({"adapted": d.parent}, ["child_test"], "run stage 13")
