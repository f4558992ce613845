"""The shared base of the matrix wrappers (the layer half of the method interface)."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from ..errors import PeftError
from .options import Options


class AdaptedLinear(nn.Module):
    """Keeps the frozen ``weight`` and ``bias`` Parameters of the wrapped ``nn.Linear`` (the same
    tensor objects, never written to) under their original names. Subclasses declare their
    ``options`` (a constructor takes them as keywords), add their trainable tensors and implement
    :meth:`delta` (the extra output) and :meth:`delta_weight` (the extra weight, for merging); one
    that can fuse the sum with its last product overrides :meth:`add_delta` as well.
    """

    #: the options the constructor takes (``self.opts`` holds their resolved values)
    options: Options = Options()
    #: names of buffers that belong in adapter-only checkpoints (besides trainable params)
    adapter_buffers: Tuple[str, ...] = ()

    def __init__(self, base: nn.Linear, hyper: Mapping[str, int], options: Optional[Mapping[str, Any]] = None):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise PeftError(f"{type(self).__name__} wraps nn.Linear, got {type(base).__name__}")
        self.opts = self.options.resolve(options or {}, type(self).__name__)
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.hyper = dict(hyper)
        self._initialized = False

    def factory(self) -> Dict[str, Any]:
        """``device`` and ``dtype`` of the frozen weight, for the adapter's own tensors."""
        return {"device": self.weight.device, "dtype": self.weight.dtype}

    # -- initialisation ------------------------------------------------------------------------
    def initialize_(self) -> None:
        """(Re)initialise the adapter from the frozen weight as it is now.

        Called right after wrapping, or, with ``init: lazy``, before the first forward, merge or
        state access, so that weights loaded into the wrapped model after wrapping (ESPnet's
        ``--init_param``) are the ones used.
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
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, **self.factory())
        lin.weight.copy_(self.merged_weight())
        if self.bias is not None:
            lin.bias.copy_(self.bias)
        return lin

    def adapter_state(self) -> Dict[str, torch.Tensor]:
        """Every parameter but the frozen ``weight`` / ``bias`` (whether or not it trains right now:
        a schedule may hold it back), and the ``adapter_buffers``."""
        self.ensure_initialized()
        state = {n: p.detach() for n, p in self.named_parameters(recurse=False) if n not in ("weight", "bias")}
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
