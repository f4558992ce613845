"""LoRA: ``W' = W + s B A`` (loralib-compatible ``lora_A`` / ``lora_B``)."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

import torch
from torch import nn

from .base import AdaptedLinear, Hyper, Method, PeftError, kaiming_uniform_, lora_scaling


class LoRALinear(AdaptedLinear):
    """``y = W x + b + s * B A drop(x)``; ``A: r x d_in`` Kaiming-uniform, ``B: d_out x r`` zero."""

    def __init__(self, base: nn.Linear, r: int, alpha: Optional[float] = None, rslora: bool = False,
                 dropout: float = 0.0):
        super().__init__(base, {"r": r})
        self.r = r
        self.scaling = lora_scaling(r, alpha, rslora)
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.lora_A = nn.Parameter(kaiming_uniform_(torch.empty(r, self.in_features, **factory)))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, **factory))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        return (self.lora_dropout(x) @ self.lora_A.t() @ self.lora_B.t()) * self.scaling

    def add_delta(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``y + delta(x)`` with one ``T x d_out`` pass: the scaling applied to the ``T x r``
        projection and the sum fused into the last product (``addmm``), instead of three
        ``T x d_out`` temporaries (product, scaled product, sum) forward and one more backward."""
        xa = nn.functional.linear(self.lora_dropout(x), self.lora_A) * self.scaling
        out = torch.addmm(y.reshape(-1, y.shape[-1]), xa.reshape(-1, self.r).to(y.dtype), self.lora_B.t().to(y.dtype))
        return out.view(y.shape)

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling


class LoRAFamily(Method):
    """Shared counting for methods parameterised by a rank ``r`` (LoRA, PiSSA, DoRA)."""

    hyper_keys = ("r",)
    options = {"alpha": None, "rslora": False, "dropout": 0.0}

    def fixed_cost(self, shape: Tuple[int, ...]) -> int:
        """Parameters on top of ``r (d_in + d_out)`` (DoRA: the magnitude vector)."""
        return 0

    def count(self, shape, hyper: Hyper, opts) -> int:
        d_out, d_in = shape
        return hyper["r"] * (d_in + d_out) + self.fixed_cost(shape)

    def max_hyper(self, shape, opts) -> Hyper:
        return {"r": min(shape)}

    def solve(self, shape, budget: float, opts) -> Optional[Hyper]:
        d_out, d_in = shape
        r = int((budget - self.fixed_cost(shape)) // (d_in + d_out)) if budget >= self.fixed_cost(shape) else 0
        r = min(r, min(shape))
        return {"r": r} if r >= 1 else None

    def grow(self, shape, hyper: Hyper, opts) -> Optional[Hyper]:
        return {"r": hyper["r"] + 1} if hyper["r"] < min(shape) else None

    def explicit(self, shape, values: Mapping[str, Any], opts) -> Hyper:
        values = dict(values)
        if values.get("r") is None:
            values["r"] = values.get("rank")
        hyper = super().explicit(shape, values, opts)
        if hyper["r"] < 1:
            raise PeftError(f"{self.name}: rank must be at least 1")
        return hyper

    def layer_kwargs(self, hyper: Hyper, opts: Mapping[str, Any]) -> dict:
        return {"r": hyper["r"], "alpha": opts.get("alpha"), "rslora": bool(opts.get("rslora")),
                "dropout": float(opts.get("dropout") or 0.0)}


class LoRA(LoRAFamily):
    name = "lora"
    summary = "W + (alpha/r) B A; A Kaiming-uniform, B zero"

    def build(self, module, hyper, opts):
        return LoRALinear(module, **self.layer_kwargs(hyper, opts))
