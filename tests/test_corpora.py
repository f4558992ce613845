"""Data preparation of the real-corpus recipes (local/corpora/*, egs2/*/asr1/local/data.sh) on fixture
trees built here in the corpora's real layouts and file formats: FLAC (MyST, LibriSpeech), RIFF wav
(OGI Kids), NIST SPHERE (CMU Kids), MP3 (Common Voice; written with soundfile, which bundles a
libsndfile with MP3 support), real-format transcripts, tables and TSVs with the markers each corpus
uses. Nothing here needs the real corpora or a network."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from local.corpora import cmu_kids, common, common_voice, librispeech, myst, ogi_kids  # noqa: E402

SR = 16000
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


# ------------------------------------------------------------------------------ helpers
def tone(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.05 * rng.standard_normal(int(seconds * sr))).astype(np.float32)


def write_audio(path: Path, seconds: float = 0.5, sr: int = SR, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), tone(seconds, sr), sr, **kw)
    return path


def read_table(path: Path):
    rows = [line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines()]
    return [(r[0], r[1] if len(r) > 1 else "") for r in rows]


def validate_dir(d: Path, max_dur: float = None) -> dict:
    """Everything a Kaldi/ESPnet data directory must satisfy; returns {utt: text}."""
    for f in ("wav.scp", "text", "utt2spk", "spk2utt"):
        assert (d / f).is_file(), f"{d}/{f} missing"
    tables = {}
    for f in ("wav.scp", "text", "utt2spk", "spk2utt", "segments", "utt2dur", "spk2gender"):
        if (d / f).is_file():
            rows = read_table(d / f)
            keys = [k for k, _ in rows]
            assert keys == sorted(keys, key=lambda k: k.encode()), f"{d}/{f} not sorted (C order)"
            assert len(keys) == len(set(keys)), f"{d}/{f} has duplicate ids"
            tables[f] = dict(rows)
    text, u2s = tables["text"], tables["utt2spk"]
    assert text and set(text) == set(u2s)
    if "segments" in tables:
        segs = {k: v.split() for k, v in tables["segments"].items()}
        assert set(segs) == set(text)
        assert {s[0] for s in segs.values()} == set(tables["wav.scp"])
        for rec, start, end in segs.values():
            assert 0 <= float(start) < float(end)
    else:
        assert set(tables["wav.scp"]) == set(text)
    spk2utt = {s: v.split() for s, v in tables["spk2utt"].items()}
    assert sorted(u for us in spk2utt.values() for u in us) == sorted(u2s)
    for spk, us in spk2utt.items():
        for u in us:
            assert u2s[u] == spk and u.startswith(spk)
    for utt, t in text.items():
        assert t and t == common.normalize_text(t), f"{utt}: text not normalised: {t!r}"
    for rec, entry in tables["wav.scp"].items():
        if entry.endswith("|"):
            continue
        assert Path(entry).is_file(), entry
        assert soundfile.info(entry).frames > 0
    if "utt2dur" in tables and max_dur:
        assert all(0 < float(v) <= max_dur for v in tables["utt2dur"].values())
    return text


def read_pipe(entry: str):
    """Run a ``cmd |`` wav.scp entry as Kaldi/ESPnet do and decode its stdout."""
    import io

    raw = subprocess.run(entry.rstrip().rstrip("|"), shell=True, capture_output=True, check=True, env=ENV).stdout
    return soundfile.read(io.BytesIO(raw))


def run_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "local" / "corpora" / f"{module}.py"), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=str(ROOT))
    assert res.returncode == 0, res.stderr
    return res


def same_dirs(a: Path, b: Path, names) -> None:
    for n in names:
        for f in ("wav.scp", "text", "utt2spk", "spk2utt"):
            assert (a / n / f).read_text() == (b / n / f).read_text(), f"{n}/{f} differs between API and CLI"


# ------------------------------------------------------------------------------ common
def test_normalize_text_convention():
    assert common.normalize_text("It\u2019s a \u201cGood\u201d X-ray, isn't it?  Mr. O'Neil & co.") == \
        "it's a good x ray isn't it mr o'neil and co"
    assert common.normalize_text("'Cause the students' 'quoted' word -- well_known") == \
        "cause the students quoted word well known"
    assert common.normalize_text("Café 42 é") == "café 42 é"
    assert common.normalize_text("  ?! ' ") == ""
    assert common.drop_fillers("um so uh the hmm mm magnet mhm") == "so the magnet"


def test_splits_are_deterministic_and_proportional():
    fr = (("train", 0.8), ("dev", 0.1), ("test", 0.1))
    spk = [f"s{i:03d}" for i in range(2000)]
    a = [common.split_by_hash(s, fr, "x") for s in spk]
    assert a == [common.split_by_hash(s, fr, "x") for s in spk]
    assert 0.75 < a.count("train") / len(a) < 0.85 and a.count("dev") > 100 and a.count("test") > 100
    ex = common.assign_exact(spk[:76], fr, "x", strata={s: ("A" if i < 44 else "B") for i, s in enumerate(spk[:76])})
    counts = {k: list(ex.values()).count(k) for k in ("train", "dev", "test")}
    assert counts == {"train": 61, "dev": 7, "test": 8}
    assert ex == common.assign_exact(reversed(spk[:76]), fr, "x",
                                     strata={s: ("A" if i < 44 else "B") for i, s in enumerate(spk[:76])})


def test_sphere_header_and_duration(tmp_path):
    f = write_audio(tmp_path / "a.sph", 1.25, format="NIST", subtype="PCM_16")
    h = common.read_sphere_header(f)
    assert h["sample_rate"] == SR and h["sample_count"] == 20000 and not common.sphere_is_compressed(h)
    assert common.audio_duration(f) == pytest.approx(1.25)
    assert common.sphere_is_compressed({"sample_coding": "pcm,embedded-shorten-v2.00"})
    assert common.duration_problem(31.0, 0, 30) and common.duration_problem(0, 0, 30)
    assert common.duration_problem(29.9, 0, 30) is None and common.duration_problem(31.0, 0, None) is None


def test_writer_rejects_bad_ids(tmp_path):
    u = common.Utterance(utt="b-1", spk="a", audio="/x.wav", text="hi")
    with pytest.raises(ValueError, match="speaker id"):
        common.write_kaldi_dir(tmp_path / "d", [u])
    with pytest.raises(ValueError, match="empty"):
        common.write_kaldi_dir(tmp_path / "d", [common.Utterance(utt="a-1", spk="a", audio="/x.wav", text=" ")])
    with pytest.raises(ValueError, match="group and sort"):  # "ab~1" sorts after "abc-1": speakers interleave
        common.write_kaldi_dir(tmp_path / "d", [common.Utterance(utt=u, spk=s, audio="/x.wav", text="hi")
                                                for u, s in (("ab-1", "ab"), ("abc-1", "abc"), ("ab~2", "ab"))])
    with pytest.raises(ValueError, match="duplicate"):
        common.write_kaldi_dir(tmp_path / "d", [common.Utterance(utt="a-1", spk="a", audio="/x.wav", text="hi")] * 2)


# ------------------------------------------------------------------------------ MyST
MYST_STUDENTS = {"train": "001001", "development": "002002", "test": "003003"}


def make_myst(tmp_path: Path) -> Path:
    root = tmp_path / "MyST"
    for part, student in MYST_STUDENTS.items():
        session = f"myst_{student}_2014-02-27_09-29-01_LS_1.1"
        d = root / "myst_child_conv_speech" / "data" / part / student / session
        trns = {
            "001": "<NO_SIGNAL>",
            "002": "UM the (( magnet )) pulls I 'M sure th- the nail <laugh> +probably",
            "004": "this one is way too long for the window",
            "005": "the water (()) goes up",
            "006": "<SIDE_ SPEECH>",
            "007": "[noise] it's a {comment} *flubber, x-ray (uh) -cause magnet-",
            "008": "<DISCARD>",
            "009": "it is magnetic < NO SIGNAL >",
        }
        for n in ["001", "002", "003", "004", "005", "006", "007", "008", "009"]:
            write_audio(d / f"{session}_{n}.flac", 31.0 if n == "004" else 0.5)
            if n in trns:
                (d / f"{session}_{n}.trn").write_text(trns[n] + "\n", encoding="utf-8")
        (d / f"{session}_010.wav").parent.mkdir(parents=True, exist_ok=True)
        write_audio(d / f"{session}_010.wav")
        (d / f"{session}_010.trn").write_text("Yes.\nIt floats\n", encoding="utf-8")
    (root / "myst_child_conv_speech" / "docs").mkdir(parents=True)
    return root


def test_myst_cleaning_rules():
    c = myst.clean_transcript
    assert c("UM the (( magnet )) pulls I 'M sure th- the nail <laugh> +probably") == \
        ("the magnet pulls i'm sure the nail probably", None)
    assert c("[noise] it's a {comment} *flubber, x-ray (uh) -cause magnet-")[0] == "it's a flubber x ray"
    assert c("the water (()) goes up")[0] is None
    assert c("the water (()) goes up", drop_unintelligible=False)[0] == "the water goes up"
    assert c("the water (*) goes up")[0] is None
    assert c("well [INDISCERNIBLE] yes")[0] is None and c("well [indiscernible] yes", False)[0] == "well yes"
    assert c("it is magnetic <NO_SIGNAL")[0] is None
    assert c("it is magnetic <NO_SIGNAL", drop_unintelligible=False)[0] == "it is magnetic"
    assert c("<DISCARD>")[1] == "marked <discard>"
    assert c("<SIDE_ SPEECH>") == (None, "empty after cleaning")
    assert c("um uh") == (None, "empty after cleaning") and c("um uh", drop_fillers=False)[0] == "um uh"
    assert c("")[1].startswith("untranscribed")
    assert c("I +um+ think it's two + two")[0] == "i think it's two two"


def test_myst_prepare_and_cli(tmp_path):
    root = make_myst(tmp_path)
    counts = myst.prepare(root, tmp_path / "data")
    assert counts == {"myst_train": 3, "myst_dev": 3, "myst_test": 3}
    for name in counts:
        text = validate_dir(tmp_path / "data" / name, max_dur=30)
        student = MYST_STUDENTS[{"myst_train": "train", "myst_dev": "development", "myst_test": "test"}[name]]
        assert set(read_table(tmp_path / "data" / name / "spk2utt")[0][1].split()) == set(text)
        assert all(u.startswith(f"myst_{student}_") for u in text)
        assert sorted(text.values()) == sorted(["the magnet pulls i'm sure the nail probably",
                                                "it's a flubber x ray", "yes it floats"])
    removed = (tmp_path / "data" / "local" / "myst" / "removed.myst_test.txt").read_text()
    for reason in ("untranscribed (no .trn)", "longer than 30 s", "unintelligible", "marked <discard>",
                   "empty after cleaning"):
        assert reason in removed
    # --drop_unintelligible false keeps the turns with markers, stripped; the over-long turn stays out
    counts = myst.prepare(root, tmp_path / "keep", drop_unintelligible=False)
    assert counts["myst_test"] == 5
    assert "the water goes up" in validate_dir(tmp_path / "keep" / "myst_test").values()
    # the CLI writes the same directories as the API
    run_cli("myst", "--corpus", str(root / "myst_child_conv_speech"), "--out", str(tmp_path / "cli"))
    same_dirs(tmp_path / "data", tmp_path / "cli", counts)
    # split lists subset the partitions
    lists = tmp_path / "lists"
    lists.mkdir()
    keep = "myst_003003_2014-02-27_09-29-01_LS_1.1_002"
    (lists / "test.list").write_text(keep + "\n")
    (lists / "train.list").write_text("myst_001001_2014-02-27_09-29-01_LS_1.1_007\n")
    (lists / "dev.list").write_text("myst_002002_2014-02-27_09-29-01_LS_1.1_010\n")
    counts = myst.prepare(root, tmp_path / "listed", split_lists=lists)
    assert counts == {"myst_train": 1, "myst_dev": 1, "myst_test": 1}
    assert list(validate_dir(tmp_path / "listed" / "myst_test")) == [keep]


def test_myst_project_data_check(tmp_path):
    from espnet_peft.data import check_data_dir

    root = make_myst(tmp_path)
    myst.prepare(root, tmp_path / "data")
    rep = check_data_dir(tmp_path / "data" / "myst_dev", sample_rate=SR)
    assert rep.ok, rep.problems


# ------------------------------------------------------------------------------ OGI Kids
def ogi_speakers():
    """One speaker id per split of the default hashed split (chosen, not assumed)."""
    found = {}
    for grade in "0123456789a":
        for a in "0123456789abcdefghijklmnopqrstuvwxyz":
            for b in "0123456789":
                spk = f"ks{grade}{a}{b}"
                found.setdefault(common.split_by_hash(spk, ogi_kids.SPLITS, ogi_kids.SALT), spk)
                if len(found) == 3:
                    return found
    raise AssertionError("no speaker for some split")


def make_ogi(tmp_path: Path) -> Path:
    root = tmp_path / "cslu_kids"
    docs = root / "docs"
    docs.mkdir(parents=True)
    for d in ("labels", "misc", "trans/scripted", "verify"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (docs / "all.map").write_text('00 "one"\n0A "Hello, there."\n01 "Five eight two"\n02 "Don\'t go!"\n')
    verified = {}
    for split, spk in ogi_speakers().items():
        grade = "10" if spk[2] == "a" else f"0{spk[2]}"
        sd = root / "speech" / "scripted" / grade / "0" / spk
        for prompt, label in (("00", 1), ("0a", 4), ("01", 2), ("8v", 1), ("02", None)):
            write_audio(sd / f"{spk}{prompt}0.wav", 0.4)
            if label is not None:
                verified.setdefault(grade, []).append(f"../speech/scripted/{grade}/0/{spk}/{spk}{prompt}0.wav {label}")
        write_audio(sd / f"{spk}000x.wav", 31.0)  # same prompt 00, over-long
        verified.setdefault(grade, []).append(f"../speech/scripted/{grade}/0/{spk}/{spk}000x.wav 1")
        # spontaneous monologue (longer than 30 s: kept whole by default) and its CSLU transcript
        write_audio(root / "speech" / "spontaneous" / grade / "0" / spk / f"{spk}xx0.wav", 35.0)
        t = root / "trans" / "spontaneous" / grade / "0" / spk / f"{spk}xx0.txt"
        t.parent.mkdir(parents=True, exist_ok=True)
        t.write_text("\ufeff<bn> a b c d um my favorite <long<bn>> thing is (gr) [sw] *pizza <bs: no no>\n"
                     "and sniff> ice cre- cream <ln>>\n", encoding="utf-8")
    for grade, lines in verified.items():
        (docs / f"{grade}-verified.txt").write_text("\n".join(lines) + "\n")
    return root


def test_ogi_cleaning_rules():
    raw = "<bn> a b c d um my favorite <long<bn>> thing is (gr) [sw] *pizza <bs: no no> and sniff> ice cre- cream"
    assert ogi_kids.clean_spontaneous(raw) == "a b c d my favorite thing is pizza and ice cream"
    assert ogi_kids.clean_spontaneous("<pau> <uu> um") is None


def test_ogi_prepare_subsets_and_cli(tmp_path):
    root = make_ogi(tmp_path)
    spk = ogi_speakers()
    counts = ogi_kids.prepare(root, tmp_path / "data", subsets=["scripted"])
    assert counts == {f"ogi_scripted_{s}": 2 for s in ("train", "dev", "test")}
    for split, s in spk.items():
        text = validate_dir(tmp_path / "data" / f"ogi_scripted_{split}", max_dur=30)
        assert text == {f"{s}000": "one", f"{s}0a0": "hello there"}
    removed = (tmp_path / "data" / "local" / "ogi_kids" / "removed.ogi_scripted_test.txt").read_text()
    for reason in ("verification label 2", "prompt id 8V not in all.map", "no verification label", "longer than 30 s"):
        assert reason in removed
    assert not (tmp_path / "data" / "ogi_spont_train").exists()
    # label 2 kept on request
    counts = ogi_kids.prepare(root, tmp_path / "l2", subsets=["scripted"], verify_labels=[1, 2, 4])
    assert counts["ogi_scripted_dev"] == 3
    # spontaneous: whole monologues (long-form), CSLU markers cleaned
    counts = ogi_kids.prepare(root, tmp_path / "spont", subsets=["spontaneous"])
    assert counts == {f"ogi_spont_{s}": 1 for s in ("train", "dev", "test")}
    text = validate_dir(tmp_path / "spont" / "ogi_spont_test")
    assert text == {f"{spk['test']}xx0": "a b c d my favorite thing is pizza and ice cream"}
    # ... or cut by an aligner's segments (asr_align output, with scores)
    seg = tmp_path / "spont.segments"
    seg.write_text("".join(f"{s}xx0_0000 {s}xx0 0.50 4.20 -0.0123 a b c d\n"
                           f"{s}xx0_0001 {s}xx0 4.50 12.00 -0.9000 my favorite <bn> thing\n"
                           f"{s}xx0_0002 {s}xx0 1.00 34.50 -0.0100 is pizza\n" for s in spk.values()))
    counts = ogi_kids.prepare(root, tmp_path / "seg", subsets=["spontaneous"], spont_segments=seg,
                              min_segment_score=-0.5)
    assert counts == {f"ogi_spont_{s}": 1 for s in ("train", "dev", "test")}  # 0001 scored low, 0002 > 30 s
    d = tmp_path / "seg" / "ogi_spont_dev"
    assert validate_dir(d) == {f"{spk['dev']}xx0_0000": "a b c d"}
    assert (d / "segments").read_text() == f"{spk['dev']}xx0_0000 {spk['dev']}xx0 0.500 4.200\n"
    # CLI == API
    run_cli("ogi_kids", "--corpus", str(tmp_path), "--out", str(tmp_path / "cli"), "--subsets", "scripted")
    same_dirs(tmp_path / "data", tmp_path / "cli", [f"ogi_scripted_{s}" for s in ("train", "dev", "test")])


# ------------------------------------------------------------------------------ CMU Kids
CMU_SENTENCES = {"2aa": "The boy ran to the store.", "2ab": "Once many blue butterflies lived in California.",
                 "3ac": "It's a dog's life!"}


def make_cmu(tmp_path: Path, compressed: str = None) -> Path:
    root = tmp_path / "LDC97S63" / "cmu_kids"
    tables = root / "tables"
    tables.mkdir(parents=True)
    (root / "doc").mkdir()
    (root / "0readme.1st").write_text("CMU Kids\n")
    (tables / "sentence.tbl").write_text("".join(f"{k}\t3\t{v}\n" for k, v in CMU_SENTENCES.items()))
    speakers = [f"{g}{c}{d}" for g, c, d in zip("fmfmfmfmfm", "abcdefghij", ["bm", "cs", "dt", "ek", "fl", "gm",
                                                                                "hn", "io", "jp", "kq"])]
    (tables / "speaker.tbl").write_text("ID\tLOC\tGR/AGE\tTOT\tBIN2\n--\t--\t--\t--\t--\n" +
                                        "".join(f"{s}\tSUM95\t2/8\t3\t1\n" for s in speakers))
    for i, s in enumerate(speakers):
        sig, trans = root / "kids" / s / "signal", root / "kids" / s / "trans"
        trans.mkdir(parents=True)
        write_audio(sig / f"{s}2aa1.sph", 0.6, format="NIST", subtype="PCM_16")
        (trans / f"{s}2aa1.trn").write_text("THE BOY RAN TO THE STORE\n")
        write_audio(sig / f"{s}2ab2.sph", 0.6, format="NIST", subtype="PCM_16")
        (trans / f"{s}2ab2.trn").write_text("[breath] ONCE MANY /b l uw/ BLUE BUTTERFLIES LIVED IN CALIFORNIA\n")
        write_audio(sig / f"{s}3ac2.sph", 0.6, format="NIST", subtype="PCM_16")
        (trans / f"{s}3ac2.trn").write_text("[noise] IT'S A DOG'S LIFE [begin_noise]\n")
        write_audio(sig / f"{s}9zz1.sph", 0.6, format="NIST", subtype="PCM_16")  # prompt missing from the table
        if i == 0:
            write_audio(sig / f"{s}2aa2.sph", 31.0, format="NIST", subtype="PCM_16")
    if compressed:
        f = root / "kids" / speakers[0] / "signal" / f"{speakers[0]}3ac1.sph"
        data = bytearray(f.with_name(f"{speakers[0]}3ac2.sph").read_bytes())
        data[:1024] = data[:1024].replace(b"sample_coding -s3 pcm\n",
                                          b"sample_coding -s26 pcm,embedded-shorten-v2.00\n")[:1024]
        f.write_bytes(bytes(data))
    return tmp_path / "LDC97S63"


def test_cmu_prepare_prompt_and_spoken(tmp_path):
    root = make_cmu(tmp_path)
    counts = cmu_kids.prepare(root, tmp_path / "data")
    assert counts == {"cmu_kids_train": 24, "cmu_kids_dev": 3, "cmu_kids_test": 3}
    texts = {}
    for name in counts:
        texts.update(validate_dir(tmp_path / "data" / name, max_dur=30))
        g = dict(read_table(tmp_path / "data" / name / "spk2gender"))
        assert all(v == k[0] for k, v in g.items())
        spk = {s for _, s in read_table(tmp_path / "data" / name / "utt2spk")}
        for other in counts:
            if other != name:
                assert not spk & {s for _, s in read_table(tmp_path / "data" / other / "utt2spk")}
    assert texts["fabm2aa1"] == "the boy ran to the store" and texts["fabm3ac2"] == "it's a dog's life"
    removed = "".join(p.read_text() for p in (tmp_path / "data" / "local" / "cmu_kids").glob("removed.*"))
    assert "prompt 9zz not in sentence.tbl" in removed and "longer than 30 s" in removed
    # spoken transcripts: noise tags removed, phonetic transcriptions dropped
    counts = cmu_kids.prepare(root, tmp_path / "spoken", text_source="spoken", bins=[2])
    texts = {}
    for name in counts:
        texts.update(validate_dir(tmp_path / "spoken" / name))
    assert set(texts) == {f"{s}3ac2" for s in {u[:4] for u in texts}} and len(texts) == 10
    assert texts["fabm3ac2"] == "it's a dog's life"
    run_cli("cmu_kids", "--corpus", str(root), "--out", str(tmp_path / "cli"))
    same_dirs(tmp_path / "data", tmp_path / "cli", ["cmu_kids_train", "cmu_kids_dev", "cmu_kids_test"])


def test_cmu_shorten_needs_sph2pipe(tmp_path, monkeypatch):
    root = make_cmu(tmp_path, compressed="shorten")
    monkeypatch.setattr(cmu_kids.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="sph2pipe"):
        cmu_kids.prepare(root, tmp_path / "data", sph2pipe="")
    # a stand-in sph2pipe (the real one decodes shorten; this one reads the PCM payload after the header)
    fake = tmp_path / "bin" / "sph2pipe"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import io, sys, numpy as np, soundfile as s; "
                    f"x = np.fromfile(sys.argv[-1], dtype=\"<i2\", offset=1024); b = io.BytesIO(); "
                    f"s.write(b, x, 16000, format=\"WAV\", subtype=\"PCM_16\"); "
                    f"sys.stdout.buffer.write(b.getvalue())' \"$@\"\n")
    fake.chmod(0o755)
    counts = cmu_kids.prepare(root, tmp_path / "data", sph2pipe=str(fake))
    wav = {}
    for name in counts:
        validate_dir(tmp_path / "data" / name)
        wav.update(read_table(tmp_path / "data" / name / "wav.scp"))
    assert wav["fabm3ac1"].startswith(f"{fake} -f wav -p -c 1 /") and wav["fabm3ac1"].endswith(" |")
    assert wav["fabm3ac2"].endswith("fabm3ac2.sph")
    x, sr = read_pipe(wav["fabm3ac1"])
    assert sr == SR and len(x) == int(0.6 * SR)


# ------------------------------------------------------------------------------ Common Voice
CV_HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
             "gender", "accents", "variant", "locale", "segment"]
INDIAN = "India and South Asia (India, Pakistan, Sri Lanka)"


def cv_row(cid: str, clip: str, sentence: str, accents: str):
    return [cid * 4, f"common_voice_en_{clip}.mp3", "s" + clip, sentence, "", "2", "0", "twenties",
            "male_masculine", accents, "", "en", ""]


def make_cv(tmp_path: Path) -> Path:
    en = tmp_path / "cv-corpus-17.0-2024-03-15" / "en"
    test = [cv_row("aa11", "1", "Hello, world!", INDIAN),
            cv_row("bb22", "2", "It\u2019s a \u201cfine\u201d day.", "Scottish English"),
            cv_row("cc33", "3", "Mixed labels here.", f"{INDIAN},Scottish English"),
            cv_row("dd44", "4", "An American voice.", "United States English"),
            cv_row("ee55", "5", "From Johannesburg.", "Southern African (South Africa, Zimbabwe, Namibia)")]
    dev = [cv_row("ff66", "6", "Dev sentence one.", f"{INDIAN},Hindi speaker"),
           cv_row("ab12", "7", "A Filipino voice.", "Filipino")]
    train_rows = [cv_row("ac13", "8", "Train clip number one.", INDIAN),
                  cv_row("ac13", "9", "Train clip number two!", INDIAN),
                  cv_row("ad14", "10", "Och aye, the noo.", "Scottish English"),
                  cv_row("aa11", "11", "Test speaker's other clip.", INDIAN),
                  cv_row("ae15", "12", "hello world", INDIAN),
                  cv_row("af16", "13", "Too long a clip.", INDIAN),
                  cv_row("ag17", "14", "Missing clip file.", INDIAN),
                  cv_row("ab12", "15", "Dev speaker, Scottish label.", "Scottish English"),
                  cv_row("ah18", "16", "A legacy code row.", "")]
    en.mkdir(parents=True)

    def write(name, rows):
        (en / name).write_text("\t".join(CV_HEADER) + "\n" + "".join("\t".join(r) + "\n" for r in rows),
                               encoding="utf-8")

    write("test.tsv", test)
    write("dev.tsv", dev)
    write("train.tsv", [train_rows[0]])
    write("validated.tsv", test + dev + train_rows)
    write("invalidated.tsv", [])
    write("other.tsv", [])
    for r in test + dev + train_rows:
        if "14" not in r[1]:
            write_audio(en / "clips" / r[1], 0.4, sr=48000, format="MP3")
    (en / "clip_durations.tsv").write_text("clip\tduration[ms]\ncommon_voice_en_13.mp3\t31000\n"
                                           "common_voice_en_8.mp3\t408\n")
    return en


def test_cv_accent_parsing():
    assert common_voice.accent_labels(f"{INDIAN},Hindi speaker|Scottish English") == \
        [INDIAN.lower(), "hindi speaker", "scottish english"]
    assert common_voice.accent_of(INDIAN) == "indian"
    assert common_voice.accent_of(f"{INDIAN},Hindi speaker") == "indian"
    assert common_voice.accent_of(f"{INDIAN},United States English") is None
    assert common_voice.accent_of("scotland") == "scottish" and common_voice.accent_of("african") == "southern_african"
    assert common_voice.accent_of("Lancashire English") is None and common_voice.accent_of("") is None


@pytest.mark.skipif(not common.soundfile_reads("MP3"), reason="this libsndfile cannot write/read MP3 (needs >= 1.1)")
def test_cv_prepare_accent_sets_and_cli(tmp_path):
    en = make_cv(tmp_path)
    counts = common_voice.prepare(en.parent, tmp_path / "data")
    assert counts == {"cv_indian_test": 1, "cv_scottish_test": 1, "cv_southern_african_test": 1,
                      "cv_accents_dev": 1, "cv_accents_train": 3}
    d = tmp_path / "data"
    texts = {n: validate_dir(d / n, max_dur=30) for n in counts}
    assert list(texts["cv_scottish_test"].values()) == ["it's a fine day"]
    assert list(texts["cv_indian_test"].values()) == ["hello world"]
    assert sorted(texts["cv_accents_train"].values()) == ["och aye the noo", "train clip number one",
                                                          "train clip number two"]
    spk = {n: {s for _, s in read_table(d / n / "utt2spk")} for n in counts}
    held_out = set().union(*(v for n, v in spk.items() if n != "cv_accents_train"))
    assert not spk["cv_accents_train"] & held_out
    assert all(s.startswith("cv") and len(s) == 18 for v in spk.values() for s in v)
    removed = (d / "local" / "common_voice" / "removed.cv_accents_train.txt").read_text()
    for reason in ("speaker in dev/test", "sentence in dev/test", "longer than 30 s", "clip file missing"):
        assert reason in removed
    wav = dict(read_table(d / "cv_indian_test" / "wav.scp"))
    x, sr = soundfile.read(next(iter(wav.values())))
    assert sr == 48000 and len(x) > 0
    # the official train.tsv as the training source; a decoder pipe for MP3 (here a python one-liner)
    decoder = (f"{sys.executable} -c 'import io, sys, soundfile as s; x, r = s.read(sys.argv[1]); b = io.BytesIO(); "
               f"s.write(b, x, r, format=\"WAV\"); sys.stdout.buffer.write(b.getvalue())' {{path}}")
    counts = common_voice.prepare(en, tmp_path / "t", train_source="train", accents=["indian"], mp3_cmd=decoder)
    assert counts == {"cv_indian_test": 1, "cv_accents_dev": 1, "cv_accents_train": 1}
    entry = read_table(tmp_path / "t" / "cv_indian_test" / "wav.scp")[0][1]
    assert entry.startswith(f"{sys.executable} -c ") and entry.endswith(".mp3 |")
    x, sr = read_pipe(entry)
    assert sr == 48000 and len(x) == soundfile.info(entry.split()[-2]).frames
    run_cli("common_voice", "--corpus", str(en), "--out", str(tmp_path / "cli"))
    same_dirs(tmp_path / "data", tmp_path / "cli", counts)


# ------------------------------------------------------------------------------ LibriSpeech
def make_librispeech(tmp_path: Path) -> Path:
    top = tmp_path / "corpora"
    root = top / "LibriSpeech"
    for s, (spk, ch) in {"test-clean": ("1089", "134686"), "test-other": ("1688", "142285")}.items():
        d = root / s / spk / ch
        lines = []
        for i, words in enumerate(["HE HOPED THERE WOULD BE STEW FOR DINNER", "STUFF IT INTO YOU HIS BELLY COUNSELLED",
                                   "AFTER EARLY NIGHTFALL THE YELLOW LAMPS WOULD LIGHT UP", "MISSING AUDIO LINE"]):
            utt = f"{spk}-{ch}-{i:04d}"
            lines.append(f"{utt} {words}")
            if i < 3:
                write_audio(d / f"{utt}.flac", 31.0 if i == 2 else 0.5)
        (d / f"{spk}-{ch}.trans.txt").write_text("\n".join(lines) + "\n")
    (root / "SPEAKERS.TXT").write_text("; ID  |SEX| SUBSET | MINUTES | NAME\n1089 | M | test-clean | 25.00 | Bill\n"
                                       "1688 | F | test-other | 25.00 | Jane\n")
    return top


def test_librispeech_prepare_and_cli(tmp_path):
    top = make_librispeech(tmp_path)
    counts = librispeech.prepare(top, tmp_path / "data")
    assert counts == {"librispeech_test_clean": 2, "librispeech_test_other": 2}
    text = validate_dir(tmp_path / "data" / "librispeech_test_clean", max_dur=30)
    assert text["1089-134686-0000"] == "he hoped there would be stew for dinner"
    assert (tmp_path / "data" / "librispeech_test_other" / "spk2gender").read_text() == "1688 f\n"
    removed = (tmp_path / "data" / "local" / "librispeech" / "removed.librispeech_test_clean.txt").read_text()
    assert "1089-134686-0002 longer than 30 s" in removed and "1089-134686-0003 no audio file" in removed
    assert librispeech.prepare(top / "LibriSpeech", tmp_path / "all", max_dur=None)["librispeech_test_clean"] == 3
    run_cli("librispeech", "--corpus", str(top / "LibriSpeech"), "--out", str(tmp_path / "cli"),
            "--sets", "test-clean", "test-other")
    same_dirs(tmp_path / "data", tmp_path / "cli", counts)


# ------------------------------------------------------------------------------ recipes' data.sh
RECIPES = {
    "myst": ("MYST", make_myst, {"myst_train", "myst_dev", "myst_test"}),
    "ogi_kids": ("OGI_KIDS", make_ogi, {"ogi_scripted_train", "ogi_scripted_dev", "ogi_scripted_test"}),
    "cmu_kids": ("CMU_KIDS", make_cmu, {"cmu_kids_train", "cmu_kids_dev", "cmu_kids_test"}),
    "cv_accents": ("COMMONVOICE", make_cv, {"cv_indian_test", "cv_scottish_test", "cv_southern_african_test",
                                            "cv_accents_dev", "cv_accents_train"}),
}


def recipe_copy(tmp_path: Path, name: str) -> Path:
    """The recipe's db.sh and local/data.sh in a scratch recipe dir with a path.sh that sets ${python}
    and MAIN_ROOT (the owner's path.sh does the same in the real recipe)."""
    src = ROOT / "egs2" / name / "asr1"
    dst = tmp_path / "recipe" / name
    (dst / "local").mkdir(parents=True)
    shutil.copy(src / "db.sh", dst / "db.sh")
    shutil.copy(src / "local" / "data.sh", dst / "local" / "data.sh")
    (dst / "path.sh").write_text(f'python="{sys.executable}"\nexport PYTHONPATH="{ROOT}" MAIN_ROOT="{ROOT}"\n')
    return dst


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_data_sh(tmp_path, name):
    var, make, sets = RECIPES[name]
    if name == "cv_accents" and not common.soundfile_reads("MP3"):
        pytest.skip("this libsndfile cannot write/read MP3")
    rec = recipe_copy(tmp_path, name)
    env = dict(ENV)
    env.pop(var, None)
    env.pop("LIBRISPEECH", None)
    # unset corpus variable: a clear error, nothing written
    res = subprocess.run(["bash", "local/data.sh"], cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 1 and f"{var} is not set" in res.stderr and "db.sh" in res.stderr
    corpus = make(tmp_path / "corpus")
    ls = make_librispeech(tmp_path / "ls")
    env.update({var: str(corpus), "LIBRISPEECH": str(ls)})
    res = subprocess.run(["bash", "local/data.sh"], cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    for s in sets | {"librispeech_test_clean", "librispeech_test_other"}:
        validate_dir(rec / "data" / s, max_dur=30)
    written = {p.name for p in (rec / "data").iterdir() if p.is_dir() and p.name != "local"}
    assert written == sets | {"librispeech_test_clean", "librispeech_test_other"}
    # second run: up to date, skipped; unknown options are refused
    res = subprocess.run(["bash", "local/data.sh"], cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0 and "already prepared" in res.stdout
    res = subprocess.run(["bash", "local/data.sh", "--no_such_option", "1"], cwd=rec, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 1 and "unknown option" in res.stderr
