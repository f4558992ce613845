"""Fingerprints of the pretrained model an adapter is trained on.

:func:`record` summarises every tensor of a model's state dict (parameters and buffers) when PEFT
is applied: an exact content digest, and a float summary (:func:`fingerprint`) from which the
error message quotes norms. Adapter states carry the record as one ``peft_base_fingerprint``
table (float64, so that ESPnet's n-best averaging keeps it; each row keyed by a digest of the
tensor's name), and loading one onto a model whose pretrained tensors differ in any bit is
refused with the differing modules named.
"""
from __future__ import annotations

import hashlib
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from .errors import PeftError

SUFFIX = "peft_base_fingerprint"
Record = Dict[str, Tuple[float, ...]]
_FP_BLOCK = 512  # rows of 7 summed per block in the tensor's precision
_DIGEST_BITS = 48  # per digest value: exact in float64, also after summing n-best checkpoints
_COLUMNS = 8  # name digest (2), value digest (2), fingerprint (4)


def fingerprint(t: torch.Tensor) -> Tuple[float, ...]:
    """A cheap, order-sensitive summary of a tensor: (numel, sum, sum of squares, ramp sum).

    The ramp weights element ``i`` by ``(i mod 7) - 3``. Sums run over blocks of 3,584 elements
    in the tensor's float precision and the block sums are added in float64 (within 1e-7 of a
    float64 reference, where one long float32 reduction is not).
    """
    x = t.detach().reshape(-1)
    if x.numel() == 0:
        return (0.0, 0.0, 0.0, 0.0)
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    n, block = x.numel(), 7 * _FP_BLOCK
    m = n - n % block
    head, tail = x[:m].view(-1, _FP_BLOCK, 7), x[m:].double()
    cols = head.sum(1).double().sum(0)  # per ramp position; m is a multiple of 7
    cols = cols.index_add(0, torch.arange(tail.numel(), device=x.device) % 7, tail)
    sq = (torch.linalg.vector_norm(head.reshape(-1, block), dim=1).double() ** 2).sum() + tail @ tail
    ramp = (torch.arange(7, dtype=torch.float64, device=x.device) - 3) @ cols
    return (float(n), float(cols.sum()), float(sq), float(ramp))


def _sha(data, *extra: bytes) -> Tuple[float, float]:
    h = hashlib.sha1(usedforsecurity=False)
    for part in extra:
        h.update(part)
    h.update(data)
    raw, step = h.digest(), _DIGEST_BITS // 8
    return float(int.from_bytes(raw[:step], "big")), float(int.from_bytes(raw[step:2 * step], "big"))


def digest(t: torch.Tensor) -> Tuple[float, float]:
    """An exact digest of a tensor's shape and values (two 48-bit integers, as floats).

    Values that are equal are equal whatever their storage: half precision is read as float32,
    float64 holding float32 values as float32; any other change of any element changes it.
    """
    x = t.detach()
    if x.dtype in (torch.float16, torch.bfloat16) or (x.dtype == torch.float64 and torch.equal(x.float().double(), x)):
        x = x.float()
    elif x.dtype == torch.bool:
        x = x.to(torch.uint8)
    return _sha(x.cpu().contiguous().reshape(-1).view(torch.uint8).numpy(), f"{x.dtype} {tuple(x.shape)}".encode())


def record(model: nn.Module) -> Record:
    """``{state-dict key: digest + fingerprint}`` for every tensor of ``model``."""
    return {k: digest(v) + fingerprint(v) for k, v in model.state_dict().items()}


def to_state(rec: Record) -> Dict[str, torch.Tensor]:
    """The record as one float64 table: a row per tensor, its name's digest, then its values'."""
    rows = [_sha(k.encode()) + tuple(v) for k, v in sorted(rec.items())]
    return {SUFFIX: torch.tensor(rows, dtype=torch.float64).reshape(len(rows), _COLUMNS)}


def take(state: Mapping[str, torch.Tensor], prefix: str = "") -> Tuple[Dict[Tuple[float, float], Tuple[float, ...]],
                                                                       Dict[str, torch.Tensor]]:
    """The record in ``state`` (``{name digest: values}``; empty if it has none), and the rest."""
    old = [k for k in state if k.endswith("." + SUFFIX)]
    if old:
        raise PeftError(f"the adapter state holds base-model fingerprints of an older format (one per adapted "
                        f"module, e.g. {old[0]!r}), which cannot check the whole base model; re-create it")
    table = state.get(prefix + SUFFIX)
    rest = {k: v for k, v in state.items() if k != prefix + SUFFIX}
    if table is None:
        return {}, rest
    if table.dim() != 2 or table.shape[1] != _COLUMNS:
        raise PeftError(f"the adapter state's {prefix + SUFFIX} is not a base-model record (shape {tuple(table.shape)})")
    return {tuple(r[:2]): tuple(r[2:]) for r in table.tolist()}, rest


def _module(key: str) -> str:
    return key.rpartition(".")[0] or key


def mismatch(own: Record, theirs: Mapping[Tuple[float, float], Tuple[float, ...]]) -> Optional[str]:
    """What differs between this model's record and the one an adapter was trained on, or None."""
    if not theirs:
        return None  # a state without a record (made by hand): nothing to compare
    names = {_sha(k.encode()): k for k in own}
    lacking = len(set(theirs) - set(names))
    extra = sorted(k for h, k in names.items() if h not in theirs)
    changed = sorted(k for h, k in names.items() if h in theirs and tuple(own[k][:2]) != tuple(theirs[h][:2]))
    if not (lacking or extra or changed):
        return None
    parts: List[str] = []
    if changed:
        modules = sorted({_module(k) for k in changed})
        norms = "; ".join(f"{k} (norm {own[k][4] ** 0.5:.6g} here, {theirs[_sha(k.encode())][4] ** 0.5:.6g} "
                          f"trained on)" for k in changed[:3])
        parts.append(f"{len(changed)} pretrained tensor(s) of {len(modules)} module(s) differ: "
                     f"{', '.join(modules[:8])}{' ...' if len(modules) > 8 else ''} ({norms})")
    if lacking:
        parts.append(f"this model lacks {lacking} of its tensor(s)")
    if extra:
        parts.append(f"this model has {len(extra)} tensor(s) it did not, e.g. {extra[:3]}")
    return "the adapter was trained on another base model: " + "; ".join(parts)
