"""The speechocean762 recipe's data preparation (local/corpora/speechocean762.py, local/combine_data.py,
egs2/speechocean762/asr1/local/data.sh) on a fixture tree in the corpus's own layout: train/ and test/
Kaldi tables (tab-separated, upper-case text, 4-digit speakers, 9-digit utterances), spk2age,
spk2gender and WAVE/SPEAKERnnnn/*.WAV at 16 kHz. The real corpus is a recipe with committed results."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from local import combine_data  # noqa: E402
from local.corpora import speechocean762 as so  # noqa: E402

ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
# speaker -> age: per split 4 children (one is 12, the oldest child) and 4 older speakers (one is 13)
SPEAKERS = {"train": {"0001": 8, "0002": 12, "0003": 6, "0004": 10, "1001": 13, "1002": 30, "1003": 25, "1004": 41},
            "test": {"0005": 7, "0006": 11, "1005": 22, "1006": 15}}
TEXTS = ["WE CALL IT BEAR", "ZERO THREE FIVE ONE", "IT'S A GOOD DAY"]


def make_corpus(root: Path, rate: int = 16000) -> Path:
    rng = np.random.default_rng(0)
    for split, spks in SPEAKERS.items():
        d = root / split
        d.mkdir(parents=True)
        wav, text, u2s, ages, genders = [], [], [], [], []
        for spk, age in spks.items():
            ages.append(f"{spk}\t{age}")
            genders.append(f"{spk}\t{'f' if int(spk) % 2 else 'm'}")
            for k, t in enumerate(TEXTS):
                utt = f"0{spk}{k:04d}"
                rel = f"WAVE/SPEAKER{spk}/{utt}.WAV"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                soundfile.write(str(root / rel), (0.05 * rng.standard_normal(int(0.4 * rate))).astype(np.float32),
                                rate, subtype="PCM_16")
                wav.append(f"{utt}\t{rel}")
                text.append(f"{utt}\t{t}")
                u2s.append(f"{utt} {spk}")
        for name, rows in (("wav.scp", wav), ("text", text), ("utt2spk", u2s), ("spk2age", ages),
                           ("spk2gender", genders)):
            (d / name).write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("so762"))


def table(path: Path) -> dict:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def test_sets_by_age_group_and_speaker(corpus, tmp_path):
    counts = so.prepare(corpus, tmp_path, dev_share=0.25, speed_perturb=(0.9, 1.1), test_subset=(2, 1))
    spk = {name: set(table(tmp_path / name / "utt2spk").values()) for name in counts}
    assert spk["so762_test_child"] == {"so0005", "so0006"}
    assert spk["so762_test_adult"] == {"so1005", "so1006"}  # a 15-year-old is not a child
    train_child = spk["so762_train_child"] | spk["so762_dev_child"]
    assert train_child == {"so0001", "so0002", "so0003", "so0004"}  # 12 is a child, 13 is not
    assert spk["so762_train_adult"] | spk["so762_dev_adult"] == {"so1001", "so1002", "so1003", "so1004"}
    # dev: a quarter of each group's training speakers, disjoint from train and test
    assert len(spk["so762_dev_child"]) == 1 and len(spk["so762_dev_adult"]) == 1
    assert not spk["so762_dev_child"] & spk["so762_train_child"]
    assert not spk["so762_dev_adult"] & spk["so762_train_adult"]
    # every utterance id starts with its speaker id; the text is the project's normalisation
    texts = table(tmp_path / "so762_test_child" / "text")
    assert set(texts.values()) == {"we call it bear", "zero three five one", "it's a good day"}
    for name in counts:
        for utt, s in table(tmp_path / name / "utt2spk").items():
            assert utt.startswith(s)
    # the sweep's decoding subsets: every test speaker, a fixed number of utterances each
    sub = table(tmp_path / "so762_test_child_sub" / "utt2spk")
    assert set(sub.values()) == spk["so762_test_child"] and len(sub) == 2 * 2  # 2 children x 2 utterances
    assert set(sub) <= set(table(tmp_path / "so762_test_child" / "utt2spk"))
    assert len(table(tmp_path / "so762_test_adult_sub" / "utt2spk")) == 2 * 1
    # the same speakers on every run (hash split, not order or chance)
    again = tmp_path / "again"
    so.prepare(corpus, again, dev_share=0.25)
    assert table(again / "so762_dev_adult" / "utt2spk") == table(tmp_path / "so762_dev_adult" / "utt2spk")


def test_speed_perturbed_adults_are_real_sox_copies(corpus, tmp_path):
    so.prepare(corpus, tmp_path, dev_share=0.25, speed_perturb=(0.9, 1.1))
    plain = table(tmp_path / "so762_train_adult" / "wav.scp")
    sp = table(tmp_path / "so762_train_adult_sp" / "wav.scp")
    assert len(sp) == 3 * len(plain) and set(plain) <= set(sp)
    utt = sorted(plain)[0]
    entry = sp[f"sp0.9-{utt}"]
    assert entry.endswith("|") and "speed 0.9" in entry
    import io

    raw = subprocess.run(entry.rstrip("|"), shell=True, capture_output=True, check=True).stdout
    audio, rate = soundfile.read(io.BytesIO(raw))
    assert rate == 16000 and abs(len(audio) - int(0.4 * 16000 / 0.9)) < 200  # slowed: longer
    durs = table(tmp_path / "so762_train_adult_sp" / "utt2dur")
    assert float(durs[f"sp1.1-{utt}"]) == pytest.approx(0.4 / 1.1, abs=1e-3)
    spk = set(table(tmp_path / "so762_train_adult_sp" / "utt2spk").values())
    assert {s for s in spk if s.startswith("sp0.9-")} == {f"sp0.9-{s}" for s in spk if s.startswith("so")}


@pytest.mark.parametrize("damage, message", [
    ("rm test/spk2age", "missing test/spk2age"),
    ("rm -r WAVE", "missing WAVE/"),
    ("rm WAVE/SPEAKER1005/010050001.WAV", "audio file(s) of"),
    ("sed -i '/^1004/d' train/spk2age", "no age for speaker(s) 1004"),
    ("sed -i 's/^1003\t25/1003\tunknown/' train/spk2age", "age 'unknown', not a number"),
    ("rate", "8000 Hz"),
])
def test_bad_corpus_folders_are_refused_with_one_line(tmp_path, damage, message):
    root = make_corpus(tmp_path / "c", rate=8000 if damage == "rate" else 16000)
    if damage != "rate":
        subprocess.run(damage, shell=True, cwd=root, check=True)
    res = subprocess.run([sys.executable, str(ROOT / "local" / "corpora" / "speechocean762.py"), "--corpus", str(root),
                          "--out", str(tmp_path / "data")], capture_output=True, text=True, env=ENV)
    assert res.returncode != 0 and message in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "data").exists()  # refused before anything is written


def test_combine_keeps_a_stable_share_and_refuses_duplicates(corpus, tmp_path):
    so.prepare(corpus, tmp_path / "data", dev_share=0.25, speed_perturb=())
    d = tmp_path / "data"
    kept = combine_data.combine([(d / "so762_test_adult", 0.5), (d / "so762_train_adult", 1.0)], tmp_path / "mix")
    n_test = len(table(d / "so762_test_adult" / "text"))
    assert 0 < kept[str(d / "so762_test_adult")] < n_test
    again = combine_data.combine([(d / "so762_test_adult", 0.5)], tmp_path / "mix2")
    assert again[str(d / "so762_test_adult")] == kept[str(d / "so762_test_adult")]
    mix = table(tmp_path / "mix" / "wav.scp")
    assert all(Path(v).is_absolute() for v in mix.values())
    assert set(table(tmp_path / "mix" / "spk2utt")) == set(table(tmp_path / "mix" / "utt2spk").values())
    with pytest.raises(SystemExit, match="in both"):
        combine_data.combine([(d / "so762_test_adult", 1.0), (d / "so762_test_adult", 1.0)], tmp_path / "mix3")
    assert not (tmp_path / "mix3").exists()


def fake_source_recipe(root: Path) -> Path:
    """A stand-in for the embedded recipe: its local/data.sh writes tiny synthetic-source data dirs
    (relative wav paths, as the real one writes them) instead of synthesising 3 hours of speech."""
    (root / "local").mkdir(parents=True)
    (root / "local" / "data.sh").write_text(f"""#!/usr/bin/env bash
