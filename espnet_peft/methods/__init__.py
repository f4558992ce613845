"""Method registry: one module per method, all on :mod:`espnet_peft.methods.base`.

A new method is one file with a :class:`Method` subclass, registered with :func:`register`;
everything else (config keys, planning, wrapping, merge, state, the benchmark) reads it from here.
A method file outside this package is loaded by every tool and recipe when its module is named in
``ESPNET_PEFT_METHODS`` (comma-separated importable modules) or declared by an installed package
as an entry point of the group ``espnet_peft.methods``.
"""
from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from typing import Dict, Tuple

from ..errors import PeftError
from ..names import did_you_mean
from .base import AdaptedLinear, Method
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

PLUGINS_ENV = "ESPNET_PEFT_METHODS"


def load_plugins() -> None:
    """Import the method modules named in ``ESPNET_PEFT_METHODS`` and the installed entry points
    of ``espnet_peft.methods`` (importing a method file registers it; a module already imported
    is not imported again)."""
    for name in filter(None, (n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise PeftError(f"{PLUGINS_ENV}: cannot import the method module {name!r}: {e}") from None
    for ep in entry_points(group="espnet_peft.methods"):
        ep.load()


def register_with_espnet(config=None) -> None:
    """Register every method's ESPnet components (merged models of non-stock architecture); with a
    model ``config`` (a mapping), only when it names one of them, so that stock models import nothing."""
    for m in REGISTRY.values():
        if config is None or any(c in config.values() for c in m.espnet_components if isinstance(c, str)):
            m.register_with_espnet()


def gain_references() -> Tuple[str, ...]:
    """The methods whose gain a sweep's "gain recovered" is measured against by default."""
    return tuple(n for n, m in REGISTRY.items() if m.gain_reference)


def get_method(name: str) -> Method:
    try:
        return REGISTRY[name]
    except KeyError:
        raise PeftError(f"unknown method {name!r}{did_you_mean(name, REGISTRY)}; known methods: "
                        f"{', '.join(REGISTRY)}") from None


def hyper_names() -> Tuple[str, ...]:
    """Every hyperparameter key and alias of every registered method (in registration order)."""
    return tuple(dict.fromkeys(k for m in REGISTRY.values() for k in m.hyper_names()))


load_plugins()

__all__ = ["AdaptedLinear", "DoRALinear", "HFFEncoder", "LoRALinear", "Method", "PeftError", "PiSSALinear",
           "REGISTRY", "SubspaceRotationLinear", "get_method", "hyper_names", "load_plugins", "register"]
