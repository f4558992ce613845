"""The decoding without the LM (``ctc_greedy: true``, conf/decode_nolm.yaml) and its report:
local/decode.py's CTC greedy decoding on tiny real ESPnet ASR and S2T (OWSM-shaped) models equals
an independent collapse of the argmax of ``ctc.log_softmax``; a greedy and a beam decoding never
share a signature; a decoding belongs to its data, and its torch.load calls read weights only;
local/report.py's summary, RESULTS.md and printed table with and without the no-LM fields. (Routed
decoding: test_routing.py.)"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import soundfile
import torch
import yaml

from conftest import ROOT
from espnet_fixtures import ASR_TOKENS, local_module, read_text, tiny_asr_dir, tiny_owsm_dir, write_wavs

NOLM_CONFIG = ROOT / "egs2" / "embedded" / "asr1" / "conf" / "decode_nolm.yaml"


@pytest.fixture(scope="module")
def decode():
    return local_module("decode")


@pytest.fixture(scope="module")
def report():
    return local_module("report")


def independent_ids(model, speech: torch.Tensor, drop) -> tuple:
    """Frame argmax of ctc.log_softmax and its CTC collapse, written out without decode.py."""
    with torch.no_grad():
        enc, _ = model.encode(speech[None], torch.tensor([speech.numel()]))
        if isinstance(enc, tuple):
            enc = enc[0]
        frames = model.ctc.log_softmax(enc)[0].argmax(dim=-1).tolist()
    out = []
    for i, x in enumerate(frames):
        if x in drop or (i > 0 and frames[i - 1] == x):
            continue
        out.append(x)
    return frames, out


def test_ctc_collapse(decode):
    # repeats collapse, a blank between equal ids keeps both, blank and sos/eos are dropped
    assert decode.ctc_collapse([0, 3, 3, 0, 3, 4, 4, 11, 11, 5, 0, 0, 5], {0, 11}) == [3, 3, 4, 5, 5]
    assert decode.ctc_collapse([7, 11, 7], {0, 11}) == [7, 7]  # (as a blank would)
    assert decode.ctc_collapse([0, 0, 0], {0}) == []


def test_a_duplicate_utterance_id_ends_the_job(decode, tmp_path):
    """decode.py reads its tables with the library's reader: a wav.scp listing an id twice would be
    decoded once and scored against the wrong reference, so it is refused, naming the line."""
    (tmp_path / "wav.scp").write_text("u1 a.wav\nu2 b.wav\nu1 c.wav\n")
    with pytest.raises(SystemExit, match=r"wav.scp:3: duplicate id 'u1'"):
        decode.read_scp(tmp_path / "wav.scp")
    (tmp_path / "wav.scp").write_text("u1 a.wav\nu2 b.wav\n")
    assert decode.read_scp(tmp_path / "wav.scp") == {"u1": "a.wav", "u2": "b.wav"}


def test_decoding_loads_weights_only_and_puts_torch_load_back(decode, tmp_path, monkeypatch):
    """Every torch.load of a decoding job reads weights only, whatever ESPnet's loader asks (a crafted
    model file is refused, not run); torch.load is the stock one again after the job."""
    import pickle

    torch.save({"w": torch.zeros(2), "x": argparse.Namespace(a=1)}, tmp_path / "crafted.pth")
    stock = torch.load
    seen = []

    def share(args):
        with pytest.raises(pickle.UnpicklingError):
            torch.load(tmp_path / "crafted.pth", weights_only=False)
        seen.append(args)

    monkeypatch.setattr(decode, "decode_share", share)
    decode.decode("args")
    assert seen == ["args"] and torch.load is stock
    assert torch.load(tmp_path / "crafted.pth", weights_only=False)["x"].a == 1  # (the stock loader, as asked)


def test_greedy_options_are_checked(decode):
    assert decode.greedy_options({"ctc_greedy": False, "beam_size": 2}) == {"beam_size": 2}
    assert decode.greedy_options({"ctc_greedy": True, "dtype": "float32"}) == {"ctc_greedy": True, "dtype": "float32"}
    with pytest.raises(SystemExit, match="remove the options it would ignore: beam_size, lm_weight"):
        decode.greedy_options({"ctc_greedy": True, "beam_size": 4, "lm_weight": 0.3})
    with pytest.raises(SystemExit, match="ctc_greedy must be true or false"):
        decode.greedy_options({"ctc_greedy": "yes"})
    # the recipe's no-LM config is a greedy decoding, and it passes the check
    opts = yaml.safe_load(NOLM_CONFIG.read_text())
    assert opts == {"ctc_greedy": True} and decode.greedy_options(opts) == opts


@pytest.fixture(scope="module")
def asr(tmp_path_factory):
    return tiny_asr_dir(tmp_path_factory.mktemp("nolm_asr"))


def test_ctc_greedy_decoding_of_an_asr_model(decode, asr, tmp_path, keep_torch_load):
    root, model_dir, model = asr
    data = write_wavs(tmp_path)
    out = tmp_path / "decode_nolm"
    common = ["--model_dir", str(model_dir), "--output_dir", str(out), "--data_dir", str(data),
              "--decode_config", str(NOLM_CONFIG)]
    decode.main(common + ["--job", "1", "--nj", "1"])
    decode.main(common + ["--merge", "--nj", "1"])
    hyps = read_text(out / "set" / "text")
    assert sorted(hyps) == ["u0", "u1", "u2"]
    frames_seen, words = [], []
    for key, path in sorted(read_text(data / "wav.scp").items()):
        speech, _ = soundfile.read(path, dtype="float32")
        frames, ids = independent_ids(model, torch.tensor(speech), {0, len(ASR_TOKENS) - 1})
        frames_seen.append(frames)
        want = "".join(" " if ASR_TOKENS[i] == "<space>" else ASR_TOKENS[i] for i in ids)
        assert hyps[key] == want, key
        words.append(want)
    # not a trivial case: blanks, repeated frames, a token repeated across a blank, several tokens
    flat = [x for f in frames_seen for x in f]
    assert 0 in flat and len(set(flat) - {0}) >= 3
    assert any(f[i] == f[i + 1] != 0 for f in frames_seen for i in range(len(f) - 1))
    assert any(f[i] == f[i + 2] != 0 == f[i + 1] for f in frames_seen for i in range(len(f) - 2))
    assert all(words) and len(set(words)) == len(words)
    # the result records the greedy decoding's signature; a beam decoding of the same model is another
    greedy = decode.decoding_options(argparse.Namespace(decode_config=str(NOLM_CONFIG), lm_dir=None))
    sig = json.loads((out / "set" / "decode_info.json").read_text())["signature"]
    assert sig == decode.signature(model_dir, greedy)
    beam_conf = tmp_path / "decode_beam.yaml"
    beam_conf.write_text(yaml.safe_dump({"beam_size": 1, "ctc_weight": 1.0, "lm_weight": 0.0}))
    beam = decode.decoding_options(argparse.Namespace(decode_config=str(beam_conf), lm_dir=None))
    assert decode.signature(model_dir, beam) != sig
    pending = lambda conf: decode.pending(argparse.Namespace(  # noqa: E731
        model_dir=[str(model_dir)], output_dir=[str(out)], data_dir=[str(data)], decode_config=str(conf), lm_dir=None))
    assert pending(NOLM_CONFIG) == 0 and pending(beam_conf) == 1


def test_greedy_decoding_ignores_the_lm(decode, asr, tmp_path):
    """The recipe passes no LM to the no-LM decoding; an LM given anyway changes nothing."""
    _, model_dir, _ = asr
    lm = tmp_path / "lm"
    lm.mkdir()
    (lm / "config.yaml").write_text("lm: seq_rnn\n")
    torch.save({"w": torch.zeros(2)}, lm / "model.pth")
    ns = lambda lm_dir: argparse.Namespace(decode_config=str(NOLM_CONFIG), lm_dir=lm_dir)  # noqa: E731
    with_lm, without = decode.decoding_options(ns(str(lm))), decode.decoding_options(ns(None))
    assert "lm_file" not in with_lm and with_lm == without
    assert decode.signature(model_dir, with_lm) == decode.signature(model_dir, without)


@pytest.fixture(scope="module")
def owsm(tmp_path_factory):
    return tiny_owsm_dir(tmp_path_factory.mktemp("nolm_s2t"))


def test_ctc_greedy_decoding_of_an_s2t_model(decode, owsm, tmp_path, keep_torch_load):
    import sentencepiece as spm

    root, model_dir, model, tokens = owsm
    data = write_wavs(tmp_path, n=2)
    out = tmp_path / "decode_nolm"
    common = ["--model_dir", str(model_dir), "--output_dir", str(out), "--data_dir", str(data),
              "--decode_config", str(NOLM_CONFIG)]
    decode.main(common + ["--task", "s2t", "--job", "1", "--nj", "1"])
    decode.main(common + ["--merge", "--nj", "1"])
    hyps = read_text(out / "set" / "text")
    assert sorted(hyps) == ["u0", "u1"]
    sp = spm.SentencePieceProcessor(model_file=str(root / "bpe.model"))
    n = 16000 * 6  # the model's fixed input length (preprocessor_conf: speech_length 6 s)
    drop = {tokens.index("<blank>"), tokens.index("<sos>"), tokens.index("<eos>")}
    for key, path in sorted(read_text(data / "wav.scp").items()):
        speech, _ = soundfile.read(path, dtype="float32")
        padded = torch.nn.functional.pad(torch.tensor(speech), (0, n - len(speech)))
        _, ids = independent_ids(model, padded, drop)
        pieces = [tokens[i] for i in ids]
        kept = [p for p in pieces if not (p.startswith("<") and p.endswith(">"))]
        assert len(kept) < len(pieces) and kept  # special tokens to remove, and text left
        assert hyps[key] == sp.decode_pieces(kept), key
        assert "<" not in hyps[key]


SRC, TGT = ["source_test", "source_unseen_test"], ["child_test"]
# WERs (base, adapted) per set: with the LM, and without it (other numbers, so a mix-up shows)
WERS = {"source_test": (10.0, 12.5), "source_unseen_test": (20.0, 21.0), "child_test": (40.0, 30.0)}
WERS_NOLM = {"source_test": (15.0, 19.0), "source_unseen_test": (25.0, 24.0), "child_test": (50.0, 35.5)}


def write_scores(d: Path, wers: dict, who: int) -> None:
    for s, pair in wers.items():
        (d / s).mkdir(parents=True, exist_ok=True)
        (d / s / "result.json").write_text(json.dumps(
            {"wer": pair[who], "cer": pair[who] / 2, "utterances": 4, "words": 20}))
        (d / s / "decode_info.json").write_text(json.dumps({"rtf": 0.1 * (who + 1), "signature": "x"}))


def experiment(expdir: Path, tag: str, nolm: bool) -> Path:
    exp = expdir / tag
    (exp / "merged").mkdir(parents=True)
    (exp / "peft_config.yaml").write_text(yaml.safe_dump({"method": "lora"}))
    (exp / "peft_plan.json").write_text(json.dumps({"total": 1000, "fraction": 0.01, "model_params": 100000}))
    write_scores(expdir / "base_decode", WERS, 0)
    write_scores(exp / "merged" / "decode", WERS, 1)
    if nolm:
        write_scores(expdir / "base_decode_nolm", WERS_NOLM, 0)
        write_scores(exp / "merged" / "decode_nolm", WERS_NOLM, 1)
    return exp


def run_report(report, expdir: Path, exp: Path, *extra) -> None:
    report.main(["--exp", str(exp), "--merged", str(exp / "merged"), "--base_decode", str(expdir / "base_decode"),
                 "--source_test_sets", " ".join(SRC), "--target_test_sets", " ".join(TGT), "--recipe", "embedded",
                 "--expdir", str(expdir), *extra])


def table_row(md: str, tag: str) -> dict:
    """{column: cell} of experiment ``tag``'s row in the table of RESULTS.md."""
    lines = md.splitlines()
    head = next(l for l in lines if l.startswith("| experiment |"))
    row = next(l for l in lines if l.startswith(f"| {tag} |"))
    return dict(zip([c.strip() for c in head.strip("|").split("|")], [c.strip() for c in row.strip("|").split("|")]))


