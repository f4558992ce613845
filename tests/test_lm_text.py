"""The foundation model's LM text (local/lm_text.py) and the decoder's LM handling and result
signatures (local/decode.py): no evaluation sentence leaks into the LM text, a positive LM
weight without an LM is refused, and a decoding result is reused only for the same model,
options and LM."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT
from espnet_fixtures import local_module, synth_module


@pytest.fixture(scope="module")
def lm_text():
    synth_module()  # lm_text imports synth_corpus
    return local_module("lm_text")


@pytest.fixture(scope="module")
def decode():
    return local_module("decode")


def test_overlap_filter_drops_any_line_sharing_an_ngram(lm_text):
    excluded = ["the cat sat on the mat today", "go home now"]
    lines = ["a dog sat on the mat today",      # shares "sat on the mat today" (5 words)
             "the cat sat on a chair",           # shares only 3 words in a row: kept
             "please go home now and rest",      # contains the whole short sentence
             "go home later",                    # kept
             "the cat sat on the mat today"]     # the sentence itself
    kept, dropped = lm_text.overlap_filter(lines, excluded, n=5)
    assert kept == ["the cat sat on a chair", "go home later"]
    assert dropped == 3


def test_wordnet_text_excludes_every_test_sentence(lm_text, tmp_path):
    if not (lm_text.WORDNET_DIR / "data.noun").is_file():
        pytest.skip("wordnet-base not installed")
    lines = list(lm_text.wordnet_lines())
    # glosses and examples, normalised like the corpus text
    assert len(lines) > 100_000
    assert all(l == l.lower() and "(" not in l and ";" not in l for l in lines[:2000])
    some = sorted(set(l for l in lines if len(l.split()) >= 6))[:: 997][:40]
    ref = tmp_path / "text"
    ref.write_text("".join(f"u{i} {s}\n" for i, s in enumerate(some)))
    out = tmp_path / "lm.txt"
    stats = lm_text.build(out, [ref], ngram=5, fraction=0.5)
    written = [l.split(" ", 1)[1] for l in out.read_text().splitlines()]
    assert stats["lines"] == len(written) and stats["dropped_overlapping"] >= len(some)
    grams = {tuple(s.split()[i:i + 5]) for s in some for i in range(len(s.split()) - 4)}
    assert not any(tuple(w.split()[i:i + 5]) in grams for w in written for i in range(len(w.split()) - 4))
    full = len(set(lines)) - stats["dropped_overlapping"]
    assert abs(len(written) - full / 2) <= 1  # --fraction keeps that share


def test_cli_refuses_missing_exclude_files(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "local" / "lm_text.py"), "--out", str(tmp_path / "x"),
                          "--exclude", str(tmp_path / "none")], capture_output=True, text=True)
    assert res.returncode != 0 and "not found" in res.stderr


def _model_dir(root: Path, value: float) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text("encoder: x\n")
    torch.save({"w": torch.full((2,), value)}, root / "model.pth")
    return root


def test_lm_weight_needs_an_lm(decode, tmp_path):
    assert decode.lm_options({"beam_size": 2}, None) == {"beam_size": 2}
    # weight 0: the LM is not loaded even when given
    assert "lm_file" not in decode.lm_options({"lm_weight": 0.0}, str(_model_dir(tmp_path / "lm", 0)))
    with pytest.raises(SystemExit, match="no --lm_dir"):
        decode.lm_options({"lm_weight": 0.3}, None)
    with pytest.raises(SystemExit, match="must hold config.yaml and model.pth"):
        decode.lm_options({"lm_weight": 0.3}, str(tmp_path / "empty"))
    opts = decode.lm_options({"lm_weight": 0.3}, str(tmp_path / "lm"))
    assert opts["lm_file"].endswith("model.pth") and opts["lm_train_config"].endswith("config.yaml")


def test_signature_changes_with_model_options_and_lm(decode, tmp_path):
    model = _model_dir(tmp_path / "m", 1.0)
    lm = _model_dir(tmp_path / "lm", 2.0)
    base = decode.signature(model, {"beam_size": 2})
    assert decode.signature(model, {"beam_size": 2}) == base
    assert decode.signature(model, {"beam_size": 4}) != base
    with_lm = decode.signature(model, decode.lm_options({"beam_size": 2, "lm_weight": 0.3}, str(lm)))
    assert with_lm != base
    torch.save({"w": torch.full((2,), 3.0)}, lm / "model.pth")  # a retrained LM
    assert decode.signature(model, decode.lm_options({"beam_size": 2, "lm_weight": 0.3}, str(lm))) != with_lm
    torch.save({"w": torch.full((2,), 5.0)}, model / "model.pth")  # a retrained model
    assert decode.signature(model, {"beam_size": 2}) != base


def test_pending_counts_stale_results(decode, tmp_path, capsys):
    model = _model_dir(tmp_path / "m", 1.0)
    data = tmp_path / "set"
    data.mkdir()
    (data / "wav.scp").write_text(f"u1 {tmp_path / 'u1.wav'}\n")
    conf = tmp_path / "decode.yaml"
    conf.write_text(yaml.safe_dump({"beam_size": 2}))
    out = tmp_path / "out"
    args = ["--pending", "--model_dir", str(model), "--output_dir", str(out), "--data_dir", str(data),
            "--decode_config", str(conf)]

    def pending():
        decode.main(args)
        return int(capsys.readouterr().out.strip())

    assert pending() == 1
    (out / "set").mkdir(parents=True)
    (out / "set" / "text").write_text("u1 a\n")
    assert pending() == 1  # a result without a signature (older decoder) is stale
    sig = decode.signature(model, {"beam_size": 2})
    (out / "set" / "decode_info.json").write_text(json.dumps({"signature": sig}))
    assert pending() == 1  # ... and one that does not name the data it decoded
    (out / "set" / "decode_info.json").write_text(json.dumps({"signature": sig, "data": decode.data_signature(data)}))
    assert pending() == 1  # ... and one that does not sign the hypotheses it wrote
    (out / "set" / "decode_info.json").write_text(json.dumps({"signature": sig, "data": decode.data_signature(data),
                                                              "hypotheses": decode.text_digest(out / "set" / "text")}))
    assert pending() == 0
    (out / "set" / "text").write_text("u1 b\n")
    assert pending() == 1  # hypotheses edited after their decoding
    (out / "set" / "text").write_text("u1 a\n")
    conf.write_text(yaml.safe_dump({"beam_size": 4}))
    assert pending() == 1
