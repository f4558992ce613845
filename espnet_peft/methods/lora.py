"""LoRA: ``W' = W + s B A`` (loralib-compatible ``lora_A`` / ``lora_B``)."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .base import AdaptedLinear, Reference
from .options import Flag, Number, Option, Options
from .sizing import PerUnitCost

OPTIONS = Options(
    Option("alpha", None, Number(0, low_open=True, null=True),
           "scaling numerator: `s = alpha / r` (`alpha / sqrt(r)` with `rslora`); null: `alpha = r`, i.e. `s = 1`"),
    Option("rslora", False, Flag(), "rank-stabilised scaling `alpha / sqrt(r)`"),
    Option("dropout", 0.0, Number(0, 1, high_open=True), "dropout on the input of the low-rank branch only"),
)


def lora_scaling(r: int, alpha: Optional[float], rslora: bool) -> float:
    if r == 0:
        return 0.0
    alpha = float(r if alpha is None else alpha)
    return alpha / math.sqrt(r) if rslora else alpha / r


class LoRALinear(AdaptedLinear):
    """``y = W x + b + s * B A drop(x)``; ``A: r x d_in`` Kaiming-uniform, ``B: d_out x r`` zero."""

    options = OPTIONS

    def __init__(self, base: nn.Linear, r: int, **options):
        super().__init__(base, {"r": r}, options)
        self.r = r
        self.scaling = lora_scaling(r, self.opts["alpha"], self.opts["rslora"])
        a = torch.empty(r, self.in_features, **self.factory())
        self.lora_A = nn.Parameter(nn.init.kaiming_uniform_(a, a=math.sqrt(5)))  # nn.Linear's init, as loralib's
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, **self.factory()))
        p = self.opts["dropout"]
        self.lora_dropout = nn.Dropout(p) if p > 0 else nn.Identity()

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


class LoRAFamily(PerUnitCost):
    """Methods parameterised by a rank ``r``: ``r (d_in + d_out)`` parameters plus ``fixed``."""

    hyper_keys = ("r",)
    aliases = {"rank": "r"}
    options = OPTIONS
    layer = LoRALinear

    def unit(self, shape, opts) -> int:
        return shape[0] + shape[1]

    def flops(self, shape, hyper, tokens: int) -> float:
        """The branch forward, its input gradient, dA and dB: ``6 T r (d_in + d_out)``."""
        return 6 * tokens * hyper["r"] * (shape[0] + shape[1])


def hf_peft(use_dora: bool) -> Reference:
    """HF PEFT's LoRA (or DoRA) on the modules and with the ranks of our plan (alpha = r)."""

    def setup(model: nn.Module, config, planner):
        from peft import LoraConfig, inject_adapter_in_model

        plan = planner.plan_peft(model, config)
        ranks = {r.name: r.hyper["r"] for r in plan.rows}
        cfg = LoraConfig(target_modules=list(ranks), r=max(ranks.values()), lora_alpha=max(ranks.values()),
                         rank_pattern={f"^{n}$": k for n, k in ranks.items()},
                         alpha_pattern={f"^{n}$": k for n, k in ranks.items()}, use_dora=use_dora)
        for p in model.parameters():
            p.requires_grad_(False)
        inject_adapter_in_model(cfg, model)
        return plan

    return Reference(setup, needs="peft")


class LoRA(LoRAFamily):
    name = "lora"
    references = {"hf_lora": hf_peft(use_dora=False)}
