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

from .state import base_mismatch, peft_state_dict


def _save_hook(module, state_dict, prefix, local_metadata):
    keep = peft_state_dict(module, clone=False)
    for k in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[k]
    for k, v in keep.items():
        state_dict[prefix + k] = v
    return state_dict


def _load_pre_hook(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
    problem, rest = base_mismatch(module, state_dict, prefix)
    for k in set(state_dict) - set(rest):  # the base record is not a tensor of the model
        del state_dict[k]
    if problem:
        error_msgs.append(problem)


def _load_post_hook(module, incompatible):
    expected = set(peft_state_dict(module, clone=False))
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


def complete_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The model's complete state dict, hooks or not."""
    hooks = getattr(model, "_peft_checkpoint_hooks", None)
    if not hooks:
        return model.state_dict()
    remove_adapter_only_checkpointing(model)
    try:
        return model.state_dict()
    finally:
        install_adapter_only_checkpointing(model)
