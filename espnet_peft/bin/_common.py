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


def stock_task(name: str):
    if name == "PeftS2TTask":
        from espnet2.tasks.s2t import S2TTask

        return S2TTask
    from espnet2.tasks.asr import ASRTask

    return ASRTask


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
