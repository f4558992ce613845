#!/usr/bin/env python3
"""Print the PEFT plan of a config against a model, without training (a budget dry run).

    python -m espnet_peft.bin.plan --peft_config conf/peft/ssvd_o.yaml --model_config exp/base/config.yaml
    python -m espnet_peft.bin.plan --peft_config conf/peft/lora.yaml --budget 0.5% --model_config ... --json plan.json

The model is built from its ESPnet config (random weights: a plan depends on shapes only).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import PeftConfig, with_settings
from ..errors import PeftError
from ..inject import plan_peft
from ..loading import load_yaml
from ..tasks import stock_task, task_of


def get_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peft_config", required=True, help="PEFT config YAML")
    ap.add_argument("--model_config", required=True, type=Path,
                    help="an ESPnet model config.yaml (a pretrained model's, or a training config with token_list)")
    ap.add_argument("--token_list", default=None, help="token list, if the config does not hold one")
    ap.add_argument("--budget", default=None, help="override the config's budget (count, fraction or x%%)")
    ap.add_argument("--method", default=None, help="override the config's method")
    ap.add_argument("--task", choices=("asr", "s2t"), default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the plan as JSON")
    return ap


def build_plan(peft_config, model_config: Path, token_list=None, budget=None, method=None, task=None):
    cfg = load_yaml(model_config)
    if token_list:
        cfg["token_list"] = token_list
    if not cfg.get("token_list"):
        raise PeftError(f"{model_config} has no token_list; pass --token_list")
    settings = {k: v for k, v in (("method", method), ("budget", budget)) if v is not None}
    base = PeftConfig.from_any(peft_config)  # parsed and checked once; again only as changed by settings
    if settings:
        base = PeftConfig.from_dict(with_settings(base.to_dict(), settings))
    stock = stock_task(task_of(cfg, task).__name__)
    parser = stock.get_parser()
    args = parser.parse_args([])
    for k, v in cfg.items():
        setattr(args, k, v)
    model = stock.build_model(args)
    return plan_peft(model, base)


def main(cmd=None) -> int:
    args = get_parser().parse_args(cmd)
    try:
        plan = build_plan(args.peft_config, args.model_config, args.token_list, args.budget, args.method, args.task)
    except PeftError as e:
        print(f"espnet_peft.bin.plan: error: {e}", file=sys.stderr)
        return 2
    print(plan)
    if args.json:
        args.json.write_text(json.dumps(plan.as_dict(), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
