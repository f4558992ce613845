"""ESPnet's trainer with the checks a trustworthy result needs (see :class:`PeftTrainer`)."""
from __future__ import annotations

import json
import pickle
import re
import zipfile
from pathlib import Path

import torch
from espnet2.train.trainer import Trainer

from .checkpoint import atomic_saves
from .divergence import FiniteGuard, TrainingDiverged
from .errors import PeftError
from .loading import describe_error, unreadable_checkpoint
from .markers import DIVERGED


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
        cls._guard = FiniteGuard(model, base_loss_file=out / "base_loss.json")
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

