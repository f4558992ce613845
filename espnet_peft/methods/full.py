"""Full fine-tuning as a baseline method: every parameter of the targeted modules trains."""
from __future__ import annotations

from typing import Dict, Mapping

import torch
from torch import nn

from ..errors import PeftError
from .base import Method


class Full(Method):
    name = "full"
    budgeted = False
    gain_reference = True
    bench_targets = ("encoder", "decoder", "ctc")

    def supports(self, module: nn.Module) -> bool:
        return any(True for _ in module.parameters())

    def shape(self, module: nn.Module):
        return (sum(p.numel() for p in module.parameters()),)

    def count(self, shape, hyper, opts) -> int:
        return shape[0]

    def solve(self, shape, budget, opts):
        raise PeftError("method 'full' has no budget knob: give target_modules and no budget")

    def explicit(self, shape, values, opts):
        return {}

    def step_flops(self, rows, tokens, linears):
        """The weight gradients ``2 T d_out d_in`` of every linear layer the plan trains (of every
        linear layer of the model without a plan)."""
        names = None if rows is None else [r["name"] for r in rows]
        inside = lambda n: names is None or any(n == r or n.startswith(r + ".") for r in names)  # noqa: E731
        return float(sum(2 * tokens.get(n, 0) * s[0] * s[1] for n, s in linears.items() if inside(n)))

    def build(self, module, hyper, opts):
        for p in module.parameters():
            p.requires_grad_(True)
        return module

    def merge(self, module: nn.Module) -> nn.Module:
        return module

    def trainable_state(self, module: nn.Module) -> Dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in module.state_dict().items()}

    def load_trainable_state(self, module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
        module.load_state_dict(dict(state), strict=True)
