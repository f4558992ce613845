"""ESPnet tasks that train PEFT models with ESPnet's own trainer.

``PeftASRTask`` / ``PeftS2TTask`` are ESPnet's ``ASRTask`` / ``S2TTask`` plus three options:

* ``--pretrained_model FILE``  the pretrained ``model.pth`` (a state dict; ESPnet format)
* ``--pretrained_config FILE`` its ``config.yaml`` (default: ``config.yaml`` beside the model)
* ``--peft_config FILE``       the PEFT config (``conf/peft/*.yaml``)

The model is built from the pretrained config (the architecture, token list, tokenizer and
frontend come from there; training options from the user's ``--config``), the pretrained
weights are loaded (strictly: a model that does not match its config is an error), then the
PEFT plan is applied and logged, everything else frozen. That all happens inside
``build_model``, i.e. before ESPnet builds the optimizer, so ESPnet's trainer, schedulers,
``--resume``, ``--ngpu`` / DDP, AMP and n-best averaging work unchanged. Checkpoints hold the
adapter state only (see :mod:`espnet_peft.checkpoint`).

An experiment is self-contained: training freezes the PEFT config into
``<output_dir>/peft_config.yaml`` and records that copy in ``config.yaml``; everything that
rebuilds the model later (``build_model_from_file`` for inference, ``espnet_peft.bin.merge``)
reads the frozen copy beside ``config.yaml``, never the user's editable file.

What is refused before compute (see the README, "Reliability"): bad data (missing, unreadable,
wrong sample rate or channel count), a changed PEFT config on resume, a second trainer on the same
output directory. During training, :class:`PeftTrainer` stops the run on a non-finite loss,
gradient or weight (ESPnet skips such steps and carries on) and names an unreadable resume
checkpoint. Model and adapter files load with ``torch.load(weights_only=True)``; only ESPnet's
own resume ``checkpoint.pth`` (written by the training run itself) goes through pickle.
"""
from __future__ import annotations

import argparse
import errno
import fcntl
import json
import logging
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch
import yaml
from espnet2.train.trainer import Trainer

from .checkpoint import atomic_saves, install_adapter_only_checkpointing
from .config import PeftConfig, read_config
from .data import DataError, error_text, read_table, validate_data_triplets
from .inject import apply_peft
from .markers import DIVERGED
from .errors import PeftError

#: architecture keys besides the task's class choices (and their ``_conf``)
ARCH_EXTRA = ("token_list", "input_size", "ctc_conf", "joint_net_conf", "model_conf", "token_type", "bpemodel",
              "non_linguistic_symbols", "cleaner", "g2p", "init", "use_preprocessor")
#: keys a fine-tuning run may change relative to the pretrained config (no weights depend on them)
OVERRIDABLE = ("specaug", "specaug_conf", "model_conf", "preprocessor_conf", "init")
#: dict-valued overridable keys: the user's entries update the pretrained ones
MERGED = ("model_conf", "preprocessor_conf")
#: set by a training entry point: build_model then writes the plan next to the checkpoints
TRAINING_ENV = "ESPNET_PEFT_TRAINING"
#: the PEFT config an experiment was trained with, frozen in its directory
FROZEN_PEFT_CONFIG = "peft_config.yaml"
#: held by a training run in its output directory
TRAIN_LOCK = "train.lock"

log = logging.getLogger("espnet_peft")  # a named logger: never configures the root logger ESPnet sets up


class TrainingDiverged(PeftError):
    """A non-finite loss, gradient or weight: the run stops instead of reporting a result."""


def _str_or_none(v: str) -> Optional[str]:
    return None if v.strip().lower() in ("none", "null", "") else v


def describe_error(e: BaseException) -> str:
    """``Type: message`` of an exception, safe against a ``__str__`` that raises."""
    text = error_text(e)
    return text if text == type(e).__name__ else f"{type(e).__name__}: {text}"


def load_yaml(path: os.PathLike) -> Dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise PeftError(f"{path} is not an ESPnet config (no mapping at the top level)")
    return data