def test_report_with_the_nolm_decoding(report, tmp_path, capsys):
    expdir = tmp_path / "exp"
    exp = experiment(expdir, "child_lora", nolm=True)
    run_report(report, expdir, exp, "--nolm_decode_config", str(NOLM_CONFIG),
               "--base_decode_nolm", str(expdir / "base_decode_nolm"))
    printed = capsys.readouterr().out
    s = json.loads((exp / "merged" / "summary.json").read_text())
    assert s["nolm_decoding"] == "CTC greedy, no LM"
    for who, table, i in (("base", WERS, 0), ("adapted", WERS, 1), ("base_nolm", WERS_NOLM, 0),
                          ("adapted_nolm", WERS_NOLM, 1)):
        assert {x: s[who][x]["wer"] for x in SRC + TGT} == {x: table[x][i] for x in SRC + TGT}, who
        assert set(s[who]["child_test"]) == {"wer", "cer", "utterances", "words", "rtf"}
    assert s["forgetting_nolm"]["source_test"]["forgetting"] == pytest.approx(4.0)
    assert s["forgetting_nolm"]["source_unseen_test"]["forgetting"] == pytest.approx(-1.0)
    assert s["forgetting_nolm"]["source_test"]["forgetting_rel"] == pytest.approx(100 * 4.0 / 15.0, abs=1e-3)
    assert s["learning_nolm"]["child_test"]["target_gain"] == pytest.approx(14.5)
    assert s["forgetting"]["source_test"]["forgetting"] == pytest.approx(2.5)  # the LM's numbers unchanged
    assert s["learning"]["child_test"]["target_gain"] == pytest.approx(10.0)
    md = (expdir / "RESULTS.md").read_text()
    row = table_row(md, "child_lora")
    assert row["gain on child_test"] == "10.00" and row["gain on child_test (no LM)"] == "14.50"
    assert row["forgetting on source_test"] == "2.50" and row["forgetting on source_test (no LM)"] == "4.00"
    assert row["forgetting on source_unseen_test (no LM)"] == "-1.00"
    cols = list(row)
    assert max(cols.index(c) for c in cols if c.startswith(("gain on", "forgetting on")) and "(no LM)" not in c) \
        < min(cols.index(c) for c in cols if "(no LM)" in c)  # the no-LM columns after the LM ones
    assert "Without the LM (CTC greedy): child_test WER 50.00, source_test WER 15.00" in md
    assert "without the LM (CTC greedy): forgetting: +4.00 WER points on source_test" in printed
    assert "learning: +14.50 WER points on child_test" in printed
    lines = printed.splitlines()
    base_nolm = next(l for l in lines if l.startswith("base, no LM"))
    adapted_nolm = next(l for l in lines if l.startswith("adapted, no LM"))
    assert base_nolm.split()[3:] == ["15.00", "25.00", "50.00"]
    assert adapted_nolm.split()[3:] == ["19.00", "24.00", "35.50"]


