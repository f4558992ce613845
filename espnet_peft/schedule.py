"""Speech-FT stage 1: train the head first, with the encoder frozen, for a number of batches.

``schedule: {frozen_encoder_steps: N}`` in a PEFT config (any method, ``full`` included) keeps
every trainable parameter under ``encoder.`` (``frozen_prefix``) without gradient for the first
``N`` training forward passes (batches; with ``--accum_grad k`` that is ``N / k`` optimizer
steps), then lets it train. Only the head (decoder, CTC, and their adapters) learns at first,
which limits how far the encoder's representations drift (Speech-FT, TASLP 2025); stage 2 is
the weight-space interpolation of ``espnet_peft.bin.merge --alpha``.

The batch counter is a buffer of a small module attached to the model (``peft_schedule``); it
is saved in adapter checkpoints, so a resumed run continues the schedule where it stopped, and
``merge_peft`` removes it.
"""
from __future__ import annotations

from typing import List, Mapping

import torch
from torch import nn

from .errors import PeftError

SCHEDULE_KEYS = ("frozen_encoder_steps", "frozen_prefix")


def parse_schedule(raw) -> dict:
    if not raw:
        return {}
    if not isinstance(raw, Mapping):
        raise PeftError("schedule must be a mapping, e.g. {frozen_encoder_steps: 500}")
    bad = sorted(set(raw) - set(SCHEDULE_KEYS))
    if bad:
        raise PeftError(f"unknown schedule key(s) {bad}; valid: {', '.join(SCHEDULE_KEYS)}")
    steps = raw.get("frozen_encoder_steps", 0)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise PeftError(f"schedule.frozen_encoder_steps must be a non-negative int, got {steps!r}")
    return {"frozen_encoder_steps": steps, "frozen_prefix": str(raw.get("frozen_prefix", "encoder"))}


class FreezeSchedule(nn.Module):
    """Counts training batches; keeps ``prefix`` parameters frozen for the first ``steps``."""

    def __init__(self, steps: int, prefix: str):
        super().__init__()
        self.steps, self.prefix = int(steps), prefix
        self.register_buffer("batches", torch.zeros((), dtype=torch.long))
        self._params: List[nn.Parameter] = []

    def attach(self, model: nn.Module) -> None:
        self._params = [p for n, p in model.named_parameters()
                        if p.requires_grad and (n == self.prefix or n.startswith(self.prefix + "."))]
        if not self._params:
            raise PeftError(f"schedule: no trainable parameter under {self.prefix!r} to hold back")
        self._hook = model.register_forward_pre_hook(self._before_forward)
        # DDP only synchronises parameters that require grad when it is built: under DDP the
        # held-back gradients are zeroed instead of not computed
        self._mask = torch.distributed.is_available() and torch.distributed.is_initialized()
        if self._mask:
            self._grad_hooks = [p.register_hook(self._mask_grad) for p in self._params]
        self._apply_state()

    def _mask_grad(self, grad):
        return torch.zeros_like(grad) if self.frozen else grad

    @property
    def frozen(self) -> bool:
        return int(self.batches) < self.steps

    def _apply_state(self) -> None:
        if not getattr(self, "_mask", False):
            for p in self._params:
                p.requires_grad_(not self.frozen)

    def _before_forward(self, model, args) -> None:
        if model.training and torch.is_grad_enabled():
            self._apply_state()
            self.batches += 1

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._apply_state()  # a resumed run continues the schedule

    def detach_from(self, model: nn.Module) -> None:
        for h in [getattr(self, "_hook", None)] + list(getattr(self, "_grad_hooks", [])):
            if h is not None:
                h.remove()
        for p in self._params:
            p.requires_grad_(True)
