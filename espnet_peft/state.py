"""Adapter-only state: save the trainable tensors, load them onto the same pretrained model.

The state is a flat ``{key: tensor}`` dict whose keys are the model's own state-dict keys
(``<adapted module>.<adapter tensor>``), so it also loads with
``model.load_state_dict(state, strict=False)``; plus the ``peft_base_fingerprint`` table, a row
per tensor of the pretrained model (``espnet_peft.fingerprint``): loading onto a model whose
pretrained weights differ anywhere is refused, naming the modules that differ; and the
``peft_adapter_config`` record (``espnet_peft.provenance``): method, canonical PEFT config and its
hash, per-module hyperparameters. Loading onto a model wrapped with another config is refused,
naming what differs.
"""
from __future__ import annotations

from typing import Dict, Mapping

import torch
from torch import nn

from . import fingerprint, provenance
from .errors import PeftError
from .inject import get_plan
from .methods import get_method

SCHEDULE = "peft_schedule"


def peft_state_dict(model: nn.Module, clone: bool = True) -> Dict[str, torch.Tensor]:
    """The trainable adapter state of ``model`` (detached; cloned unless ``clone=False``)."""
    plan = get_plan(model)
    base = getattr(model, "module", model)
    modules = dict(base.named_modules())
    state: Dict[str, torch.Tensor] = {}
    for row in plan.rows:
        for k, v in get_method(row.method).trainable_state(modules[row.name]).items():
            state[f"{row.name}.{k}"] = v.detach().clone() if clone else v.detach()
    state.update(fingerprint.to_state(plan.fingerprints))
    state.update(provenance.to_state(plan))
    schedule = getattr(base, "peft_schedule", None)
    if schedule is not None:
        state[f"{SCHEDULE}.batches"] = schedule.batches.detach().clone()
    return state


def base_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor], prefix: str = ""):
    """``(problem or None, the state without its base record)``: whether ``state`` was trained on
    the pretrained model that ``model``'s plan was applied to."""
    theirs, rest = fingerprint.take(state, prefix)
    return fingerprint.mismatch(get_plan(model).fingerprints, theirs), rest


def record_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor], prefix: str = ""):
    """``(problem or None, the state without its records)``: whether ``state`` was trained on the
    pretrained model that ``model``'s plan was applied to, and with the same PEFT config (method,
    canonical config hash, every module's hyperparameters). A state without a config record (written
    before states carried one) is compared on the base model only, with a logged warning."""
    problem, rest = base_mismatch(model, state, prefix)
    theirs, rest = provenance.take(rest, prefix)
    return problem or provenance.mismatch(get_plan(model), theirs), rest


@torch.no_grad()
def load_peft_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load an adapter-only state onto ``model`` (already wrapped with the same config)."""
    plan = get_plan(model)
    base = getattr(model, "module", model)
    problem, state = record_mismatch(base, state)
    if problem:
        raise PeftError(problem)
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
    rows = {r.name: r for r in plan.rows}
    for name, sub in per_module.items():
        try:
            get_method(rows[name].method).load_trainable_state(modules[name], sub)
        except PeftError as e:
            raise PeftError(f"{name}: {e}") from None
