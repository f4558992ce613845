#!/usr/bin/env python3
"""Content identities of model files: what a decoding result, an adapted experiment or a sweep
cell was produced from. ``file_id.py PATH`` prints the identity (16 hex digits of SHA-256)."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path


def file_id(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_file():
        sys.exit(f"usage: file_id.py FILE (an existing file; got {sys.argv[1:]})")
    print(file_id(sys.argv[1]))
