#!/usr/bin/env python3
"""Content identities of model files: what a decoding result, an adapted experiment or a sweep
cell was produced from. ``file_id.py PATH`` prints the identity (16 hex digits of SHA-256);
``file_id.py PATH PATH...`` the identity of the set (each path as given and its content, in order:
what a cache built from several files, such as a data set's statistics, is keyed by).

A file is hashed once per (path, inode, size, modification time), the identity kept in memory and
in ``$ESPNET_PEFT_CACHE/file_ids`` (default ``~/.cache/espnet_peft/file_ids``): one decoding call
runs 2 + nj processes that each need the identity of the same model (what is left to decode, the
jobs, the merge), and an OWSM 1 B checkpoint takes seconds to hash. A rewritten file has a new
modification time, so it is hashed again. Cache entries are written atomically (parallel jobs)."""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Dict, Optional, Tuple

_ids: Dict[Tuple, str] = {}


def cache_dir() -> Path:
    root = os.environ.get("ESPNET_PEFT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "espnet_peft")
    return Path(root) / "file_ids"


def file_id(path) -> str:
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _ids:
        return _ids[key]
    entry = cache_dir() / hashlib.sha256(repr(key).encode()).hexdigest()[:32]
    try:
        _ids[key] = entry.read_text().strip()
        return _ids[key]
    except OSError:
        pass
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    _ids[key] = h.hexdigest()[:16]
    try:  # a cache that cannot be written only costs time
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
        tmp.write_text(_ids[key] + "\n")
        os.replace(tmp, entry)
    except OSError:
        pass
    return _ids[key]


def write_text_atomic(path, text: str) -> None:
    """``text`` into ``path`` through a temporary file in the same directory renamed into place: a
    reader (or a later stage) never sees half a file, and a failed write leaves the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def recorded_foundation_id(exp_dir) -> Optional[str]:
    """The id of the foundation model an experiment was adapted from, as stage 10 recorded it in
    ``EXP/foundation_id``; None when there is no record."""
    f = Path(exp_dir) / "foundation_id"
    return f.read_text().strip() if f.is_file() else None


def files_id(paths) -> str:
    """The identity of several files: their names (as given) and contents, in order."""
    lines = "".join(f"{p}\t{file_id(p)}\n" for p in paths)
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


if __name__ == "__main__":
    missing = [p for p in sys.argv[1:] if not Path(p).is_file()]
    if len(sys.argv) < 2 or missing:
        sys.exit(f"usage: file_id.py FILE [FILE...] (existing files; not found: {missing or 'no file given'})")
    print(file_id(sys.argv[1]) if len(sys.argv) == 2 else files_id(sys.argv[1:]))
