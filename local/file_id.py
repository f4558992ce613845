#!/usr/bin/env python3
"""Content identities of model files: what a decoding result, an adapted experiment or a sweep
cell was produced from. ``file_id.py PATH`` prints the identity (16 hex digits of SHA-256).

Within one process a file is hashed once per (path, inode, size, modification time): a decoding
job asks for the identity of the same model several times (which sets are done, what to record),
and an OWSM 1 B checkpoint takes seconds to hash. A file rewritten in place changes its
modification time, so it is hashed again."""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Dict, Optional, Tuple

_ids: Dict[Tuple, str] = {}


def file_id(path) -> str:
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _ids:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _ids[key] = h.hexdigest()[:16]
    return _ids[key]


def recorded_foundation_id(exp_dir) -> Optional[str]:
    """The id of the foundation model an experiment was adapted from, as stage 10 recorded it in
    ``EXP/foundation_id``; None when there is no record."""
    f = Path(exp_dir) / "foundation_id"
    return f.read_text().strip() if f.is_file() else None


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_file():
        sys.exit(f"usage: file_id.py FILE (an existing file; got {sys.argv[1:]})")
    print(file_id(sys.argv[1]))
