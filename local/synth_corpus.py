#!/usr/bin/env python3
"""Build the embedded benchmark corpus: a source domain and two shifted target domains.

Everything is synthesised offline from Debian packages and is deterministic from ``--seed``:

* text: WordNet example sentences and glosses (two styles), normalised to lower-case words,
  restricted to a common vocabulary and split disjointly across domains and splits; evaluation
  sets take the styles in equal shares, and every word of a dev/test sentence also occurs in the
  source training text, so the domain gap is acoustic, not lexical;
* source domain: adult US voices of three engines, balanced by engine (flite, festival, espeak-ng
  with its voice variants), with per-utterance speaking-rate and pitch variation and speed
  perturbation by resampling (x0.9-1.1); the training voices and the voices of
  ``source_unseen_test`` are disjoint (leave-voices-out per engine);
* child domain: tens of children, each an adult base voice through Praat's "Change gender" with a
  child profile of its own drawn from child ranges (formant ratio, F0 median, pitch range,
  duration; varied again per utterance);
* accent domain: six accents absent from the source: flite awb (Scottish English recorded voice),
  espeak-ng en-gb-scotland / en-gb-x-rp / en-gb-x-gbclan / en-gb-x-gbcwmd / en-029 (Caribbean),
  each spoken by several voices (espeak-ng voice variants; awb's other speakers through Change
  gender), and, with ``--mbrola``, mbrola voices of L2 speakers reading English;
* the speakers of each target domain form three disjoint groups: training speakers (training set,
  seen-speaker test set, half of the dev set), held-out dev speakers (the other half of the dev
  set) and unseen speakers, who read only ``<domain>_unseen_test``: the test sentences again;
* ``source_style_test`` (``--style_test``): sentences of another style (not WordNet), each read by
  a source training voice and a held-out one.

Output: 16 kHz mono 16-bit wav files under ``--wavdir`` and Kaldi-style data directories
``<out>/<domain>_<split>/{wav.scp,text,utt2spk,spk2utt,utt2dur}``.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import logging
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import soundfile

from progress import Progress

SAMPLE_RATE = 16000
WORDNET_DIR = Path("/usr/share/wordnet")
DOMAINS = ("source", "child", "accent")
SPLITS = ("train", "dev", "test", "unseen_test")
# utterances per (domain, split) at --size 1
BASE_SIZES = {
    ("source", "train"): 12000, ("source", "dev"): 300, ("source", "test"): 200, ("source", "unseen_test"): 200,
    ("child", "train"): 600, ("child", "dev"): 100, ("child", "test"): 200,
    ("accent", "train"): 600, ("accent", "dev"): 100, ("accent", "test"): 200,
}


class CorpusError(RuntimeError):
    """A problem with the corpus inputs (missing engine, voice, text source)."""


# --------------------------------------------------------------------------- voices
@dataclass(frozen=True)
class Voice:
    """One synthetic voice: an engine, its voice id, its nominal F0 (Hz) and its accent."""

    name: str
    engine: str  # flite | espeak | festival
    voice: str
    f0: float
    package: str  # Debian package that provides it (for error messages)
    accent: str = "us"


@dataclass(frozen=True)
class Profile:
    """Centre values of Praat's Change gender that turn a voice into another speaker (a child, or
    another adult of the same accent): formants x ratio, F0 median (Hz), pitch range, duration."""

    name: str
    formant_ratio: float
    pitch_median: float
    pitch_range: float
    duration: float


Speaker = Tuple[Voice, Optional[Profile]]


def _espeak(variant: str, base: str = "en-us", prefix: str = "espeak", accent: str = "us") -> Voice:
    """espeak-ng's ``base`` voice with one of its voice variants (``espeak-ng --voices=variant``)."""
    return Voice(f"{prefix}_{variant.lower()}", "espeak", f"{base}+{variant}", 120.0, "espeak-ng", accent)


# Source domain (adult US English). Voices are split by engine into training voices and voices held
# out of the source training set entirely (leave-voices-out: ``source_unseen_test``). The training
# voices include the six of the first foundation model (2026-11-23), which the current one is
# warm-started from, so no held-out voice was ever heard by either. Robotic, whispering, child-like
# and foreign-accented variants are used nowhere.
ESPEAK_TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "m8", "f1", "f2", "f3", "f5", "adam", "Alex",
                         "Alicia", "Andrea", "Andy", "aunty", "belinda", "benjamin", "caleb", "david", "ed",
                         "edward", "Gene", "iven", "john", "Lee", "max", "Michael", "Mike", "norbert", "paul",
                         "rob", "robert", "steph", "travis", "victor", "klatt", "klatt3", "klatt4")
