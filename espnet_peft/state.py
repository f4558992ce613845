"""Adapter-only state: save the trainable tensors, load them onto the same pretrained model.

The state is a flat ``{key: tensor}`` dict whose keys are the model's own state-dict keys
(``encoder.encoders.0.attn.linear_q.lora_A``), so it also loads with
``model.load_state_dict(state, strict=False)``; plus one ``<module>.peft_base_fingerprint``
float64 tensor per adapted module, a summary of the pretrained weights the adapter was trained
on. Loading onto a model whose pretrained weights differ is refused with a clear error.
"""
from __future__ import annotations

from typing import Dict, Mapping

import torch
from torch import nn

from .inject import get_plan
from .methods import get_method
from .methods.base import PeftError, fingerprints_match

FINGERPRINT = "peft_base_fingerprint"
SCHEDULE = "peft_schedule"


def _fingerprint_tensor(fps) -> torch.Tensor:
    return torch.tensor([list(fp) for fp in fps], dtype=torch.float64)


def peft_state_dict(model: nn.Module, clone: bool = True) -> Dict[str, torch.Tensor]:
    """The trainable adapter state of ``model`` (detached; cloned unless ``clone=False``)."""
    plan = get_plan(model)
    base = getattr(model, "module", model)
    modules = dict(base.named_modules())
    state: Dict[str, torch.Tensor] = {}
    for row in plan.rows:
        for k, v in get_method(row.method).trainable_state(modules[row.name]).items():
            state[f"{row.name}.{k}"] = v.detach().clone() if clone else v.detach()
        state[f"{row.name}.{FINGERPRINT}"] = _fingerprint_tensor(plan.fingerprints[row.name])
    schedule = getattr(base, "peft_schedule", None)
    if schedule is not None:
        state[f"{SCHEDULE}.batches"] = schedule.batches.detach().clone()
    return state


def is_peft_key(key: str, model: nn.Module) -> bool:
    """Whether a model state-dict key belongs to the adapter-only state."""
    plan = get_plan(model)
    return any(key.startswith(r.name + ".") for r in plan.rows)


@torch.no_grad()
def load_peft_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load an adapter-only state onto ``model`` (already wrapped with the same config)."""
    plan = get_plan(model)
    base = getattr(model, "module", model)
    modules = dict(base.named_modules())
    per_module: Dict[str, Dict[str, torch.Tensor]] = {r.name: {} for r in plan.rows}
    foreign = []
    names = sorted(per_module, key=len, reverse=True)
    schedule_state = {k: v for k, v in state.items() if k.startswith(SCHEDULE + ".")}
    state = {k: v for k, v in state.items() if not k.startswith(SCHEDULE + ".")}
    schedule = getattr(base, "peft_schedule", None)
    if schedule is not None and schedule_state:
        schedule.load_state_dict({k[len(SCHEDULE) + 1:]: v for k, v in schedule_state.items()})
    for key, value in state.items():
        owner = next((n for n in names if key.startswith(n + ".")), None)
        if owner is None:
            foreign.append(key)
        else:
            per_module[owner][key[len(owner) + 1:]] = value
    if foreign:
        raise PeftError(f"the adapter state has {len(foreign)} tensor(s) for modules this model's plan does not "
                        f"adapt (another PEFT config?), e.g. {foreign[:3]}")
    missing = [n for n, s in per_module.items() if not s]
    if missing:
        raise PeftError(f"the adapter state has nothing for {len(missing)} planned module(s) (another PEFT "
                        f"config?), e.g. {missing[:3]}")
    mismatched = []
    for name, sub in per_module.items():
        fp = sub.pop(FINGERPRINT, None)
        if fp is not None:
            own = plan.fingerprints[name]
            theirs = [tuple(r) for r in fp.tolist()]
            if len(own) != len(theirs) or not all(fingerprints_match(a, b) for a, b in zip(own, theirs)):
                mismatched.append(name)
    if mismatched:
        raise PeftError(f"the adapter was trained on another base model: the pretrained weights of "
                        f"{len(mismatched)} of {len(per_module)} adapted module(s) differ, e.g. {mismatched[:3]}")
    rows = {r.name: r for r in plan.rows}
    for name, sub in per_module.items():
        get_method(rows[name].method).load_trainable_state(modules[name], sub)
