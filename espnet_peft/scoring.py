"""WER / CER scoring (jiwer) with one documented text normalisation, and the learning /
forgetting arithmetic the reports use.

Normalisation (applied to references and hypotheses alike): Unicode NFKC, lower case, ESPnet
special tokens (``<...>``) removed, every character that is not a letter, digit, apostrophe
or space replaced by a space, runs of spaces collapsed. CER counts characters of the
normalised text without spaces.
"""
from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Dict, Mapping, Optional

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


def score_files(ref_path, hyp_path, out_json: Optional[Path] = None) -> Dict[str, float]:
    result = score(read_trn(ref_path), read_trn(hyp_path))
    if out_json:
        Path(out_json).write_text(json.dumps(result, indent=1) + "\n")
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
