"""espnet_peft: parameter-efficient adaptation of ESPnet speech models.

LoRA, DoRA, PiSSA, SSVD and SSVD-O layer wrappers on one shared base, a per-subspace
parameter-budget planner that puts all methods on an equal footing, exact merging into stock
ESPnet models, and adapter-only checkpoints (see the README).
"""
from .budget import Plan, PlanRow
from .config import PeftConfig
from .errors import PeftError
from .inject import apply_peft, get_plan, plan_peft
from .merge import interpolate_state, merge_peft
from .methods import REGISTRY, get_method
from .state import load_peft_state_dict, peft_state_dict

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "METHODS":  # the method names accepted by ``method:`` in a PEFT config (the registry's)
        return tuple(REGISTRY)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHODS", "PeftConfig", "PeftError", "Plan", "PlanRow", "apply_peft", "get_method", "get_plan",
           "interpolate_state", "load_peft_state_dict", "merge_peft", "peft_state_dict", "plan_peft"]