ESPEAK_UNSEEN_VARIANTS = ("m6", "f4", "edward2", "iven2", "steph2", "linda", "quincy", "klatt2")
SOURCE_TRAIN_VOICES = (
    Voice("flite_slt", "flite", "slt", 170.0, "flite"),
    Voice("flite_rms", "flite", "rms", 105.0, "flite"),
    Voice("flite_kal16", "flite", "kal16", 105.0, "flite"),
    Voice("fest_ked", "festival", "ked_diphone", 110.0, "festvox-kdlpc16k"),
    Voice("fest_kal", "festival", "kal_diphone", 105.0, "festvox-kallpc16k"),
    Voice("espeak_us", "espeak", "en-us", 120.0, "espeak-ng"),
) + tuple(_espeak(v) for v in ESPEAK_TRAIN_VARIANTS)
SOURCE_UNSEEN_VOICES = (
    Voice("fest_slthts", "festival", "cmu_us_slt_arctic_hts", 170.0, "festvox-us-slt-hts"),
) + tuple(_espeak(v) for v in ESPEAK_UNSEEN_VARIANTS)
# every source split and the voices that read it: the dev set (model selection) mixes training voices
# and held-out ones (other sentences than the unseen test set), so that the checkpoint chosen on it
# is the one that generalises
SOURCE_SPLIT_VOICES = {"train": SOURCE_TRAIN_VOICES, "test": SOURCE_TRAIN_VOICES,
                       "dev": SOURCE_TRAIN_VOICES + SOURCE_UNSEEN_VOICES, "unseen_test": SOURCE_UNSEEN_VOICES}
# per-utterance speed perturbation of the source domain (resampling: formants, F0 and tempo scale
# together, as Kaldi's speed perturbation), within adult ranges: the child transform starts above it
SOURCE_SPEED = (0.9, 1.1)
_VOICE = {v.name: v for v in SOURCE_TRAIN_VOICES + SOURCE_UNSEEN_VOICES}

# Target domains: many speakers, three disjoint groups per domain. "train" speakers read the
# training set, the seen-speaker test set and half of the dev set; "dev" speakers (held out) read the
# other half of the dev set, so that choices made on it favour what generalises to new speakers;
# "unseen" speakers read only ``<domain>_unseen_test``: the test set's sentences, read by speakers the
# adaptation never heard (their base voices and profiles are in no other group).
#
# Child domain: an adult base voice through Praat's Change gender with a child profile of its own,
# drawn from child ranges of vocal-tract length (formant ratio to the adult base voice) and pitch.
# Base voices are split between the groups per engine, so each group has voices of every engine it can.
CHILD_RANGES = {"formant_ratio": (1.17, 1.36), "pitch_median": (215.0, 330.0), "pitch_range": (1.0, 1.6),
                "duration": (1.0, 1.2)}
# (base voice, how many children are made from it), per group
CHILD_BASES = {
    "train": (("flite_slt", 3), ("flite_rms", 3), ("fest_ked", 4), ("espeak_us", 1))
             + tuple((f"espeak_{v.lower()}", 1) for v in ESPEAK_TRAIN_VARIANTS[:26]),
    "dev": (("fest_slthts", 2),) + tuple((f"espeak_{v.lower()}", 1) for v in ESPEAK_TRAIN_VARIANTS[26:31]),
    "unseen": (("flite_kal16", 2), ("fest_kal", 2))
              + tuple((f"espeak_{v.lower()}", 1) for v in ESPEAK_TRAIN_VARIANTS[31:34] + ESPEAK_UNSEEN_VARIANTS[:3]),
}
# Accent domain: six accents, none of them the source's: flite awb (a recorded Scottish voice) and
# espeak-ng's Scottish, RP, Lancashire, West Midlands and Caribbean English, each spoken by several
# voices: the accent's default voice and espeak voice variants (disjoint between the groups); awb's
# other speakers are awb through Change gender with an adult profile of their own.
ESPEAK_ACCENTS = (("scot", "en-gb-scotland"), ("rp", "en-gb-x-rp"), ("lanc", "en-gb-x-gbclan"),
                  ("wmid", "en-gb-x-gbcwmd"), ("carib", "en-029"))
AWB = Voice("flite_awb", "flite", "awb", 110.0, "flite", "scottish_awb")
ADULT_RANGES = {"formant_ratio": (0.92, 1.08), "pitch_median": (85.0, 150.0), "pitch_range": (0.8, 1.2),
                "duration": (0.95, 1.08)}
_ACCENT_VARIANTS = {  # per group: the variants of accent j (index into ESPEAK_ACCENTS)
    "train": lambda j: ESPEAK_TRAIN_VARIANTS[4 * j:4 * j + 4],
    "dev": lambda j: (ESPEAK_TRAIN_VARIANTS[20 + j],),
    "unseen": lambda j: (ESPEAK_UNSEEN_VARIANTS[j], ESPEAK_TRAIN_VARIANTS[25 + j]),
}
_AWB_PROFILES = {"train": 2, "dev": 1, "unseen": 2}  # awb's perturbed speakers per group (train also: awb itself)
MBROLA_ACCENT_VOICES = (  # optional: Debian contrib/non-free mbrola voices reading English (training group)
    Voice("mbrola_de1", "espeak", "mb-de1-en", 200.0, "mbrola-de1", "german_l2"),
    Voice("mbrola_fr1", "espeak", "mb-fr1-en", 110.0, "mbrola-fr1", "french_l2"),
    Voice("mbrola_pl1", "espeak", "mb-pl1-en", 200.0, "mbrola-pl1", "polish_l2"),
)
GROUPS = ("train", "dev", "unseen")
# which speaker groups read a target split (each sentence once per group); <domain>_unseen_test
# reads <domain>_test's sentences
TARGET_SPLIT_GROUPS = {"train": ("train",), "dev": ("train", "dev"), "test": ("train",), "unseen_test": ("unseen",)}
DERIVED_TEXT = {"unseen_test": "test"}


