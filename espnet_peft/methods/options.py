"""Typed option declarations: one per method option, read by the config validation, the layer
constructors, the docs table (``python -m espnet_peft.bin.peft_config --options``) and the bench.

An :class:`Option` names its default, the values it takes (a :class:`Kind`), what it does, and,
where it only matters beside another option's value, that condition (``when``): in a config, an
option set away from its default where it has no effect is an error, like an unknown key.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple

from ..errors import PeftError
from ..names import did_you_mean


class Kind:
    """The values an option takes: ``check`` returns the (normalised) value or raises."""

    text = "any value"

    def check(self, name: str, value: Any) -> Any:
        return value

    def fail(self, name: str, value: Any) -> PeftError:
        return PeftError(f"option {name!r} must be {self.text}, got {value!r}")


class Choice(Kind):
    def __init__(self, *values: str):
        self.values = values
        self.text = " / ".join(values)

    def check(self, name, value):
        if value not in self.values:
            raise PeftError(f"option {name!r} must be one of {', '.join(self.values)}, got {value!r}"
                            f"{did_you_mean(str(value), self.values)}")
        return value


class Flag(Kind):
    text = "true / false"

    def check(self, name, value):
        if not isinstance(value, bool):
            raise self.fail(name, value)
        return value


class Number(Kind):
    """An int or float within bounds (``None`` allowed with ``null=True``)."""

    def __init__(self, low: Optional[float] = None, high: Optional[float] = None, *, low_open: bool = False,
                 high_open: bool = False, integer: bool = False, null: bool = False):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open
        self.integer, self.null = integer, null
        lo = "" if low is None else f"{'(' if low_open else '['}{low:g}"
        hi = "" if high is None else f"{high:g}{')' if high_open else ']'}"
        span = f" in {lo}, {hi}" if lo and hi else (f" {'>' if low_open else '>='} {low:g}" if lo else "")
        self.text = ("null or " if null else "") + ("an int" if integer else "a number") + span

    def check(self, name, value):
        if value is None and self.null:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (self.integer and not float(value).is_integer()):
            raise self.fail(name, value)
        if isinstance(value, float) and not math.isfinite(value):  # NaN passes every comparison below
            raise PeftError(f"option {name!r} must be a finite number ({self.text}), got {value!r}")
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if too_low or too_high:
            raise self.fail(name, value)
        return int(value) if self.integer else value


class Custom(Kind):
    """A kind given by a function (``value -> normalised value``, raising ``ValueError``)."""

    def __init__(self, text: str, fn: Callable[[Any], Any]):
        self.text, self.fn = text, fn

    def check(self, name, value):
        try:
            return self.fn(value)
        except (ValueError, TypeError):
            raise self.fail(name, value) from None


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    kind: Kind
    doc: str
    #: ``(other option, values)``: this option has an effect only when the other one takes one of them
    when: Optional[Tuple[str, Tuple[Any, ...]]] = None
    #: the value the benchmark uses (its ``--<method>_<option>`` flag); None: not a bench setting
    bench: Any = None


class Options:
    """An ordered set of options, with checks across them (``check(values)`` raising PeftError)."""

    def __init__(self, *options: Option, checks: Sequence[Callable[[Mapping[str, Any]], None]] = ()):
        self._by_name = {o.name: o for o in options}
        self.checks = tuple(checks)

    def __iter__(self) -> Iterator[Option]:
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Option:
        return self._by_name[name]

    def __add__(self, other: "Options") -> "Options":
        return Options(*self, *other, checks=self.checks + other.checks)

    def names(self) -> Tuple[str, ...]:
        return tuple(self._by_name)

    def defaults(self) -> Dict[str, Any]:
        return {o.name: o.default for o in self}

    def pick(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        """The entries of ``values`` that are options declared here."""
        return {k: v for k, v in values.items() if k in self._by_name}

    def resolve(self, given: Mapping[str, Any], owner: str, require_effect: bool = False) -> Dict[str, Any]:
        """Every option's value: ``given`` checked (unknown names, kinds, checks across options, and
        with ``require_effect``, as for a config, options set where they have no effect), the rest
        defaults."""
        unknown = sorted(set(given) - set(self._by_name))
        if unknown:
            raise PeftError(f"{owner} has no option(s) {', '.join(map(repr, unknown))}"
                            f"{did_you_mean(unknown[0], self._by_name)}; options: {', '.join(self._by_name)}")
        values = self.defaults()
        values.update({k: self._by_name[k].kind.check(k, v) for k, v in given.items()})
        for o in self if require_effect else ():
            if o.when is not None and values[o.name] != o.default and values[o.when[0]] not in o.when[1]:
                need = " or ".join(map(str, o.when[1]))
                raise PeftError(f"option {o.name!r} has no effect unless {o.when[0]}: {need} ({o.when[0]} is "
                                f"{values[o.when[0]]!r}); remove it")
        for check in self.checks:
            check(values)
        return values


# --------------------------------------------------------------------------- shared groups
def _tail_needs_exact(values: Mapping[str, Any]) -> None:
    if values["directions"] == "tail" and values["svd"] == "randomized":
        raise PeftError("directions: tail needs svd: full or gram (a randomized SVD finds dominant directions)")


def svd_options(default: str, bench: str) -> Options:
    """The options of a method initialised from singular triplets of the pretrained weight
    (``espnet_peft.svd.principal_subspace``)."""
    from ..svd import SVD_MODES

    randomized = ("svd", ("randomized",))
    return Options(
        Option("directions", "top", Choice("top", "tail"),
               "the largest singular directions (`top`) or the smallest (`tail`, ordered largest first)"),
        Option("svd", default, Choice(*SVD_MODES),
               "`full`: LAPACK SVD; `gram`: eigendecomposition of the smaller Gram matrix (float32 for the top "
               "directions of a float32 weight, else float64); `randomized`: a range finder on it (top only)",
               bench=bench),
        Option("svd_niter", 4, Number(0, integer=True), "power iterations of the randomized SVD", when=randomized),
        Option("seed", 0, Number(integer=True), "seed of the randomized SVD", when=randomized),
        checks=(_tail_needs_exact,))
