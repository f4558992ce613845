"""WER / CER scoring (jiwer) with one documented text normalisation, and the learning /
forgetting arithmetic the reports use.

Normalisation (applied to references and hypotheses alike): Unicode NFKC, lower case, ESPnet
special tokens (``<...>``) removed, every character that is not a letter, digit, apostrophe
or space replaced by a space, runs of spaces collapsed. CER counts characters of the
normalised text without spaces.

Confidence intervals (any recipe can report them): :func:`bootstrap_wer` (WER with a bootstrap
interval over utterances or speakers), :func:`paired_bootstrap` (the interval and p-value of a
WER difference between two systems on the same test set), :func:`bootstrap_replicates` (shared
resamples of many systems, for any derived number), and the :class:`UtteranceErrors` helpers
that read them from Kaldi-style text files.
"""
from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

_SPECIAL = re.compile(r"<[^<>\s]*>")
_NON_WORD = re.compile(r"[^\w' ]|_")


def normalize(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).lower()
    t = _SPECIAL.sub(" ", t)
    t = _NON_WORD.sub(" ", t)
    return " ".join(w.strip("'") for w in t.split() if w.strip("'"))


def read_trn(path) -> Dict[str, str]:
    out = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            key, _, text = line.rstrip("\n").partition(" ")
            if key:
                out[key] = text
    return out


def _counts(pairs, unit: str) -> Dict[str, int]:
    import jiwer

    refs = [r for r, _ in pairs]
    hyps = [h for _, h in pairs]
    if unit == "char":
        refs = [" ".join(r.replace(" ", "")) for r in refs]
        hyps = [" ".join(h.replace(" ", "")) for h in hyps]
    # jiwer wants non-empty references; empty ones count every hypothesis token as an insertion
    keep = [(r, h) for r, h in zip(refs, hyps) if r.strip()]
    ins_empty = sum(len(h.split()) for r, h in zip(refs, hyps) if not r.strip())
    if not keep:
        return {"ref": 0, "sub": 0, "del": 0, "ins": ins_empty, "err": ins_empty}
    out = jiwer.process_words([r for r, _ in keep], [h if h.strip() else "" for _, h in keep])
    ref = sum(len(r.split()) for r, _ in keep)
    ins = out.insertions + ins_empty
    return {"ref": ref, "sub": out.substitutions, "del": out.deletions, "ins": ins,
            "err": out.substitutions + out.deletions + ins}


def score(refs: Mapping[str, str], hyps: Mapping[str, str]) -> Dict[str, float]:
    """WER and CER (in %) of hypotheses against references, keyed by utterance id.

    An utterance without a hypothesis counts as an empty hypothesis (all deletions).
    """
    missing = sorted(set(refs) - set(hyps))
    extra = sorted(set(hyps) - set(refs))
    if extra:
        raise ValueError(f"{len(extra)} hypotheses have no reference, e.g. {extra[:3]}")
    pairs = [(normalize(refs[k]), normalize(hyps.get(k, ""))) for k in sorted(refs)]
    w = _counts(pairs, "word")
    c = _counts(pairs, "char")
    sent_err = sum(r != h for r, h in pairs)
    return {"utterances": len(pairs), "missing_hypotheses": len(missing),
            "words": w["ref"], "wer": 100.0 * w["err"] / max(1, w["ref"]),
            "sub": w["sub"], "del": w["del"], "ins": w["ins"],
            "chars": c["ref"], "cer": 100.0 * c["err"] / max(1, c["ref"]),
            "ser": 100.0 * sent_err / max(1, len(pairs))}


