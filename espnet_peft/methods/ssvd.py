"""SSVD (ASRU 2025): a Cayley rotation of ``k`` right-singular (input-side) directions and a
shift of their singular values: SSVD-O (``ssvd_o.py``) with no outer rotation, ``k_in = k``,
``k_out = 0``, every parameter on the inner side."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from torch import nn

from .base import Hyper, Method, Reference
from .ssvd_o import SSVDO, SubspaceRotationLinear


def _as_ssvd_o(hyper: Optional[Hyper]) -> Optional[Hyper]:
    return None if hyper is None else {"k_in": hyper["k"], "k_out": 0}


def _as_ssvd(hyper: Optional[Hyper]) -> Optional[Hyper]:
    return None if hyper is None else {"k": hyper["k_in"]}


class _Rebuild(nn.Module):
    """The rebuild-from-factors implementation (the public ESPnet pull request's approach): each
    forward forms ``W' = W + U M V^T`` densely and back-propagates through it."""

    def __init__(self, layer: SubspaceRotationLinear):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        w = self.layer.weight + self.layer.ssvd_U @ self.layer.core() @ self.layer.ssvd_V.t()
        return nn.functional.linear(x, w, self.layer.bias)


def rebuild(model: nn.Module, config, planner):
    """Our SSVD layers of a plan, then each replaced by the rebuild of the same ``k``."""
    plan = planner.apply_peft(model, config)
    for name, m in list(model.named_modules()):
        if isinstance(m, SubspaceRotationLinear):
            planner.set_module(model, name, _Rebuild(m))
    return plan


class SSVD(Method):
    name = "ssvd"
    hyper_keys = ("k",)
    aliases = {"k_in": "k"}
    options = SubspaceRotationLinear.options  # SSVD-O's, without the inner share
    references = {"ssvd_rebuild": Reference(rebuild)}
    as_ssvd_o = SSVDO()

    @staticmethod
    def inner_only(opts: Mapping[str, Any]) -> Mapping[str, Any]:
        return {**opts, "inner": 1.0}

    def count(self, shape, hyper: Hyper, opts) -> int:
        return self.as_ssvd_o.count(shape, _as_ssvd_o(hyper), opts)

    def solve(self, shape, budget: float, opts) -> Optional[Hyper]:
        return _as_ssvd(self.as_ssvd_o.solve(shape, budget, self.inner_only(opts)))

    def grow(self, shape, hyper: Hyper, opts) -> Optional[Hyper]:
        return _as_ssvd(self.as_ssvd_o.grow(shape, _as_ssvd_o(hyper), self.inner_only(opts)))

    def flops(self, shape, hyper, tokens: int) -> float:
        return self.as_ssvd_o.flops(shape, _as_ssvd_o(hyper), tokens)

    def build(self, module, hyper, opts):
        return self.as_ssvd_o.build(module, _as_ssvd_o(hyper), opts)