def draw_profile(name: str, ranges: Mapping[str, Tuple[float, float]]) -> Profile:
    """A speaker's profile, drawn uniformly from ``ranges``: a pure function of its name (a speaker
    is the same person in every corpus built, whatever the corpus seed)."""
    rng = random.Random(int(hashlib.sha256(f"profile:{name}".encode()).hexdigest()[:16], 16))
    return Profile(name.rsplit("_", 1)[-1], **{k: round(rng.uniform(*ranges[k]), 3) for k in
                                               ("formant_ratio", "pitch_median", "pitch_range", "duration")})


def child_speakers(group: str) -> List[Speaker]:
    """The children of one group: each base voice with profiles of its own (child1, child2, ...)."""
    return [(_VOICE[base], draw_profile(f"{base}_child{k + 1}", CHILD_RANGES))
            for base, n in CHILD_BASES[group] for k in range(n)]


def accent_speakers(group: str, mbrola: bool = False) -> List[Speaker]:
    """The accented speakers of one group (every accent in every group)."""
    out: List[Speaker] = [(AWB, None)] if group == "train" else []
    first = {"train": 1, "dev": 3, "unseen": 4}[group]  # awb's profile numbers: disjoint per group
    out += [(AWB, draw_profile(f"flite_awb_spk{first + k}", ADULT_RANGES)) for k in range(_AWB_PROFILES[group])]
    for j, (accent, base) in enumerate(ESPEAK_ACCENTS):
        if group == "train":
            out.append((Voice(f"espeak_{accent}", "espeak", base, 120.0, "espeak-ng", accent), None))
        out += [(_espeak(v, base, f"espeak_{accent}", accent), None) for v in _ACCENT_VARIANTS[group](j)]
    if mbrola and group == "train":
        out += [(v, None) for v in MBROLA_ACCENT_VOICES]
    return out