def text_digest(path) -> str:
    """The identity of a hypotheses (or any) file: SHA-256 of its bytes (16 hex digits)."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def check_hypotheses(hyp_path) -> str:
    """The digest of ``hyp_path``, after checking it against the ``decode_info.json`` beside it (written
    by the decoding that produced it): a hypotheses file edited or replaced after its decoding is an
    error. A file without ``decode_info.json`` (hypotheses from elsewhere) is taken as it is."""
    hyp = Path(hyp_path)
    digest = text_digest(hyp)
    info = hyp.with_name("decode_info.json")
    if info.is_file():
        signed = json.loads(info.read_text()).get("hypotheses")
        if signed is None:
            raise ValueError(f"{info} does not sign its hypotheses (written by an older decoding): decode again "
                             f"(delete {hyp.parent})")
        if signed != digest:
            raise ValueError(f"{hyp} is not the file its decoding wrote ({info} signs {signed}, the file is "
                             f"{digest}): edited or replaced after decoding; decode again (delete {hyp.parent})")
    return digest


def score_files(ref_path, hyp_path, out_json: Optional[Path] = None) -> Dict[str, float]:
    """WER / CER of a hypotheses file (checked against its decoding's signature, ``check_hypotheses``);
    the result records the hypotheses' digest, so that a later edit of the file is seen."""
    digest = check_hypotheses(hyp_path)
    result = score(read_trn(ref_path), read_trn(hyp_path))
    result["hypotheses"] = digest
    if out_json:  # atomically: parallel sweep runs re-score the same base decoding
        out = Path(out_json)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp, out)
    return result


def learning_forgetting(base_target: float, adapted_target: float, base_source: float, adapted_source: float,
                        full_target: Optional[float] = None) -> Dict[str, Optional[float]]:
    """The numbers a learning / forgetting report needs (all WERs in %).

    * ``target_gain``: absolute WER reduction on the target domain (positive = learned)
    * ``forgetting``: absolute WER increase on the source domain (positive = forgot)
    * ``forgetting_rel``: the same relative to the base source WER (in %)
    * ``gain_recovered``: the fraction of full fine-tuning's target gain this run reaches
    """
    gain = base_target - adapted_target
    forget = adapted_source - base_source
    out = {"target_gain": gain, "target_gain_rel": 100.0 * gain / base_target if base_target else None,
           "forgetting": forget, "forgetting_rel": 100.0 * forget / base_source if base_source else None,
           "gain_recovered": None}
    if full_target is not None and base_target - full_target > 0:
        out["gain_recovered"] = gain / (base_target - full_target)
    return out


# --------------------------------------------------------------------------- confidence intervals
# Bootstrap intervals of WER and paired bootstrap tests of WER differences (Bisani & Ney 2004):
# numpy only, vectorised, deterministic given ``seed``. A WER is a ratio of sums (errors over
# reference words), so a resample draws units (utterances, or speakers with all their
# utterances) with replacement and divides the resampled error sum by the resampled word sum.
# Several systems scored on the same test set share the same resamples (that is what makes a
# difference "paired"). A system given as several seeds (a 2-D array, one row per seed) is the
# mean over its seeds; with ``resample_seeds`` every resample also draws its seeds with
# replacement, so the interval carries the training noise between seeds as well as the test
# sampling noise (with 2-3 seeds it still understates the former a little: report the spread).
@dataclass(frozen=True)
class UtteranceErrors:
    """Word errors (substitutions + deletions + insertions) and reference words per utterance,
    sorted by utterance id, counted exactly as :func:`score` counts them (``wer`` equals its WER)."""

    ids: Tuple[str, ...]
    errors: np.ndarray
    words: np.ndarray
    speakers: Optional[Tuple[str, ...]] = None

    @property
    def wer(self) -> float:
        return 100.0 * float(self.errors.sum()) / max(1, int(self.words.sum()))


def read_utt2spk(path) -> Dict[str, str]:
    return read_trn(path)


def _chunk_errors(chunks) -> int:
    n = 0
    for c in chunks:
        if c.type in ("substitute", "delete"):
            n += c.ref_end_idx - c.ref_start_idx
        elif c.type == "insert":
            n += c.hyp_end_idx - c.hyp_start_idx
    return n


UNITS = ("word", "char")  # what an error rate counts: WER, CER


