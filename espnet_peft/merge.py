"""Merging wrappers into plain modules, and weight-space interpolation (Speech-FT stage 2)."""
from __future__ import annotations

from typing import Dict, Mapping

import torch
from torch import nn

from .errors import PeftError
from .inject import set_module, get_plan, release_norm_statistics
from .methods import get_method


@torch.no_grad()
def merge_peft(model: nn.Module) -> nn.Module:
    """Replace every wrapper by a plain ``nn.Linear`` computing the same function, in place.

    The result is a stock model: no ``espnet_peft`` class remains in it, its state-dict keys
    are the original model's, and every parameter is trainable again.
    """
    base = getattr(model, "module", model)
    plan = get_plan(base)
    modules = dict(base.named_modules())
    for row in plan.rows:
        set_module(base, row.name, get_method(row.method).merge(modules[row.name]))
    release_norm_statistics(base)
    schedule = getattr(base, "peft_schedule", None)
    if schedule is not None:
        schedule.detach_from(base)
        del base.peft_schedule
    for p in base.parameters():
        p.requires_grad_(True)
    del base.peft_plan
    return model


def interpolate_state(pretrained: Mapping[str, torch.Tensor], adapted: Mapping[str, torch.Tensor],
                      alpha: float) -> Dict[str, torch.Tensor]:
    """``theta_pre + alpha (theta_adapted - theta_pre)`` on every floating tensor.

    Both states must have the same keys and shapes (a merged model and its pretrained model).
    Integer tensors (counters) are taken from the adapted state.
    """
    if not 0.0 <= alpha <= 1.0:
        raise PeftError(f"alpha must lie in [0, 1], got {alpha}")
    missing = sorted(set(adapted) ^ set(pretrained))
    if missing:
        raise PeftError(f"pretrained and adapted models differ in their tensors: {missing[:5]}")
    out = {}
    for k, a in adapted.items():
        p = pretrained[k]
        if tuple(p.shape) != tuple(a.shape):
            raise PeftError(f"tensor {k} has shape {tuple(p.shape)} pretrained and {tuple(a.shape)} adapted")
        if a.is_floating_point():
            out[k] = (p.to(torch.float64) + alpha * (a.to(torch.float64) - p.to(torch.float64))).to(a.dtype)
        else:
            out[k] = a.clone()
    return out
