"""Helpers shared by the command-line tools."""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional

PEFT_ARGS = ("peft_config", "pretrained_model", "pretrained_config")


def task_of(config: Dict[str, Any], name: Optional[str] = None):
    """The PEFT task class for a config: ``asr`` or ``s2t`` (OWSM configs use the s2t preprocessor)."""
    name = name or ("s2t" if config.get("preprocessor") == "s2t" else "asr")
    if name == "s2t":
        from ..tasks.s2t import PeftS2TTask

        return PeftS2TTask
    if name == "asr":
        from ..tasks.asr import PeftASRTask

        return PeftASRTask
    raise SystemExit(f"unknown task {name!r} (asr or s2t)")


def train_entry(name: str):
    """``(get_parser, main)`` of a PEFT training CLI: every option of ESPnet's own
    ``espnet2.bin.<name>_train`` plus ``--peft_config``, ``--pretrained_model`` and
    ``--pretrained_config`` (see ``espnet_peft.espnet_task``)."""
    task = task_of({}, name)
    return task.get_parser, lambda cmd=None: task.main(cmd=cmd)


def inference_entry(name: str):
    """The ``main(cmd=None)`` of a PEFT decoding CLI (``run_inference`` for one task)."""
    return lambda cmd=None: run_inference(name, cmd)


def run_inference(name: str, cmd=None) -> None:
    """ESPnet's own ``espnet2.bin.<name>_inference`` on a PEFT experiment: the experiment's frozen
    PEFT config is used (``peft_config.yaml`` beside the config), model and LM files load with
    ``weights_only=True``, and audio at another sample rate than the model's frontend, or with
    more than one channel, is refused before the model is loaded."""
    import importlib

    from ..espnet_task import check_inference_data, weights_only_loads
    from ..methods import register_with_espnet

    stock = importlib.import_module(f"espnet2.bin.{name}_inference")
    args = stock.get_parser().parse_args(cmd)
    check_inference_data(args.data_path_and_name_and_type, getattr(args, f"{name}_train_config"))
    register_with_espnet()
    task = task_of({}, name)
    setattr(stock, stock_task(task.__name__).__name__, task)  # build_model_from_file rebuilds the wrapped model
    with weights_only_loads():
        stock.main(cmd)


def stock_task(name: str):
    if name == "PeftS2TTask":
        from espnet2.tasks.s2t import S2TTask

        return S2TTask
    from espnet2.tasks.asr import ASRTask

    return ASRTask


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
