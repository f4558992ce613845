"""Adapter files people can share: safetensors with a small JSON header.

An adapter file holds the adapter state (``peft_state_dict`` or an adapter-only checkpoint: the
trained tensors, the pretrained model's fingerprint table and the PEFT config record) as
safetensors, which holds tensors only and is read without unpickling anything, and a JSON header
in the file's metadata (key ``espnet_peft``): the method, the PEFT config, the plan's modules and
hyperparameters, the trainable parameter count, the foundation model's id and the training command
when known, and the SHA-256 of every tensor (``tensors_sha256``: names, dtypes, shapes and bytes,
the config record and fingerprint table included). ``load_adapter`` reads such files and the
existing ``.pth`` adapters alike (``torch.load(weights_only=True)``) and verifies what it loads
(:func:`check_state`): the tensors against their digest, the header against the config record,
the base-model fingerprint table and the config record present, every value finite. Only
``trust_unverified=True`` loads a file without a digest, record or fingerprint table, and it
says which check it skipped.

    python -m espnet_peft.bin.export_adapter --exp exp/child_ssvd_o --out child_ssvd_o.safetensors
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from . import fingerprint, provenance
from .errors import PeftError
from .loading import load_state_file

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
    out["tensors_sha256"] = tensors_digest(state)
    out["adapter_tensors"] = sum(1 for k in rest if not k.startswith("peft_"))
    out["adapter_elements"] = int(sum(v.numel() for k, v in rest.items() if not k.startswith("peft_")))
    out.update({k: v for k, v in dict(extra or {}).items() if v is not None})
    return out


def tensors_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state: every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k].detach().contiguous().cpu()
        h.update(f"{k}\0{v.dtype}\0{tuple(v.shape)}\0".encode())
        h.update(v.view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def check_finite(state: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse an adapter state with a non-finite value (a diverged or damaged adapter)."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise PeftError(f"{where}: non-finite values in {len(bad)} tensor(s), e.g. {bad[:3]}: a diverged or damaged "
                        f"adapter is not loaded")


def check_state(state: Mapping[str, torch.Tensor], where: str, trust_unverified: bool = False) -> None:
    """Refuse an adapter state that cannot be trusted: non-finite values (always), and unless
    ``trust_unverified``, a state without the base-model fingerprint table (which pretrained model
    it belongs to cannot be checked) or without its config record (its hyperparameters would come
    from somewhere editable)."""
    check_finite(state, where)
    fps, rest = fingerprint.take(state)
    record, _ = provenance.take(rest)
    skipped = ([] if fps else ["base-model fingerprint table (which pretrained model it was trained on)"]) + \
        ([] if record is not None else ["PEFT config record (its method and hyperparameters)"])
    if skipped and not trust_unverified:
        raise PeftError(f"{where} has no {' and no '.join(skipped)}: it cannot be verified (re-export it from "
                        f"its experiment; trust_unverified / --trust_unverified loads it anyway)")
    for what in skipped:
        logging.warning("%s: loaded without a %s (trust_unverified)", where, what)


def check_header(header: Mapping[str, Any], state: Mapping[str, torch.Tensor], where: str,
                 trust_unverified: bool = False) -> None:
    """The header of a safetensors adapter file must sign its tensors and agree with the config
    record the tensors carry (method, config and its hash)."""
    digest = header.get("tensors_sha256")
    if digest is None:
        if not trust_unverified:
            raise PeftError(f"{where} does not sign its tensors (no tensors_sha256: written by an older export?): "
                            f"re-export it, or trust_unverified / --trust_unverified")
        logging.warning("%s: loaded without checking its tensors (no tensors_sha256; trust_unverified)", where)
    elif digest != tensors_digest(state):
        raise PeftError(f"{where}: the tensors do not match the digest in its header (damaged or edited)")
    _, rest = fingerprint.take(state)
    record, _ = provenance.take(rest)
    if record is not None:
        differ = [k for k in ("method", "config", "config_sha256") if k in header and header[k] != record.get(k)]
        if differ:
            raise PeftError(f"{where}: the header contradicts the config record of its tensors on "
                            f"{', '.join(differ)} (an edited header?)")


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
    from safetensors import SafetensorError

    try:
        save_file(tensors, str(tmp), metadata={HEADER_KEY: json.dumps(header, sort_keys=True)})
        os.chmod(tmp, 0o644)  # a file to share
        os.replace(tmp, p)
    except (SafetensorError, OSError) as e:  # e.g. a full disk: named, and nothing half-written is left
        raise PeftError(f"cannot write the adapter file {p}: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return header


def load_adapter(path: os.PathLike, trust_unverified: bool = False) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """``(state, header)`` of an adapter file: safetensors (header from its metadata) or a ``.pth``
    state dict read with ``weights_only=True`` (header derived from the state's own record), verified
    (:func:`check_header`, :func:`check_state`) before it is returned."""
    p = Path(path)
    if p.suffix != SUFFIX:
        state = load_state_file(p, "adapter file")
        check_state(state, str(p), trust_unverified)
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
    check_header(header, state, str(p), trust_unverified)
    check_state(state, str(p), trust_unverified)
    return state, header
