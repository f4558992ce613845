"""Finding the modules a config targets, and refusing target and exclude patterns that do
nothing (they are errors that name the pattern and suggest the names that exist).

One more check guards the ESPnet case where a pattern does something, but not what was meant:
module names differ between architectures (Conformer ``self_attn.linear_q``, E-Branchformer
``attn.linear_q``), and a Conformer pattern on an E-Branchformer model still matches the
decoder's ``self_attn``, so the encoder, the part that meets the new acoustic domain, would go
unadapted without a word. Hence:

* **error** when the plan adapts nothing under ``encoder`` (the model has one) while a pattern
  does not name its component: adapting only the decoder or the CTC head is possible, but must
  be said (``decoder.decoders.*.src_attn.linear_q``, ``decoder``, ``ctc``);
* **warning** when the encoder is adapted but a pattern matches only outside it while a close
  name exists inside it: such a pattern (``src_attn.linear_q`` beside ``attn.linear_q``) is often
  meant for the decoder, so refusing it would refuse valid configs; the warning names it.
"""
from __future__ import annotations

import warnings
from typing import List, Sequence, Tuple

from torch import nn

from .config import PeftConfig
from .errors import PeftError, PeftWarning
from .methods.base import Method
from .names import matches, pattern_hint, unmatched

#: the component every adaptation is expected to reach unless the config says otherwise
PRIMARY = "encoder"


def find_targets(model: nn.Module, cfg: PeftConfig, method: Method) -> List[Tuple[str, nn.Module]]:
    named = [(n, m) for n, m in model.named_modules() if n]
    problem = unmatched("target_modules", cfg.target_modules, [n for n, _ in named], f"of {type(model).__name__}")
    if problem:
        raise PeftError(problem)
    hits = {n: m for n, m in named if any(matches(n, p) for p in cfg.target_modules)}
    check_coverage(model, cfg.target_modules, list(hits))
    problem = unmatched("exclude_modules", cfg.exclude_modules, list(hits), "among the target modules")
    if problem:
        raise PeftError(problem)
    hits = {n: m for n, m in hits.items() if not any(matches(n, p) for p in cfg.exclude_modules)}
    if not hits:
        raise PeftError("no module left to adapt after exclude_modules")
    # a module inside another target is covered by it (only possible for container targets)
    names = [n for n in hits if not any(n.startswith(o + ".") for o in hits if o != n)]
    bad = [(n, hits[n]) for n in names if not method.supports(hits[n])]
    if bad:
        lines = []
        for n, m in bad[:6]:
            inner = [f"{n}.{c}" for c, sub in m.named_modules() if c and method.supports(sub)]
            hint = f"; its supported submodules: {', '.join(inner[:4])}" if inner else ""
            lines.append(f"{n} ({type(m).__name__}{hint})")
        raise PeftError(f"method {method.name!r} cannot adapt {len(bad)} matched module(s): " + "; ".join(lines))
    return [(n, hits[n]) for n in names]


def check_coverage(model: nn.Module, patterns: Sequence[str], hits: Sequence[str]) -> None:
    """The encoder checks of the module docstring (nothing to check in a model without one)."""
    top = {n for n, _ in model.named_children()}
    if PRIMARY not in top:
        return
    inside = [n for n, _ in model.get_submodule(PRIMARY).named_modules(prefix=PRIMARY)]
    loose = [p for p in patterns if p.split(".")[0] not in top]  # not naming a component

    def where(p: str) -> str:
        parts = sorted({n.split(".")[0] for n in hits if matches(n, p)})
        return f"matches only modules under {', '.join(parts)}"

    in_primary = {n for n in hits if n == PRIMARY or n.startswith(PRIMARY + ".")}
    if not in_primary:
        if loose:
            detail = "; ".join(f"{p!r} {where(p)}{pattern_hint(p, inside)}" for p in loose)
            others = ", ".join(f"'{c}.'" for c in sorted(top - {PRIMARY})
                               if any(True for _ in model.get_submodule(c).parameters()))
            raise PeftError(f"the plan adapts nothing under {PRIMARY!r}: {detail}. To adapt only other components, "
                            f"start every pattern with the component's name ({others})")
        return
    for p in loose:
        matched = [n for n in hits if matches(n, p)]
        hint = pattern_hint(p, inside, cutoff=0.75)
        if matched and not in_primary.intersection(matched) and hint:
            warnings.warn(PeftWarning(f"target pattern {p!r} {where(p)}, none under {PRIMARY!r}{hint}; start it "
                                      f"with the component's name to say that this is meant"), stacklevel=3)