def _tokens(text: str, unit: str) -> str:
    """A normalised text as the space-separated tokens ``unit`` counts (characters without spaces)."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    return text if unit == "word" else " ".join(text.replace(" ", ""))


def utterance_errors(refs: Mapping[str, str], hyps: Mapping[str, str],
                     utt2spk: Optional[Mapping[str, str]] = None, unit: str = "word") -> UtteranceErrors:
    """Per-utterance errors of hypotheses against references (the normalisation and the
    empty-reference rule of :func:`score`), counted in words (WER) or characters (``unit="char"``:
    CER, ``words`` then holds the reference lengths in characters); ``utt2spk`` adds each
    utterance's speaker."""
    import jiwer

    extra = sorted(set(hyps) - set(refs))
    if extra:
        raise ValueError(f"{len(extra)} hypotheses have no reference, e.g. {extra[:3]}")
    ids = tuple(sorted(refs))
    pairs = [(_tokens(normalize(refs[k]), unit), _tokens(normalize(hyps.get(k, "")), unit)) for k in ids]
    words = np.array([len(r.split()) for r, _ in pairs], dtype=np.int64)
    errors = np.array([0 if r.strip() else len(h.split()) for r, h in pairs], dtype=np.int64)
    keep = [i for i, (r, _) in enumerate(pairs) if r.strip()]
    if keep:
        out = jiwer.process_words([pairs[i][0] for i in keep], [pairs[i][1] for i in keep])
        for i, chunks in zip(keep, out.alignments):
            errors[i] = _chunk_errors(chunks)
    speakers = None
    if utt2spk is not None:
        missing = [k for k in ids if k not in utt2spk]
        if missing:
            raise ValueError(f"{len(missing)} utterances have no speaker, e.g. {missing[:3]}")
        speakers = tuple(utt2spk[k] for k in ids)
    return UtteranceErrors(ids, errors, words, speakers)


def utterance_errors_files(ref_path, hyp_path, utt2spk_path=None, unit: str = "word") -> UtteranceErrors:
    """:func:`utterance_errors` of Kaldi-style text files (``utt2spk_path`` optional)."""
    spk = read_utt2spk(utt2spk_path) if utt2spk_path and Path(utt2spk_path).is_file() else None
    return utterance_errors(read_trn(ref_path), read_trn(hyp_path), spk, unit)


def stack_seeds(runs: Sequence[UtteranceErrors]) -> UtteranceErrors:
    """Several runs (seeds) of one system on one test set as one system: ``errors`` becomes a
    (seeds, utterances) array. The runs must cover the same utterances with the same references."""
    if not runs:
        raise ValueError("no runs to stack")
    first = runs[0]
    for r in runs[1:]:
        if r.ids != first.ids or not np.array_equal(r.words, first.words):
            raise ValueError("the runs were scored on different utterances or references")
    return UtteranceErrors(first.ids, np.stack([np.atleast_2d(r.errors) for r in runs]).reshape(-1, len(first.ids)),
                           first.words, first.speakers)


RESAMPLE_UNITS = ("utterance", "speaker", "speaker_utterance")  # what a bootstrap resample draws (see bootstrap_replicates)


def _units(errors_list, words, speakers, unit: str):
    """Per-unit error rows (one (seeds, units) array per system), per-unit words, and for
    ``speaker_utterance`` the speaker index of every utterance (else None)."""
    words = np.asarray(words, dtype=np.float64)
    mats = [np.atleast_2d(np.asarray(e, dtype=np.float64)) for e in errors_list]
    for m in mats:
        if m.shape[1] != words.shape[0]:
            raise ValueError(f"errors cover {m.shape[1]} utterances, words {words.shape[0]}")
    if unit not in RESAMPLE_UNITS:
        raise ValueError(f"unit must be one of {', '.join(RESAMPLE_UNITS)}, got {unit!r}")
    if unit == "utterance":
        return mats, words, None
    if speakers is None:
        raise ValueError("a speaker-level bootstrap needs the speaker of every utterance (utt2spk)")
    _, inv = np.unique(np.asarray(speakers, dtype=object).astype(str), return_inverse=True)
    if unit == "speaker_utterance":
        return mats, words, inv
    g = int(inv.max()) + 1
    agg = lambda row: np.bincount(inv, weights=row, minlength=g)  # noqa: E731
    return [np.stack([agg(r) for r in m]) for m in mats], agg(words), None


