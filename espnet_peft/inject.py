"""Swapping the method's wrappers into a model, after planning (targets: ``targets.py``)."""
from __future__ import annotations

from typing import Any, List

from torch import nn

from .budget import Plan, PlanRow, plan_modules
from .config import PeftConfig
from .errors import PeftError
from .fingerprint import record
from .methods import get_method
from .methods.base import Method
from .names import block_index
from .schedule import FreezeSchedule
from .targets import find_targets


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def _in_mode_of(module: nn.Module, wrapper: nn.Module) -> nn.Module:
    """The wrapper, its new modules (dropout, a head) in the train / eval mode of the module it wraps."""
    old = {id(m) for m in module.modules()}
    for m in wrapper.modules():
        if id(m) not in old:
            m.training = module.training
    return wrapper


def _keep_eval(module: nn.Module, args) -> None:
    module.training = False


def freeze_norm_statistics(model: nn.Module) -> int:
    """Frozen normalisation layers with running statistics (BatchNorm) stay in eval mode, so
    that training a PEFT model does not silently change the frozen model's statistics."""
    n = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and \
                not any(p.requires_grad for p in m.parameters(recurse=False)):
            if not getattr(m, "_peft_frozen_stats", False):
                m._peft_frozen_stats_hook = m.register_forward_pre_hook(_keep_eval)
                m._peft_frozen_stats = True
            n += 1
    return n


def release_norm_statistics(model: nn.Module) -> None:
    for m in model.modules():
        hook = getattr(m, "_peft_frozen_stats_hook", None)
        if hook is not None:
            hook.remove()
            del m._peft_frozen_stats_hook
            m._peft_frozen_stats = False


def nested_rows(targets, cfg: PeftConfig, method: Method) -> List[PlanRow]:
    """Rows of adapters that a wrapping method (one with an ``inner_attr``) carries inside the module
    it wraps (its ``adapters`` option), named as they will be after wrapping. Explicit sizes only."""
    spec = cfg.options.get("adapters") if method.inner_attr else None
    if not spec:
        return []
    spec = dict(spec)
    from_block = int(spec.pop("from_block", 0))
    sub = PeftConfig.from_dict(spec)
    sub_method = get_method(sub.method)
    if sub.budget is not None or not sub_method.budgeted or sub_method.inner_attr:
        raise PeftError(f"{method.name} adapters take a matrix method with explicit sizes (rank, k, ...), "
                        f"got {sub.method!r}" + (" with a budget" if sub.budget is not None else ""))
    rows: List[PlanRow] = []
    for name, module in targets:
        found = [(n, m) for n, m in find_targets(module, sub, sub_method)
                 if (block_index(n) if block_index(n) is not None else -1) >= from_block]
        if not found:
            raise PeftError(f"{method.name} adapters: no {sub.target_modules} module in blocks >= {from_block}")
        for r in plan_modules(found, sub, count_params(module)).rows:
            r.origin, r.name = f"{name}.{r.name}", f"{name}.{method.inner_attr}.{r.name}"
            r.options = sub.options
            rows.append(r)
    return rows


def plan_peft(model: nn.Module, config: Any) -> Plan:
    """The plan :func:`apply_peft` would carry out, without changing the model."""
    cfg = PeftConfig.from_any(config)
    method = get_method(cfg.method)
    targets = find_targets(model, cfg, method)
    inner = nested_rows(targets, cfg, method)
    plan = plan_modules(targets, cfg, count_params(model), reserved=sum(r.params for r in inner))
    plan.rows += inner
    return plan


def apply_peft(model: nn.Module, config: Any) -> Plan:
    """Wrap the planned modules of ``model`` in place, freeze everything else; returns the plan.

    ``config``: a dict, a YAML/JSON path, a :class:`PeftConfig` or an object with attributes.
    """
    if getattr(model, "peft_plan", None) is not None:
        raise PeftError("this model already has PEFT applied (merge_peft it first)")
    cfg = PeftConfig.from_any(config)
    plan = plan_peft(model, cfg)
    prefix = cfg.schedule.get("frozen_prefix")
    if cfg.schedule.get("frozen_encoder_steps") and not any(
            r.name == prefix or r.name.startswith(prefix + ".") for r in plan.rows):
        raise PeftError(f"schedule: the plan adapts nothing under {prefix!r}, so there is nothing to hold back")
    plan.fingerprints = record(model)  # the whole pretrained model, before anything is wrapped
    for p in model.parameters():
        p.requires_grad_(False)
    for row in plan.rows:  # outer wrappers first: nested rows are named inside them
        module = model.get_submodule(row.name)
        wrapper = get_method(row.method).wrap(module, row.hyper, row.options or cfg.options)
        set_module(model, row.name, _in_mode_of(module, wrapper))
    if cfg.freeze_norm_stats:
        freeze_norm_statistics(model)
    trainable = sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())
    if trainable != plan.total:  # an internal invariant: what trains is what was planned
        raise RuntimeError(f"trainable parameters ({trainable:,}) differ from the plan ({plan.total:,})")
    if cfg.schedule.get("frozen_encoder_steps"):
        model.peft_schedule = FreezeSchedule(cfg.schedule["frozen_encoder_steps"], cfg.schedule["frozen_prefix"])
        model.peft_schedule.attach(model)
    model.peft_plan = plan
    return plan


def get_plan(model: nn.Module) -> Plan:
    model = getattr(model, "module", model)  # DDP / DataParallel
    plan = getattr(model, "peft_plan", None)
    if plan is None:
        raise PeftError("the model has no PEFT applied (call espnet_peft.apply_peft first)")
    return plan
