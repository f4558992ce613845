"""The one small interface every method implements.

A method is two things:

* a :class:`Method` (stateless): which modules it adapts, how many trainable parameters a
  hyperparameter setting costs on a ``d_out x d_in`` matrix, how to solve the largest setting
  that fits a parameter budget, and how to wrap a module;
* a layer (for the matrix methods, a subclass of :class:`AdaptedLinear`): the wrapped module,
  which keeps the frozen ``weight`` / ``bias`` under their original names (so pretrained state
  dicts load into a wrapped model unchanged) and adds its own trainable tensors.

The planner, injection, merge and state code only talk to these two interfaces.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import torch
from torch import nn

Hyper = Dict[str, int]


class PeftError(ValueError):
    """Bad PEFT input: config, target modules, budget, state. Raised before compute is spent."""


_FP_BLOCK = 512  # rows of 7 summed per block in the tensor's precision


def fingerprint(t: torch.Tensor) -> Tuple[float, ...]:
    """A cheap, order-sensitive summary of a tensor: (numel, sum, sum of squares, ramp sum).

    The ramp weights element ``i`` by ``(i mod 7) - 3``. Sums run over blocks of 3,584 elements
    in the tensor's float precision and the block sums are added in float64 (within 1e-7 of a
    float64 reference): 3.7 ms per 4096x1024 matrix on one CPU thread, against 69 ms for a float64
    accumulation throughout; one long float32 reduction was off by 1.6e-4.
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


def fingerprints_match(a, b, rtol: float = 1e-5) -> bool:
    """True if two fingerprints describe the same tensor up to float rounding."""
    a, b = tuple(a), tuple(b)
    if len(a) != 4 or len(b) != 4 or a[0] != b[0]:
        return False
    scale = (max(a[2], 0.0) * a[0]) ** 0.5  # bounds |sum| and |ramp sum|
    return all(abs(x - y) <= rtol * (abs(x) + abs(y) + scale) for x, y in zip(a[1:], b[1:]))


class Method:
    """Base class of a method's description (no state; one instance per method name)."""

    name: str = ""
    #: hyperparameter keys of this method (e.g. ("r",), ("k",), ("k_in", "k_out"))
    hyper_keys: Tuple[str, ...] = ()
    #: config options this method understands, with their defaults
    options: Mapping[str, Any] = {}
    #: whether a parameter budget can be turned into hyperparameters
    budgeted: bool = True
    #: one-line description for plan headers and docs
    summary: str = ""
    #: for methods whose wrapper contains the original module (HFF): the attribute holding it;
    #: such methods accept nested ``adapters`` inside that module
    inner_attr: Optional[str] = None

    # --- what it applies to --------------------------------------------------------------
    def supports(self, module: nn.Module) -> bool:
        return isinstance(module, nn.Linear)

    def shape(self, module: nn.Module) -> Tuple[int, ...]:
        return (module.out_features, module.in_features)

    # --- counting and solving -----------------------------------------------------------
    def count(self, shape: Tuple[int, ...], hyper: Hyper, opts: Mapping[str, Any]) -> int:
        raise NotImplementedError

    def max_hyper(self, shape: Tuple[int, ...], opts: Mapping[str, Any]) -> Hyper:
        """The largest setting a matrix of this shape admits."""
        raise NotImplementedError

    def solve(self, shape: Tuple[int, ...], budget: float, opts: Mapping[str, Any]) -> Optional[Hyper]:
        """The largest setting whose count fits ``budget``; None if not even the smallest fits."""
        raise NotImplementedError

    def grow(self, shape: Tuple[int, ...], hyper: Hyper, opts: Mapping[str, Any]) -> Optional[Hyper]:
        """The next larger setting (used to spend a budget's rounding leftover), or None."""
        return None

    def explicit(self, shape: Tuple[int, ...], values: Mapping[str, Any], opts: Mapping[str, Any]) -> Hyper:
        """Hyperparameters from explicit config values (ints, or fractions of min(d))."""
        q = min(shape[:2])
        hyper: Hyper = {}
        for key in self.hyper_keys:
            v = values.get(key)
            if v is None:
                raise PeftError(f"method {self.name!r} needs {key!r} (or a budget)")
            hyper[key] = resolve_size(v, q, key)
        self.validate(shape, hyper)
        return hyper

    def validate(self, shape: Tuple[int, ...], hyper: Hyper) -> None:
        q = min(shape[:2])
        for key, v in hyper.items():
            if v < 0 or v > q:
                raise PeftError(f"{key}={v} is outside [0, min(d_out, d_in)={q}] for a matrix of shape {tuple(shape)}")

    # --- wrapping -------------------------------------------------------------------------
    def build(self, module: nn.Module, hyper: Hyper, opts: Mapping[str, Any]) -> nn.Module:
        """The (uninitialised) wrapper of ``module``."""
        raise NotImplementedError

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