def test_report_without_the_nolm_decoding_and_older_summaries(report, tmp_path, capsys):
    expdir = tmp_path / "exp"
    old = experiment(expdir, "child_old", nolm=False)
    run_report(report, expdir, old)
    printed = capsys.readouterr().out
    s = json.loads((old / "merged" / "summary.json").read_text())
    assert not any(k.endswith("_nolm") or k == "nolm_decoding" for k in s)
    assert "no LM" not in printed and "forgetting: +2.50 WER points on source_test" in printed
    md = (expdir / "RESULTS.md").read_text()
    assert "(no LM) |" not in md and "Without the LM" not in md
    # a newer run beside it: the table gains the no-LM columns, the older run shows "-" there
    new = experiment(expdir, "child_new", nolm=True)
    run_report(report, expdir, new, "--nolm_decode_config", str(NOLM_CONFIG))  # (default: <base_decode>_nolm)
    md = (expdir / "RESULTS.md").read_text()
    assert table_row(md, "child_old")["forgetting on source_test (no LM)"] == "-"
    assert table_row(md, "child_new")["forgetting on source_test (no LM)"] == "4.00"
    assert table_row(md, "child_old")["forgetting on source_test"] == "2.50"
    capsys.readouterr()
    report.print_table(s)  # an older summary prints as before
    assert "no LM" not in capsys.readouterr().out


