"""Reading model, adapter and config files without running code from them.

Model and adapter files load with ``torch.load(weights_only=True)`` (:func:`load_state_file`): a file
that holds anything but tensors and plain containers is refused, not executed, and a truncated or
unreadable one is named with the reason. :class:`weights_only_loads` makes every ``torch.load``
inside a block weights-only (ESPnet's own loaders ask for pickle); only ESPnet's resume
``checkpoint.pth`` (written by the training run itself) goes through pickle, and when it cannot be
read :func:`unreadable_checkpoint` names the intact epoch checkpoints beside it.
"""
from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import yaml

from .data import error_text
from .errors import PeftError


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


def unreadable_checkpoint(path: Path, error: BaseException) -> str:
    """The message for a resume checkpoint that cannot be read, naming the intact epoch checkpoints beside it."""
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


class weights_only_loads:
    """Within the block, every ``torch.load`` reads with ``weights_only=True``, whatever its caller
    asks: ESPnet's inference loads model and LM files with ``weights_only=False``, which runs any
    code pickled into them. Used by ``espnet_peft.bin.*_inference`` and the recipes' ``local/decode.py``."""

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
