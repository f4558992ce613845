#!/usr/bin/env python3
"""A mixed test set for routed decoding: several Kaldi data directories in one, with ``utt2adapter``
naming each utterance's adapter by the set it came from (``base``: the frozen model).

    mix_sets.py --out dump/raw/mixed_test \\
        --set dump/raw/source_test=base --set dump/raw/child_test=child --set dump/raw/accent_test=accent

Every file the sets share (``wav.scp``, ``text``, ``utt2spk``, ``utt2dur``, ...) is concatenated and
sorted; an utterance id in two sets is an error naming it. Then ``decode.py --utt2adapter
<out>/utt2adapter --adapter NAME=CHECKPOINT ...`` decodes each utterance with its adapter.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from espnet_peft.data import DataError, read_table
from file_id import write_text_atomic

FILES = ("wav.scp", "text", "utt2spk", "utt2dur", "text.plain")


def mix(sets: List[Tuple[Path, str]], out: Path) -> Dict[str, int]:
    """Write the mixed directory; returns utterances per adapter name."""
    for d, _ in sets:
        if not (d / "wav.scp").is_file():
            raise SystemExit(f"mix_sets.py: {d}/wav.scp not found")
    owner: Dict[str, Path] = {}
    route: Dict[str, str] = {}
    for d, name in sets:
        try:
            keys = read_table(d / "wav.scp")
        except DataError as e:
            raise SystemExit(f"mix_sets.py: {e}")
        for key in keys:
            if key in owner:
                raise SystemExit(f"mix_sets.py: utterance {key} is in both {owner[key]} and {d}")
            owner[key], route[key] = d, name
    for f in FILES:
        have = [d for d, _ in sets if (d / f).is_file()]
        if not have:
            continue
        if len(have) != len(sets):
            raise SystemExit(f"mix_sets.py: {f} is in {', '.join(map(str, have))} but not in every set")
        lines = sorted(line for d in have for line in (d / f).read_text().splitlines() if line.strip())
        write_text_atomic(out / f, "".join(line + "\n" for line in lines))
    write_text_atomic(out / "utt2adapter", "".join(f"{k} {route[k]}\n" for k in sorted(route)))
    counts: Dict[str, int] = {}
    for name in route.values():
        counts[name] = counts.get(name, 0) + 1
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--set", action="append", required=True, help="DATA_DIR=ADAPTER (base: no adapter)")
    args = ap.parse_args(argv)
    sets = []
    for spec in args.set:
        d, sep, name = spec.rpartition("=")
        if not sep or not d or not name:
            ap.error(f"--set wants DATA_DIR=ADAPTER, got {spec!r}")
        sets.append((Path(d), name))
    counts = mix(sets, args.out)
    print(f"mix_sets.py: {args.out}: " + ", ".join(f"{n} {c}" for n, c in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