def test_report_refuses_missing_nolm_scores(report, tmp_path):
    expdir = tmp_path / "exp"
    exp = experiment(expdir, "child_lora", nolm=True)
    missing = exp / "merged" / "decode_nolm" / "source_unseen_test" / "result.json"
    missing.unlink()
    with pytest.raises(SystemExit, match=str(missing)):
        run_report(report, expdir, exp, "--nolm_decode_config", str(NOLM_CONFIG))
    assert not (exp / "merged" / "summary.json").exists()


def test_a_decoding_belongs_to_its_data(tmp_path):
    """A set re-synthesised under the same name (another corpus version) is decoded again: a decoding
    records the data it read (wav.scp and every audio file's size and time), not only the model."""
    import json
    import os
    import sys

    sys.path.insert(0, str(ROOT / "local"))
    import decode

    data, out = tmp_path / "child_test", tmp_path / "dec" / "child_test"
    data.mkdir()
    out.mkdir(parents=True)
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF" + b"\0" * 100)
    (data / "wav.scp").write_text(f"u1 {wav}\n")
    (out / "text").write_text("u1 hello\n")
    (out / "decode_info.json").write_text(json.dumps({"signature": "s", "data": decode.data_signature(data),
                                                      "hypotheses": decode.text_digest(out / "text")}))
    assert decode.finished(out, "s", data) and decode.todo(str(out.parent), [str(data)], "s") == []
    assert not decode.finished(out, "other model", data)
    wav.write_bytes(b"RIFF" + b"\1" * 120)  # new audio under the same name
    os.utime(wav, ns=(1, 1))
    assert not decode.finished(out, "s", data) and decode.todo(str(out.parent), [str(data)], "s") == [data]
    (out / "decode_info.json").write_text(json.dumps({"signature": "s"}))  # a decoding that recorded no data
    assert not decode.finished(out, "s", data)
