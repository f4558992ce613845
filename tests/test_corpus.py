"""The embedded benchmark's corpus builder (local/synth_corpus.py) and the data checks."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from espnet_peft.data import DataError, check_data_dir, validate_data_triplets

from conftest import ROOT
from espnet_fixtures import synth_module

SIZES = {("source", "train"): 12, ("source", "dev"): 4, ("source", "test"): 2, ("source", "unseen_test"): 3,
         ("child", "train"): 3, ("child", "dev"): 1, ("child", "test"): 2,
         ("accent", "train"): 3, ("accent", "dev"): 1, ("accent", "test"): 2}


STYLE = ["we went to the park after school", "the old house stood near the river"]


def built_sets(synth):
    """Every data dir the fixture builds and its utterance count: each sentence once per reader group;
    <domain>_unseen_test reads <domain>_test's sentences, source_style_test the STYLE sentences."""
    sets = dict(SIZES)
    sets.update({(d, "unseen_test"): SIZES[(d, "test")] for d in ("child", "accent")})
    sets[("source", "style_test")] = len(STYLE)
    return {k: n * len(synth.split_readers(*k)) for k, n in sets.items()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    synth = synth_module()
    texts = synth.split_text(synth.text_styles(), SIZES, 5, 3000)
    vocab = {w for t in texts[("source", "train")] for w in t.split()}
    style = [" ".join(t.split()[:6]) for t in texts[("source", "train")][:2]]  # training words ...
    style = [" ".join(reversed(t.split())) for t in style]  # ... in sentences no training text has
    assert all(w in vocab for t in style for w in t.split())
    STYLE[:] = style
    stats = synth.build(root / "data", root / "wav", seed=5, nj=2, sizes=SIZES, vocab_size=3000, style_test=STYLE)
    return root, stats, synth


def test_kaldi_dirs_are_valid(corpus):
    root, stats, synth = corpus
    for (domain, split), n in built_sets(synth).items():
        d = root / "data" / f"{domain}_{split}"
        rep = check_data_dir(d)
        assert rep.problems == [] and rep.utterances == n
        for f in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur"):
            lines = (d / f).read_text().splitlines()
            assert lines == sorted(lines), f"{d}/{f} is not sorted"
        for line in (d / "wav.scp").read_text().splitlines():
            info = soundfile.info(line.split(" ", 1)[1])
            assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        spk = dict(l.split() for l in (d / "utt2spk").read_text().splitlines())
        assert all(u.startswith(s + "-") for u, s in spk.items())  # Kaldi: speaker-prefixed ids
    assert json.loads((root / "data" / "corpus_stats.json").read_text())["_meta"]["seed"] == 5


def test_splits_are_disjoint_and_in_vocabulary(corpus):
    root, _, synth = corpus
    texts = {}
    for domain, split in built_sets(synth):
        lines = (root / "data" / f"{domain}_{split}" / "text").read_text().splitlines()
        texts[(domain, split)] = {l.split(" ", 1)[1] for l in lines}
    keys = list(texts)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if {a[1], b[1]} == {"test", "unseen_test"} and a[0] == b[0] != "source":
                assert texts[a] == texts[b]  # the same sentences, read by other speakers
                continue
            assert not texts[a] & texts[b], f"{a} and {b} share sentences"


def _speakers(root, name):
    return {line.split()[1] for line in (root / "data" / name / "utt2spk").read_text().splitlines()}


def _voices(synth, domain):
    return {(v.engine, v.voice) for v in synth.domain_voices(domain)}


def test_domains_keep_their_voices_apart(corpus):
    """No accent voice and no child speaker (voice + child transform) is a source voice, and the
    source speed perturbation stays below the child transform's formant ratios."""
    root, _, synth = corpus
    assert not _voices(synth, "source") & _voices(synth, "accent")
    source_speakers = {synth.speaker_id(v, None) for v in synth.domain_voices("source")}
    child_speakers = {synth.speaker_id(v, p) for g in synth.GROUPS for v, p in synth.target_group("child", g)}
    assert not source_speakers & child_speakers
    assert max(synth.SOURCE_SPEED) < synth.CHILD_RANGES["formant_ratio"][0] * 0.95
    # the built corpus: every source speaker is a source voice, none a child or accent speaker
    built_source = set().union(*(_speakers(root, f"source_{s}") for d, s in SIZES if d == "source"))
    built_other = set().union(*(_speakers(root, f"{d}_{s}") for d, s in SIZES if d != "source"))
    assert built_source <= source_speakers and not built_source & built_other
    # and the check itself fails when a child or an accent voice enters the source domain
    accent_voice = synth.AWB  # (an accent voice)
    leaky = dict(synth.SOURCE_SPLIT_VOICES, train=synth.SOURCE_TRAIN_VOICES + (accent_voice,))
    import unittest.mock

    with unittest.mock.patch.dict(synth.SOURCE_SPLIT_VOICES, leaky):
        assert _voices(synth, "source") & _voices(synth, "accent")


def test_unseen_test_shares_no_voice_and_no_sentence_with_training(corpus):
    root, _, synth = corpus
    assert not {v.name for v in synth.SOURCE_TRAIN_VOICES} & {v.name for v in synth.SOURCE_UNSEEN_VOICES}
    assert not _speakers(root, "source_train") & _speakers(root, "source_unseen_test")
    text = lambda name: {l.split(" ", 1)[1] for l in (root / "data" / name / "text").read_text().splitlines()}
    assert not text("source_train") & text("source_unseen_test")
    # held-out voices of two engines, none of them a voice the warm-start model (the first foundation,
    # trained on the first six training voices) ever heard
    assert {v.engine for v in synth.SOURCE_UNSEEN_VOICES} == {"festival", "espeak"}
    assert not {v.voice for v in synth.SOURCE_UNSEEN_VOICES} & {v.voice for v in synth.SOURCE_TRAIN_VOICES[:6]}
    # the dev set (model selection) hears both kinds of voices; the unseen test set only held-out ones
    assert {s for s in _speakers(root, "source_unseen_test")} <= {v.name for v in synth.SOURCE_UNSEEN_VOICES}


def test_source_training_is_balanced_by_engine_and_has_two_text_styles(corpus):
    root, _, synth = corpus
    order = synth.engine_balanced(synth.SOURCE_TRAIN_VOICES)
    counts = {e: sum(v.engine == e for v in order) for e in {v.engine for v in order}}
    assert len(set(counts.values())) == 1, counts  # every engine the same share
    examples, glosses = synth.text_styles()
    assert len(examples) > 1000 and len(glosses) > 1000 and not set(examples) & set(glosses)
    lines = (root / "data" / "source_train" / "utt2spk").read_text().splitlines()
    engines = [next(v.engine for v in synth.SOURCE_TRAIN_VOICES if v.name == line.split()[1]) for line in lines]
    assert {engines.count(e) for e in set(engines)} == {len(lines) // 3}
    # speed perturbation within the adult range, drawn per utterance
    job = synth.Job("u1", "a b", synth.SOURCE_TRAIN_VOICES[0], None, "", 3, speed_range=synth.SOURCE_SPEED)
    speeds = {synth.draw_params(synth.Job(f"u{i}", "a b", job.voice, None, "", 3,
                                          speed_range=synth.SOURCE_SPEED))["speed"] for i in range(50)}
    assert min(speeds) >= 0.9 and max(speeds) <= 1.1 and len(speeds) == 50


def test_train_only_sentences_never_reach_an_evaluation_set(corpus):
    """Sentences a warm-start model was trained on open the source training text and stay out of
    every dev/test set, whatever the seed put there before."""
    synth = corpus[2]
    styles = [[f"example sentence number {w}" for w in "abcdefghijklmnopqrst"],
              [f"gloss clause number {w} here" for w in "abcdefghijklmnopqrst"]]
    sizes = {("source", "train"): 10, ("source", "dev"): 4, ("source", "test"): 4, ("child", "test"): 4}
    free = synth.split_text(styles, sizes, seed=3, vocab_size=100)
    evaluated = [s for k, v in free.items() if k[1] != "train" for s in v]
    fixed = evaluated[:3]
    out = synth.split_text(styles, sizes, seed=3, vocab_size=100, train_only=fixed)
    assert set(fixed) <= set(out[("source", "train")]) and len(out[("source", "train")]) == 10
    assert not set(fixed) & {s for k, v in out.items() if k[1] != "train" for s in v}
    small = synth.split_text(styles, {**sizes, ("source", "train"): 2}, seed=3, vocab_size=100, train_only=fixed)
    assert set(small[("source", "train")]) < set(fixed)  # a toy training set takes part of the list
    assert not set(fixed) & {s for k, v in small.items() if k[1] != "train" for s in v}
    # the evaluation sets take both styles in turn
    assert {s.split()[0] for s in out[("source", "dev")]} == {"example", "gloss"}


def test_deterministic_from_seed(tmp_path, corpus):
    synth = corpus[2]
    small = {k: (6 if k[1] == "train" else 1) for k in SIZES}  # one utterance per voice and engine
    synth.build(tmp_path / "a", tmp_path / "wa", seed=9, nj=1, domains=["child"], sizes=small)
    synth.build(tmp_path / "b", tmp_path / "wb", seed=9, nj=2, domains=["child"], sizes=small)
    ta = (tmp_path / "a" / "child_train" / "text").read_text()
    assert ta == (tmp_path / "b" / "child_train" / "text").read_text()
    for line in (tmp_path / "a" / "child_train" / "wav.scp").read_text().splitlines():
        utt, path = line.split()
        other = tmp_path / "wb" / "child_train" / f"{utt}.wav"
        assert np.array_equal(soundfile.read(path)[0], soundfile.read(other)[0])


def _f0(audio, sr):
    import parselmouth

    pitch = parselmouth.Sound(audio.astype(np.float64), sampling_frequency=sr).to_pitch()
    f = pitch.selected_array["frequency"]
    return float(np.median(f[f > 0]))


def test_child_transform_raises_measured_f0(corpus):
    synth = corpus[2]
    voice = synth.SOURCE_TRAIN_VOICES[1]  # flite rms, a male voice
    assert voice.voice == "rms"
    job = synth.Job("x", "the children played in the garden all afternoon", voice, None, "", 0,
                    {"rate": 1.0, "f0": voice.f0, "gain": 0.5})
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        (adult, sr), = synth._synth_raw([job], tmp)
    child = synth.child_transform(adult, sr, 1.25, 280.0, 1.3, 1.1)
    f_adult, f_child = _f0(adult, sr), _f0(child, sr)
    assert f_adult < 160 and f_child > 1.5 * f_adult, (f_adult, f_child)
    assert len(child) > len(adult)  # slower, as the duration factor asks


def test_missing_voice_is_reported_before_synthesis(corpus, monkeypatch):
    synth = corpus[2]
    bad = synth.Voice("nobody", "flite", "no_such_voice", 100.0, "flite")
    with pytest.raises(synth.CorpusError, match="no_such_voice"):
        synth.check_engines([bad])
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    with pytest.raises(synth.CorpusError, match="apt-get install"):
        synth.check_engines([bad])


def test_corrupt_empty_and_mismatched_data_are_reported(corpus, tmp_path):
    root, _, _ = corpus
    d = tmp_path / "broken"
    shutil.copytree(root / "data" / "source_test", d)
    lines = (d / "wav.scp").read_text().splitlines()
    first, second = lines[0].split(" ", 1)[1], lines[1].split(" ", 1)[1]
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....not audio")
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), 16000)
    lines[0] = lines[0].split()[0] + f" {corrupt}"
    lines[1] = lines[1].split()[0] + f" {empty}"
    (d / "wav.scp").write_text("\n".join(lines) + "\nextra-utt /nowhere.wav\n")
    rep = check_data_dir(d)
    text = "\n".join(rep.problems)
    assert "unreadable audio" in text and "empty audio" in text and "ids differ" in text
    assert "/nowhere.wav" in text
    with pytest.raises(DataError, match="ids differ"):
        validate_data_triplets([f"{d}/wav.scp,speech,sound", f"{d}/text,text,text"])