class AdaptedLinear(nn.Module):
    """Shared base of the matrix wrappers.

    Keeps the frozen ``weight`` and ``bias`` Parameters of the wrapped ``nn.Linear`` (the same
    tensor objects, never written to) under their original names. Subclasses add their
    trainable tensors and implement :meth:`delta` (the extra output) and
    :meth:`delta_weight` (the extra weight, for merging); one that can fuse the sum with its
    last product overrides :meth:`add_delta` as well.
    """

    #: names of buffers that belong in adapter-only checkpoints (besides trainable params)
    adapter_buffers: Tuple[str, ...] = ()

    def __init__(self, base: nn.Linear, hyper: Hyper):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise PeftError(f"{type(self).__name__} wraps nn.Linear, got {type(base).__name__}")
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.hyper = dict(hyper)
        self._initialized = False

    # -- initialisation ------------------------------------------------------------------------
    def initialize_(self) -> None:
        """(Re)initialise the adapter from the frozen weight as it is now.

        Called at the end of a subclass constructor (eager), or, when the wrapper was built with
        ``lazy=True``, before the first forward, merge or state access, so that weights loaded
        into the wrapped model after wrapping (ESPnet's ``--init_param``) are the ones used.
        """
        with torch.no_grad():
            self.init_from_weight()
        self._initialized = True

    def ensure_initialized(self) -> None:
        if not self._initialized:
            self.initialize_()

    def init_from_weight(self) -> None:
        """Set the adapter tensors from ``self.weight`` (override for weight-dependent inits)."""

    # -- to implement ------------------------------------------------------------------------
    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter's additive contribution to the output for input ``x``."""
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        """``W' - weight`` as a dense ``d_out x d_in`` tensor (weight: the stored frozen one)."""
        raise NotImplementedError

    def add_delta(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``y + delta(x)``: the frozen layer's output ``y`` plus the adapter's contribution."""
        return y + self.delta(x)

    # -- shared behaviour --------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.ensure_initialized()
        return self.add_delta(nn.functional.linear(x, self.weight, self.bias), x)

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        self.ensure_initialized()
        return self.weight + self.delta_weight().to(self.weight.dtype)

    @torch.no_grad()
    def merge(self) -> nn.Linear:
        """A plain nn.Linear computing what this wrapper computes (all parameters trainable)."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=self.weight.device, dtype=self.weight.dtype)
        lin.weight.copy_(self.merged_weight())
        if self.bias is not None:
            lin.bias.copy_(self.bias)
        return lin

    def adapter_state(self) -> Dict[str, torch.Tensor]:
        self.ensure_initialized()
        state = {n: p.detach() for n, p in self.named_parameters(recurse=False) if p.requires_grad}
        state.update({n: getattr(self, n).detach() for n in self.adapter_buffers})
        return state

    @torch.no_grad()
    def load_adapter_state(self, state: Mapping[str, torch.Tensor]) -> None:
        own = self.adapter_state()  # initialises a lazy wrapper first
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise PeftError(f"adapter state does not fit {type(self).__name__}: missing {missing}, "
                            f"unexpected {unexpected}")
        for n, v in state.items():
            target = getattr(self, n)
            if tuple(target.shape) != tuple(v.shape):
                raise PeftError(f"adapter tensor {n!r} has shape {tuple(v.shape)}, the model expects "
                                f"{tuple(target.shape)} (was the state saved with another config?)")
            target.copy_(v)

    def extra_repr(self) -> str:
        hyper = ", ".join(f"{k}={v}" for k, v in self.hyper.items())
        return f"in_features={self.in_features}, out_features={self.out_features}, {hyper}"


def kaiming_uniform_(t: torch.Tensor) -> torch.Tensor:
    """nn.Linear's default init (Kaiming uniform with a = sqrt(5)), as loralib uses for A."""
    return nn.init.kaiming_uniform_(t, a=math.sqrt(5))


def lora_scaling(r: int, alpha: Optional[float], rslora: bool) -> float:
    if r == 0:
        return 0.0
    alpha = float(r if alpha is None else alpha)
    return alpha / math.sqrt(r) if rslora else alpha / r


def iter_adapted(model: nn.Module) -> Iterable[Tuple[str, AdaptedLinear]]:
    for name, m in model.named_modules():
        if isinstance(m, AdaptedLinear):
            yield name, m
