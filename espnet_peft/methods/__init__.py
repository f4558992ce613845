"""Method registry: one module per method, all on :mod:`espnet_peft.methods.base`."""
from __future__ import annotations

from typing import Dict

from .base import AdaptedLinear, Method, PeftError, iter_adapted
from .dora import DoRA, DoRALinear
from .full import Full
from .hff import HFF, HFFEncoder
from .lora import LoRA, LoRALinear
from .pissa import PiSSA, PiSSALinear
from .ssvd import SSVD
from .ssvd_o import SSVDO, SubspaceRotationLinear

REGISTRY: Dict[str, Method] = {}


def register(method: Method) -> Method:
    if not method.name or method.name in REGISTRY:
        raise ValueError(f"bad or duplicate method name {method.name!r}")
    REGISTRY[method.name] = method
    return method


for _m in (LoRA(), DoRA(), PiSSA(), SSVD(), SSVDO(), Full(), HFF()):
    register(_m)


def get_method(name: str) -> Method:
    try:
        return REGISTRY[name]
    except KeyError:
        raise PeftError(f"unknown method {name!r}; known methods: {', '.join(REGISTRY)}") from None


__all__ = ["AdaptedLinear", "DoRALinear", "HFFEncoder", "LoRALinear", "Method", "PeftError", "PiSSALinear",
           "REGISTRY", "SubspaceRotationLinear", "get_method", "iter_adapted", "register"]
