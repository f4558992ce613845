"""Many adapters, one model: an adapter bank on one frozen pretrained model.

Adapter states (``peft_state_dict``, adapter-only checkpoints) of any of the layer methods, trained on
the same pretrained model, are loaded side by side; one is active at a time, or none (the frozen
model itself). Each adapted module becomes a :class:`BankLinear`: the original module plus one wrapper
per adapter that adapts it (built by the adapter's own method on that very module, so the frozen
weights are shared, not copied). All bank modules read the active name from one shared selector, so
switching costs the same whatever the model's size.

Merged mode (``bank.merge(name)``) writes the active adapter's merged weights into the frozen modules
for a forward at the base model's cost; the original weights of every module it changes are kept,
and switching (or ``unmerge``) copies them back: the base weights are restored bit for bit, not by
subtracting a delta.

    bank = AdapterBank(model)                       # a model with its pretrained weights loaded
    bank.add("child", torch.load("child/adapter.pth", weights_only=True))
    bank.add("accent", accent_state)
    bank.activate("child"); y = model(x)            # the child adapter
    bank.activate(None); y = model(x)               # the frozen model
    bank.merge("accent"); y = model(x)              # merged: base-model forward cost
    bank.memory()                                   # parameters: base, per adapter, kept copies
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional

import torch
from torch import nn

from . import fingerprint, provenance
from .adapter_file import check_finite
from .config import PeftConfig
from .errors import PeftError
from .inject import plan_peft, set_module
from .methods import get_method

BASE = None  # the name of "no adapter": the frozen model


class _Selector:
    """The bank's state every :class:`BankLinear` reads: the active adapter (unmerged forward)."""

    def __init__(self):
        self.active: Optional[str] = None


class BankLinear(nn.Module):
    """An adapted module of a bank: the original module and one wrapper per adapter adapting it."""

    def __init__(self, base: nn.Module, selector: _Selector):
        super().__init__()
        self.base = base
        self.adapters = nn.ModuleDict()
        self._selector = selector

    def forward(self, x):
        name = self._selector.active
        if name is not None and name in self.adapters:
            return self.adapters[name](x)
        return self.base(x)


