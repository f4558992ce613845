#!/usr/bin/env python3
"""Merge a PEFT experiment into a stock ESPnet model directory (``config.yaml`` + ``model.pth``).

    python -m espnet_peft.bin.merge --train_config exp/peft/config.yaml \\
        --model_file exp/peft/valid.acc.ave.pth --output_dir exp/peft/merged [--alpha 0.5]

The output is decoded by stock ``espnet2.bin.asr_inference`` / ``s2t_inference`` with no
espnet_peft import. ``--alpha A`` writes the weight-space interpolation
``theta_pre + A (theta_adapted - theta_pre)`` toward the pretrained model (Speech-FT stage 2).

The model is rebuilt with the PEFT config frozen in the experiment directory (``peft_config.yaml``
beside ``config.yaml``), not the user's file that ``config.yaml`` once named: editing that file
after training changes nothing here. A run that stopped on non-finite values (``diverged.json``),
a non-finite merged weight and a verification that is not a finite number below the tolerance are
errors; ``merge_info.json`` is strict JSON. The output directory is built whole beside the old one
(model, config, verification, merge record) and swapped in by renames: an interrupted or failed
merge leaves the old directory as it was, a finished one replaces it with everything made from it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

import torch
import yaml

from ..checkpoint import complete_state_dict, remove_adapter_only_checkpointing, save_atomic
from ..errors import PeftError
from ..espnet_task import experiment_config, resolve_pretrained
from ..inject import get_plan
from ..loading import load_state_file
from ..markers import DIVERGED
from ..merge import interpolate_state, merge_peft
from ..methods import get_method
from ..methods.base import AdaptedLinear
from ..state import load_peft_state_dict
from ..tasks import stock_task, task_of
from ._common import PEFT_ARGS, setup_logging


def get_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train_config", required=True, type=Path, help="config.yaml of the PEFT experiment")
    ap.add_argument("--model_file", required=True, type=Path, help="adapter checkpoint (e.g. valid.acc.ave.pth)")
    ap.add_argument("--output_dir", required=True, type=Path)
    ap.add_argument("--alpha", type=float, default=1.0, help="interpolation toward the pretrained model, in [0, 1]")
    ap.add_argument("--pretrained_model", default=None, help="override the pretrained model path of the config")
    ap.add_argument("--task", choices=("asr", "s2t"), default=None, help="default: from the config")
    ap.add_argument("--verify", type=lambda s: s.lower() == "true", default=True,
                    help="rebuild the written model with stock ESPnet and compare outputs (default true)")
    return ap


@torch.no_grad()
def _probe(model, seed: int = 0):
    """Encoder output of a fixed random waveform (enough to compare two models)."""
    g = torch.Generator().manual_seed(seed)
    speech = torch.randn(2, 16000, generator=g) * 0.1
    lens = torch.tensor([16000, 12000])
    model.eval()
    enc, _ = model.encode(speech, lens)
    return enc


def _verify(task_cls, output_dir: Path, reference):
    """Rebuild the written model with stock ESPnet; compare its probe output with the adapted model's."""
    stock = stock_task(task_cls.__name__)
    merged, _ = stock.build_model_from_file(output_dir / "config.yaml", output_dir / "model.pth", "cpu")
    if any(isinstance(m, AdaptedLinear) for m in merged.modules()):
        raise PeftError("verification failed: the merged model still contains PEFT wrappers")
    if reference is None:
        return None
    err = float((_probe(merged) - reference).abs().max())
    if not (math.isfinite(err) and err <= 1e-3):  # NaN > 1e-3 is False: test what passes, not what fails
        raise PeftError(f"verification failed: the merged model in {output_dir} differs from the adapted "
                        f"model (max abs diff {err:.2e} on a probe input, at most 1e-3 allowed)")
    return err


