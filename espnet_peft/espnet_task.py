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

``build_model_from_file`` (used by inference) rebuilds the same wrapped model from the
experiment's ``config.yaml`` and loads an adapter checkpoint onto it.
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
from .inject import apply_peft
from .methods.base import PeftError

#: architecture keys besides the task's class choices (and their ``_conf``)
ARCH_EXTRA = ("token_list", "input_size", "ctc_conf", "joint_net_conf", "model_conf", "token_type", "bpemodel",
              "non_linguistic_symbols", "cleaner", "g2p", "init", "use_preprocessor")
#: keys a fine-tuning run may change relative to the pretrained config (no weights depend on them)
OVERRIDABLE = ("specaug", "specaug_conf", "model_conf", "preprocessor_conf", "init")
#: dict-valued overridable keys: the user's entries update the pretrained ones
MERGED = ("model_conf", "preprocessor_conf")
#: set by a training entry point: build_model then writes the plan next to the checkpoints
TRAINING_ENV = "ESPNET_PEFT_TRAINING"


def _str_or_none(v: str) -> Optional[str]:
    return None if v.strip().lower() in ("none", "null", "") else v


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


def load_state_file(path: os.PathLike) -> Dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict) and "optimizers" in state:
        state = state["model"]  # an ESPnet checkpoint.pth
    if isinstance(state, dict) and "module" in state and isinstance(state["module"], dict):
        state = state["module"]  # deepspeed
    if not isinstance(state, dict):
        raise PeftError(f"{path} does not hold a state dict")
    return state


def load_pretrained_weights(model: torch.nn.Module, path: os.PathLike) -> None:
    """Strictly load a pretrained state dict; a config / model mismatch is a clear error."""
    state = load_state_file(path)
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


class PeftTaskMixin:
    """Mixed in before an ESPnet task class (``class PeftASRTask(PeftTaskMixin, ASRTask)``)."""

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
    def check_peft_args(cls, args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
        """Everything that can be checked before compute is spent."""
        if getattr(args, "use_adapter", False):
            raise PeftError("--use_adapter (ESPnet's built-in adapters) cannot be combined with --peft_config")
        if args.init_param:
            raise PeftError("--init_param loads weights after the PEFT wrappers are built and would overwrite "
                            "their initialisation; use --pretrained_model instead")
        resolve_pretrained(args.pretrained_model, args.pretrained_config)
        cls.inherit_pretrained_config(args, parser)
        if args.collect_stats:
            return
        if not args.peft_config:
            raise PeftError("--peft_config is required (a PEFT config, e.g. conf/peft/ssvd_o.yaml)")
        PeftConfig.from_any(args.peft_config)  # parse errors now, not after data loading
        try:
            validate_data_triplets(args.train_data_path_and_name_and_type)
            validate_data_triplets(args.valid_data_path_and_name_and_type)
        except DataError as e:
            raise PeftError(str(e)) from None

    @classmethod
    def main(cls, args: Optional[argparse.Namespace] = None, cmd=None):
        parser = cls.get_parser()
        if args is None:
            args = parser.parse_args(cmd)
        try:
            cls.check_peft_args(args, parser)
        except PeftError as e:
            parser.error(str(e))
        before = os.environ.get(TRAINING_ENV)
        os.environ[TRAINING_ENV] = "1"  # inherited by DDP worker processes
        try:
            return super().main(args=args)
        finally:
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
            config = PeftConfig.from_any(peft_config)
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
            (out / "peft_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
            (out / "peft_plan.txt").write_text(str(plan) + "\n")
            (out / "peft_plan.json").write_text(json.dumps(plan.as_dict(), indent=1) + "\n")
        return model
