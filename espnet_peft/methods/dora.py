"""DoRA: ``W' = m * (W + s B A) / ||W + s B A||_row`` with the row norm detached."""
from __future__ import annotations

import torch
from torch import nn

from .lora import LoRAFamily, LoRALinear


class DoRALinear(LoRALinear):
    """``y = (m / n) * (W x + s B A drop(x)) + b``, ``n`` the detached row norm of ``W + s B A``.

    ``n`` is computed without forming ``W + s B A``:
    ``n^2 = ||W||^2_row + 2 s rowsum((W A^T) * B) + s^2 rowsum((B (A A^T)) * B)``,
    which costs ``2 d_out d_in r`` and no dense temporary. ``||W||^2_row`` is cached and
    recomputed whenever the frozen tensor changes (its version counter moves on any in-place
    write, e.g. ``load_state_dict``), so loading weights after wrapping cannot leave it stale.
    """

    def __init__(self, base: nn.Linear, r: int, **kwargs):
        super().__init__(base, r, **kwargs)
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.lora_magnitude = nn.Parameter(torch.ones(self.out_features, **factory))

    def init_from_weight(self) -> None:
        self.lora_magnitude.copy_(torch.linalg.vector_norm(self.weight.float(), dim=1).to(self.weight.dtype))

    def weight_sq_norm(self) -> torch.Tensor:
        key = (self.weight.data_ptr(), self.weight._version, self.weight.device, self.weight.dtype)
        if getattr(self, "_sq_key", None) != key:
            self._sq = torch.linalg.vector_norm(self.weight.detach().float(), dim=1).pow(2)
            self._sq_key = key
        return self._sq

    def row_norm(self) -> torch.Tensor:
        """``||W + s B A||_row`` (no gradient), without a dense ``d_out x d_in`` temporary."""
        with torch.no_grad():
            a, b, s = self.lora_A.float(), self.lora_B.float(), self.scaling
            w = self.weight.float()
            cross = ((w @ a.t()) * b).sum(1)
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
    summary = "magnitude m times the row-normalised W + (alpha/r) B A (norm detached)"

    def fixed_cost(self, shape) -> int:
        return shape[0]

    def build(self, module, hyper, opts):
        return DoRALinear(module, **self.layer_kwargs(hyper, opts))
