#!/usr/bin/env python3
"""Run records of a budget sweep: a finished run survives the machine it ran on.

Every finished run leaves one small JSON file in the sweep's record directory (tracked in git,
beside the recipe: ``egs2/<corpus>/asr1/sweep_records/<sweep>/``):

* ``<tag>.dev.json``: a learning-rate candidate scored on the target dev set (its WER, or
  ``diverged``), with the per-utterance errors of the dev set;
* ``<tag>.test.json`` (``<tag>.alpha<A>.test.json`` for an interpolation alpha): a seed's test
  decoding: the experiment's summary (stage 15) and, per decoded set and decoding (``lm``: the
  recipe's, ``nolm``: without the LM), the per-utterance word errors;
* ``data.json``: per evaluated set the utterance ids, speakers and reference lengths the errors are
  aligned with, and the base (foundation) model's per-utterance errors;
* ``lr_choices.json``, ``invocations.json``: the learning-rate choices and the sweep's wall time.

A record names what it was measured on: the foundation model (``foundation_id``), the data
(``data_id``: the content of the sets' ``text``, ``utt2spk`` and ``utt2dur``, not their paths, so it
is the same on every machine), and its frozen configs (``config_hash``: the cell's PEFT config,
the training and decoding configs, the LM, the extra training options), plus the code commit, the
wall time, the learning rate and the seed. A record whose foundation, data or config differs
from the sweep's is stale: the driver runs it again. The report renders from the records alone.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from file_id import write_text_atomic

IDENTITY = ("foundation_id", "data_id", "config_hash")
DECODINGS = {"lm": "decode", "nolm": "decode_nolm"}  # record name -> decoding directory name


def _sha(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


def data_id(dumpdir: Path, sets: Sequence[str]) -> str:
    """The identity of the data a sweep runs on: every set's name and the content of its ``text``,
    ``utt2spk`` and ``utt2dur`` when present (machine-independent: no audio paths)."""
    parts: List[bytes] = []
    for s in sorted(set(sets)):
        d = Path(dumpdir) / "raw" / s
        if not (d / "text").is_file():
            raise FileNotFoundError(f"{d / 'text'} (the set {s} is not formatted: run the recipe's stages 1-4)")
        for f in ("text", "utt2spk", "utt2dur"):
            p = d / f
            parts += [f"{s}/{f}".encode(), p.read_bytes() if p.is_file() else b"(none)"]
    return _sha(parts)


def config_hash(files: Sequence[Path], extra: Mapping[str, Any] = ()) -> str:
    """The identity of a run's frozen configs: the content of ``files`` (in order) and ``extra``."""
    parts = [Path(f).read_bytes() for f in files]
    parts.append(json.dumps(dict(extra), sort_keys=True, default=str).encode())
    return _sha(parts)