def count_units(groups: Optional[np.ndarray], b: int, n: int, rng) -> np.ndarray:
    """How often each of ``n`` units is drawn in each of ``b`` resamples, (b, n). Without
    ``groups``: n draws with replacement among the n units. With ``groups`` (the speaker index
    of each utterance): two levels, as a hierarchical bootstrap draws them: the speakers with
    replacement, then, for every draw of a speaker, as many of its utterances as it has, with
    replacement among its own."""
    if groups is None:
        idx = rng.integers(0, n, size=(b, n))
        return np.bincount((idx + (np.arange(b) * n)[:, None]).ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
    g = int(groups.max()) + 1
    spk_counts = count_units(None, b, g, rng)  # (b, speakers)
    out = np.zeros((b, n))
    for k in range(g):
        members = np.flatnonzero(groups == k)
        draws = (spk_counts[:, k] * members.size).astype(np.int64)  # utterances drawn from speaker k
        out[:, members] = rng.multinomial(draws, np.full(members.size, 1.0 / members.size))
    return out


def holm(p_values: Sequence[float]) -> List[float]:
    """Holm's step-down adjusted p-values (family-wise error control without assuming
    independence): the i-th smallest p times (m - i + 1), made monotone, capped at 1."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adj = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adj[i] = running
    return adj


def bootstrap_replicates(systems: Sequence[Any], words, speakers=None, *, unit: str = "utterance",
                         n_resamples: int = 2000, seed: int = 0, resample_seeds: bool = True):
    """WER (%) of every system on ``n_resamples`` shared bootstrap resamples of one test set.

    ``systems``: per-utterance error counts of each system, 1-D (utterances) or 2-D (seeds x
    utterances, the system being the mean over its seeds); ``words``: reference words per
    utterance; ``unit``: ``"utterance"``, ``"speaker"`` (resample speakers with all their
    utterances; needs ``speakers``) or ``"speaker_utterance"`` (resample speakers, then the
    utterances of each drawn speaker: both levels of a test set's sampling). Seeds are a level of
    their own (``resample_seeds``: each system's seeds redrawn in every resample). Returns ``(point, reps)``: the WER of every system on the
    test set itself (K,) and on every resample (n_resamples, K). The utterance resamples depend
    only on ``seed`` and the test set (not on the systems), the seed draws of system k on
    ``(seed, k)``."""
    mats, w, groups = _units(systems, words, speakers, unit)
    n, k = w.shape[0], len(mats)
    if n == 0:
        raise ValueError("an empty test set")
    total = max(float(w.sum()), 1e-12)
    point = np.array([100.0 * m.mean(axis=0).sum() / total for m in mats])
    reps = np.empty((int(n_resamples), k))
    rng = np.random.default_rng(seed)
    seed_rngs = [np.random.default_rng([seed, i + 1]) for i in range(k)]
    chunk = max(1, min(int(n_resamples), (1 << 22) // n))  # at most ~4 M counts in memory at once
    for start in range(0, int(n_resamples), chunk):
        b = min(chunk, int(n_resamples) - start)
        counts = count_units(groups, b, n, rng)
        wb = counts @ w
        wb[wb <= 0] = np.nan
        for i, m in enumerate(mats):
            per_seed = counts @ m.T  # (b, seeds)
            s = m.shape[0]
            if s > 1 and resample_seeds:
                weights = seed_rngs[i].multinomial(s, np.full(s, 1.0 / s), size=b) / s
                e = (per_seed * weights).sum(axis=1)
            else:
                e = per_seed.mean(axis=1)
            reps[start:start + b, i] = 100.0 * e / wb
    return point, reps


def interval(reps, level: float = 0.95) -> Tuple[float, float]:
    """The percentile interval of bootstrap replicates (NaNs ignored)."""
    lo, hi = np.nanpercentile(np.asarray(reps, dtype=np.float64), [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def difference_stats(diff: float, reps, level: float = 0.95) -> Dict[str, Any]:
    """A paired difference and its bootstrap replicates -> its percentile interval, ``significant``
    (the interval excludes 0) and the two-sided bootstrap p-value (twice the smaller share of
    replicates on either side of 0, at least 1 / resamples; 1.0 when every replicate is 0), which
    is below 1 - level exactly when the interval excludes 0, up to the resamples' resolution."""
    reps = np.asarray(reps, dtype=np.float64)
    reps = reps[~np.isnan(reps)]
    b = reps.shape[0]
    if not b:
        return {"diff": float(diff), "low": float("nan"), "high": float("nan"), "p_value": 1.0, "significant": False,
                "level": level, "resamples": 0}
    lo, hi = interval(reps, level)
    below, above = int((reps <= 0).sum()), int((reps >= 0).sum())
    p = min(1.0, max(2.0 * min(below, above), 1.0) / b)
    return {"diff": float(diff), "low": lo, "high": hi, "p_value": p, "significant": bool(lo > 0 or hi < 0),
            "level": level, "resamples": b}


def bootstrap_wer(errors, words, speakers=None, *, unit: str = "utterance", n_resamples: int = 2000,
                  seed: int = 0, level: float = 0.95, resample_seeds: bool = True) -> Dict[str, Any]:
    """WER (%) with its bootstrap interval over utterances (``unit="utterance"``) or speakers
    (``unit="speaker"``, needs ``speakers``). ``errors``: per utterance, or (seeds, utterances)."""
    point, reps = bootstrap_replicates([errors], words, speakers, unit=unit, n_resamples=n_resamples, seed=seed,
                                       resample_seeds=resample_seeds)
    lo, hi = interval(reps[:, 0], level)
    n_units = len(set(speakers)) if unit != "utterance" else len(np.asarray(words))
    return {"wer": float(point[0]), "low": lo, "high": hi, "level": level, "unit": unit, "units": n_units,
            "resamples": int(n_resamples)}


def paired_bootstrap(errors_a, errors_b, words, speakers=None, *, unit: str = "utterance", n_resamples: int = 2000,
                     seed: int = 0, level: float = 0.95, resample_seeds: bool = True) -> Dict[str, Any]:
    """Paired bootstrap of WER(a) - WER(b) on one test set (both systems scored on the same
    utterances; each 1-D or seeds x utterances): ``diff`` (positive: a makes more errors), its
    interval, the two-sided ``p_value`` and ``significant``; ``wer_a`` and ``wer_b`` beside."""
    point, reps = bootstrap_replicates([errors_a, errors_b], words, speakers, unit=unit, n_resamples=n_resamples,
                                       seed=seed, resample_seeds=resample_seeds)
    out = difference_stats(point[0] - point[1], reps[:, 0] - reps[:, 1], level)
    out.update(wer_a=float(point[0]), wer_b=float(point[1]), unit=unit)
    return out


def wer_interval(runs, *, unit: str = "utterance", **kw) -> Dict[str, Any]:
    """:func:`bootstrap_wer` of an :class:`UtteranceErrors` (or a list of them: seeds)."""
    u = stack_seeds(runs) if isinstance(runs, (list, tuple)) else runs
    return bootstrap_wer(u.errors, u.words, u.speakers, unit=unit, **kw)


def compare(a, b, *, unit: str = "utterance", **kw) -> Dict[str, Any]:
    """:func:`paired_bootstrap` of two :class:`UtteranceErrors` (or lists of them: seeds),
    e.g. ``compare(adapted, base)`` on a source test set: the forgetting and its interval."""
    ua = stack_seeds(a) if isinstance(a, (list, tuple)) else a
    ub = stack_seeds(b) if isinstance(b, (list, tuple)) else b
    if ua.ids != ub.ids or not np.array_equal(ua.words, ub.words):
        raise ValueError("the two systems were scored on different utterances or references")
    return paired_bootstrap(ua.errors, ub.errors, ua.words, ua.speakers, unit=unit, **kw)