def balanced(speakers: Sequence, key: Callable[[Any], str]) -> List:
    """The speakers in an order where consecutive utterances cycle through the groups of ``key``
    first (engines, accents): utterance ``i`` of a split is read by entry ``i`` (cyclically), so every
    group gets the same share of the split however many speakers it has."""
    by: Dict[str, List] = collections.defaultdict(list)
    for s in speakers:
        by[key(s)].append(s)
    names = sorted(by)
    n = max(len(v) for v in by.values()) * len(names)
    return [by[names[i % len(names)]][(i // len(names)) % len(by[names[i % len(names)]])] for i in range(n)]


def engine_balanced(voices: Sequence[Voice]) -> List[Voice]:
    """The voices cycled by engine first (an engine with 40 variants must not drown one with 2)."""
    return balanced(voices, lambda v: v.engine)


def target_group(domain: str, group: str, mbrola: bool = False) -> List[Speaker]:
    """One speaker group of a target domain, balanced by engine (child) or by accent (accent)."""
    if group not in GROUPS:
        raise CorpusError(f"unknown speaker group {group!r}; expected one of {GROUPS}")
    if domain == "child":
        return balanced(child_speakers(group), lambda s: s[0].engine)
    if domain == "accent":
        return balanced(accent_speakers(group, mbrola), lambda s: s[0].accent)
    raise CorpusError(f"unknown target domain {domain!r}; expected child or accent")


def split_readers(domain: str, split: str, mbrola: bool = False) -> List[List[Speaker]]:
    """The speaker groups that read a split: each sentence of the split once per group."""
    if domain == "source":
        if split == "style_test":  # a training voice and a held-out voice read every sentence
            return [[(v, None) for v in engine_balanced(SOURCE_TRAIN_VOICES)],
                    [(v, None) for v in engine_balanced(SOURCE_UNSEEN_VOICES)]]
        if split not in SOURCE_SPLIT_VOICES:
            raise CorpusError(f"unknown source split {split!r}; expected one of {sorted(SOURCE_SPLIT_VOICES)}")
        return [[(v, None) for v in engine_balanced(SOURCE_SPLIT_VOICES[split])]]
    if domain not in DOMAINS:
        raise CorpusError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    if split not in TARGET_SPLIT_GROUPS:
        raise CorpusError(f"unknown {domain} split {split!r}; expected one of {sorted(TARGET_SPLIT_GROUPS)}")
    return [target_group(domain, g, mbrola) for g in TARGET_SPLIT_GROUPS[split]]


def domain_speakers(domain: str, mbrola: bool = False, split: str = "train") -> List[Speaker]:
    """Every speaker of a split (all its reader groups)."""
    return list(dict.fromkeys(s for group in split_readers(domain, split, mbrola) for s in group))


def domain_voices(domain: str, mbrola: bool = False) -> List[Voice]:
    """Every distinct voice a domain uses, over all its splits."""
    splits = SOURCE_SPLIT_VOICES if domain == "source" else TARGET_SPLIT_GROUPS
    return list(dict.fromkeys(v for s in splits for v, _ in domain_speakers(domain, mbrola, s)))


def speaker_id(voice: Voice, profile: Optional[Profile]) -> str:
    return f"{voice.name}_{profile.name}" if profile else voice.name


def check_engines(voices: Sequence[Voice]) -> None:
    """Fail before any synthesis when an engine or voice is missing; name the package."""
    problems = []
    need = {v.engine for v in voices}
    binaries = {"flite": "flite", "espeak": "espeak-ng", "festival": "festival"}
    for engine in sorted(need):
        if shutil.which(binaries[engine]) is None:
            pkgs = sorted({v.package if engine != "festival" else "festival" for v in voices if v.engine == engine})
            problems.append(f"{binaries[engine]} not found (apt-get install {' '.join(pkgs)})")
    if not problems:
        if "flite" in need:
            out = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
            have = set(out.replace("Voices available:", "").split())
            for v in voices:
                if v.engine == "flite" and v.voice not in have:
                    problems.append(f"flite voice {v.voice!r} not available (have: {sorted(have)})")
        if "espeak" in need:
            out = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True).stdout
            have = {line.split()[3] for line in out.splitlines()[1:] if len(line.split()) > 3}
            have |= {line.split()[1] for line in out.splitlines()[1:] if len(line.split()) > 1}
            variants = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True).stdout
            have_variants = {line.split()[4].split("/")[-1] for line in variants.splitlines()[1:]
                             if len(line.split()) > 4}
            for v in voices:
                base, _, variant = v.voice.partition("+")
                if v.engine == "espeak" and variant and variant not in have_variants:
                    problems.append(f"espeak-ng voice variant {variant!r} not available (apt-get install {v.package})")
                if v.engine == "espeak" and base not in have:
                    problems.append(f"espeak-ng voice {v.voice!r} not available (apt-get install {v.package})")
                if v.engine == "espeak" and v.voice.startswith("mb-") and shutil.which("mbrola") is None:
                    problems.append(f"voice {v.voice!r} needs mbrola (apt-get install mbrola {v.package}; contrib/non-free)")
        for v in voices:
            if v.engine == "festival":
                base = v.voice.replace("_diphone", "")
                found = list(Path("/usr/share/festival/voices").glob(f"*/{v.voice}")) + list(
                    Path("/usr/share/festival/voices").glob(f"*/{base}*"))
                if not found:
                    problems.append(f"festival voice {v.voice!r} not installed (apt-get install {v.package})")
    if problems:
        raise CorpusError("cannot synthesise the corpus:\n  " + "\n  ".join(dict.fromkeys(problems)))


# --------------------------------------------------------------------------- text
_WORD = re.compile(r"[a-z]+('[a-z]+)?")


def normalize_text(text: str) -> Optional[str]:
    """Lower-case, hyphens to spaces, drop . , ; : ! ?; None if anything else remains."""
    t = text.lower().replace("-", " ")
    t = re.sub(r"[,;:.!?]", " ", t)
    words = t.split()
    if not words or not all(_WORD.fullmatch(w) for w in words):
        return None
    return " ".join(words)


def _wordnet_files(wordnet_dir: Path) -> List[Path]:
    files = [wordnet_dir / f"data.{pos}" for pos in ("noun", "verb", "adj", "adv")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise CorpusError(f"WordNet data files missing: {missing} (apt-get install wordnet-base)")
    return files


def wordnet_sentences(wordnet_dir: Path = WORDNET_DIR, min_words: int = 5, max_words: int = 20) -> List[str]:
    sents = set()
    for f in _wordnet_files(wordnet_dir):
        with open(f, encoding="latin-1") as fh:
            for line in fh:
                if line.startswith("  ") or "|" not in line:
                    continue
                for ex in re.findall(r'"([^"]+)"', line.split("|", 1)[1]):
                    t = normalize_text(ex)
                    if t and min_words <= len(t.split()) <= max_words:
                        sents.add(t)
    return sorted(sents)


def wordnet_glosses(wordnet_dir: Path = WORDNET_DIR, min_words: int = 5, max_words: int = 20) -> List[str]:
    """WordNet definitions (glosses), split into clauses at ``;``, asides in parentheses removed:
    a second text style beside the example sentences (definitional, often without a verb)."""
    paren = re.compile(r"\([^()]*\)")
    sents = set()
    for f in _wordnet_files(wordnet_dir):
        with open(f, encoding="latin-1") as fh:
            for line in fh:
                if line.startswith("  ") or "|" not in line:
                    continue
                gloss = paren.sub(" ", re.sub(r'"[^"]*"', " ", line.split("|", 1)[1]))
                for clause in gloss.split(";"):
                    t = normalize_text(clause)
                    if t and min_words <= len(t.split()) <= max_words:
                        sents.add(t)
    return sorted(sents)


def text_styles(wordnet_dir: Path = WORDNET_DIR) -> List[List[str]]:
    """The corpus text, by style: WordNet example sentences, then glosses that are not examples."""
    examples = wordnet_sentences(wordnet_dir)
    seen = set(examples)
    return [examples, [g for g in wordnet_glosses(wordnet_dir) if g not in seen]]


def _interleave(styles: Sequence[Sequence[str]]) -> List[str]:
    """One sentence of each style in turn, until every style is used up."""
    out: List[str] = []
    for i in range(max((len(s) for s in styles), default=0)):
        out.extend(s[i] for s in styles if i < len(s))
    return out


def split_text(sents: Sequence, sizes: Dict[Tuple[str, str], int], seed: int,
               vocab_size: int, train_only: Sequence[str] = ()) -> Dict[Tuple[str, str], List[str]]:
    """Disjoint sentence lists per (domain, split).

    ``sents`` is one list of sentences or a list of lists, one per text style. Sentences are
    first restricted to the ``vocab_size`` most frequent words; evaluation sets take the styles
    in turn (equal shares), the source training text is drawn next, and every dev/test sentence
    (all domains) uses only words seen in it, so test errors measure acoustics, not
    out-of-vocabulary words. ``train_only`` sentences (those a warm-start model was trained on)
    never enter an evaluation set: they open the source training text.
    """
    styles = [list(sents)] if sents and isinstance(sents[0], str) else [list(s) for s in sents]
    counts = collections.Counter(w for style in styles for s in style for w in s.split())
    top = {w for w, _ in counts.most_common(vocab_size)}
    rng = random.Random(seed)
    styles = [[s for s in style if all(w in top for w in s.split())] for style in styles]
    fixed = sorted(set(train_only))
    for style in styles:
        rng.shuffle(style)
    fixed_set = set(fixed)
    pool = [s for s in _interleave(styles) if s not in fixed_set]
    need = sum(sizes.values())
    if len(pool) < need:
        raise CorpusError(f"only {len(pool)} sentences within the top-{vocab_size} vocabulary, "
                          f"{need} needed; lower --size or raise --vocab_size")
    out: Dict[Tuple[str, str], List[str]] = {}
    # a training set smaller than the train-only list (a toy --size) takes part of it; the rest of
    # the list is still never evaluation text
    fixed = fixed[: sizes[("source", "train")]]
    n = sizes[("source", "train")] - len(fixed)
    # evaluation candidates first (twice what the dev/test sets need, so that enough of them are
    # in the training vocabulary), so that every style is represented in every evaluation set
    n_eval = min(2 * sum(v for k, v in sizes.items() if k[1] != "train"), len(pool) - n)
    reserve, rest = pool[:n_eval], pool[n_eval:]
    out[("source", "train")] = fixed + rest[:n]
    rest = reserve + rest[n:]
    vocab = {w for s in out[("source", "train")] for w in s.split()}
    in_vocab = [s for s in rest if all(w in vocab for w in s.split())]
    out_vocab = [s for s in rest if not all(w in vocab for w in s.split())]
    for key in sorted(k for k in sizes if k[1] != "train"):
        n = sizes[key]
        if len(in_vocab) < n:  # tiny corpora: fall back to sentences with unseen words
            logging.warning("%s: only %d in-vocabulary sentences left for %d", key, len(in_vocab), n)
            in_vocab, out_vocab = in_vocab + out_vocab[: n - len(in_vocab)], out_vocab[n - len(in_vocab):]
        out[key], in_vocab = in_vocab[:n], in_vocab[n:]
    rest = out_vocab + in_vocab
    rng.shuffle(rest)  # target-domain training texts get the same share of unseen words
    for key in sorted(k for k in sizes if k[1] == "train" and k[0] != "source"):
        n = sizes[key]
        if len(rest) < n:
            raise CorpusError(f"not enough sentences for {key}")
        out[key], rest = rest[:n], rest[n:]
    return out


# --------------------------------------------------------------------------- synthesis
@dataclass
class Job:
    utt_id: str
    text: str
    voice: Voice
    profile: Optional[Profile]
    path: str
    seed: int
    params: Dict[str, float] = field(default_factory=dict)
    speed_range: Tuple[float, float] = (1.0, 1.0)  # speed perturbation by resampling (source domain)


def _utt_rng(seed: int, utt_id: str) -> random.Random:
    h = hashlib.sha256(f"{seed}:{utt_id}".encode()).hexdigest()
    return random.Random(int(h[:16], 16))


def draw_params(job: Job) -> Dict[str, float]:
    """Per-utterance variation, a pure function of (seed, utterance id)."""
    rng = _utt_rng(job.seed, job.utt_id)
    p = {"rate": rng.uniform(0.88, 1.15), "f0": job.voice.f0 * rng.uniform(0.88, 1.12),
         "gain": rng.uniform(0.35, 0.9)}
    if job.profile is not None:
        c = job.profile
        p.update(formant_ratio=c.formant_ratio * rng.uniform(0.95, 1.05),
                 pitch_median=c.pitch_median * rng.uniform(0.9, 1.1),
                 pitch_range=c.pitch_range * rng.uniform(0.85, 1.15),
                 duration=c.duration * rng.uniform(0.95, 1.08), praat_seed=rng.randrange(1, 2 ** 31))
    if job.speed_range != (1.0, 1.0):
        p["speed"] = rng.uniform(*job.speed_range)
    return p


def _engine_cmd(job: Job, out: str) -> List[str]:
    v, p = job.voice, job.params
    if v.engine == "flite":
        return ["flite", "-voice", v.voice, "--setf", f"duration_stretch={p['rate']:.3f}",
                "--setf", f"int_f0_target_mean={p['f0']:.1f}", "-t", job.text, "-o", out]
    if v.engine == "espeak":
        speed = int(round(165 / p["rate"]))
        pitch = int(round(max(0, min(99, 50 * p["f0"] / v.f0))))
        return ["espeak-ng", "-v", v.voice, "-s", str(speed), "-p", str(pitch), "-w", out, job.text]
    raise CorpusError(f"unknown engine {v.engine!r}")


def _synth_raw(jobs: Sequence[Job], tmpdir: str) -> List[Tuple[np.ndarray, int]]:
    """Raw engine output for a batch of jobs; festival runs once per batch (0.45 s start-up)."""
    outs = [os.path.join(tmpdir, j.utt_id + ".raw.wav") for j in jobs]
    fest = [(j, o) for j, o in zip(jobs, outs) if j.voice.engine == "festival"]
    if fest:
        scm = os.path.join(tmpdir, "batch.scm")
        with open(scm, "w") as fh:
            for j, o in fest:
                fh.write(f"(voice_{j.voice.voice})\n(Parameter.set 'Duration_Stretch {j.params['rate']:.3f})\n"
                         f"(utt.save.wave (utt.synth (Utterance Text \"{j.text}\")) \"{o}\" 'riff)\n")
        res = subprocess.run(["festival", "-b", scm], capture_output=True, text=True)
        if res.returncode != 0:
            raise CorpusError(f"festival failed: {res.stderr.strip()[:300]}")
    result = []
    for j, o in zip(jobs, outs):
        if j.voice.engine != "festival":
            res = subprocess.run(_engine_cmd(j, o), capture_output=True, text=True)
            if res.returncode != 0:
                raise CorpusError(f"{j.voice.engine} failed for {j.utt_id} ({j.voice.voice}): "
                                  f"{res.stderr.strip()[:300]}")
        if not os.path.exists(o):
            raise CorpusError(f"{j.voice.engine} wrote no audio for {j.utt_id} ({j.voice.voice})")
        audio, sr = soundfile.read(o, dtype="float32", always_2d=True)
        result.append((audio[:, 0], sr))
    return result


def child_transform(audio: np.ndarray, sr: int, formant_ratio: float, pitch_median: float,
                    pitch_range: float, duration: float, seed: int = 0) -> np.ndarray:
    """Praat's Change gender: formants x ratio, new F0 median, pitch range and duration.

    Praat's overlap-add resynthesis draws random numbers: its generator is seeded per call so
    that the corpus is reproducible.
    """
    import parselmouth
    from parselmouth.praat import call, run

    run(f"random_initializeWithSeedUnsafelyButPredictably ({int(seed)})")
    snd = parselmouth.Sound(audio.astype(np.float64), sampling_frequency=sr)
    out = call(snd, "Change gender", 75, 600, formant_ratio, pitch_median, pitch_range, duration)
    return np.asarray(out.values[0], dtype=np.float32)


def resample(audio: np.ndarray, sr: float, target: int = SAMPLE_RATE) -> np.ndarray:
    if sr == target:
        return audio
    import soxr

    return soxr.resample(audio, sr, target).astype(np.float32)


def render(jobs: Sequence[Job]) -> List[Tuple[str, float]]:
    """Synthesise a batch of jobs to 16 kHz wavs; returns (utt_id, seconds) per job."""
    with tempfile.TemporaryDirectory(prefix="synth_") as tmp:
        raws = _synth_raw(jobs, tmp)
    done = []
    for job, (audio, sr) in zip(jobs, raws):
        p = job.params
        if job.profile is not None:
            audio = child_transform(audio, sr, p["formant_ratio"], p["pitch_median"], p["pitch_range"],
                                    p["duration"], seed=int(p["praat_seed"]))
        # speed perturbation: the samples played at speed x the rate, then brought to 16 kHz
        audio = resample(audio, sr * p.get("speed", 1.0))
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak <= 0.0:
            raise CorpusError(f"{job.utt_id}: the engine produced silence")
        audio = audio / peak * p["gain"]
        Path(job.path).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(job.path, audio, SAMPLE_RATE, subtype="PCM_16")
        done.append((job.utt_id, len(audio) / SAMPLE_RATE))
    return done


def _render_safe(jobs: Sequence[Job]):
    try:
        return render(jobs)
    except Exception as e:  # reported together by the parent
        return [(j.utt_id, f"{type(e).__name__}: {e}") for j in jobs]


# --------------------------------------------------------------------------- corpus
def plan_jobs(texts: Dict[Tuple[str, str], List[str]], wavdir: Path, seed: int, mbrola: bool = False,
              readings: Optional[Dict[Tuple[str, str], int]] = None) -> Dict[Tuple[str, str], List[Job]]:
    """One job per (sentence, reader group, reading): sentence i is read once by every group of the
    split (``split_readers``), by the group's speaker ``i + 2 r`` for reading r."""
    jobs: Dict[Tuple[str, str], List[Job]] = {}
    for (domain, split), sents in sorted(texts.items()):
        groups = split_readers(domain, split, mbrola)
        speed = SOURCE_SPEED if domain == "source" else (1.0, 1.0)
        lst = []
        for i, text in enumerate(sents):
            for g, speakers in enumerate(groups):
                for r in range((readings or {}).get((domain, split), 1)):
                    voice, profile = speakers[(i + 2 * r) % len(speakers)]
                    spk = speaker_id(voice, profile)
                    utt = f"{spk}-{domain}_{split}_{i:05d}" + (f"g{g}" if g else "") + (f"r{r}" if r else "")
                    job = Job(utt, text, voice, profile, str(wavdir / f"{domain}_{split}" / f"{utt}.wav"), seed,
                              speed_range=speed)
                    job.params = draw_params(job)
                    lst.append(job)
        jobs[(domain, split)] = sorted(lst, key=lambda j: j.utt_id)
    return jobs


def style_texts(sentences: Sequence[str], train_text: Sequence[str], size: float = 1.0) -> List[str]:
    """The sentences of ``source_style_test`` (another sentence style than the corpus's): none may be
    a training sentence, and every word must occur in the source training text (an error naming the
    sentence). A small corpus (``size`` < 1, whose training text lacks many words) takes a share
    ``size`` of them, in-vocabulary sentences first."""
    vocab, train = {w for t in train_text for w in t.split()}, set(train_text)
    sents = [normalize_text(s) for s in sentences if s.strip()]
    bad = [s for s, n in zip(sentences, sents) if n is None]
    if bad:
        raise CorpusError(f"style test sentence(s) with characters other than words: {bad[:3]}")
    dup = [s for s in sents if s in train]
    if dup:
        raise CorpusError(f"{len(dup)} style test sentence(s) are source training sentences, e.g. {dup[0]!r}")
    sents = list(dict.fromkeys(sents))
    oov = [s for s in sents if any(w not in vocab for w in s.split())]
    if size >= 1:
        if oov:
            raise CorpusError(f"{len(oov)} style test sentence(s) use words the source training text lacks, e.g. "
                              f"{oov[0]!r} ({', '.join(w for w in oov[0].split() if w not in vocab)})")
        return sents
    ranked = [s for s in sents if s not in set(oov)] + oov
    return ranked[:max(1, int(round(len(sents) * size)))]


def write_data_dir(d: Path, jobs: Sequence[Job], durations: Dict[str, float]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    jobs = sorted(jobs, key=lambda j: j.utt_id)
    spk2utt: Dict[str, List[str]] = collections.defaultdict(list)
    with open(d / "wav.scp", "w") as w, open(d / "text", "w") as t, open(d / "utt2spk", "w") as u, \
            open(d / "utt2dur", "w") as du:
        for j in jobs:
            spk = j.utt_id.split("-", 1)[0]
            w.write(f"{j.utt_id} {os.path.abspath(j.path)}\n")
            t.write(f"{j.utt_id} {j.text}\n")
            u.write(f"{j.utt_id} {spk}\n")
            du.write(f"{j.utt_id} {durations[j.utt_id]:.3f}\n")
            spk2utt[spk].append(j.utt_id)
    with open(d / "spk2utt", "w") as s:
        for spk in sorted(spk2utt):
            s.write(f"{spk} {' '.join(spk2utt[spk])}\n")


def build(out: Path, wavdir: Path, seed: int = 1, size: float = 1.0, nj: int = 2,
          domains: Sequence[str] = DOMAINS, vocab_size: int = 4000, mbrola: bool = False,
          sizes: Optional[Dict[Tuple[str, str], int]] = None, source_readings: int = 1,
          skip: Sequence[str] = (), train_only: Sequence[str] = (),
          style_test: Sequence[str] = ()) -> Dict[str, dict]:
    """Synthesise the corpus; returns per-data-dir statistics (also written as JSON).

    The target domains also get ``<domain>_unseen_test`` (the test sentences read by held-out
    speakers), and ``style_test`` sentences become ``source_style_test`` (see ``style_texts``);
    ``speaker_groups.json`` declares every target domain's train / dev / unseen speakers.

    ``source_readings``: how many voices read each source training sentence (more acoustic
    variety at the same text); ``skip``: data dirs (``source_train``...) not to synthesise; the
    text split is the same either way.
    """
    for d in domains:
        if d not in DOMAINS:
            raise CorpusError(f"unknown domain {d!r}; expected some of {DOMAINS}")
    voices = [v for d in domains for v in domain_voices(d, mbrola)]
    check_engines(voices)
    all_sizes = dict(sizes) if sizes else {k: max(1, int(round(n * size))) for k, n in BASE_SIZES.items()}
    if any(n < 1 for n in all_sizes.values()):
        raise CorpusError(f"every split needs at least one utterance: {all_sizes}")
    texts = split_text(text_styles(), all_sizes, seed, vocab_size, train_only)
    src_vocab = {w for s in texts[("source", "train")] for w in s.split()}
    for domain in DOMAINS[1:]:  # the target domains' splits that read another split's sentences
        for split, src in DERIVED_TEXT.items():
            if (domain, src) in texts:
                texts[(domain, split)] = list(texts[(domain, src)])
    if style_test:
        texts[("source", "style_test")] = style_texts(style_test, texts[("source", "train")], size)
    texts = {k: v for k, v in texts.items() if k[0] in domains and f"{k[0]}_{k[1]}" not in set(skip)}
    jobs = plan_jobs(texts, wavdir, seed, mbrola, readings={("source", "train"): max(1, int(source_readings))})
    flat = sorted((j for lst in jobs.values() for j in lst), key=lambda j: (j.voice.engine, j.utt_id))
    batches = [flat[i:i + 24] for i in range(0, len(flat), 24)]
    t0 = time.time()
    durations: Dict[str, float] = {}
    errors: List[str] = []
    ctx = multiprocessing.get_context("fork")
    progress = Progress(len(flat), "synth_corpus", "utterances")
    with ctx.Pool(max(1, nj)) as pool:
        for results in pool.imap_unordered(_render_safe, batches):
            progress.step(len(results))
            for utt, res in results:
                if isinstance(res, str):
                    errors.append(f"{utt}: {res}")
                else:
                    durations[utt] = res
    if errors:
        raise CorpusError(f"{len(errors)} utterances failed, first: {errors[:3]}")
    stats = {}
    for (domain, split), lst in sorted(jobs.items()):
        name = f"{domain}_{split}"
        write_data_dir(out / name, lst, durations)
        secs = sum(durations[j.utt_id] for j in lst)
        words = [w for j in lst for w in j.text.split()]
        stats[name] = {"utterances": len(lst), "hours": round(secs / 3600, 3),
                       "speakers": len({speaker_id(j.voice, j.profile) for j in lst}),
                       "words": len(words),
                       "oov_rate_vs_source_train": round(sum(w not in src_vocab for w in words) / len(words), 4)}
    groups = {d: {g: [speaker_id(v, p) for v, p in dict.fromkeys(target_group(d, g, mbrola))] for g in GROUPS}
              for d in domains if d != "source"}
    (out / "speaker_groups.json").write_text(json.dumps(groups, indent=1) + "\n")
    stats["_meta"] = {"seed": seed, "size": size, "vocab_size": vocab_size, "mbrola": mbrola,
                      "source_readings": source_readings, "synthesis_seconds": round(time.time() - t0, 1), "nj": nj}
    (out / "corpus_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def summary_table(stats: Mapping[str, Any], where: Path) -> str:
    """One line per data dir (utterances, hours, speakers, words); the full statistics are in ``where``."""
    rows = [f"{'set':<22} {'utts':>6} {'hours':>6} {'spk':>4} {'words':>6}"]
    rows += [f"{name:<22} {s['utterances']:>6} {s['hours']:>6.3f} {s['speakers']:>4} {s['words']:>6}"
             for name, s in stats.items() if not name.startswith("_")]
    meta = stats.get("_meta", {})
    rows.append(f"synthesised in {meta.get('synthesis_seconds', '?')} s with {meta.get('nj', '?')} jobs; "
                f"statistics in {where}")
    return "\n".join(rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="where the Kaldi data dirs go")
    ap.add_argument("--wavdir", required=True, type=Path, help="where the wav files go")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size", type=float, default=1.0, help="scale of every split (1.0: about 3 h)")
    ap.add_argument("--nj", type=int, default=max(1, os.cpu_count() or 1))
    ap.add_argument("--domains", default=",".join(DOMAINS))
    ap.add_argument("--vocab_size", type=int, default=4000)
    ap.add_argument("--mbrola", action="store_true", help="add mbrola L2 voices (contrib/non-free)")
    ap.add_argument("--source_readings", type=int, default=1, help="voices reading each source training sentence")
    ap.add_argument("--skip", default="", help="data dirs not to synthesise, e.g. source_train,source_dev")
    ap.add_argument("--train_only", type=Path, default=None,
                    help="sentences (one per line) that may only be source training text, never evaluation "
                         "text: those a warm-start model was trained on")
    ap.add_argument("--style_test", type=Path, default=None,
                    help="sentences (one per line) of another style than the corpus's: source_style_test, read by "
                         "a training voice and a held-out voice each")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        stats = build(args.out, args.wavdir, args.seed, args.size, args.nj,
                      [d for d in args.domains.split(",") if d], args.vocab_size, args.mbrola,
                      source_readings=args.source_readings, skip=[s for s in args.skip.split(",") if s],
                      train_only=args.train_only.read_text().split("\n")[:-1] if args.train_only else (),
                      style_test=args.style_test.read_text().splitlines() if args.style_test else ())
    except CorpusError as e:
        print(f"synth_corpus: error: {e}", file=sys.stderr)
        return 2
    print(summary_table(stats, args.out / "corpus_stats.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
