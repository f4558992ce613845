"""Module-name matching shared by injection, grouping and overrides, and the "did you mean"
suggestions of every error about a name or a pattern."""
from __future__ import annotations

import difflib
import re
from fnmatch import fnmatchcase
from typing import Iterable, List, Optional, Sequence

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


def did_you_mean(word: str, candidates: Iterable[str], cutoff: float = 0.5) -> str:
    """`` (did you mean a, b?)`` with the closest candidates, or an empty string."""
    hints = difflib.get_close_matches(word, sorted(set(candidates)), n=3, cutoff=cutoff)
    return f" (did you mean {', '.join(hints)}?)" if hints else ""


def suffixes(names: Iterable[str], width: int) -> List[str]:
    """The last ``width`` components of every name (what a pattern of that width can match)."""
    return sorted({".".join(n.split(".")[-width:]) for n in names})


def pattern_hint(pattern: str, names: Iterable[str], cutoff: float = 0.5) -> str:
    """Suggestions for a pattern among module names, compared at the pattern's own width."""
    return did_you_mean(pattern, suffixes(names, len(pattern.split("."))), cutoff)


def unmatched(what: str, patterns: Sequence[str], names: Sequence[str], among: str) -> Optional[str]:
    """An error text naming every pattern of ``what`` that matches none of ``names``, or None."""
    empty = [p for p in patterns if not any(matches(n, p) for n in names)]
    if not empty:
        return None
    detail = "; ".join(f"{p!r}{pattern_hint(p, names)}" for p in empty)
    return f"{what} pattern(s) matched no module {among}: {detail}"
