"""Adapter-only checkpoints inside ESPnet's trainer.

ESPnet saves ``model.state_dict()`` every epoch (``{epoch}epoch.pth``, ``checkpoint.pth``),
averages the n best of those files, and resumes with a strict ``load_state_dict``. Installing
these hooks on a PEFT model makes ``state_dict()`` return only the adapter state (plus the
base-model fingerprints), and makes ``load_state_dict`` accept such a state: the frozen
pretrained tensors, which the model already holds, are not expected; a state trained on
another base model is refused.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from .inject import get_plan
from .methods import get_method
from .methods.base import fingerprints_match
from .state import FINGERPRINT, SCHEDULE, peft_state_dict


def adapter_keys(model: nn.Module) -> Dict[str, None]:
    plan = get_plan(model)
    modules = dict(model.named_modules())
    keys: Dict[str, None] = {}
    for row in plan.rows:
        keys.update({f"{row.name}.{k}": None for k in get_method(row.method).trainable_state(modules[row.name])})
        keys[f"{row.name}.{FINGERPRINT}"] = None
    if getattr(model, "peft_schedule", None) is not None:
        keys[f"{SCHEDULE}.batches"] = None
    return keys


def _save_hook(module, state_dict, prefix, local_metadata):
    keep = peft_state_dict(module, clone=False)
    for k in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[k]
    for k, v in keep.items():
        state_dict[prefix + k] = v
    return state_dict


def _load_pre_hook(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
    plan = get_plan(module)
    bad = []
    for row in plan.rows:
        key = f"{prefix}{row.name}.{FINGERPRINT}"
        fp = state_dict.pop(key, None)
        if fp is None:
            continue
        own = plan.fingerprints[row.name]
        theirs = [tuple(r) for r in fp.tolist()]
        if len(own) != len(theirs) or not all(fingerprints_match(a, b) for a, b in zip(own, theirs)):
            bad.append(row.name)
    if bad:
        error_msgs.append(f"the checkpoint was trained on another base model: the pretrained weights of "
                          f"{len(bad)} adapted module(s) differ, e.g. {bad[:3]}")


def _load_post_hook(module, incompatible):
    expected = adapter_keys(module)
    # frozen pretrained tensors are not part of an adapter-only state: not missing
    incompatible.missing_keys[:] = [k for k in incompatible.missing_keys
                                    if k in expected or (k.startswith("module.") and k[7:] in expected)]


def install_adapter_only_checkpointing(model: nn.Module) -> None:
    """Make ``model.state_dict()`` adapter-only and ``model.load_state_dict`` accept it."""
    if getattr(model, "_peft_checkpoint_hooks", None):
        return
    model._peft_checkpoint_hooks = (
        model._register_state_dict_hook(_save_hook),
        model._register_load_state_dict_pre_hook(_load_pre_hook, with_module=True),
        model.register_load_state_dict_post_hook(_load_post_hook),
    )


def remove_adapter_only_checkpointing(model: nn.Module) -> None:
    for h in getattr(model, "_peft_checkpoint_hooks", None) or ():
        h.remove()
    model._peft_checkpoint_hooks = None


def full_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The model's complete state dict, hooks or not."""
    hooks = getattr(model, "_peft_checkpoint_hooks", None)
    if not hooks:
        return model.state_dict()
    remove_adapter_only_checkpointing(model)
    try:
        return model.state_dict()
    finally:
        install_adapter_only_checkpointing(model)
