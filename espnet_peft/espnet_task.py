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
wrong sample rate or channel count), a changed PEFT config on resume (:mod:`espnet_peft.preflight`),
a second trainer on the same output directory (:mod:`espnet_peft.lock`). During training,
:class:`~espnet_peft.trainer.PeftTrainer` stops the run on a non-finite loss, gradient or weight
(ESPnet skips such steps and carries on) or a finite divergence (:mod:`espnet_peft.divergence`) and
names an unreadable resume checkpoint. Model and adapter files load with
``torch.load(weights_only=True)`` (:mod:`espnet_peft.loading`); only ESPnet's own resume
``checkpoint.pth`` (written by the training run itself) goes through pickle.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import yaml

from .checkpoint import install_adapter_only_checkpointing
from .config import PeftConfig
from .data import DataError, validate_data_triplets
from .divergence import TrainingDiverged
from .errors import PeftError
from .inject import apply_peft
from .loading import load_state_file, load_yaml
from .lock import DirLock
from .markers import FROZEN_PEFT_CONFIG, TRAIN_LOCK
# check_resume_config: also imported from here by local/peft_asr.sh (its resume check before stage 10)
from .preflight import check_resume_config, expected_sample_rate, untokenizable_text
from .trainer import PeftTrainer


#: architecture keys besides the task's class choices (and their ``_conf``)
ARCH_EXTRA = ("token_list", "input_size", "ctc_conf", "joint_net_conf", "model_conf", "token_type", "bpemodel",
              "non_linguistic_symbols", "cleaner", "g2p", "init", "use_preprocessor")
#: keys a fine-tuning run may change relative to the pretrained config (no weights depend on them)
OVERRIDABLE = ("specaug", "specaug_conf", "model_conf", "preprocessor_conf", "init")
#: dict-valued overridable keys: the user's entries update the pretrained ones
MERGED = ("model_conf", "preprocessor_conf")
#: set by a training entry point: build_model then writes the plan next to the checkpoints
TRAINING_ENV = "ESPNET_PEFT_TRAINING"

log = logging.getLogger("espnet_peft")  # a named logger: never configures the root logger ESPnet sets up


def _str_or_none(v: str) -> Optional[str]:
    return None if v.strip().lower() in ("none", "null", "") else v


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
            lock = DirLock(Path(args.output_dir) / TRAIN_LOCK, f"output directory {args.output_dir}") \
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
