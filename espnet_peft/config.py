"""PEFT configuration: parsed from a dict, a YAML/JSON file or an object, validated strictly.

Keys (see ``conf/peft/*.yaml`` for examples)::

    method: ssvd_o                 # one of espnet_peft.METHODS
    target_modules: [attn.linear_q, feed_forward.w_1]   # dotted suffixes, matched at dots
    exclude_modules: []            # same syntax; removed from the matches
    budget: 0.01                   # int: parameter count; float < 1 or "1%": model fraction
    r / rank, k, k_in, k_out       # explicit hyperparameters instead of a budget
    allocation:                    # how a budget is split (see espnet_peft.budget)
      weights: uniform             # preset or {group: weight}
      inner: 0.5                   # SSVD-O inner share
      within: equal                # equal | size  (split inside a group)
      depth: {split: 6}            # optional lower / upper block groups
      groups: {name: [patterns]}   # extra module groups, matched before the built-in ones
    overrides: {pattern: {r: 16}}  # explicit hyperparameters for some modules ("skip" to drop)
    allow_skip: false              # modules too small for one unit are skipped, not an error
    init: eager                    # or lazy: initialise each wrapper at its first use
    freeze_norm_stats: true        # frozen BatchNorm layers keep their running statistics
    schedule: {frozen_encoder_steps: 500}   # Speech-FT stage 1: the head trains alone at first
    + method options (alpha, rslora, dropout, directions, rotation, forward, svd, svd_niter, seed)
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from .methods import REGISTRY, get_method
from .methods.base import PeftError
from .schedule import parse_schedule

COMMON_KEYS = ("method", "target_modules", "exclude_modules", "budget", "allocation", "overrides",
               "allow_skip", "init", "freeze_norm_stats", "schedule")
HYPER_ALIASES = {"rank": "r"}
#: explicit-size keys of the built-in methods (dropped when a budget replaces them)
HYPER_KEYS = ("r", "rank", "k", "k_in", "k_out", "head_blocks")
ALLOCATION_KEYS = ("weights", "inner", "within", "depth", "groups")


def _method_keys(name: str) -> set:
    m = REGISTRY[name]
    keys = set(m.options) | set(m.hyper_keys)
    if "r" in keys:
        keys.add("rank")
    if "k" in keys or "k_in" in keys:
        keys |= {"k", "k_in", "k_out"} if "k_in" in keys else {"k"}
    return keys


def parse_budget(value: Any) -> Optional[Union[int, float]]:
    """int >= 1: a parameter count; float in (0, 1) or 'x%': a fraction of all model parameters."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise PeftError(f"budget must be a number, got {value!r}")
    if isinstance(value, str):
        v = value.strip()
        try:
            if v.endswith("%"):
                value = float(v[:-1]) / 100.0
                if not 0 < value < 1:
                    raise ValueError
                return value
            value = float(v)
        except ValueError:
            raise PeftError(f"budget {value!r} is not a number, a fraction or a percentage") from None
    if isinstance(value, float):
        if 0 < value < 1:
            return value
        if value >= 1 and value.is_integer():
            return int(value)
    if isinstance(value, int) and value >= 1:
        return value
    raise PeftError(f"budget must be a parameter count >= 1 or a fraction in (0, 1), got {value!r}")


@dataclass
class Allocation:
    weights: Any = "uniform"
    inner: float = 0.5
    within: str = "equal"
    depth: Optional[Dict[str, Any]] = None
    groups: Dict[str, List[str]] = field(default_factory=dict)


