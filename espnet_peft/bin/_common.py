"""Helpers shared by the command-line tools: the training and decoding entry points, logging."""
from __future__ import annotations

import logging

PEFT_ARGS = ("peft_config", "pretrained_model", "pretrained_config")


def train_entry(name: str):
    """``(get_parser, main)`` of a PEFT training CLI: every option of ESPnet's own
    ``espnet2.bin.<name>_train`` plus ``--peft_config``, ``--pretrained_model`` and
    ``--pretrained_config`` (see ``espnet_peft.espnet_task``)."""
    from ..tasks import task_of

    task = task_of({}, name)
    return task.get_parser, lambda cmd=None: task.main(cmd=cmd)


def inference_entry(name: str):
    """The ``main(cmd=None)`` of a PEFT decoding CLI (``espnet_peft.inference.run_inference`` for one task)."""
    from ..inference import run_inference

    return lambda cmd=None: run_inference(name, cmd)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