def test_cli_reports_errors(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "local" / "check_data.py"), str(tmp_path / "nothing")],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "not found" in res.stderr


def test_target_speakers_are_many_and_disjoint_as_declared(corpus):
    """Tens of child and accent speakers; the training, held-out dev and unseen groups share no
    speaker and no base voice (children) or voice (accents); the built sets hold the groups they
    declare; no unseen-test speaker or sentence is in any training set."""
    root, _, synth = corpus
    declared = json.loads((root / "data" / "speaker_groups.json").read_text())
    for domain in ("child", "accent"):
        groups = {g: set(declared[domain][g]) for g in synth.GROUPS}
        assert len(groups["train"]) >= 25 and len(groups["unseen"]) >= 8 and len(groups["dev"]) >= 5
        for a, b in (("train", "dev"), ("train", "unseen"), ("dev", "unseen")):
            assert not groups[a] & groups[b], (domain, a, b)
        voices = {g: {v.voice for v, _ in synth.target_group(domain, g)} for g in synth.GROUPS}
        shared = voices["train"] & voices["unseen"]
        # children: no base voice in two groups; accents: only awb, whose other speakers are other profiles
        assert not shared if domain == "child" else shared == {"awb"}, shared
        spk = {split: _speakers(root, f"{domain}_{split}") for split in ("train", "dev", "test", "unseen_test")}
        assert spk["train"] <= groups["train"] and spk["test"] <= groups["train"]
        assert spk["unseen_test"] <= groups["unseen"] and spk["dev"] & groups["dev"] and spk["dev"] & groups["train"]
        train_text = {l.split(" ", 1)[1] for x in (f"{domain}_train", "source_train")
                      for l in (root / "data" / x / "text").read_text().splitlines()}
        unseen_text = {l.split(" ", 1)[1] for l in (root / "data" / f"{domain}_unseen_test" / "text").read_text().splitlines()}
        assert unseen_text and not unseen_text & train_text
    # every accent is spoken in every group; every child profile lies in the child ranges
    for g in synth.GROUPS:
        assert {v.accent for v, _ in synth.target_group("accent", g)} == {"scottish_awb"} | {a for a, _ in synth.ESPEAK_ACCENTS}
        for _, p in synth.target_group("child", g):
            for k, (lo, hi) in synth.CHILD_RANGES.items():
                assert lo <= getattr(p, k) <= hi
    # and the check fails when a training child leaks into the unseen group
    import unittest.mock

    leaky = dict(synth.CHILD_BASES, unseen=synth.CHILD_BASES["unseen"] + (synth.CHILD_BASES["train"][0],))
    with unittest.mock.patch.dict(synth.CHILD_BASES, leaky):
        ids = lambda g: {synth.speaker_id(v, p) for v, p in synth.target_group("child", g)}  # noqa: E731
        assert ids("train") & ids("unseen")


