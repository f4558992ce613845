"""PiSSA: LoRA whose factors start at the principal singular triplets of the pretrained weight.

``A = diag(sqrt(sigma_r)) V_r^T / sqrt(s)``, ``B = U_r diag(sqrt(sigma_r)) / sqrt(s)``; the
frozen weight becomes the residual ``W_res = W - s B A`` computed from the factors actually
used, so the wrapper is the identity at initialisation even with a randomized SVD. The initial
factors are kept (``pissa_A0`` / ``pissa_B0``) so that an adapter-only checkpoint can rebuild
the adapted weight from the original pretrained one: ``W' = W - s B0 A0 + s B A``.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn

from ..svd import principal_subspace
from .lora import OPTIONS as LORA_OPTIONS
from .lora import LoRAFamily, LoRALinear
from .options import svd_options


class PiSSALinear(LoRALinear):
    options = LORA_OPTIONS + svd_options(default="full", bench="randomized")
    adapter_buffers = ("pissa_A0", "pissa_B0")

    def __init__(self, base: nn.Linear, r: int, **options):
        super().__init__(base, r, **options)
        self.register_buffer("pissa_A0", torch.zeros_like(self.lora_A))
        self.register_buffer("pissa_B0", torch.zeros_like(self.lora_B))

    def init_from_weight(self) -> None:
        o = self.opts
        u, sigma, v = principal_subspace(self.weight, self.r, o["directions"], o["svd"], o["svd_niter"], o["seed"])
        root = sigma.clamp_min(0).sqrt() / math.sqrt(self.scaling)
        self.lora_A.copy_(root.unsqueeze(1) * v.t())
        self.lora_B.copy_(u * root.unsqueeze(0))
        self.pissa_A0.copy_(self.lora_A)
        self.pissa_B0.copy_(self.lora_B)
        residual = self.weight - self.scaling * (self.pissa_B0 @ self.pissa_A0)
        self.weight = nn.Parameter(residual, requires_grad=False)  # the pretrained tensor is untouched

    @torch.no_grad()
    def load_adapter_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load trained and initial factors; re-base the residual if the initial factors differ
        (e.g. a checkpoint whose SVD ran on another machine)."""
        self.ensure_initialized()
        a0, b0 = state.get("pissa_A0"), state.get("pissa_B0")
        if a0 is not None and b0 is not None and a0.shape == self.pissa_A0.shape and \
                b0.shape == self.pissa_B0.shape and not (torch.equal(a0, self.pissa_A0) and torch.equal(b0, self.pissa_B0)):
            self.weight.add_(self.scaling * (self.pissa_B0 @ self.pissa_A0 - b0.to(self.weight) @ a0.to(self.weight)))
        super().load_adapter_state(state)


class PiSSA(LoRAFamily):
    name = "pissa"
    layer = PiSSALinear
    options = PiSSALinear.options
