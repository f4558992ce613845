"""The divergence guard of a training run: a non-finite loss stops it, and so does a finite divergence
(a mean loss far above the base model's, or a validation accuracy far below it), measured against
the model before its first update. :class:`espnet_peft.trainer.PeftTrainer` installs it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from .errors import PeftError


class TrainingDiverged(PeftError):
    """A non-finite loss, gradient or weight: the run stops instead of reporting a result."""



#: a run whose mean training or validation loss of an epoch exceeds this many times the base
#: model's validation loss, or whose validation accuracy falls below this share of the base model's,
#: diverged, even if every number stays finite (see ``FiniteGuard``)
DIVERGENCE_FACTOR = 5.0
ACCURACY_FLOOR = 0.5


class FiniteGuard:
    """Counts training forwards and optimizer steps, and raises on a non-finite loss, and on a
    finite divergence. The reference is the model before any update: PEFT starts from the
    identity (and fine-tuning every weight from the pretrained weights), so a validation pass at step 0
    (:meth:`measure_base`, before the first update) gives the base model's own loss and accuracy on
    the target data (kept in ``<output_dir>/base_loss.json`` for resumed runs). An epoch whose mean
    training or validation loss is more than ``DIVERGENCE_FACTOR`` times that loss, or whose
    validation accuracy is below ``ACCURACY_FLOOR`` times the base model's, has made the model far
    worse than the one it adapts (e.g. a learning rate far too high that stays finite), and the run
    stops as diverged instead of being merged and reported."""

    def __init__(self, model: torch.nn.Module, epoch: Optional[int] = None, base_loss_file: Optional[Path] = None):
        self.forwards = 0
        self.epoch = epoch
        self.base_file = base_loss_file
        self.base_loss: Optional[float] = None
        self.base_acc: Optional[float] = None
        if base_loss_file is not None and base_loss_file.is_file():
            rec = json.loads(base_loss_file.read_text())
            if "base_valid_loss" in rec:  # (an older record measured after updates: measured again)
                self.base_loss, self.base_acc = float(rec["base_valid_loss"]), rec.get("base_valid_acc")
        self.sums = {"train": [0.0, 0], "valid": [0.0, 0]}
        self.acc = [0.0, 0.0]  # validation accuracy: weighted sum, weight
        self.handle = model.register_forward_hook(self._hook)

    @torch.no_grad()
    def measure_base(self, model: torch.nn.Module, batches, device: str = "cpu") -> None:
        """The step-0 validation pass: the model's mean loss and accuracy on ``batches`` (ESPnet's
        ``(utt_ids, batch)`` pairs) before any update, the reference of every later check."""
        import random

        import numpy as np
        from espnet2.torch_utils.device_funcs import to_device

        # the pass must change nothing of the training: every random state is put back afterwards
        # (a data loader draws its seed from torch's generator)
        states = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
                  torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
        was_training = model.training
        model.eval()
        self.sums["valid"], self.acc = [0.0, 0], [0.0, 0.0]
        try:
            for utt_id, batch in batches:
                model(**to_device(dict(batch, utt_id=utt_id), device))
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.set_rng_state(states[2])
            if states[3] is not None:
                torch.cuda.set_rng_state_all(states[3])
        total, n = self.sums["valid"]
        self.sums["valid"] = [0.0, 0]
        model.train(was_training)
        if not n:
            return
        self.base_loss = total / n
        self.base_acc = self.acc[0] / self.acc[1] if self.acc[1] else None
        self.acc = [0.0, 0.0]
        if self.base_file is not None:
            self.base_file.parent.mkdir(parents=True, exist_ok=True)
            self.base_file.write_text(json.dumps({"base_valid_loss": self.base_loss, "base_valid_acc": self.base_acc,
                                                  "batches": n, "measured": "validation pass before the first update"})
                                      + "\n")

    def _track(self, loss: torch.Tensor, training: bool, stats=None, weight=None) -> None:
        value = float(loss.detach().float().mean())
        acc = self.sums["train" if training else "valid"]
        acc[0] += value
        acc[1] += 1
        a = stats.get("acc") if isinstance(stats, dict) else None
        if not training and a is not None:
            w = float(weight) if weight is not None else 1.0
            self.acc[0] += float(a) * w
            self.acc[1] += w

    def check(self, part: str) -> None:
        """Raise when the mean ``part`` (train / valid) loss since the last check is a finite divergence,
        or (valid) the accuracy has fallen far below the base model's."""
        total, n = self.sums[part]
        self.sums[part] = [0.0, 0]
        acc_sum, acc_w = self.acc if part == "valid" else (0.0, 0.0)
        if part == "valid":
            self.acc = [0.0, 0.0]
        if not n or self.base_loss is None or self.base_loss <= 0:
            return
        mean = total / n
        where = f" of epoch {self.epoch}" if self.epoch else ""
        if mean > DIVERGENCE_FACTOR * self.base_loss:
            raise TrainingDiverged(
                f"the mean {'training' if part == 'train' else 'validation'} loss{where} is {mean:.4g}, "
                f"{mean / self.base_loss:.1f} times the base model's {self.base_loss:.4g} (its validation loss "
                f"before the first update; limit {DIVERGENCE_FACTOR:g}x): the run diverged though every number "
                f"stayed finite (lower the learning rate)")
        if acc_w and self.base_acc:
            acc = acc_sum / acc_w
            if acc < ACCURACY_FLOOR * self.base_acc:
                raise TrainingDiverged(
                    f"the validation accuracy{where} is {acc:.4g}, below {ACCURACY_FLOOR:g} times the base model's "
                    f"{self.base_acc:.4g} (before the first update): the run diverged though every number stayed "
                    f"finite (lower the learning rate)")

    def _hook(self, module, inputs, output):
        if isinstance(output, dict):
            loss, stats, weight = output.get("loss"), output.get("stats"), output.get("weight")
        elif isinstance(output, (tuple, list)):
            loss = output[0]
            stats = output[1] if len(output) > 1 else None
            weight = output[2] if len(output) > 2 else None
        else:
            loss = stats = weight = None
        if module.training:
            self.forwards += 1
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all()):
            value = loss.detach().float().mean().item()
            where = f" in epoch {self.epoch}" if self.epoch else ""
            what = f"the training loss is {value} at batch {self.forwards}" if module.training else \
                f"the validation loss is {value}"
            raise TrainingDiverged(f"{what}{where}: the run diverged (lower the learning rate, or check the data)")
        if isinstance(loss, torch.Tensor) and loss.numel():
            self._track(loss, module.training, stats, weight)

    def remove(self):
        self.handle.remove()