def test_style_test_is_checked_against_the_training_text(corpus):
    root, _, synth = corpus
    text = {l.split(" ", 1)[1] for l in (root / "data" / "source_style_test" / "text").read_text().splitlines()}
    assert text == set(STYLE)
    spk = _speakers(root, "source_style_test")  # a training voice and a held-out voice read each sentence
    assert spk & {v.name for v in synth.SOURCE_TRAIN_VOICES} and spk & {v.name for v in synth.SOURCE_UNSEEN_VOICES}
    train = ["the cat sat on the mat", "a dog ran home"]
    assert synth.style_texts(["the dog sat on the mat"], train) == ["the dog sat on the mat"]
    with pytest.raises(synth.CorpusError, match="lacks.*zebra"):
        synth.style_texts(["the zebra sat"], train)
    with pytest.raises(synth.CorpusError, match="training sentences"):
        synth.style_texts(["a dog ran home"], train)


def test_console_summary_is_a_row_per_set(corpus):
    """The CLI prints a short table (the full statistics stay in corpus_stats.json), not the JSON."""
    root, stats, synth = corpus
    table = synth.summary_table(stats, root / "data" / "corpus_stats.json").splitlines()
    sets = [k for k in stats if not k.startswith("_")]
    assert len(table) == len(sets) + 2 and table[-1].endswith("corpus_stats.json")
    for name, row in zip(sets, table[1:-1]):
        assert row.split()[:2] == [name, str(stats[name]["utterances"])]