@dataclass
class PeftConfig:
    method: str
    target_modules: List[str]
    exclude_modules: List[str] = field(default_factory=list)
    budget: Optional[Union[int, float]] = None
    hyper: Dict[str, Any] = field(default_factory=dict)
    options: Dict[str, Any] = field(default_factory=dict)
    allocation: Allocation = field(default_factory=Allocation)
    overrides: Dict[str, Any] = field(default_factory=dict)
    allow_skip: bool = False
    init: str = "eager"
    freeze_norm_stats: bool = True
    schedule: Dict[str, Any] = field(default_factory=dict)
    raw: Dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------------------ parsing
    @classmethod
    def from_any(cls, config: Any) -> "PeftConfig":
        if isinstance(config, PeftConfig):
            return config
        if isinstance(config, (str, os.PathLike)):
            return cls.from_file(config)
        if isinstance(config, Mapping):
            return cls.from_dict(config)
        if hasattr(config, "__dict__"):
            return cls.from_dict({k: v for k, v in vars(config).items() if not k.startswith("_")})
        raise PeftError(f"a PEFT config must be a dict, a YAML/JSON path or an object, got {type(config).__name__}")

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike]) -> "PeftConfig":
        p = Path(path)
        if not p.is_file():
            raise PeftError(f"PEFT config file not found: {p}")
        text = p.read_text()
        try:
            if p.suffix == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as e:  # yaml.YAMLError, json.JSONDecodeError
            raise PeftError(f"cannot parse PEFT config {p}: {e}") from None
        if not isinstance(data, Mapping):
            raise PeftError(f"PEFT config {p} must hold a mapping at the top level")
        try:
            return cls.from_dict(data)
        except PeftError as e:
            raise PeftError(f"{p}: {e}") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PeftConfig":
        data = dict(data)
        if "method" not in data:
            raise PeftError(f"PEFT config needs 'method' (one of {', '.join(REGISTRY)})")
        method = get_method(str(data["method"]))
        allowed = set(COMMON_KEYS) | _method_keys(method.name)
        unknown = sorted(set(data) - allowed)
        if unknown:
            owners = {k: [n for n in REGISTRY if k in _method_keys(n)] for k in unknown}
            detail = "; ".join(f"{k!r} applies to {', '.join(v)}" if v else f"{k!r} is not a config key"
                               for k, v in owners.items())
            raise PeftError(f"unknown config key(s) for method {method.name!r}: {detail}. "
                            f"Valid keys: {', '.join(sorted(allowed))}")
        targets = data.get("target_modules")
        if isinstance(targets, str):
            targets = [targets]
        if not targets or not all(isinstance(t, str) and t.strip() for t in targets):
            raise PeftError("target_modules must be a non-empty list of dotted module-name suffixes")
        excludes = data.get("exclude_modules") or []
        if isinstance(excludes, str):
            excludes = [excludes]
        hyper = {HYPER_ALIASES.get(k, k): data[k] for k in HYPER_KEYS + tuple(method.hyper_keys)
                 if k in data and data[k] is not None}
        options = {k: copy.deepcopy(v) for k, v in method.options.items()}
        options.update({k: data[k] for k in method.options if k in data})
        alloc_raw = data.get("allocation") or {}
        if not isinstance(alloc_raw, Mapping):
            raise PeftError("allocation must be a mapping")
        bad = sorted(set(alloc_raw) - set(ALLOCATION_KEYS))
        if bad:
            raise PeftError(f"unknown allocation key(s) {bad}; valid: {', '.join(ALLOCATION_KEYS)}")
        allocation = Allocation(**{k: alloc_raw[k] for k in ALLOCATION_KEYS if k in alloc_raw})
        if "inner" in alloc_raw:
            options["inner"] = float(alloc_raw["inner"])
        if not 0.0 <= float(allocation.inner) <= 1.0:
            raise PeftError(f"allocation.inner must lie in [0, 1], got {allocation.inner}")
        if allocation.within not in ("equal", "size"):
            raise PeftError(f"allocation.within must be 'equal' or 'size', got {allocation.within!r}")
        init = data.get("init", "eager")
        if init not in ("eager", "lazy"):
            raise PeftError(f"init must be 'eager' or 'lazy', got {init!r}")
        options["init"] = init
        overrides = data.get("overrides") or {}
        if not isinstance(overrides, Mapping):
            raise PeftError("overrides must map module patterns to hyperparameters or 'skip'")
        cfg = cls(method=method.name, target_modules=[t.strip() for t in targets],
                  exclude_modules=list(excludes), budget=parse_budget(data.get("budget")), hyper=hyper,
                  options=options, allocation=allocation, overrides=dict(overrides),
                  allow_skip=bool(data.get("allow_skip", False)), init=init,
                  freeze_norm_stats=bool(data.get("freeze_norm_stats", True)),
                  schedule=parse_schedule(data.get("schedule")), raw=copy.deepcopy(data))
        if cfg.budget is not None and hyper:
            raise PeftError(f"give either a budget or explicit hyperparameters ({', '.join(hyper)}), not both")
        if cfg.budget is None and not hyper and method.budgeted:
            raise PeftError(f"method {method.name!r} needs a budget or explicit hyperparameters "
                            f"({', '.join(method.hyper_keys)})")
        if cfg.budget is not None and not method.budgeted:
            raise PeftError(f"method {method.name!r} has no budget knob; remove 'budget'")
        return cfg

    def to_dict(self) -> Dict[str, Any]:
        """The config as given (for saving next to checkpoints)."""
        return copy.deepcopy(self.raw)
