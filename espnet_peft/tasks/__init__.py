"""PEFT variants of ESPnet tasks (module-level classes, so DDP worker processes can import them)."""
from __future__ import annotations

from typing import Any, Dict, Optional


def task_of(config: Dict[str, Any], name: Optional[str] = None):
    """The PEFT task class for a config: ``asr`` or ``s2t`` (OWSM configs use the s2t preprocessor)."""
    name = name or ("s2t" if config.get("preprocessor") == "s2t" else "asr")
    if name == "s2t":
        from .s2t import PeftS2TTask

        return PeftS2TTask
    if name == "asr":
        from .asr import PeftASRTask

        return PeftASRTask
    raise SystemExit(f"unknown task {name!r} (asr or s2t)")


def stock_task(name: str):
    if name == "PeftS2TTask":
        from espnet2.tasks.s2t import S2TTask

        return S2TTask
    from espnet2.tasks.asr import ASRTask

    return ASRTask
