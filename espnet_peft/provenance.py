"""The PEFT config an adapter was trained with, carried in the adapter state.

Adapter states (``peft_state_dict``, adapter-only checkpoints) hold one ``peft_adapter_config``
entry beside the tensors: the method, the PEFT config in canonical form (:func:`canonical_config`)
and its hash, and every planned module's hyperparameters (the plan rows). Loading the state onto a
model wrapped with another config (another hash, or other hyperparameters on any module) is refused,
naming what differs ("alpha: 16 in the adapter, 64 in exp/x/peft_config.yaml"): an experiment's
frozen ``peft_config.yaml`` edited after training no longer changes a merge silently.

The entry is JSON, zlib-compressed, stored one byte per element of a float64 vector: a plain tensor
(``torch.load(weights_only=True)`` reads it), and exact after ESPnet's n-best averaging (the mean of
equal integers is that integer). States written before the entry existed load with a warning.
"""
from __future__ import annotations

import hashlib
import json
import logging
import zlib
from dataclasses import fields
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from .config import Allocation, PeftConfig
from .errors import PeftError
from .methods import get_method

KEY = "peft_adapter_config"
FORMAT = 1
_MISSING = object()

log = logging.getLogger("espnet_peft")


def _plain(value: Any) -> Any:
    """``value`` as plain JSON data, numbers normalised (``16.0`` is ``16``), mapping keys sorted."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def canonical_config(cfg: PeftConfig) -> Dict[str, Any]:
    """What a PEFT config means, independent of how it is written: canonical hyperparameter names
    (``rank`` is ``r``), parsed budgets (``1%`` is ``0.01``), and every setting left at its default
    omitted (a default written out and a default left out are the same config; a library version that
    adds an option does not change the hash of configs that do not use it)."""
    method = get_method(cfg.method)
    out: Dict[str, Any] = {"method": cfg.method, "target_modules": list(cfg.target_modules)}
    if cfg.exclude_modules:
        out["exclude_modules"] = list(cfg.exclude_modules)
    if cfg.budget is not None:
        out["budget"] = cfg.budget
    out.update(cfg.hyper)
    for o in method.options:
        if o.name in cfg.options and cfg.options[o.name] != o.default:
            out[o.name] = cfg.options[o.name]
    defaults = Allocation()
    alloc = {f.name: getattr(cfg.allocation, f.name) for f in fields(Allocation)
             if getattr(cfg.allocation, f.name) != getattr(defaults, f.name)}
    if alloc:
        out["allocation"] = alloc
    if cfg.overrides:
        out["overrides"] = cfg.overrides
    if cfg.allow_skip:
        out["allow_skip"] = True
    if cfg.init != "eager":
        out["init"] = cfg.init
    if not cfg.freeze_norm_stats:
        out["freeze_norm_stats"] = False
    if cfg.schedule:
        out["schedule"] = cfg.schedule
    return _plain(out)


def config_hash(cfg: PeftConfig) -> str:
    """sha256 of the canonical config (sorted-key JSON)."""
    text = json.dumps(canonical_config(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def record(plan) -> Dict[str, Any]:
    """The provenance of a plan: method, canonical config and its hash, per-module hyperparameters."""
    if plan.config is None:
        raise PeftError("the plan has no PEFT config to record")
    return {"format": FORMAT, "method": plan.method, "config": canonical_config(plan.config),
            "config_sha256": config_hash(plan.config),
            "modules": {r.name: _plain(dict(r.hyper, **({"method": r.method} if r.method != plan.method else {})))
                        for r in plan.rows}}


def to_state(plan) -> Dict[str, torch.Tensor]:
    """The record as a float64 vector of the bytes of its compressed JSON (cached on the plan)."""
    cached = getattr(plan, "_provenance_tensor", None)
    if cached is None:
        data = zlib.compress(json.dumps(record(plan), sort_keys=True, separators=(",", ":")).encode(), 9)
        cached = torch.tensor(list(data), dtype=torch.float64)
        plan._provenance_tensor = cached
    return {KEY: cached.clone()}


def decode(value: torch.Tensor) -> Dict[str, Any]:
    """The record held by a state's ``peft_adapter_config`` tensor."""
    bad = PeftError(f"the adapter state's {KEY} is not a PEFT config record (damaged, or averaged over "
                    f"checkpoints of different configs)")
    if not isinstance(value, torch.Tensor) or value.dim() != 1 or not value.is_floating_point():
        raise bad
    v = value.detach().double().cpu()
    if not bool(((v >= 0) & (v <= 255) & (v == v.round())).all()):
        raise bad
    try:
        rec = json.loads(zlib.decompress(bytes(v.to(torch.uint8).tolist())))
    except (zlib.error, ValueError):
        raise bad from None
    if not isinstance(rec, dict) or not isinstance(rec.get("config"), dict) or \
            not isinstance(rec.get("modules"), dict):
        raise bad
    return rec