def resolve_pretrained(model: Optional[str], config: Optional[str]) -> (Path, Path):
    if not model:
        raise PeftError("--pretrained_model is required: the pretrained ESPnet model file (model.pth) to adapt")
    m = Path(model)
    if m.is_dir():
        cands = sorted(m.glob("*.pth"))
        if len(cands) != 1:
            raise PeftError(f"--pretrained_model {m} is a directory with {len(cands)} .pth files; name the file")
        m = cands[0]
    if not m.is_file():
        raise PeftError(f"--pretrained_model not found: {m}")
    c = Path(config) if config else m.parent / "config.yaml"
    if not c.is_file():
        raise PeftError(f"pretrained config not found: {c} (pass --pretrained_config)")
    return m, c


def load_state_file(path: os.PathLike, what: str = "model file") -> Dict[str, torch.Tensor]:
    """A state dict (model, adapter or averaged checkpoint) loaded with ``weights_only=True``: a
    file that holds anything but tensors and plain containers is refused, not executed."""
    p = Path(path)
    if not p.is_file():
        raise PeftError(f"{what} not found: {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # random bytes raise anything: IndexError, KeyError, UnicodeDecodeError, ...
        text = describe_error(e)
        code = _pickled_code(text)
        if code:
            raise PeftError(f"refusing to load {what} {p}: it holds Python objects besides tensors ({code}), and "
                            f"loading them would run code from the file (torch.load weights_only=True). Model and "
                            f"adapter files are plain state dicts (N.epoch.pth, *.best.pth, *.ave.pth, model.pth); an "
                            f"ESPnet resume checkpoint.pth is read only by the training run that wrote it") from None
        if isinstance(e, OSError) and e.errno in _UNREADABLE:  # not the content (a truncated zip gives EINVAL)
            raise PeftError(f"cannot read {what} {p}: {e.strerror or text}") from None
        raise PeftError(f"cannot read {what} {p}: the file is truncated or corrupt, it is not a valid checkpoint "
                        f"({_first_reason(e)})") from None
    if isinstance(state, dict) and "module" in state and isinstance(state["module"], dict):
        state = state["module"]  # deepspeed
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PeftError(f"{what} {p} is not a valid checkpoint: it does not hold a state dict (name -> tensor)")
    return state


#: reading the file failed, whatever it holds
_UNREADABLE = (errno.EACCES, errno.EPERM, errno.EIO, errno.EISDIR, errno.ENOENT)


def _pickled_code(error_text: str) -> Optional[str]:
    """What a weights-only load refused to run (``posix.system``), or None when the error is not about
    code in the file (random bytes also fail the weights-only unpickler, on opcodes it cannot read)."""
    m = re.search(r"GLOBAL ([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+) (?:was not an allowed global|whose module)", error_text)
    if m:
        return m.group(1)
    m = re.search(r"(Trying to call reduce for unrecognized function [^\n]*|Can only (?:create new object|build)"
                  r"[^\n]*)", error_text)
    return m.group(1)[:120] if m else None


def _first_reason(e: BaseException) -> str:
    """What failed, in a line: torch's weights-only message puts the reason after its boilerplate."""
    text = error_text(e)
    m = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    lines = [m.group(1)] if m else [l for l in text.splitlines() if l.strip() and not any(
        b in l for b in ("Weights only load failed", "Please file an issue", "Check the documentation"))]
    reason = (lines[0] if lines else text).strip()[:160]
    return f"{type(e).__name__}: {reason}" if reason and reason != type(e).__name__ else type(e).__name__


def load_pretrained_weights(model: torch.nn.Module, path: os.PathLike) -> None:
    """Strictly load a pretrained state dict; a config / model mismatch is a clear error."""
    state = load_state_file(path, "pretrained model")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensor(s) the config's model has but the file lacks, e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} tensor(s) in the file the config's model lacks, e.g. {unexpected[:3]}")
        if shape:
            parts.append("shape mismatches: " + ", ".join(
                f"{k} {tuple(state[k].shape)} in the file vs {tuple(own[k].shape)} in the model" for k in shape[:3]))
        raise PeftError(f"the pretrained model {path} does not match its config: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def experiment_config(config_file: os.PathLike) -> Dict[str, Any]:
    """An experiment's ``config.yaml`` with ``peft_config`` pointing at the frozen copy beside it
    (the config the adapter was trained with), whatever path the file records."""
    config_file = Path(config_file)
    cfg = load_yaml(config_file)
    if cfg.get("peft_config"):
        frozen = config_file.parent / FROZEN_PEFT_CONFIG
        if not frozen.is_file():
            raise PeftError(f"{config_file} belongs to a PEFT experiment, but the PEFT config it was trained with "
                            f"({frozen}, written by the training run) is missing; the user's "
                            f"{cfg['peft_config']} may have been edited since, so it is not used")
        cfg["peft_config"] = str(frozen)
    return cfg


def config_differences(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}" for k in keys if old.get(k) != new.get(k)]


def check_resume_config(output_dir: os.PathLike, peft_config: Any) -> None:
    """Resuming ``output_dir`` with another PEFT config than the one frozen there is refused."""
    out = Path(output_dir)
    frozen = out / FROZEN_PEFT_CONFIG
    if not ((out / "checkpoint.pth").is_file() and frozen.is_file()):
        return
    old = read_config(frozen)  # a key given twice there is an error, as in any PEFT config file
    new = PeftConfig.from_any(peft_config).to_dict()
    diff = config_differences(old, new)
    if diff:
        raise PeftError(f"{out} holds a run trained with another PEFT config ({frozen}): {'; '.join(diff)}. Resuming "
                        f"would load its checkpoint into another model; move {out} away or train into another "
                        f"directory (recipes: --tag), or resume with --peft_config {frozen}")


def expected_sample_rate(args: argparse.Namespace) -> Optional[int]:
    """The sample rate the model's frontend assumes (None for frontends without one)."""
    if getattr(args, "frontend", "default") not in (None, "default"):
        return None
    fs = (getattr(args, "frontend_conf", None) or {}).get("fs", 16000)
    if isinstance(fs, str):
        import humanfriendly

        fs = humanfriendly.parse_size(fs)
    return int(fs)


def untokenizable_text(text_files: Iterable[str], args: argparse.Namespace, max_report: int = 5) -> List[str]:
    """Non-ASCII characters of the transcripts that the model's tokenizer maps to <unk>, per file."""
    token_type = getattr(args, "token_type", None)
    known = None
    if token_type == "bpe" and getattr(args, "bpemodel", None) and Path(args.bpemodel).is_file():
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(args.bpemodel))

        def known(ch: str) -> bool:
            return sp.unk_id() not in sp.encode(ch)
    elif token_type == "char" and isinstance(getattr(args, "token_list", None), list):
        tokens = set(args.token_list)

        def known(ch: str) -> bool:
            return ch in tokens
    if known is None:
        return []
    out = []
    for path in text_files:
        table = read_table(path)
        used = {c for v in table.values() for c in v if ord(c) > 127 and not c.isspace()}
        unknown = sorted(c for c in used if not known(c))
        if unknown:
            utts = sorted(k for k, v in table.items() if any(c in v for c in unknown))
            out.append(f"{path}: {len(utts)} of {len(table)} transcript(s) contain characters the tokenizer does not "
                       f"know ({' '.join(unknown[:20])}), e.g. {utts[:max_report]}; they train as <unk>")
    return out


#: a run whose mean training or validation loss of an epoch exceeds this many times the base
#: model's validation loss, or whose validation accuracy falls below this share of the base model's,
#: diverged, even if every number stays finite (see ``_FiniteGuard``)
DIVERGENCE_FACTOR = 5.0
ACCURACY_FLOOR = 0.5


class _FiniteGuard:
    """Counts training forwards and optimizer steps, and raises on a non-finite loss, and on a
    finite divergence. The reference is the model before any update: PEFT starts from the
    identity (and full fine-tuning from the pretrained weights), so a validation pass at step 0
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


class PeftTrainer(Trainer):
    """ESPnet's trainer with the checks a trustworthy result needs: a non-finite loss, gradient or
    weight stops the run (ESPnet logs a warning, skips the step and carries on, and the run is
    later reported as if it had trained), an unreadable resume checkpoint is named, with the
    intact epoch checkpoints beside it, and checkpoints are written atomically (a failed write names
    the file and leaves the previous one intact; ``espnet_peft.checkpoint.atomic_saves``)."""

    @classmethod
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory, plot_attention_iter_factory,
            trainer_options, distributed_option) -> None:
        out = Path(trainer_options.output_dir)
        (out / DIVERGED).unlink(missing_ok=True)
        cls._guard = _FiniteGuard(model, base_loss_file=out / "base_loss.json")
        try:
            resuming = getattr(trainer_options, "resume", False) and (out / "checkpoint.pth").is_file()
            if cls._guard.base_loss is None and valid_iter_factory is not None and not resuming and \
                    not getattr(trainer_options, "no_forward_run", False):
                # the reference of the divergence checks: the model before its first update (a resumed
                # run reads it back from base_loss.json; one that has no record is not measured again)
                cls._guard.measure_base(model, valid_iter_factory.build_iter(0),
                                        "cuda" if getattr(trainer_options, "ngpu", 0) > 0 else "cpu")
            with atomic_saves():  # epoch checkpoints, checkpoint.pth, averaged models: never half-written
                super().run(model=model, optimizers=optimizers, schedulers=schedulers,
                            train_iter_factory=train_iter_factory, valid_iter_factory=valid_iter_factory,
                            plot_attention_iter_factory=plot_attention_iter_factory,
                            trainer_options=trainer_options, distributed_option=distributed_option)
        except TrainingDiverged as e:
            if not distributed_option.distributed or distributed_option.dist_rank == 0:
                out.mkdir(parents=True, exist_ok=True)
                (out / DIVERGED).write_text(json.dumps({"error": str(e)}, indent=1) + "\n")
            raise
        finally:
            cls._guard.remove()

    @classmethod
    def train_one_epoch(cls, model, iterator, optimizers, schedulers, scaler, reporter, summary_writer, options,
                        distributed_option) -> bool:
        guard = cls._guard
        guard.forwards = 0
        guard.epoch = reporter.epoch if hasattr(reporter, "epoch") else None
        steps = [0]

        def count(*_):
            steps[0] += 1

        hooks = [o.register_step_post_hook(count) for o in optimizers]
        try:
            invalid = super().train_one_epoch(model=model, iterator=iterator, optimizers=optimizers,
                                              schedulers=schedulers, scaler=scaler, reporter=reporter,
                                              summary_writer=summary_writer, options=options,
                                              distributed_option=distributed_option)
        finally:
            for h in hooks:
                h.remove()
        # without AMP, a step ESPnet skipped had a non-finite gradient norm (with AMP, the scaler
        # skips steps by design while it calibrates)
        expected = guard.forwards // max(1, options.accum_grad)
        if scaler is None and len(optimizers) == 1 and not options.no_forward_run and steps[0] < expected:
            raise TrainingDiverged(f"{expected - steps[0]} of {expected} updates in epoch {guard.epoch} had a "
                                   f"non-finite gradient norm (ESPnet skips them): the run diverged (lower the "
                                   f"learning rate, or set grad_clip)")
        base = getattr(model, "module", model)
        bad = [n for n, p in base.named_parameters() if p.requires_grad and not bool(torch.isfinite(p).all())]
        if bad:
            raise TrainingDiverged(f"{len(bad)} trainable tensor(s) hold non-finite values after epoch {guard.epoch}, "
                                   f"e.g. {bad[:3]}: the run diverged (lower the learning rate)")
        guard.check("train")
        return invalid

    @classmethod
    def validate_one_epoch(cls, model, iterator, reporter, options, distributed_option) -> None:
        out = super().validate_one_epoch(model=model, iterator=iterator, reporter=reporter, options=options,
                                         distributed_option=distributed_option)
        cls._guard.check("valid")
        return out

    @staticmethod
    def resume(checkpoint, model, reporter, optimizers, schedulers, scaler, ngpu: int = 0, strict: bool = True):
        try:
            Trainer.resume(checkpoint=checkpoint, model=model, reporter=reporter, optimizers=optimizers,
                           schedulers=schedulers, scaler=scaler, ngpu=ngpu, strict=strict)
        except (EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as e:
            raise PeftError(unreadable_checkpoint(Path(checkpoint), e)) from None
        except RuntimeError as e:
            if re.search(r"PytorchStreamReader|zip archive|central directory|unexpected EOF", describe_error(e)):
                raise PeftError(unreadable_checkpoint(Path(checkpoint), e)) from None
            raise


def unreadable_checkpoint(path: Path, error: BaseException) -> str:
    intact = []
    for f in sorted(path.parent.glob("*epoch.pth"), key=lambda f: -int(re.sub(r"\D", "", f.name) or 0)):
        try:
            load_state_file(f)
            intact.append(f.name)
        except PeftError:
            pass
    way_out = (f" Intact epoch checkpoints beside it: {', '.join(intact)}: merge one of them "
               f"(espnet_peft.bin.merge --model_file {path.parent / intact[0]}; recipes: --stage 11 --checkpoint "
               f"{intact[0]}), or move {path.name} away to train again from epoch 1." if intact else
               f" No intact epoch checkpoint is beside it: move {path.name} away to train again from epoch 1.")
    return (f"cannot resume from {path}: the file is truncated or corrupt "
            f"({describe_error(error).splitlines()[0]}).{way_out}")


class _DirLock:
    """An exclusive, non-blocking lock on a file in a directory (released when the process ends)."""

    def __init__(self, path: Path, what: str):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "another process"
            self.fh.close()
            raise PeftError(f"{what} is in use: {holder} holds {path}; wait for it to finish or stop it") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        self.fh.flush()

    def release(self):
        self.fh.close()


class PeftTaskMixin:
    """Mixed in before an ESPnet task class (``class PeftASRTask(PeftTaskMixin, ASRTask)``)."""

    trainer = PeftTrainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_task_arguments(parser)
        group = parser.add_argument_group("espnet_peft")
        group.add_argument("--peft_config", type=_str_or_none, default=None,
                           help="PEFT config (YAML): method, target_modules, budget / hyperparameters, allocation")
        group.add_argument("--pretrained_model", type=_str_or_none, default=None,
                           help="the pretrained ESPnet model file (state dict) to adapt")
        group.add_argument("--pretrained_config", type=_str_or_none, default=None,
                           help="its config.yaml (default: config.yaml beside --pretrained_model)")

    # ------------------------------------------------------------------ arguments
    @classmethod
    def architecture_keys(cls) -> List[str]:
        keys = []
        for choices in cls.class_choices_list:
            keys += [choices.name, f"{choices.name}_conf"]
        return keys + list(ARCH_EXTRA)

    @classmethod
    def inherit_pretrained_config(cls, args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
        """Copy the pretrained model's architecture into ``args``; refuse conflicting values."""
        _, config_path = resolve_pretrained(args.pretrained_model, args.pretrained_config)
        pre = load_yaml(config_path)
        conflicts = []
        for key in cls.architecture_keys():
            if key not in pre:
                continue
            mine, default = getattr(args, key, None), parser.get_default(key)
            user_set = mine != default
            if user_set and getattr(args, "collect_stats", False):
                continue  # statistics runs only use the frontend; their options stand
            if key in MERGED:
                merged = dict(pre.get(key) or {})
                merged.update(mine or {})
                setattr(args, key, merged)
            elif key in OVERRIDABLE and user_set:
                continue  # the fine-tuning run's own choice
            else:
                if user_set and key == "token_list" and isinstance(mine, str) and Path(mine).is_file():
                    with open(mine, encoding="utf-8") as fh:
                        mine = [l.rstrip("\n") for l in fh]
                if user_set and mine != pre[key] and key not in ("bpemodel", "input_size"):
                    conflicts.append(key)
                if not (user_set and key == "bpemodel"):  # a bpemodel path may be given anew
                    setattr(args, key, pre[key])
        if conflicts:
            raise PeftError(f"options {conflicts} differ from the pretrained model's config {config_path}; the "
                            f"architecture, token list and frontend come from the pretrained model (remove them)")

    @classmethod
    def check_data(cls, args: argparse.Namespace) -> None:
        """The data, before compute: files, readable audio at the frontend's sample rate, one channel,
        matching ids (statistics runs included); transcripts the tokenizer cannot spell are a warning."""
        fs = expected_sample_rate(args)
        triplets = list(args.train_data_path_and_name_and_type or []) + list(args.valid_data_path_and_name_and_type or [])
        try:
            validate_data_triplets(args.train_data_path_and_name_and_type, sample_rate=fs, mono=True)
            validate_data_triplets(args.valid_data_path_and_name_and_type, sample_rate=fs, mono=True)
        except DataError as e:
            raise PeftError(f"{e}\n  (stage 3 of the recipes, local/format_data.py, writes {fs or 16000} Hz mono "
                            f"16-bit audio)") from None
        if args.collect_stats:
            return
        texts = [t[0] if isinstance(t, (tuple, list)) else str(t).split(",")[0] for t in triplets
                 if (t[2] if isinstance(t, (tuple, list)) else str(t).split(",")[2]) == "text"]
        # A warning, not an error: real transcripts (names in Common Voice, loan words) carry a few
        # characters the pretrained tokenizer never saw. Refusing the whole data set for them, or
        # dropping those utterances, would cost more than training a few <unk> tokens; the user
        # decides whether to normalise the text (local/data.sh) now that it is visible.
        for problem in untokenizable_text(texts, args):
            log.warning("espnet_peft: warning: %s", problem)

    #: (source, config): the PEFT config this process parsed, so that an entry point reads and checks
    #: its --peft_config once (the argument check, the resume check and the model build share it)
    _parsed_peft_config: Optional[tuple] = None

    @classmethod
    def parsed_peft_config(cls, source: Any) -> PeftConfig:
        """The PEFT config ``source`` names (a file, a dict, a config), parsed and checked once per
        process: a file is read again only when another one is named, or it changed."""
        if not isinstance(source, (str, os.PathLike)):
            return PeftConfig.from_any(source)
        try:  # a file rewritten since (a long-lived process, a test) is read again
            st = os.stat(source)
            key = (os.path.abspath(source), st.st_mtime_ns, st.st_size)
        except OSError:
            return PeftConfig.from_any(source)  # its own error: the file is not there
        cached = PeftTaskMixin._parsed_peft_config
        if cached is None or cached[0] != key:
            cached = PeftTaskMixin._parsed_peft_config = (key, PeftConfig.from_any(source))
        return cached[1]

    @classmethod
    def check_peft_args(cls, args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
        """Everything that can be checked before compute is spent."""
        if getattr(args, "use_adapter", False):
            raise PeftError("--use_adapter (ESPnet's built-in adapters) cannot be combined with --peft_config")
        if args.init_param:
            raise PeftError("--init_param loads weights after the PEFT wrappers are built and would overwrite "
                            "their initialisation; use --pretrained_model instead")
        resolve_pretrained(args.pretrained_model, args.pretrained_config)
        cls.inherit_pretrained_config(args, parser)
        if not args.collect_stats:
            if not args.peft_config:
                raise PeftError("--peft_config is required (a PEFT config, e.g. conf/peft/ssvd_o.yaml)")
            config = cls.parsed_peft_config(args.peft_config)  # parse errors now, not after data loading
            if args.resume and args.output_dir:
                check_resume_config(args.output_dir, config)
        cls.check_data(args)

    @classmethod
    def main(cls, args: Optional[argparse.Namespace] = None, cmd=None):
        parser = cls.get_parser()
        if args is None:
            args = parser.parse_args(cmd)
        try:
            cls.check_peft_args(args, parser)
            lock = _DirLock(Path(args.output_dir) / TRAIN_LOCK, f"output directory {args.output_dir}") \
                if args.output_dir and not args.dry_run else None
        except PeftError as e:
            parser.error(str(e))
        before = os.environ.get(TRAINING_ENV)
        os.environ[TRAINING_ENV] = "1"  # inherited by DDP worker processes
        try:
            return super().main(args=args)
        except TrainingDiverged as e:
            logging.error("espnet_peft: %s", e)
            raise SystemExit(f"espnet_peft: error: {e}") from None
        except PeftError as e:  # an unreadable resume checkpoint
            raise SystemExit(f"espnet_peft: error: {e}") from None
        finally:
            if lock is not None:
                lock.release()
            if before is None:
                os.environ.pop(TRAINING_ENV, None)
            else:
                os.environ[TRAINING_ENV] = before

    # ------------------------------------------------------------------ the model
    @classmethod
    def build_model(cls, args: argparse.Namespace):
        model = super().build_model(args)
        if getattr(args, "collect_stats", False):
            return model  # only the frontend is used to collect statistics
        peft_config = getattr(args, "peft_config", None)
        if not peft_config:
            return model
        try:
            model_path, _ = resolve_pretrained(args.pretrained_model, getattr(args, "pretrained_config", None))
            load_pretrained_weights(model, model_path)
            config = cls.parsed_peft_config(peft_config)
            plan = apply_peft(model, config)
        except PeftError as e:
            if os.environ.get(TRAINING_ENV) != "1":
                raise
            # a training run stops here, before any data is loaded: a clean message, no traceback
            logging.error("espnet_peft: %s", e)
            raise SystemExit(f"espnet_peft: error: {e}") from None
        logging.info("espnet_peft: pretrained weights loaded from %s", model_path)
        logging.info("espnet_peft plan (%s):\n%s", peft_config, plan)
        install_adapter_only_checkpointing(model)
        if os.environ.get(TRAINING_ENV) == "1" and getattr(args, "output_dir", None):
            out = Path(args.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            frozen = out / FROZEN_PEFT_CONFIG
            frozen.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
            (out / "peft_plan.txt").write_text(str(plan) + "\n")
            (out / "peft_plan.json").write_text(json.dumps(plan.as_dict(), indent=1) + "\n")
            # config.yaml (written by ESPnet after build_model) records the frozen copy, not the
            # user's editable file: the experiment is self-contained
            args.peft_config = str(frozen)
        return model

    @classmethod
    def build_model_from_file(cls, config_file=None, model_file=None, device: str = "cpu"):
        """Inference on an experiment: the model rebuilt from its ``config.yaml`` with its frozen PEFT
        config, the adapter (or model) state loaded with ``weights_only=True``."""
        from .state import load_peft_state_dict

        if config_file is None:
            config_file = Path(model_file).parent / "config.yaml"
        args = argparse.Namespace(**experiment_config(config_file))
        model = cls.build_model(args)
        if device != "mps":
            model.to(device)
        if model_file is not None:
            state = load_state_file(model_file)
            if getattr(model, "peft_plan", None) is not None:
                load_peft_state_dict(model, state)
            else:
                model.load_state_dict(state, strict=True)
        return model, args


def check_inference_data(triplets: Sequence, train_config: Optional[str]) -> None:
    """``espnet_peft.bin.*_inference``: refuse audio at another sample rate than the model's frontend
    or with more than one channel, before the model is loaded (stock ESPnet would decode it at the
    wrong rate)."""
    if not triplets or not train_config or not Path(train_config).is_file():
        return
    fs = expected_sample_rate(argparse.Namespace(**load_yaml(train_config)))
    sound = [t for t in triplets if (t[2] if isinstance(t, (tuple, list)) else str(t).split(",")[2]) == "sound"]
    try:
        validate_data_triplets(sound, sample_rate=fs, mono=True)
    except DataError as e:
        raise SystemExit(f"espnet_peft: error: {e}\n  (resample and down-mix to {fs} Hz mono first, "
                         f"e.g. local/format_data.py --fs {fs} SRC_DIR DST_DIR)") from None


class weights_only_loads:
    """Within the block, every ``torch.load`` reads with ``weights_only=True``, whatever its caller
    asks: ESPnet's inference loads model and LM files with ``weights_only=False``, which runs any
    code pickled into them. Used by ``espnet_peft.bin.*_inference``."""

    def __enter__(self):
        self._load = torch.load
        original = self._load

        def load(*args, **kwargs):
            kwargs["weights_only"] = True
            return original(*args, **kwargs)

        torch.load = load
        return self

    def __exit__(self, *exc):
        torch.load = self._load
        return False
