"""Singular subspaces of pretrained weights, deterministic and sign-canonical.

Every SVD-based method (PiSSA, SSVD, SSVD-O) asks for the same thing: ``k`` singular triplets
of the weight that was actually loaded, either the largest (``top``) or the smallest (``tail``),
in float64 for accuracy, with a sign convention that makes the result reproducible across
runs (each left vector's largest-magnitude entry is positive).
"""
from __future__ import annotations

from typing import Tuple

import torch

SVD_MODES = ("full", "randomized")


def _canonical_signs(u: torch.Tensor, v: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    idx = u.abs().argmax(dim=0)
    sign = torch.sign(u[idx, torch.arange(u.shape[1], device=u.device)])
    sign[sign == 0] = 1
    return u * sign, v * sign


def randomized_svd(w: torch.Tensor, k: int, niter: int = 4, oversample: int = 10,
                   seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Halko-Martinsson-Tropp range finder with ``niter`` power iterations and a fixed seed."""
    d_out, d_in = w.shape
    ell = min(k + oversample, d_out, d_in)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    omega = torch.randn(d_in, ell, generator=gen, dtype=w.dtype).to(w.device)
    q, _ = torch.linalg.qr(w @ omega)
    for _ in range(niter):
        z, _ = torch.linalg.qr(w.t() @ q)
        q, _ = torch.linalg.qr(w @ z)
    b = q.t() @ w
    ub, s, vh = torch.linalg.svd(b, full_matrices=False)
    return (q @ ub)[:, :k], s[:k], vh[:k].t()


@torch.no_grad()
def principal_subspace(weight: torch.Tensor, k: int, directions: str = "top", mode: str = "full",
                       niter: int = 4, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``U_k (d_out x k), sigma_k (k), V_k (d_in x k)`` of ``weight``, in the weight's dtype.

    ``directions='top'``: the ``k`` largest singular values; ``'tail'``: the ``k`` smallest
    (still ordered largest first within the selection). ``mode='randomized'`` is only valid for
    ``top`` (a range finder finds dominant directions).
    """
    if directions not in ("top", "tail"):
        raise ValueError(f"directions must be 'top' or 'tail', got {directions!r}")
    if mode not in SVD_MODES:
        raise ValueError(f"svd mode must be one of {SVD_MODES}, got {mode!r}")
    w = weight.detach().to(torch.float64)
    q = min(w.shape)
    if not 0 <= k <= q:
        raise ValueError(f"k={k} outside [0, {q}]")
    if mode == "randomized" and directions == "top" and k < q:
        u, s, v = randomized_svd(w, k, niter=niter, seed=seed)
    else:
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        v = vh.t()
        sl = slice(0, k) if directions == "top" else slice(q - k, q)
        u, s, v = u[:, sl], s[sl], v[:, sl]
    u, v = _canonical_signs(u, v)
    dt = weight.dtype
    return u.to(dt).contiguous(), s.to(dt).contiguous(), v.to(dt).contiguous()
