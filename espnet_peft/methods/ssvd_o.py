"""SSVD-O: inner (input-side) and outer (output-side) rotations of singular subspaces.

``W' = W + U_p [ R_out diag(sigma_p + delta) R_in - diag(sigma_p) ] V_p^T`` with
``R_in = blockdiag(cayley(S_in), I)``, ``R_out = blockdiag(cayley(S_out), I)`` (``p x p``,
``p = max(k_in, k_out)``), ``S_in`` / ``S_out`` skew-symmetric with ``k(k-1)/2`` free entries.
``k_out = 0`` is SSVD (ASRU 2025, ``ssvd.py``); ``k_in = 0`` rotates the output side only. The
outer parametrisation (a Cayley rotation of ``U_p`` mirrored from the inner one) is this
project's choice; the ICASSP 2026 paper does not publish its exact form.

Cost: the update only needs the ``p x p`` gradient ``(G U_p)^T (X V_p)``. The forward either
adds ``U_p (M (V_p^T x))`` (low-rank path) or uses one dense ``W + U_p M V_p^T`` per step
(dense path, cheaper once the token count exceeds about ``min(d)/2``); the cheaper one is
picked from the token count (``subspace.path_costs``). No gradient flows through a dense weight.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional

import torch
from torch import nn

from ..errors import PeftError
from ..svd import principal_subspace
from .base import Hyper, Method
from .layer import AdaptedLinear
from .options import Choice, Number, Option, Options, svd_options
from .subspace import (FORWARD_PATHS, ROTATIONS, _SubspaceLinear, core_flops, pad_identity, path_costs, rotation,
                       skew, tri)

__all__ = ["SSVDO", "SubspaceRotationLinear", "_SubspaceLinear", "core_flops", "path_costs", "rotation", "skew"]

OPTIONS = svd_options(default="gram", bench="gram") + Options(
    Option("rotation", "cayley", Choice(*ROTATIONS),
           "`cayley` (exactly orthogonal) or its first-order approximation `I + 2 S` (not orthogonal)"),
    Option("forward", "auto", Choice(*FORWARD_PATHS),
           "low-rank or dense forward; `auto`: the cheaper one for the call's token count"))


class SubspaceRotationLinear(AdaptedLinear):
    """The SSVD / SSVD-O wrapper (``k_out = 0``: SSVD)."""

    options = OPTIONS
    adapter_buffers = ("ssvd_basis_check",)

    def __init__(self, base: nn.Linear, k_in: int, k_out: int = 0, **options):
        super().__init__(base, {"k_in": k_in, "k_out": k_out}, options)
        q = min(self.in_features, self.out_features)
        if not (0 <= k_in <= q and 0 <= k_out <= q) or max(k_in, k_out) < 1:
            raise PeftError(f"k_in={k_in}, k_out={k_out} must lie in [0, {q}] with at least one positive")
        self.k_in, self.k_out, self.p = k_in, k_out, max(k_in, k_out)
        self.directions, self.rotation_kind, self.forward_path = (self.opts[k] for k in ("directions", "rotation",
                                                                                          "forward"))
        f = self.factory()
        self.ssvd_S_in = nn.Parameter(torch.zeros(tri(k_in), **f))
        self.ssvd_S_out = nn.Parameter(torch.zeros(tri(k_out), **f))
        self.ssvd_delta = nn.Parameter(torch.zeros(self.p, **f))
        # the singular subspace of the pretrained weight: derived from it, not saved
        self.register_buffer("ssvd_U", torch.zeros(self.out_features, self.p, **f), persistent=False)
        self.register_buffer("ssvd_V", torch.zeros(self.in_features, self.p, **f), persistent=False)
        self.register_buffer("ssvd_sigma", torch.zeros(self.p, **f), persistent=False)
        # a small signature of that subspace, saved so that loading onto another basis fails loudly
        self.register_buffer("ssvd_basis_check", torch.zeros(2, self.p, **f))

    def init_from_weight(self) -> None:
        o = self.opts
        u, sigma, v = principal_subspace(self.weight, self.p, o["directions"], o["svd"], o["svd_niter"], o["seed"])
        self.ssvd_U.copy_(u)
        self.ssvd_V.copy_(v)
        self.ssvd_sigma.copy_(sigma)
        self.ssvd_basis_check.copy_(self._basis_signature())

    def _basis_signature(self) -> torch.Tensor:
        # sums of each basis column: sign- and order-sensitive, cheap
        return torch.stack([self.ssvd_U.sum(0), self.ssvd_V.sum(0)])

    # -- the p x p core ------------------------------------------------------------------------
    def rotation_in(self) -> torch.Tensor:
        return pad_identity(rotation(self.ssvd_S_in, self.k_in, self.rotation_kind), self.p)

    def rotation_out(self) -> torch.Tensor:
        return pad_identity(rotation(self.ssvd_S_out, self.k_out, self.rotation_kind), self.p)

    def core(self) -> torch.Tensor:
        """``M = R_out diag(sigma + delta) R_in - diag(sigma)`` (zero at initialisation)."""
        scaled = (self.ssvd_sigma + self.ssvd_delta).unsqueeze(1) * self.rotation_in()
        if self.k_out:
            scaled = self.rotation_out() @ scaled
        return scaled - torch.diag(self.ssvd_sigma)

    def pick_path(self, tokens: int, training: bool) -> str:
        if self.forward_path != "auto":
            return self.forward_path
        costs = path_costs(tokens, self.out_features, self.in_features, self.p, training)
        return min(costs, key=costs.get)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.ensure_initialized()
        m = self.core()
        tokens = x.numel() // max(1, x.shape[-1])
        training = torch.is_grad_enabled() and (m.requires_grad or x.requires_grad)
        dense = self.pick_path(tokens, training) == "dense"
        return _SubspaceLinear.apply(x, self.weight, self.bias, self.ssvd_U, self.ssvd_V, m, dense)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        return ((x @ self.ssvd_V) @ self.core().t()) @ self.ssvd_U.t()

    def delta_weight(self) -> torch.Tensor:
        return self.ssvd_U @ self.core() @ self.ssvd_V.t()

    @torch.no_grad()
    def load_adapter_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.ensure_initialized()
        check = state.get("ssvd_basis_check")
        if check is not None and check.shape == self.ssvd_basis_check.shape:
            own = self.ssvd_basis_check
            tol = 1e-4 * (1.0 + own.abs().max())
            if (check.to(own) - own).abs().max() > tol:
                raise PeftError("the adapter was trained on another singular basis: the base weight differs "
                                "(wrong pretrained model) or its SVD is degenerate/unstable here")
        super().load_adapter_state(state)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, k_in={self.k_in}, "
                f"k_out={self.k_out}, directions={self.directions}, rotation={self.rotation_kind}")


class SSVDO(Method):
    name = "ssvd_o"
    hyper_keys = ("k_in", "k_out")
    aliases = {"k": "k_in"}
    hyper_defaults = {"k_out": 0}
    options = OPTIONS + Options(
        Option("inner", 0.5, Number(0, 1), "the share of a module's rotation parameters spent on the inner "
                                           "(input) side when a budget is solved (`allocation.inner`)"))
    layer = SubspaceRotationLinear

    def count(self, shape, hyper: Hyper, opts) -> int:
        return tri(hyper["k_in"]) + tri(hyper["k_out"]) + max(hyper["k_in"], hyper["k_out"])

    def split(self, p: int, budget: float, inner: float) -> Optional[Hyper]:
        """For a given ``p``, the (k_in, k_out) that spend ``budget - p`` by the inner share."""
        rest = budget - p
        if rest < 0:
            return None

        def largest(share: float) -> int:
            if share <= 0:
                return 0
            k = int((1 + math.sqrt(1 + 8 * share * rest)) // 2)
            while tri(k) > share * rest + 1e-9:
                k -= 1
            return min(k, p)

        k_in, k_out = largest(inner), largest(1.0 - inner)
        if max(k_in, k_out) != p:  # p is wider than the rotations can use: not this p
            return None
        return {"k_in": k_in, "k_out": k_out}

    def solve(self, shape, budget: float, opts) -> Optional[Hyper]:
        inner = float(self.option(opts, "inner"))
        best, best_count = None, -1
        for p in range(min(shape), 0, -1):
            h = self.split(p, budget, inner)
            if h is not None and best_count < self.count(shape, h, opts) <= budget:
                best, best_count = h, self.count(shape, h, opts)
        return best

    def grow(self, shape, hyper: Hyper, opts) -> Optional[Hyper]:
        """One more rotated direction on the side that keeps the inner share closest to target."""
        q, inner = min(shape), float(self.option(opts, "inner"))
        options = []
        for side in ("k_in", "k_out"):
            if (side == "k_in" and inner <= 0) or (side == "k_out" and inner >= 1) or hyper[side] >= q:
                continue
            h = dict(hyper, **{side: hyper[side] + 1})
            spent = tri(h["k_in"]) + tri(h["k_out"])
            options.append((abs(tri(h["k_in"]) / max(spent, 1) - inner), side, h))
        return min(options)[2] if options else None

    def flops(self, shape, hyper, tokens: int) -> float:
        """The cheaper way to the ``p x p`` gradient (``subspace.path_costs``, the dense delta counted
        once), plus the core with its Cayley rotations once per step (``subspace.core_flops``)."""
        d_out, d_in = shape
        p = max(hyper["k_in"], hyper["k_out"])
        paths = path_costs(tokens, d_out, d_in, p, training=True, keep_delta=True)
        return min(paths.values()) + core_flops(hyper["k_in"], hyper["k_out"])
