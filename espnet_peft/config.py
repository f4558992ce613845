"""PEFT configuration: parsed from a dict, a YAML/JSON file or an object, validated strictly.

Keys (see ``conf/peft/*.yaml`` for examples)::

    method: NAME                   # one of espnet_peft.METHODS
    target_modules: [attn.linear_q, feed_forward.w_1]   # dotted suffixes, matched at dots
    exclude_modules: []            # same syntax; removed from the matches
    budget: 0.01                   # int: parameter count; float < 1 or "1%": model fraction
    r / rank, k, k_in, k_out       # explicit hyperparameters instead of a budget (the method's)
    allocation:                    # how a budget is split (see espnet_peft.budget)
      weights: uniform             # preset or {group: weight}
      inner: 0.5                   # inner share (methods with an inner / outer split)
      within: equal                # equal | size  (split inside a group)
      depth: {split: 6}            # optional lower / upper block groups ({ranges: {name: [lo, hi]}})
      groups: {name: [patterns]}   # extra module groups, matched before the built-in ones
      placement: all               # all | upper_first | lower_first (budget below one unit per module)
    overrides: {pattern: {r: 16}}  # explicit hyperparameters for some modules ("skip" to drop)
    allow_skip: false              # modules too small for one unit are skipped, not an error
    init: eager                    # or lazy: initialise each wrapper at its first use
    freeze_norm_stats: true        # frozen BatchNorm layers keep their running statistics
    schedule: {frozen_encoder_steps: 500}   # Speech-FT stage 1: the head trains alone at first
    + the method's options (``python -m espnet_peft.bin.peft_config --options`` lists them)

Everything that can be checked without the model is checked here: unknown keys, keys of another
method, option values, options without effect, numbers that are not finite (``.nan``, ``.inf``)
anywhere in the config, a key given twice in the file (:func:`strict_yaml_load`); patterns are
checked against the model when planning.
"""
from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from .errors import PeftError
from .methods import REGISTRY, Method, get_method, hyper_names
from .names import did_you_mean
from .schedule import parse_schedule

COMMON_KEYS = ("method", "target_modules", "exclude_modules", "budget", "allocation", "overrides",
               "allow_skip", "init", "freeze_norm_stats", "schedule")
ALLOCATION_KEYS = ("weights", "inner", "within", "depth", "groups", "placement")
#: what the planner does when the budget cannot give every target module one unit (espnet_peft.budget)
PLACEMENTS = ("all", "upper_first", "lower_first")
#: the option a method declares when a budget is split between its inner and outer sides
INNER = "inner"


def _method_keys(method: Method) -> set:
    return set(method.options.names()) | set(method.hyper_names())