class AdapterBank:
    """Several adapter states on one model (see the module docstring)."""

    def __init__(self, model: nn.Module):
        if getattr(model, "peft_plan", None) is not None:
            raise PeftError("the model has PEFT applied: an adapter bank needs the plain pretrained model")
        self.model = model
        self.fingerprints = fingerprint.record(model)  # the pretrained model every adapter must match
        self.selector = _Selector()
        self.adapters: Dict[str, List[str]] = {}  # name -> adapted module names
        self.methods: Dict[str, str] = {}
        self.merged: Optional[str] = None
        self._kept: Dict[str, Dict[str, torch.Tensor]] = {}  # module -> its original tensors (merged mode)
        for p in model.parameters():
            p.requires_grad_(False)

    # ---------------------------------------------------------------- loading
    def add(self, name: str, state: Mapping[str, torch.Tensor], config=None) -> None:
        """Load an adapter state under ``name``; refused before anything changes when it was trained on
        another pretrained model (naming the modules that differ), with another config than its own
        record, or is of a method whose merged model is not the stock architecture. ``config`` (a PEFT
        config: dict, file or object) is needed only for states written before they recorded theirs
        (the experiment's frozen ``peft_config.yaml``)."""
        if not name or name in self.adapters or name == "base":
            raise PeftError(f"adapter name {name!r} is empty, reserved or already in the bank")
        if self.merged is not None:
            raise PeftError(f"unmerge {self.merged!r} before adding adapters")
        check_finite(state, f"adapter {name!r}")
        theirs, rest = fingerprint.take(state)
        problem = fingerprint.mismatch(self.fingerprints, theirs)
        if problem:
            raise PeftError(f"adapter {name!r}: {problem}")
        record, rest = provenance.take(rest)
        if record is None and config is None:
            raise PeftError(f"adapter {name!r} records no PEFT config (an adapter file written before adapter "
                            f"states carried one): give its experiment's config (peft_config.yaml)")
        cfg = PeftConfig.from_any(config) if record is None else PeftConfig.from_dict(dict(record["config"]))
        method = get_method(cfg.method)
        if method.inner_attr is not None or not method.exports_stock_model:
            raise PeftError(f"adapter {name!r}: method {cfg.method} does not wrap single layers, which a bank "
                            f"switches between")
        plan = plan_peft(self._plain_view(), cfg)
        problem = record and provenance.mismatch(plan, record, where=f"the plan of this model for adapter {name!r}")
        if problem:
            raise PeftError(f"adapter {name!r}: {problem}")
        per_module: Dict[str, Dict[str, torch.Tensor]] = {r.name: {} for r in plan.rows}
        names = sorted(per_module, key=len, reverse=True)
        for key, value in rest.items():
            owner = next((n for n in names if key.startswith(n + ".")), None)
            if owner is None:
                raise PeftError(f"adapter {name!r}: tensor {key!r} belongs to no module of its plan")
            per_module[owner][key[len(owner) + 1:]] = value
        built = {}
        for row in plan.rows:  # every wrapper is built and loaded before the model changes
            base = self._base_module(row.name)
            m = get_method(row.method)
            wrapper = m.wrap(base, row.hyper, row.options or cfg.options)
            m.load_trainable_state(wrapper, per_module[row.name])
            for p in wrapper.parameters():
                p.requires_grad_(False)
            built[row.name] = wrapper.eval()
        for row_name, wrapper in built.items():
            self._bank_module(row_name).adapters[name] = wrapper
        self.adapters[name] = list(built)
        self.methods[name] = cfg.method

    def _plain_view(self) -> nn.Module:
        """The model as the adapters were planned on: bank modules shown as their original modules."""
        if not any(isinstance(m, BankLinear) for m in self.model.modules()):
            return self.model
        view = _PlainView(self.model)
        return view.model

    def _base_module(self, name: str) -> nn.Module:
        module = self.model.get_submodule(name)
        return module.base if isinstance(module, BankLinear) else module

    def _bank_module(self, name: str) -> BankLinear:
        module = self.model.get_submodule(name)
        if not isinstance(module, BankLinear):
            module = BankLinear(module, self.selector)
            set_module(self.model, name, module)
        return module

    # ---------------------------------------------------------------- switching
    def activate(self, name: Optional[str]) -> None:
        """Make ``name`` the active adapter (None or "base": the frozen model), unmerged."""
        name = None if name in (None, "base") else name
        if name is not None and name not in self.adapters:
            raise PeftError(f"no adapter {name!r} in the bank (have: {', '.join(self.adapters) or 'none'})")
        if self.merged is not None:
            self.unmerge()
        self.selector.active = name

    @torch.no_grad()
    def merge(self, name: Optional[str]) -> None:
        """Merged mode: ``name``'s merged weights in the frozen modules (None: the frozen model)."""
        name = None if name in (None, "base") else name
        self.activate(name)  # (unmerges the previous one first)
        if name is None:
            return
        self.selector.active = None  # the forward now runs the plain modules, holding the merged weights
        for module_name in self.adapters[name]:
            bank = self.model.get_submodule(module_name)
            merged = get_method(self.methods[name]).merge(bank.adapters[name])
            target = dict(bank.base.named_parameters())
            kept = {k: v.detach().clone() for k, v in target.items()}
            for k, v in merged.named_parameters():
                if k not in target or target[k].shape != v.shape:
                    raise PeftError(f"adapter {name!r}: the merged {module_name}.{k} does not fit the module")
            self._kept[module_name] = kept
            for k, v in merged.named_parameters():
                target[k].copy_(v)
        self.merged = name

    @torch.no_grad()
    def unmerge(self) -> None:
        """Back to the frozen weights: the kept originals copied back (bit for bit)."""
        for module_name, kept in self._kept.items():
            target = dict(self._base_module(module_name).named_parameters())
            for k, v in kept.items():
                target[k].copy_(v)
        self._kept, self.merged = {}, None

    # ---------------------------------------------------------------- accounting
    def memory(self) -> Dict[str, int]:
        """Parameter counts: the base model, each adapter's own tensors (shared frozen weights not
        counted again), and the original weights kept while an adapter is merged."""
        banks = [m for m in self.model.modules() if isinstance(m, BankLinear)]
        shared = {id(p) for b in banks for p in b.base.parameters()}
        adapter_only = {id(p) for b in banks for p in b.adapters.parameters()} - shared
        base_ids = {id(p) for p in self.model.parameters()} - adapter_only
        out = {"base": sum(p.numel() for p in self._unique(self.model.parameters()) if id(p) in base_ids)}
        for name, modules in self.adapters.items():
            own = []
            for module_name in modules:
                wrapper = self.model.get_submodule(module_name).adapters[name]
                own += [t for t in list(wrapper.parameters()) + list(wrapper.buffers()) if id(t) not in base_ids]
            out[f"adapter:{name}"] = sum(t.numel() for t in self._unique(own))
        out["kept_for_merge"] = sum(v.numel() for kept in self._kept.values() for v in kept.values())
        return out

    @staticmethod
    def _unique(tensors):
        seen = {}
        for t in tensors:
            seen.setdefault(id(t), t)
        return list(seen.values())


class _PlainView:
    """A shallow stand-in of a banked model for planning: same modules, bank modules as their base."""

    def __init__(self, model: nn.Module):
        import copy

        self.model = copy.copy(model)
        self.model._modules = dict(model._modules)
        for name, child in list(self.model._modules.items()):
            if isinstance(child, BankLinear):
                self.model._modules[name] = child.base
            elif child is not None and any(isinstance(m, BankLinear) for m in child.modules()):
                self.model._modules[name] = _PlainView(child).model
