"""The one small interface every method implements.

A method is two things, declared in one file:

* a :class:`Method` (stateless): its hyperparameter keys and aliases, its options (one
  :class:`~espnet_peft.methods.options.Options` declaration), which modules it adapts, what a
  setting costs on a ``d_out x d_in`` matrix and the largest setting a parameter budget buys, its
  FLOP bound for the benchmark, and how to wrap, merge and save a module;
* a layer (for the matrix methods, a subclass of :class:`AdaptedLinear`): the wrapped module,
  which keeps the frozen ``weight`` / ``bias`` under their original names (so pretrained state
  dicts load into a wrapped model unchanged) and adds its own trainable tensors.

The planner, injection, merge, state and bench code only talk to these two interfaces.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from ..errors import PeftError
from .layer import AdaptedLinear  # noqa: F401  (the layer half of the interface)
from .options import Options

Hyper = Dict[str, int]
Shape = Tuple[int, ...]


@dataclass(frozen=True)
class Reference:
    """Another implementation of a method, timed beside it by the benchmark: ``setup(model, config,
    planner)`` adapts ``model`` and returns the plan; ``planner`` is what the benchmark hands in of the
    library's planning and injection (``plan_peft``, ``apply_peft``, ``set_module``: the module
    ``espnet_peft.inject``), so that ``methods/`` never imports the layers above it; ``needs``
    names a module that must be importable."""

    setup: Callable[[nn.Module, Mapping[str, Any], Any], Any]
    needs: Optional[str] = None


class Method:
    """Base class of a method's description (no state; one instance per method name)."""

    name: str = ""
    #: hyperparameter keys (e.g. ("r",), ("k_in", "k_out")), other names accepted for them, defaults
    hyper_keys: Tuple[str, ...] = ()
    aliases: Mapping[str, str] = {}
    hyper_defaults: Mapping[str, int] = {}
    #: the options this method understands (config keys besides the common ones)
    options: Options = Options()
    #: the layer class that ``build`` constructs as ``layer(module, **hyper, **its options)``
    layer: Optional[type] = None
    #: whether a parameter budget can be turned into hyperparameters
    budgeted: bool = True
    #: for methods whose wrapper contains the original module (HFF): the attribute holding it;
    #: such methods accept nested ``adapters`` inside that module
    inner_attr: Optional[str] = None
    #: whether the merged model is the stock architecture (else ``export_config`` describes it)
    exports_stock_model: bool = True
    #: ESPnet component names (``encoder: ...`` in a model config) this method's merged models use
    #: and registers with ESPnet (``register_with_espnet``): inference tools register them on demand
    espnet_components: Tuple[str, ...] = ()
    #: the method whose gain is 100% in a sweep's "gain recovered" (full fine-tuning) unless the grid
    #: names a reference cell
    gain_reference: bool = False
    #: the modules the benchmark adapts (None: every linear layer of the blocks)
    bench_targets: Optional[Tuple[str, ...]] = None
    #: other implementations the benchmark times beside this one, by bench row name
    references: Mapping[str, Reference] = {}

    # --- what it applies to --------------------------------------------------------------
    def register_with_espnet(self) -> None:
        """Make ``espnet_components`` buildable by ESPnet's tasks (nothing for stock models)."""

    def supports(self, module: nn.Module) -> bool:
        return isinstance(module, nn.Linear)

    def shape(self, module: nn.Module) -> Shape:
        return (module.out_features, module.in_features)

    def option(self, opts: Mapping[str, Any], name: str) -> Any:
        """An option's value in ``opts``, or its declared default."""
        return opts[name] if name in opts else self.options[name].default

    # --- hyperparameters ------------------------------------------------------------------
    def hyper_names(self) -> Tuple[str, ...]:
        return self.hyper_keys + tuple(self.aliases)

    def canonical_hyper(self, values: Mapping[str, Any], where: str) -> Dict[str, Any]:
        """``values`` under their canonical keys; unknown keys and a key given twice are errors."""
        out: Dict[str, Any] = {}
        for k, v in values.items():
            key = self.aliases.get(k, k)
            if key not in self.hyper_keys:
                raise PeftError(f"{where}: {k!r} is not a hyperparameter of {self.name} "
                                f"({', '.join(self.hyper_names()) or 'it has none'})")
            if key in out:
                raise PeftError(f"{where}: {key!r} is given twice (as {key!r} and as an alias)")
            out[key] = v
        return out

    def explicit(self, shape: Shape, values: Mapping[str, Any], opts: Mapping[str, Any]) -> Hyper:
        """Hyperparameters from explicit values (canonical keys; ints, or fractions of min(d))."""
        q = min(shape[:2])
        hyper: Hyper = {}
        for key in self.hyper_keys:
            v = values.get(key, self.hyper_defaults.get(key))
            if v is None:
                raise PeftError(f"method {self.name!r} needs {key!r} (or a budget)")
            hyper[key] = resolve_size(v, q, key)
        self.validate(shape, hyper)
        return hyper

    def validate(self, shape: Shape, hyper: Hyper) -> None:
        q = min(shape[:2])
        for key, v in hyper.items():
            if v < 0 or v > q:
                raise PeftError(f"{key}={v} is outside [0, min(d_out, d_in)={q}] for a matrix of shape {tuple(shape)}")
        if not any(hyper.values()):
            raise PeftError(f"{self.name}: {' and '.join(hyper)} = 0 adapts nothing")

    # --- counting and solving (the budget solver) --------------------------------------------
    def count(self, shape: Shape, hyper: Hyper, opts: Mapping[str, Any]) -> int:
        raise NotImplementedError

    def solve(self, shape: Shape, budget: float, opts: Mapping[str, Any]) -> Optional[Hyper]:
        """The largest setting whose count fits ``budget``; None if not even the smallest fits."""
        raise NotImplementedError

    def grow(self, shape: Shape, hyper: Hyper, opts: Mapping[str, Any]) -> Optional[Hyper]:
        """The next larger setting (used to spend a budget's rounding leftover), or None."""
        return None

    # --- cost (methods.md rule 6; the benchmark's bound) ------------------------------------
    def flops(self, shape: Shape, hyper: Hyper, tokens: int) -> Optional[float]:
        """Extra FLOPs of one training step over the frozen layer, for one adapted module that
        sees ``tokens`` tokens; None: no bound."""
        return None

    def step_flops(self, rows: Optional[Sequence[Mapping[str, Any]]], tokens: Mapping[str, int],
                   linears: Mapping[str, Sequence[int]]) -> Optional[float]:
        """Extra FLOPs of one training step over the frozen model, for a plan (rows as in
        ``PlanRow.as_dict``; ``tokens`` and ``linears`` give each linear layer's tokens and shape)."""
        per = [self.flops(tuple(r["shape"]), r["hyper"], tokens.get(r["name"], 0)) for r in rows or ()]
        return None if any(f is None for f in per) else float(sum(per))

    # --- wrapping -------------------------------------------------------------------------
    def build(self, module: nn.Module, hyper: Hyper, opts: Mapping[str, Any]) -> nn.Module:
        """The (uninitialised) wrapper of ``module``."""
        return self.layer(module, **hyper, **self.layer.options.pick(opts))

    def wrap(self, module: nn.Module, hyper: Hyper, opts: Mapping[str, Any]) -> nn.Module:
        """Build the wrapper and initialise it from the frozen weight now, unless ``init: lazy``
        (then it initialises itself before its first use)."""
        layer = self.build(module, hyper, opts)
        if opts.get("init", "eager") != "lazy" and hasattr(layer, "initialize_"):
            layer.initialize_()
        return layer

    def merge(self, module: nn.Module) -> nn.Module:
        """The plain module that replaces the wrapper in a merged model."""
        return module.merge()

    def export_config(self, config: dict, row, opts: Mapping[str, Any]) -> dict:
        """The ESPnet config of a merged model (methods whose merge changes the architecture)."""
        return config

    def trainable_state(self, module: nn.Module) -> Dict[str, torch.Tensor]:
        """The tensors (local names) that an adapter-only checkpoint must hold for this module."""
        return module.adapter_state()

    def load_trainable_state(self, module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
        module.load_adapter_state(state)


def resolve_size(v: Any, q: int, key: str) -> int:
    """An int, or a float in (0, 1] meaning that fraction of min(d_out, d_in) (rounded)."""
    if isinstance(v, bool):
        raise PeftError(f"{key} must be a number, got {v!r}")
    if isinstance(v, float) and 0.0 < v <= 1.0 and not float(v).is_integer():
        return max(1, int(round(v * q)))
    if isinstance(v, (int, float)) and float(v).is_integer() and v >= 0:
        return int(v)
    raise PeftError(f"{key} must be a non-negative int or a fraction in (0, 1), got {v!r}")
