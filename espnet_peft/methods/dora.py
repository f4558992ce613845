"""DoRA: ``W' = m * (W + s B A) / ||W + s B A||_row`` with the row norm detached."""
from __future__ import annotations

import torch
from torch import nn

from .lora import LoRAFamily, LoRALinear, hf_peft


class DoRALinear(LoRALinear):
    """``y = (m / n) * (W x + s B A drop(x)) + b``, ``n`` the detached row norm of ``W + s B A``.

    ``n`` is computed without forming ``W + s B A``:
    ``n^2 = ||W||^2_row + 2 s rowsum((W A^T) * B) + s^2 rowsum((B (A A^T)) * B)``,
    which costs ``2 d_out d_in r`` and no dense temporary, in the layer's precision (float32 at
    least). ``||W||^2_row`` is cached and recomputed whenever the frozen tensor changes (its
    version counter moves on any in-place write, e.g. ``load_state_dict``), so loading weights
    after wrapping cannot leave it stale.
    """

    def __init__(self, base: nn.Linear, r: int, **options):
        super().__init__(base, r, **options)
        self.lora_magnitude = nn.Parameter(torch.ones(self.out_features, **self.factory()))

    def norm_dtype(self) -> torch.dtype:
        """The weight's dtype, promoted to float32 from half precision (whose squares overflow)."""
        return torch.promote_types(self.weight.dtype, torch.float32)

    def init_from_weight(self) -> None:
        self.lora_magnitude.copy_(torch.linalg.vector_norm(self.weight.to(self.norm_dtype()), dim=1))

    def weight_sq_norm(self) -> torch.Tensor:
        key = (self.weight.data_ptr(), self.weight._version, self.weight.device, self.weight.dtype)
        if getattr(self, "_sq_key", None) != key:
            self._sq = torch.linalg.vector_norm(self.weight.detach().to(self.norm_dtype()), dim=1).pow(2)
            self._sq_key = key
        return self._sq

    def row_norm(self) -> torch.Tensor:
        """``||W + s B A||_row`` (no gradient), without a dense ``d_out x d_in`` temporary."""
        with torch.no_grad():
            dt = self.norm_dtype()
            a, b, s = self.lora_A.to(dt), self.lora_B.to(dt), self.scaling
            cross = ((self.weight.to(dt) @ a.t()) * b).sum(1)
            quad = ((b @ (a @ a.t())) * b).sum(1)
            sq = self.weight_sq_norm() + 2 * s * cross + s * s * quad
            return sq.clamp_min(0).sqrt().to(self.weight.dtype)

    def rescaled(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``(m / n) (W x + s B A x)`` from the frozen product ``y = W x`` (no bias)."""
        return self.add_delta(y, x) * (self.lora_magnitude / self.row_norm())

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """``W' x - W x``: the rescaled output minus the frozen one (not LoRA's branch alone)."""
        y = nn.functional.linear(x, self.weight)
        return self.rescaled(y, x) - y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.ensure_initialized()
        out = self.rescaled(nn.functional.linear(x, self.weight), x)
        return out + self.bias if self.bias is not None else out

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        self.ensure_initialized()
        scale = (self.lora_magnitude / self.row_norm()).unsqueeze(1)
        return scale * (self.weight + super().delta_weight())

    def delta_weight(self) -> torch.Tensor:
        return self.merged_weight() - self.weight


class DoRA(LoRAFamily):
    name = "dora"
    layer = DoRALinear
    references = {"hf_dora": hf_peft(use_dora=True)}

    def fixed(self, shape, opts) -> int:
        return shape[0]  # the magnitude vector

    def flops(self, shape, hyper, tokens: int) -> float:
        """LoRA's, plus the row norm of ``W + s B A`` through ``W A^T`` (``2 d_out d_in r``) and
        the rescaling of the output forward and backward (``4 T d_out``)."""
        d_out, d_in = shape
        return super().flops(shape, hyper, tokens) + 2 * d_out * d_in * hyper["r"] + 4 * tokens * d_out