def merge_experiment(train_config: Path, model_file: Path, output_dir: Path, alpha: float = 1.0,
                     pretrained_model=None, task=None, verify: bool = True) -> dict:
    cfg = experiment_config(train_config)  # peft_config: the copy frozen in the experiment
    if not cfg.get("peft_config"):
        raise PeftError(f"{train_config} is not a PEFT experiment config (no peft_config)")
    diverged = Path(model_file).parent / DIVERGED
    if diverged.is_file():
        raise PeftError(f"the training in {diverged.parent} stopped on non-finite values ({diverged}); its "
                        f"checkpoints are not merged: train again with a lower learning rate")
    if pretrained_model:
        cfg["pretrained_model"] = str(pretrained_model)
    if not 0.0 <= alpha <= 1.0:
        raise PeftError(f"--alpha must lie in [0, 1], got {alpha}")
    if not Path(model_file).is_file():
        raise PeftError(f"checkpoint not found: {model_file}")
    task_cls = task_of(cfg, task)
    t0 = time.time()
    model = task_cls.build_model(argparse.Namespace(**cfg))
    remove_adapter_only_checkpointing(model)
    try:  # refused: another base model, or another PEFT config than the frozen one (edited since?)
        load_peft_state_dict(model, load_state_file(model_file, "adapter checkpoint"))
    except PeftError as e:
        if str(model_file) in str(e):
            raise
        raise PeftError(f"adapter checkpoint {model_file}: {e}") from None
    plan = get_plan(model)
    reference = _probe(model) if verify and alpha == 1.0 else None
    merge_peft(model)
    state = complete_state_dict(model)
    if alpha != 1.0:
        pre_path, _ = resolve_pretrained(cfg["pretrained_model"], cfg.get("pretrained_config"))
        state = interpolate_state(load_state_file(pre_path, "pretrained model"), state, alpha)
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise PeftError(f"the merged model has non-finite values in {len(bad)} tensor(s), e.g. {bad[:3]}: "
                        f"{model_file} holds a diverged adapter; nothing was written")
    stock_cfg = {k: v for k, v in cfg.items() if k not in PEFT_ARGS}
    for row in plan.rows:  # methods whose merged form is not the original architecture (HFF)
        stock_cfg = get_method(row.method).export_config(stock_cfg, row, plan.config.options)
    info = {"train_config": str(train_config), "model_file": str(model_file), "alpha": alpha,
            "method": plan.method, "trainable_params": plan.total, "fraction": plan.fraction,
            "pretrained_model": cfg["pretrained_model"]}
    # the whole directory is built beside the old one and swapped in with renames: until the swap the
    # old directory (its model, and what was made from it: decodings, summary) is untouched; after it,
    # the old directory and everything in it are gone together (nothing derived from it survives)
    with staged_directory(output_dir) as new:
        try:
            save_atomic(state, new / "model.pth", "merged model")
        except PeftError as e:  # named as the user knows it: the earlier merge there is kept
            raise PeftError(str(e).replace(str(new), str(output_dir))) from None
        write_text(new / "config.yaml", yaml.safe_dump(stock_cfg, sort_keys=False, allow_unicode=True))
        if verify:
            err = _verify(task_cls, new, reference)
            if err is not None:
                info["verify_max_abs_diff"] = err
        info["seconds"] = round(time.time() - t0, 2)
        write_text(new / "merge_info.json", json.dumps(info, indent=1, allow_nan=False) + "\n")
    return info


def write_text(path: Path, text: str) -> None:
    """Write and flush to disk (a directory swapped in must hold complete files)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def staged_directory(output_dir: Path):
    """A new, empty directory beside ``output_dir`` (``.<name>.new.<pid>``) to build into; on success it
    replaces ``output_dir`` by two renames (the old one, if any, is renamed aside, then deleted); on
    any failure it is deleted and ``output_dir`` stays as it was. Leftovers of a process killed in
    the middle (``.<name>.new.*``, ``.<name>.old.*``) are removed first."""
    output_dir = Path(output_dir)
    parent = output_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    for left in list(parent.glob(f".{output_dir.name}.new.*")) + list(parent.glob(f".{output_dir.name}.old.*")):
        shutil.rmtree(left, ignore_errors=True)
    new = parent / f".{output_dir.name}.new.{os.getpid()}"
    new.mkdir()
    try:
        yield new
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    old = parent / f".{output_dir.name}.old.{os.getpid()}"
    if output_dir.exists():
        os.replace(output_dir, old)
    os.replace(new, output_dir)
    shutil.rmtree(old, ignore_errors=True)


def main(cmd=None) -> int:
    args = get_parser().parse_args(cmd)
    setup_logging()
    try:
        info = merge_experiment(args.train_config, args.model_file, args.output_dir, args.alpha,
                                args.pretrained_model, args.task, args.verify)
    except PeftError as e:
        print(f"espnet_peft.bin.merge: error: {e}", file=sys.stderr)
        return 2
    logging.info("merged model written to %s: %s", args.output_dir, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
