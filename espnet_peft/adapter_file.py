"""Adapter files people can share: safetensors with a small JSON header.

An adapter file holds the adapter state (``peft_state_dict`` or an adapter-only checkpoint: the
trained tensors, the pretrained model's fingerprint table and the PEFT config record) as
safetensors, which holds tensors only and is read without unpickling anything, and a JSON header
in the file's metadata (key ``espnet_peft``): the method, the PEFT config, the plan's modules and
hyperparameters, the trainable parameter count, the foundation model's id and the training command
when known. ``load_adapter`` reads such files and the existing ``.pth`` adapters alike
(``torch.load(weights_only=True)``).

    python -m espnet_peft.bin.export_adapter --exp exp/child_ssvd_o --out child_ssvd_o.safetensors
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from . import provenance
from .errors import PeftError

SUFFIX = ".safetensors"
HEADER_KEY = "espnet_peft"
FORMAT = "espnet_peft.adapter/1"


def header_of(state: Mapping[str, torch.Tensor], extra: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The header of an adapter state: from its config record (when it has one) and ``extra``."""
    record, rest = provenance.take(state)
    out: Dict[str, Any] = {"format": FORMAT}
    if record is not None:
        out.update(method=record.get("method"), config=record.get("config"),
                   config_sha256=record.get("config_sha256"), modules=record.get("modules"))
    out["adapter_tensors"] = sum(1 for k in rest if not k.startswith("peft_"))
    out["adapter_elements"] = int(sum(v.numel() for k, v in rest.items() if not k.startswith("peft_")))
    out.update({k: v for k, v in dict(extra or {}).items() if v is not None})
    return out


def save_adapter(path: os.PathLike, state: Mapping[str, torch.Tensor],
                 extra: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Write ``state`` as a safetensors adapter file with its header (through a temporary file renamed
    into place); returns the header."""
    from safetensors.torch import save_file

    p = Path(path)
    if p.suffix != SUFFIX:
        raise PeftError(f"an adapter file is {SUFFIX}, got {p}")
    header = header_of(state, extra)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={HEADER_KEY: json.dumps(header, sort_keys=True)})
        os.chmod(tmp, 0o644)  # a file to share
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return header


def load_adapter(path: os.PathLike) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """``(state, header)`` of an adapter file: safetensors (header from its metadata) or a ``.pth``
    state dict read with ``weights_only=True`` (header derived from the state's own record)."""
    p = Path(path)
    if p.suffix != SUFFIX:
        from .espnet_task import load_state_file

        state = load_state_file(p, "adapter file")
        return state, header_of(state)
    if not p.is_file():
        raise PeftError(f"adapter file not found: {p}")
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(p), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise PeftError(f"cannot read adapter file {p}: not a valid safetensors file ({e})") from None
    try:
        header = json.loads(meta[HEADER_KEY])
    except (KeyError, ValueError):
        raise PeftError(f"{p} is a safetensors file without an espnet_peft header: not an adapter file") from None
    if header.get("format") != FORMAT:
        raise PeftError(f"{p}: unknown adapter file format {header.get('format')!r} (this library reads {FORMAT})")
    return state, header
