"""Singular subspaces of pretrained weights, deterministic and sign-canonical.

Every SVD-based method (PiSSA, SSVD, SSVD-O) asks for the same thing: ``k`` singular triplets
of the weight that was actually loaded, either the largest (``top``) or the smallest (``tail``),
in float64 (except the Gram and randomized routes for the top directions of a float32 weight,
see ``FLOAT32_MIN_RATIO``), with a sign convention that makes the result reproducible across
runs (each left vector's largest-magnitude entry is positive).
"""
from __future__ import annotations

from typing import Tuple

import torch

SVD_MODES = ("full", "randomized", "gram")
# The Gram routes form one side's vectors as W x / sigma, whose orthonormality error is about
# eps * (sigma_max / sigma)^2: in float32 that stays below 1e-4 down to 0.03 sigma_max; a selection
# reaching lower is computed in float64.
FLOAT32_MIN_RATIO = 0.03


def _canonical_signs(u: torch.Tensor, v: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    idx = u.abs().argmax(dim=0)
    sign = torch.sign(u[idx, torch.arange(u.shape[1], device=u.device)])
    sign[sign == 0] = 1
    return u * sign, v * sign


def _gram(w: torch.Tensor) -> Tuple[torch.Tensor, bool]:
    """The smaller Gram matrix of ``w`` and whether ``w`` is tall (``G = W^T W``)."""
    tall = w.shape[0] >= w.shape[1]
    return (w.t() @ w if tall else w @ w.t()), tall


def _triplets(w: torch.Tensor, tall: bool, x: torch.Tensor, s: torch.Tensor, select: slice,
              sigma_max=None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``U, sigma, V`` from eigenvectors ``x`` of the Gram matrix (descending ``s``): the
    ``select``-ed columns only, the other side formed as ``W x / sigma``; a full SVD when the
    selection reaches below ``1e-7 sigma_max`` (default: the largest selected ``s``), where that
    division loses every digit."""
    s, x = s[select], x[:, select]
    if s.numel() and s[-1] < 1e-7 * (s[0] if sigma_max is None else sigma_max):
        u, sv, vh = torch.linalg.svd(w, full_matrices=False)
        return u[:, select], sv[select], vh.t()[:, select]
    if tall:
        return (w @ x) / s, s, x
    return x, s, (w.t() @ x) / s


def randomized_svd(w: torch.Tensor, k: int, niter: int = 4, oversample: int = 10,
                   seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` dominant triplets by a randomized range finder (Halko, Martinsson & Tropp) run on
    the smaller Gram matrix ``G`` (``W^T W`` or ``W W^T``), with a fixed seed.

    ``niter + 1`` products with ``G``, re-orthonormalised after each, then Rayleigh-Ritz on ``G``:
    the subspace error shrinks like ``(sigma_{l+1} / sigma_k)^(2 niter + 2)`` (``l = k + oversample``),
    at least as fast as ``niter`` power iterations on ``W`` itself, while every product past
    forming ``G`` costs ``min(d)^2 l`` instead of ``d_out d_in l``. A spectrum that reaches below
    ``1e-7 sigma_max`` within the ``k`` falls back to a full SVD.
    """
    g, tall = _gram(w)
    q = g.shape[0]
    ell = min(k + oversample, q)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    y = g @ torch.randn(q, ell, generator=gen, dtype=w.dtype).to(w.device)
    for _ in range(niter):
        y = g @ torch.linalg.qr(y)[0]
    basis = torch.linalg.qr(y)[0]
    small = basis.t() @ g @ basis
    evals, evecs = torch.linalg.eigh((small + small.t()) / 2)
    s = evals.flip(0)[:k].clamp_min(0).sqrt()  # descending
    return _triplets(w, tall, basis @ evecs.flip(1)[:, :k], s, slice(0, k))


def gram_svd(w: torch.Tensor, select: slice = slice(None)) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD through the eigendecomposition of the smaller Gram matrix, in ``w``'s dtype.

    Faster than LAPACK's SVD; a singular value ``sigma`` has absolute error of about
    ``eps * sigma_max^2 / sigma``, so a selection reaching below ``1e-7 sigma_max`` (float64)
    falls back to a full SVD. ``select`` picks triplets (in descending order) before the other
    side's vectors are formed, so that only those are multiplied out. (Torch's ``eigh`` computes
    every eigenpair; computing only the selected ones through SciPy was not faster in the
    benchmark, see bench/RESULTS.md.)
    """
    g, tall = _gram(w)
    evals, evecs = torch.linalg.eigh(g)
    s = evals.flip(0).clamp_min(0).sqrt()
    return _triplets(w, tall, evecs.flip(1), s, select, sigma_max=s[0] if s.numel() else None)


@torch.no_grad()
def principal_subspace(weight: torch.Tensor, k: int, directions: str = "top", mode: str = "full",
                       niter: int = 4, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``U_k (d_out x k), sigma_k (k), V_k (d_in x k)`` of ``weight``, in the weight's dtype.

    ``directions='top'``: the ``k`` largest singular values; ``'tail'``: the ``k`` smallest
    (still ordered largest first within the selection). ``mode``: ``full`` (LAPACK SVD),
    ``gram`` (eigendecomposition of the smaller Gram matrix: the same subspaces up to its
    precision, faster) or ``randomized`` (a range finder on the Gram matrix with ``niter`` power
    iterations and a fixed seed; ``top`` only, for ``k`` well below ``min(d)``; approximate near
    the k-th singular value when the spectrum has no gap there, and faster still).
    """
    if directions not in ("top", "tail"):
        raise ValueError(f"directions must be 'top' or 'tail', got {directions!r}")
    if mode not in SVD_MODES:
        raise ValueError(f"svd mode must be one of {SVD_MODES}, got {mode!r}")
    # float64 everywhere, except the Gram and randomized routes for dominant directions of a
    # float32 weight (see FLOAT32_MIN_RATIO), whose float32 accuracy is ample for an
    # initialisation (the wrapper is the identity at init whatever the basis)
    q = min(weight.shape)
    fast = directions == "top" and weight.dtype == torch.float32 and (
        mode == "gram" or (mode == "randomized" and k < q))
    w = weight.detach().to(torch.float32 if fast else torch.float64)
    if not 0 <= k <= q:
        raise ValueError(f"k={k} outside [0, {q}]")
    sl = slice(0, k) if directions == "top" else slice(q - k, q)
    if mode == "randomized" and directions == "top" and k < q:
        def solve(a):
            return randomized_svd(a, k, niter=niter, seed=seed)
    elif mode == "gram":
        def solve(a):
            return gram_svd(a, sl)
    else:
        def solve(a):
            u, s, vh = torch.linalg.svd(a, full_matrices=False)
            return u[:, sl], s[sl], vh.t()[:, sl]
    u, s, v = solve(w)
    if fast and s.numel() and s[-1] < FLOAT32_MIN_RATIO * s[0]:
        u, s, v = solve(w.to(torch.float64))
    u, v = _canonical_signs(u, v)
    dt = weight.dtype
    return u.to(dt).contiguous(), s.to(dt).contiguous(), v.to(dt).contiguous()