set -e
[ -f data/.corpus_fake ] && exit 0
for s in source_train source_dev source_test source_unseen_test source_style_test; do
    mkdir -p data/$s wav
    for i in 1 2 3 4 5 6; do
        {sys.executable} -c "import numpy, soundfile; soundfile.write('wav/$s-$i.wav', numpy.zeros(4000, 'float32'), 16000)"
        echo "v1-$s-$i wav/$s-$i.wav" >> data/$s/wav.scp
        echo "v1-$s-$i a synthetic sentence" >> data/$s/text
        echo "v1-$s-$i v1" >> data/$s/utt2spk
    done
done
touch data/.corpus_fake
""")
    return root


def test_recipe_data_sh(corpus, tmp_path):
    rec = tmp_path / "recipe"
    (rec / "local").mkdir(parents=True)
    src = ROOT / "egs2" / "speechocean762" / "asr1"
    for f in ("db.sh", "local/data.sh"):
        (rec / f).write_text((src / f).read_text())
    (rec / "path.sh").write_text(f'python="{sys.executable}"\nexport PYTHONPATH="{ROOT}" MAIN_ROOT="{ROOT}"\n')
    source = fake_source_recipe(tmp_path / "source_recipe")
    env = dict(ENV)
    env.pop("SPEECHOCEAN762", None)
    res = subprocess.run(["bash", "local/data.sh"], cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 1 and "SPEECHOCEAN762 is not set" in res.stderr
    env["SPEECHOCEAN762"] = str(corpus)
    res = subprocess.run(["bash", "local/data.sh", "--source_recipe", str(source), "--foundation_data", "true",
                          "--source_share", "0.5", "--dev_share", "0.25"], cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    data = rec / "data"
    for s in ("source_test", "source_unseen_test", "source_style_test", "source_dev"):
        assert all(Path(p).is_file() for p in table(data / s / "wav.scp").values())
    train = table(data / "so762_foundation_train" / "utt2spk")
    children = {s for name in ("so762_train_child", "so762_dev_child", "so762_test_child")
                for s in table(data / name / "utt2spk").values()}
    assert not {s.split("-")[-1] for s in train.values()} & children  # never a child in the foundation's data
    real = set(table(data / "so762_train_adult_sp" / "utt2spk"))
    assert real <= set(train) and 0 < len(set(train) - real) < 6  # a share of the synthetic source_train
    dev = set(table(data / "so762_foundation_dev" / "utt2spk"))
    assert dev == set(table(data / "source_dev" / "utt2spk")) | set(table(data / "so762_dev_adult" / "utt2spk"))
    res = subprocess.run(["bash", "local/data.sh", "--source_recipe", str(source), "--foundation_data", "true",
                          "--source_share", "0.5", "--dev_share", "0.25"], cwd=rec, env=env, capture_output=True, text=True)
    assert res.returncode == 0 and "already prepared" in res.stdout