def parse_budget(value: Any) -> Optional[Union[int, float]]:
    """int >= 1: a parameter count; float in (0, 1) or 'x%': a fraction of all model parameters."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise PeftError(f"budget must be a number, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1] if text.endswith("%") else text)
        except ValueError:
            raise PeftError(f"budget {value!r} is not a number, a fraction or a percentage") from None
        if not math.isfinite(number):
            raise PeftError(f"budget {value!r} is not a finite number")
        if text.endswith("%"):
            if not 0 < number < 100:
                raise PeftError(f"budget {value!r} is out of range: a percentage must lie in (0%, 100%)")
            return number / 100.0
        value = number
    if isinstance(value, float):
        if 0 < value < 1:
            return value
        if value >= 1 and value.is_integer():
            return int(value)
    if isinstance(value, int) and value >= 1:
        return value
    raise PeftError(f"budget must be a parameter count >= 1 or a fraction in (0, 1), got {value!r}")


def _flag(data: Mapping[str, Any], key: str, default: bool) -> bool:
    v = data.get(key, default)
    if not isinstance(v, bool):
        raise PeftError(f"{key} must be true or false, got {v!r}")
    return v


def _patterns(value: Any, key: str) -> List[str]:
    value = [value] if isinstance(value, str) else (value or [])
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) and p.strip() for p in value):
        raise PeftError(f"{key} must be a list of dotted module-name patterns, got {value!r}")
    return [p.strip() for p in value]


@dataclass
class Allocation:
    weights: Any = "uniform"
    inner: float = 0.5
    within: str = "equal"
    depth: Optional[Dict[str, Any]] = None
    groups: Dict[str, List[str]] = field(default_factory=dict)
    placement: str = "all"

    @classmethod
    def from_dict(cls, raw: Any) -> "Allocation":
        if not isinstance(raw, Mapping):
            raise PeftError("allocation must be a mapping")
        bad = sorted(set(raw) - set(ALLOCATION_KEYS))
        if bad:
            raise PeftError(f"unknown allocation key(s) {bad}{did_you_mean(bad[0], ALLOCATION_KEYS)}; "
                            f"valid: {', '.join(ALLOCATION_KEYS)}")
        alloc = cls(**{k: raw[k] for k in ALLOCATION_KEYS if k in raw and raw[k] is not None})
        if alloc.within not in ("equal", "size"):
            raise PeftError(f"allocation.within must be 'equal' or 'size', got {alloc.within!r}")
        if alloc.placement not in PLACEMENTS:
            raise PeftError(f"allocation.placement must be one of {', '.join(PLACEMENTS)}, got {alloc.placement!r}"
                            f"{did_you_mean(str(alloc.placement), PLACEMENTS)}")
        if not isinstance(alloc.weights, (str, Mapping)):
            raise PeftError("allocation.weights must be a preset name or a mapping group -> weight")
        depth = alloc.depth
        if depth is not None and (not isinstance(depth, Mapping) or len(depth) != 1 or
                                  not set(depth) <= {"split", "ranges"}):
            raise PeftError(f"allocation.depth must be {{split: N}} or {{ranges: {{name: [lo, hi]}}}}, got {depth!r}")
        if not isinstance(alloc.groups, Mapping):
            raise PeftError("allocation.groups must map group names to module patterns")
        alloc.groups = {g: _patterns(p, f"allocation.groups.{g}") for g, p in alloc.groups.items()}
        return alloc


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
    #: the file the config was read from (named in error messages), None for a dict or an object
    source: Optional[str] = field(default=None, compare=False)

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
        data = read_config(path)
        try:
            cfg = cls.from_dict(data)
        except PeftError as e:
            raise PeftError(f"{path}: {e}") from None
        cfg.source = str(path)
        return cfg

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PeftConfig":
        data = dict(data)
        _check_finite(data)
        if "method" not in data:
            raise PeftError(f"PEFT config needs 'method' (one of {', '.join(REGISTRY)})")
        method = get_method(str(data["method"]))
        _check_keys(data, method)
        targets = _patterns(data.get("target_modules"), "target_modules")
        if not targets:
            raise PeftError("target_modules must be a non-empty list of dotted module-name suffixes")
        hyper = method.canonical_hyper({k: v for k, v in data.items() if k in method.hyper_names() and v is not None},
                                       f"method {method.name!r}")
        allocation = Allocation.from_dict(data.get("allocation") or {})
        options = method.options.resolve(_given_options(data, method), f"method {method.name!r}", require_effect=True)
        init = data.get("init", "eager")
        if init not in ("eager", "lazy"):
            raise PeftError(f"init must be 'eager' or 'lazy', got {init!r}")
        options["init"] = init
        cfg = cls(method=method.name, target_modules=targets,
                  exclude_modules=_patterns(data.get("exclude_modules"), "exclude_modules"),
                  budget=parse_budget(data.get("budget")), hyper=hyper, options=options, allocation=allocation,
                  overrides=_overrides(data.get("overrides"), method), allow_skip=_flag(data, "allow_skip", False),
                  init=init, freeze_norm_stats=_flag(data, "freeze_norm_stats", True),
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


def _check_finite(value: Any, path: str = "") -> None:
    """Every number anywhere in the config is finite: ``.nan`` / ``.inf`` are errors naming the key
    (a NaN passes every range check, an infinite scale or budget only fails at compute)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise PeftError(f"{path or 'the config'}: {value} is not a finite number (every number in a PEFT config "
                        f"must be finite)")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_finite(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(v, f"{path}[{i}]")


def _check_keys(data: Mapping[str, Any], method: Method) -> None:
    allowed = set(COMMON_KEYS) | _method_keys(method)
    unknown = sorted(set(data) - allowed)
    if unknown:
        owners = {k: [n for n, m in REGISTRY.items() if k in _method_keys(m)] for k in unknown}
        detail = "; ".join(f"{k!r} applies to {', '.join(v)}" if v else
                           f"{k!r} is not a config key{did_you_mean(k, allowed)}" for k, v in owners.items())
        raise PeftError(f"unknown config key(s) for method {method.name!r}: {detail}. "
                        f"Valid keys: {', '.join(sorted(allowed))}")


def _given_options(data: Mapping[str, Any], method: Method) -> Dict[str, Any]:
    given = {k: data[k] for k in method.options.names() if k in data}
    inner = (data.get("allocation") or {}).get(INNER)
    if inner is not None:
        if INNER not in method.options:
            split = [n for n, m in REGISTRY.items() if INNER in m.options]
            raise PeftError(f"allocation.inner splits a budget between the inner and outer sides of "
                            f"{', '.join(split)}; method {method.name!r} has no such split (remove it)")
        given[INNER] = inner
    return given


def _overrides(raw: Any, method: Method) -> Dict[str, Any]:
    if not raw:
        return {}
    if not isinstance(raw, Mapping):
        raise PeftError("overrides must map module patterns to hyperparameters or 'skip'")
    out: Dict[str, Any] = {}
    for pattern, value in raw.items():
        if value == "skip":
            out[str(pattern)] = value
        elif isinstance(value, Mapping):
            out[str(pattern)] = method.canonical_hyper(value, f"overrides[{pattern!r}]")
        else:
            raise PeftError(f"overrides[{pattern!r}] must be a mapping of hyperparameters or 'skip', got {value!r}")
    return out


def _no_duplicate_keys(node, source: str, path: str = "", seen_nodes=None) -> None:
    """Refuse a YAML mapping that gives a key twice (YAML loaders keep the last value silently)."""
    import yaml

    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:  # an alias of a node already checked
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: Dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                _no_duplicate_keys(value_node, source, path, seen_nodes)
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            name = f"{path}.{key}" if path else key
            if key in lines:
                raise PeftError(f"{source}: key {name!r} is given twice (lines {lines[key]} and {line}); YAML "
                                f"would silently keep the last value: remove one")
            lines[key] = line
            _no_duplicate_keys(value_node, source, name, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _no_duplicate_keys(item, source, f"{path}[{i}]", seen_nodes)


def strict_yaml_load(text: str, source: Union[str, os.PathLike]) -> Any:
    """``yaml.safe_load(text)``, except that a key given twice in a mapping is an error naming the
    key, its lines and ``source`` (the file), not a silent "last one wins"."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _no_duplicate_keys(node, str(source))
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _json_pairs(source: str):
    def hook(pairs):
        out: Dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise PeftError(f"{source}: key {k!r} is given twice; JSON would silently keep the last value: "
                                f"remove one")
            out[k] = v
        return out

    return hook


def read_config(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """The mapping in a YAML / JSON config file (a key given twice is an error)."""
    p = Path(path)
    if not p.is_file():
        raise PeftError(f"PEFT config file not found: {p}")
    text = p.read_text()
    try:
        if p.suffix == ".json":
            data = json.loads(text, object_pairs_hook=_json_pairs(str(p)))
        else:
            data = strict_yaml_load(text, p)
    except PeftError:
        raise
    except Exception as e:  # yaml.YAMLError, json.JSONDecodeError
        raise PeftError(f"cannot parse PEFT config {p}: {e}") from None
    if not isinstance(data, Mapping):
        raise PeftError(f"PEFT config {p} must hold a mapping at the top level")
    return dict(data)


def with_settings(data: Mapping[str, Any], settings: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of a config mapping with ``settings`` applied (``a.b`` sets a nested key).

    A budget replaces the explicit hyperparameters (every registered method's keys and aliases),
    explicit hyperparameters replace the budget, and another method drops the old method's
    hyperparameters; the result is validated by :class:`PeftConfig` when it is used.
    """
    out = copy.deepcopy(dict(data))
    for key, value in settings.items():
        *path, last = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise PeftError(f"cannot set {key!r}: {part!r} is not a mapping in the config")
        node[last] = value
    names, top = set(hyper_names()), {k.split(".")[0] for k in settings}
    if top & {"budget", "method"}:
        for k in names - top:
            out.pop(k, None)
    if top & names:
        out.pop("budget", None)
    return out


def split_setting(text: str) -> Tuple[str, Any]:
    """``KEY=VALUE`` from the command line, the value read as YAML (``2%`` stays a string)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise PeftError(f"a setting is KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value) if value.strip() else None
