"""Full fine-tuning as a baseline method: every parameter of the targeted modules trains."""
from __future__ import annotations

from typing import Dict, Mapping

import torch
from torch import nn

from .base import Method, PeftError


class Full(Method):
    name = "full"
    hyper_keys = ()
    budgeted = False
    summary = "all parameters of the targeted modules trainable (baseline)"
    options = {}

    def supports(self, module: nn.Module) -> bool:
        return any(True for _ in module.parameters())

    def shape(self, module: nn.Module):
        return (sum(p.numel() for p in module.parameters()),)

    def count(self, shape, hyper, opts) -> int:
        return shape[0]

    def max_hyper(self, shape, opts):
        return {}

    def solve(self, shape, budget, opts):
        raise PeftError("method 'full' has no budget knob: give target_modules and no budget")

    def explicit(self, shape, values, opts):
        return {}

    def validate(self, shape, hyper) -> None:
        return None

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
