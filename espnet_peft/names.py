"""Module-name matching shared by injection, grouping and overrides."""
from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import Optional

_BLOCK = re.compile(r"(?:^|\.)(?:encoders|decoders|blocks|layers)\.(\d+)\.")


def matches(name: str, pattern: str) -> bool:
    """``pattern`` is a dotted suffix of ``name`` matched at module boundaries (``*`` matches one
    name component): ``attn.linear_q`` hits ``encoders.0.attn.linear_q`` but not
    ``encoders.0.self_attn.linear_q``."""
    pc, nc = pattern.split("."), name.split(".")
    if not name or len(pc) > len(nc):
        return False
    return all(fnmatchcase(n, p) for n, p in zip(nc[-len(pc):], pc))


def block_index(name: str) -> Optional[int]:
    """The block number of an encoder / decoder layer name (``encoders.3.attn`` -> 3)."""
    m = _BLOCK.search(name)
    return int(m.group(1)) if m else None
