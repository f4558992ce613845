#!/usr/bin/env python3
"""One Kaldi data directory made of several, each whole or a deterministic share of its utterances.

    combine_data.py --out data/mix --set data/source_train:0.33 --set data/so762_train_adult_sp

``DIR:SHARE`` keeps the utterances whose SHA-1 of ``<set name>/<utt>`` falls below SHARE (the same
ones on every machine, whatever else is in the set); ``DIR`` alone keeps all. Relative audio paths
in ``wav.scp`` (relative to the recipe folder, ``DIR/../..``, as Kaldi recipes write them) are made
absolute: the sets may live in another recipe's folder. Every Kaldi file
the sets share (``wav.scp``, ``text``, ``utt2spk``, ``utt2dur``, ``spk2gender``) is written sorted,
``spk2utt`` rebuilt. An utterance id in two sets, or a set without ``wav.scp``/``text``/``utt2spk``,
is an error naming it; nothing is written then.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from corpora.common import hash_fraction
from espnet_peft.data import read_table
from file_id import write_text_atomic

REQUIRED = ("wav.scp", "text", "utt2spk")
OPTIONAL = ("utt2dur", "spk2gender")


def absolute(entry: str, base: Path) -> str:
    """A wav.scp entry with a relative file path made absolute (pipes are left as they are)."""
    if entry.rstrip().endswith("|") or entry.startswith("/"):
        return entry
    return str((base / entry).resolve())


def parse_set(spec: str) -> Tuple[Path, float]:
    path, sep, share = spec.rpartition(":")
    if not sep or not share.replace(".", "", 1).isdigit():
        return Path(spec), 1.0
    value = float(share)
    if not 0 < value <= 1:
        raise SystemExit(f"combine_data.py: the share of {path} must be in (0, 1], got {share}")
    return Path(path), value


def combine(sets: List[Tuple[Path, float]], out: Path) -> Dict[str, int]:
    """Write the combined directory; returns the utterances kept per set."""
    tables: Dict[str, Dict[str, str]] = {name: {} for name in REQUIRED + OPTIONAL}
    has = {name: True for name in OPTIONAL}
    owner: Dict[str, Path] = {}
    kept: Dict[str, int] = {}
    for d, share in sets:
        missing = [f for f in REQUIRED if not (d / f).is_file()]
        if missing:
            raise SystemExit(f"combine_data.py: {d} has no {', '.join(missing)}")
        wav = read_table(d / "wav.scp")
        keep = sorted(u for u in wav if share >= 1 or hash_fraction(f"{d.name}/{u}") < share)
        for u in keep:
            if u in owner:
                raise SystemExit(f"combine_data.py: utterance {u} is in both {owner[u]} and {d}")
            owner[u] = d
        kept[str(d)] = len(keep)
        text, utt2spk = read_table(d / "text"), read_table(d / "utt2spk")
        for u in keep:
            tables["wav.scp"][u] = absolute(wav[u], d.resolve().parent.parent)
            tables["text"][u], tables["utt2spk"][u] = text[u], utt2spk[u]
        for name in OPTIONAL:
            if not (d / name).is_file():
                has[name] = False
                continue
            rows = read_table(d / name)
            keys = keep if name == "utt2dur" else sorted({utt2spk[u] for u in keep})
            tables[name].update({k: rows[k] for k in keys if k in rows})
    out.mkdir(parents=True, exist_ok=True)
    spk2utt: Dict[str, List[str]] = {}
    for u in sorted(tables["utt2spk"]):
        spk2utt.setdefault(tables["utt2spk"][u], []).append(u)
    tables["spk2utt"] = {s: " ".join(us) for s, us in spk2utt.items()}
    for name, rows in tables.items():
        if name in has and not has[name]:
            (out / name).unlink(missing_ok=True)
            continue
        write_text_atomic(out / name, "".join(f"{k} {rows[k]}\n" for k in sorted(rows, key=lambda k: k.encode())))
    return kept


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--set", action="append", required=True, dest="sets", metavar="DIR[:SHARE]")
    args = ap.parse_args(argv)
    kept = combine([parse_set(s) for s in args.sets], args.out)
    for d, n in kept.items():
        print(f"combine_data.py: {args.out}: {n} utterances from {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
