"""SSVD (ASRU 2025): a Cayley rotation of ``k`` right-singular (input-side) directions and a
shift of their singular values; SSVD-O with ``k_out = 0`` (see ``ssvd_o.py``)."""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from .base import Hyper, resolve_size
from .ssvd_o import SSVDO, SubspaceRotationLinear


class SSVD(SSVDO):
    name = "ssvd"
    hyper_keys = ("k",)
    summary = "Cayley rotation of the top (or tail) input-side singular directions + value shift"
    options = {k: v for k, v in SSVDO.options.items() if k != "inner"}

    def count(self, shape, hyper: Hyper, opts) -> int:
        k = hyper["k"]
        return k * (k - 1) // 2 + k

    def max_hyper(self, shape, opts) -> Hyper:
        return {"k": min(shape)}

    def solve(self, shape, budget: float, opts) -> Optional[Hyper]:
        if budget < 1:
            return None
        k = min(int((math.sqrt(1 + 8 * budget) - 1) // 2), min(shape))  # k(k+1)/2 <= budget
        while k > 0 and self.count(shape, {"k": k}, opts) > budget:
            k -= 1
        return {"k": k} if k >= 1 else None

    def grow(self, shape, hyper: Hyper, opts) -> Optional[Hyper]:
        return {"k": hyper["k"] + 1} if hyper["k"] < min(shape) else None

    def explicit(self, shape, values: Mapping[str, Any], opts) -> Hyper:
        v = values.get("k", values.get("k_in"))
        return super(SSVDO, self).explicit(shape, {"k": v}, opts)

    def build(self, module, hyper, opts):
        kw = self.layer_kwargs({"k_in": hyper["k"], "k_out": 0}, opts)
        return SubspaceRotationLinear(module, **kw)
