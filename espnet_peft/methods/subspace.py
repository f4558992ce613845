"""The arithmetic of the singular-subspace methods (SSVD, SSVD-O): Cayley rotations, the cost
model of the two forward paths, and the autograd function that never back-propagates through a
dense weight."""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from ..errors import PeftError

ROTATIONS = ("cayley", "first_order")
FORWARD_PATHS = ("auto", "lowrank", "dense")


def tri(k: int) -> int:
    """Free entries of a ``k x k`` skew-symmetric matrix."""
    return k * (k - 1) // 2


def skew(vec: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k x k`` skew-symmetric matrix whose strict upper triangle is ``vec``."""
    s = vec.new_zeros(k, k)
    iu = torch.triu_indices(k, k, offset=1, device=vec.device)
    s = s.index_put((iu[0], iu[1]), vec)
    return s - s.t()


def rotation(vec: torch.Tensor, k: int, kind: str = "cayley") -> torch.Tensor:
    """``cayley(S) = (I - S)^{-1} (I + S)`` (exactly orthogonal) or the named first-order
    approximation ``I + 2 S`` (not orthogonal). The Cayley form is computed as ``2 (I - S)^{-1} - I``
    (the same matrix): an inverse, whose backward is two matrix products where a solve's backward
    is another solve; exactly ``I`` at ``S = 0``."""
    s = skew(vec.float() if vec.dtype in (torch.float16, torch.bfloat16) else vec, k)
    eye = torch.eye(k, dtype=s.dtype, device=s.device)
    if kind == "cayley":
        r = 2 * torch.linalg.inv(eye - s) - eye
    elif kind == "first_order":
        r = eye + 2 * s
    else:
        raise PeftError(f"rotation must be one of {ROTATIONS}, got {kind!r}")
    return r.to(vec.dtype)


def pad_identity(r: torch.Tensor, p: int) -> torch.Tensor:
    k = r.shape[0]
    if k == p:
        return r
    return torch.block_diag(r, torch.eye(p - k, dtype=r.dtype, device=r.device))


def core_flops(k_in: int, k_out: int, rotation_kind: str = "cayley") -> float:
    """FLOPs of building the ``p x p`` core ``M`` and back-propagating through it, once per
    training step and layer, independent of the token count. A Cayley rotation of size ``k``:
    the inverse of ``I - S`` (LU ``2/3 k^3`` and the inverse from it ``4/3 k^3``) forward, two
    products (``4 k^3``) backward; ``R_out`` times the scaled ``R_in``: ``2 p^3`` forward and
    ``4 p^3`` backward."""
    p = max(k_in, k_out)
    per_rotation = (2 + 4) if rotation_kind == "cayley" else 0.0
    total = per_rotation * (k_in ** 3 + k_out ** 3)
    if k_out:
        total += 6.0 * p ** 3
    return float(total)


def path_costs(tokens: int, d_out: int, d_in: int, p: int, training: bool,
               keep_delta: bool = False) -> Dict[str, float]:
    """Extra FLOPs over the frozen layer of the two forward paths: low-rank (``U_p (M (V_p^T x))``
    added to ``W x``) and dense (one ``W + U_p M V_p^T`` per step). In training, the dense path of
    the layer forms the delta again in backward rather than keep a ``d_out x d_in`` matrix alive
    per layer; ``keep_delta`` counts it once (the arithmetic lower bound)."""
    t = float(tokens)
    delta = 2.0 * d_out * p * (p + d_in)  # U (M V^T) as one dense d_out x d_in matrix
    if training:
        return {"lowrank": 4 * t * p * (d_in + d_out) + 6 * t * p * p,
                "dense": (1 if keep_delta else 2) * delta + 2 * t * p * (d_in + d_out) + 2 * t * p * p}
    return {"lowrank": 2 * t * p * (d_in + d_out) + 2 * t * p * p, "dense": delta}


class _SubspaceLinear(torch.autograd.Function):
    """``y = x (W + U M V^T)^T + b`` with gradients for ``x`` and ``M`` only.

    ``dM = (G U)^T (X V)``; ``dX = G W + ((G U) M) V^T`` (low-rank) or ``G (W + U M V^T)``
    (dense, the delta rebuilt in backward instead of being kept alive).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, x, weight, bias, u, v, m, dense: bool):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        z = x2 @ v.to(x2.dtype)
        if dense:
            w = torch.addmm(weight, u @ m, v.t()) if weight.dtype == m.dtype else \
                weight + (u @ m @ v.t()).to(weight.dtype)
            y = nn.functional.linear(x2, w, bias)
        else:
            y = nn.functional.linear(x2, weight, bias)
            y = y + (z @ m.t().to(z.dtype)) @ u.t().to(z.dtype)
        ctx.dense = dense
        ctx.x_shape = shape
        ctx.save_for_backward(weight, u, v, m, z)
        return y.reshape(*shape[:-1], y.shape[-1])

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad):
        weight, u, v, m, z = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])
        gu = g2 @ u.to(g2.dtype)
        grad_m = (gu.t() @ z.to(gu.dtype)).to(m.dtype) if ctx.needs_input_grad[5] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            if ctx.dense:
                w = weight + (u @ m @ v.t()).to(weight.dtype)
                grad_x = g2 @ w.to(g2.dtype)
            else:
                grad_x = g2 @ weight.to(g2.dtype) + (gu @ m.to(gu.dtype)) @ v.t().to(gu.dtype)
            grad_x = grad_x.reshape(ctx.x_shape)
        return grad_x, None, None, None, None, grad_m, None
