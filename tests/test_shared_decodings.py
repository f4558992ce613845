"""Base-model decodings shipped beside a foundation model (local/shared_decodings.py, issue 39 item 6):
reused on another clone (other paths, other file times) when model, options, audio and software all
match, and refused, with the part named, when any of them differs or the shared text was edited."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from espnet_fixtures import local_module

ROOT = Path(__file__).resolve().parents[1]


def clone(tmp: Path, name: str, src: Path = None) -> dict:
    """A recipe checkout in ``tmp/name``: a model, a test set of two utterances with audio, a decoding config."""
    root = tmp / name
    if src is not None:
        shutil.copytree(src, root)  # (new paths and modification times, the same content)
    else:
        (root / "model").mkdir(parents=True)
        (root / "model" / "config.yaml").write_text("encoder: e_branchformer\n")
        (root / "model" / "model.pth").write_bytes(b"weights")
        (root / "audio").mkdir()
        (root / "data" / "child_test").mkdir(parents=True)
        for u in ("u1", "u2"):
            (root / "audio" / f"{u}.wav").write_bytes(u.encode() * 100)
        (root / "decode.yaml").write_text("beam_size: 4\nctc_weight: 0.3\n")
    scp = "".join(f"{u} {root / 'audio' / (u + '.wav')}\n" for u in ("u1", "u2"))
    (root / "data" / "child_test" / "wav.scp").write_text(scp)
    return {"model": root / "model", "data": root / "data" / "child_test", "config": root / "decode.yaml",
            "out": root / "exp" / "base_decode"}


def args(c: dict, *mode: str) -> list:
    return [*mode, "--model_dir", str(c["model"]), "--output_dir", str(c["out"]), "--data_dir", str(c["data"]),
            "--decode_config", str(c["config"])]


def decoded(c: dict) -> None:
    """What decode.py leaves after decoding (one job's shares, then --merge)."""
    out = c["out"] / "child_test"
    out.mkdir(parents=True)
    (out / "hyp.1").write_text("u1 the cat\nu2 a dog\n")
    (out / "info.1.json").write_text(json.dumps({"audio_seconds": 2.0, "decode_seconds": 1.0}))
    local_module("decode").main(args(c, "--merge", "--nj", "1"))


def run(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "local" / "shared_decodings.py"), *argv],
                          capture_output=True, text=True)


@pytest.fixture
def shipped(tmp_path):
    """A clone that decoded and exported its base decoding, and a second clone of the same content."""
    first = clone(tmp_path, "first")
    decoded(first)
    res = run(*args(first, "--export", "--name", "decode"))
    assert res.returncode == 0 and res.stdout.strip() == "1", res.stderr
    shutil.rmtree(first["out"])
    second = clone(tmp_path, "second", src=tmp_path / "first")
    return second


def pending(c: dict) -> int:
    return local_module("decode").pending(local_module("decode").argparse.Namespace(
        model_dir=[str(c["model"])], output_dir=[str(c["out"])], data_dir=[c["data"]],
        decode_config=str(c["config"]), lm_dir=None, adapter=[], utt2adapter=None))


def test_a_shared_decoding_is_reused_on_another_clone_and_counts_as_done(shipped):
    assert pending(shipped) == 1
    res = run(*args(shipped, "--reuse"))
    assert res.returncode == 0 and res.stdout.strip() == "1", res.stderr
    assert "is reused" in res.stderr
    assert (shipped["out"] / "child_test" / "text").read_text() == "u1 the cat\nu2 a dog\n"
    assert pending(shipped) == 0  # decode.py takes it for a finished decoding of this model and data


@pytest.mark.parametrize("change, part", [
    (lambda c: (c["model"] / "model.pth").write_bytes(b"other weights"), "model"),
    (lambda c: c["config"].write_text("beam_size: 8\nctc_weight: 0.3\n"), "options"),
    (lambda c: (c["data"].parent.parent / "audio" / "u2.wav").write_bytes(b"other audio"), "data"),
    (lambda c: next((c["model"] / "decodings").glob("*/*/text")).write_text("u1 the cat\nu2 a cat\n"),
     "hypotheses"),
])
def test_a_shared_decoding_is_refused_when_any_part_of_its_key_differs(shipped, change, part):
    change(shipped)
    res = run(*args(shipped, "--reuse"))
    assert res.returncode == 0 and res.stdout.strip() == "0", res.stderr
    assert f"its {part}" in res.stderr and "decoded here" in res.stderr
    assert not (shipped["out"] / "child_test" / "text").exists()
    assert pending(shipped) == 1


def test_a_shared_decoding_of_other_software_is_refused(shipped):
    key = next((shipped["model"] / "decodings").glob("*/*/key.json"))
    record = json.loads(key.read_text())
    key.write_text(json.dumps(dict(record, software=record["software"].replace("torch ", "torch 0.0+"))))
    res = run(*args(shipped, "--reuse"))
    assert res.stdout.strip() == "0" and "its software differs" in res.stderr


def test_export_refuses_a_decoding_that_is_not_finished(tmp_path):
    c = clone(tmp_path, "first")
    decoded(c)
    (c["model"] / "model.pth").write_bytes(b"retrained")  # the decoding is now of another model
    res = run(*args(c, "--export", "--name", "decode"))
    assert res.returncode != 0 and "not a finished decoding" in res.stderr
    assert not (c["model"] / "decodings").exists()