def code_commit(path: Path) -> str:
    """The git commit of the checkout holding ``path`` (``+dirty`` when tracked files differ)."""
    try:
        commit = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class RecordStore:
    """The records of one sweep in ``root``; a record is current for an identity (foundation, data and
    config ids, see ``IDENTITY``) it matches."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, tag: str, kind: str, alpha: float = 1.0) -> Path:
        a = "" if kind == "dev" or alpha == 1.0 else f".alpha{alpha:g}"
        return self.root / f"{tag}{a}.{kind}.json"

    def load(self, tag: str, kind: str, alpha: float = 1.0) -> Optional[Dict[str, Any]]:
        p = self.path(tag, kind, alpha)
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"unreadable run record {p}: {e}") from e

    @staticmethod
    def stale(rec: Mapping[str, Any], identity: Mapping[str, str]) -> List[str]:
        """What differs between a record and the current identity (empty: the record is current)."""
        return [f"{k} {rec.get(k)} (now {identity[k]})" for k in IDENTITY if rec.get(k) != identity.get(k)]

    def current(self, tag: str, kind: str, identity: Mapping[str, str], alpha: float = 1.0):
        rec = self.load(tag, kind, alpha)
        return rec if rec is not None and not self.stale(rec, identity) else None

    def write(self, rec: Mapping[str, Any]) -> Path:
        p = self.path(rec["tag"], rec["kind"], float(rec.get("alpha", 1.0)))
        write_text_atomic(p, json.dumps(rec, indent=None, separators=(",", ":"), sort_keys=True, allow_nan=False) + "\n")
        return p

    def all(self, kind: str) -> List[Dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.root.glob(f"*.{kind}.json"))]

    # ---------------------------------------------------------------- the sets' utterances
    def data_file(self) -> Path:
        return self.root / "data.json"

    def load_data(self) -> Dict[str, Any]:
        p = self.data_file()
        return json.loads(p.read_text()) if p.is_file() else {}

    def save_data(self, data: Mapping[str, Any]) -> None:
        write_text_atomic(self.data_file(), json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n")


def set_block(utt, chars=None) -> Dict[str, Any]:
    """The reference side of a set (aligned with every run's errors): ids, speakers, reference
    lengths in words and (``chars``: the set's character-level errors) in characters."""
    out = {"ids": list(utt.ids), "speakers": list(utt.speakers) if utt.speakers is not None else None,
           "words": [int(w) for w in utt.words], "ids_sha": ids_sha(utt.ids, utt.words)}
    if chars is not None:
        out["chars"] = [int(w) for w in chars.words]
    return out


def ids_sha(ids: Sequence[str], words: Sequence[int]) -> str:
    return _sha([json.dumps([list(ids), [int(w) for w in words]]).encode()])


def errors_block(utt, chars=None) -> Dict[str, Any]:
    """A run's side of a set: per-utterance word errors (and character errors: ``chars``), and the
    reference side's hash."""
    out = {"errors": [int(e) for e in np.asarray(utt.errors).ravel()], "ids_sha": ids_sha(utt.ids, utt.words),
           "wer": round(float(utt.wer), 4)}
    if chars is not None:
        out.update(char_errors=[int(e) for e in np.asarray(chars.errors).ravel()], cer=round(float(chars.wer), 4))
    return out


def utterances(data: Mapping[str, Any], set_name: str, block: Mapping[str, Any], metric="wer"):
    """The ``UtteranceErrors`` of a run's set from its record block and the sweep's data file, for
    ``metric`` (a report metric: the record fields it names, e.g. wer: word errors and lengths; cer:
    characters); None when the data file does not describe the same utterances or the record lacks
    that metric."""
    from espnet_peft.scoring import UtteranceErrors
    from espnet_peft.sweep.metrics import report_metric

    m = report_metric(metric)
    err_key, len_key = m.errors, m.lengths
    if err_key is None or len_key is None:
        return None
    ref = data.get("sets", {}).get(set_name)
    if (ref is None or ref.get("ids_sha") != block.get("ids_sha") or err_key not in block or len_key not in ref
            or len(ref["ids"]) != len(block[err_key])):
        return None
    spk = tuple(ref["speakers"]) if ref.get("speakers") is not None else None
    return UtteranceErrors(tuple(ref["ids"]), np.asarray(block[err_key], dtype=np.int64),
                           np.asarray(ref[len_key], dtype=np.int64), spk)


def summaries_from_records(store: RecordStore, reported: Mapping[Tuple[str, float], Mapping[str, Any]],
                           metric: str = "wer") -> Tuple[List[Dict[str, Any]], List[str]]:
    """The summaries the report reads, from the test records alone: for every reported run
    (``reported``: (tag, alpha) -> the cell, budget, variant, rate, seed and ``identity`` the driver
    expects) its record's summary, with the per-utterance errors of the recipe's decoding (``_utt``,
    ``_base_utt``) and of the decoding without the LM (``_utt_nolm``, ``_base_utt_nolm``). Returns
    (summaries, notes on records that are stale or do not match ``data.json``). ``metric``: the
    per-utterance errors given (wer: words, cer: characters)."""
    data = store.load_data()
    out, notes = [], []
    for (tag, alpha), meta in reported.items():
        rec = store.load(tag, "test", alpha)
        if rec is None:
            continue
        name = store.path(tag, "test", alpha).name
        why = store.stale(rec, meta["identity"])
        if why:
            notes.append(f"{name}: stale ({'; '.join(why)}): not reported")
            continue
        sm = dict(rec["summary"])
        sm.update({k: meta[k] for k in ("cell", "sweep_budget", "sweep_variant", "seed") if k in meta})
        sm.update(lr=meta.get("lr") if meta.get("lr") is not None else rec.get("lr"), experiment=tag,
                  code_commit=rec.get("code_commit"), record=name, checks=list(rec.get("checks", [])))
        for dec in DECODINGS:
            suffix = "" if dec == "lm" else f"_{dec}"
            blocks = (rec.get("utterances") or {}).get(dec) or {}
            base_blocks = (data.get("base") or {}).get(dec) or {}
            sm["_utt" + suffix] = {x: u for x, b in blocks.items() if (u := utterances(data, x, b, metric)) is not None}
            sm["_base_utt" + suffix] = {x: u for x, b in base_blocks.items()
                                        if (u := utterances(data, x, b, metric)) is not None}
            if len(sm["_utt" + suffix]) != len(blocks):
                notes.append(f"{name}: the {dec} errors of {sorted(set(blocks) - set(sm['_utt' + suffix]))} do not "
                             f"match data.json")
        out.append(sm)
    return out, notes


class InvocationLog:
    """``invocations.json`` of a sweep's records: one entry per invocation that ran jobs (its start, wall
    time, cells and jobs run, command and code commit), kept up to date after every job: a sweep
    killed part-way still counts the time of the jobs it finished, and names its command."""

    def __init__(self, root: Path, t0: float, command: str, commit: str):
        import threading
        import time

        self.t0, self.file = t0, Path(root) / "invocations.json"
        self.runs: List[Dict[str, Any]] = json.loads(self.file.read_text()) if self.file.is_file() else []
        self.entry = {"started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0)), "seconds": 0.0,
                      "cells_run": 0, "jobs": 0, "command": command, "code_commit": commit}
        self.lock = threading.Lock()

    def record(self, cells_run: int, job_done: bool = False) -> None:
        """Writes this invocation's entry (``job_done``: one more job finished)."""
        import time

        with self.lock:
            if job_done:
                self.entry["jobs"] += 1
            self.entry.update(seconds=round(time.time() - self.t0, 1), cells_run=cells_run)
            if self.entry not in self.runs:
                self.runs.append(self.entry)
            write_text_atomic(self.file, json.dumps(self.runs, indent=1) + "\n")