def take(state: Mapping[str, Any], prefix: str = "") -> Tuple[Optional[Dict[str, Any]], Dict[str, Any]]:
    """The record in ``state`` (None if it has none), and the rest of the state."""
    if prefix + KEY not in state:
        return None, dict(state)
    rest = {k: v for k, v in state.items() if k != prefix + KEY}
    return decode(state[prefix + KEY]), rest


def _show(value: Any) -> str:
    if value is _MISSING:
        return "not set"
    return value if isinstance(value, str) else json.dumps(value)


def _flat(d: Mapping[str, Any], path: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        name = f"{path}.{k}" if path else k
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, name))
        else:
            out[name] = v
    return out


def mismatch(plan, theirs: Optional[Mapping[str, Any]], where: Optional[str] = None) -> Optional[str]:
    """What differs between the config the adapter was trained with (``theirs``, a record) and the
    one ``plan`` was made from, or None. ``theirs`` None (an adapter state written before the record
    existed): a warning, nothing to compare."""
    where = where or (plan.config.source if plan.config is not None and plan.config.source else
                      "this model's PEFT config")
    if theirs is None:
        log.warning("espnet_peft: the adapter state records no PEFT config (written before adapter states "
                    "carried one): its method and hyperparameters cannot be checked against %s", where)
        return None
    own = record(plan)
    parts: List[str] = []
    if theirs.get("method") != own["method"]:
        parts.append(f"method: {_show(theirs.get('method'))} in the adapter, {own['method']} in {where}")
    elif theirs.get("config_sha256") != own["config_sha256"]:
        a, b = _flat(theirs["config"]), _flat(own["config"])
        for k in sorted(set(a) | set(b)):
            if a.get(k, _MISSING) != b.get(k, _MISSING):
                parts.append(f"{k}: {_show(a.get(k, _MISSING))} in the adapter, {_show(b.get(k, _MISSING))} in {where}")
        if not parts:
            parts.append(f"config hash {str(theirs.get('config_sha256'))[:12]} in the adapter, "
                         f"{own['config_sha256'][:12]} in {where}")
    a, b = theirs["modules"], own["modules"]
    only_theirs, only_own = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    changed = sorted(n for n in set(a) & set(b) if a[n] != b[n])
    if only_theirs:
        parts.append(f"{len(only_theirs)} module(s) adapted in the adapter, not in this model's plan, "
                     f"e.g. {only_theirs[:3]}")
    if only_own:
        parts.append(f"{len(only_own)} module(s) planned here, not in the adapter, e.g. {only_own[:3]}")
    if changed:
        shown = "; ".join(f"{n} {_hyper(a[n])} in the adapter, {_hyper(b[n])} here" for n in changed[:3])
        parts.append(f"{len(changed)} module(s) with other hyperparameters: {shown}"
                     f"{' ...' if len(changed) > 3 else ''}")
    if not parts:
        return None
    return f"the adapter was trained with another PEFT config than {where}: " + "; ".join(parts)


def _hyper(h: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in h.items()) or "-"
