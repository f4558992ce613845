"""A budget solver for the common case: one integer size (a rank, a number of blocks) whose
parameter count is linear in it, ``fixed(shape) + size * unit(shape)``."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from .base import Hyper, Method, Shape


class PerUnitCost(Method):
    """A method with one hyperparameter (``hyper_keys[0]``) of linear cost, between 1 and ``limit``."""

    def unit(self, shape: Shape, opts: Mapping[str, Any]) -> int:
        """Parameters per unit of size."""
        raise NotImplementedError

    def fixed(self, shape: Shape, opts: Mapping[str, Any]) -> int:
        """Parameters paid whatever the size."""
        return 0

    def limit(self, shape: Shape) -> int:
        """The largest size (by default min(d_out, d_in))."""
        return min(shape)

    @property
    def key(self) -> str:
        return self.hyper_keys[0]

    def count(self, shape, hyper: Hyper, opts) -> int:
        return self.fixed(shape, opts) + hyper[self.key] * self.unit(shape, opts)

    def solve(self, shape, budget: float, opts) -> Optional[Hyper]:
        size = min(int((budget - self.fixed(shape, opts)) // self.unit(shape, opts)), self.limit(shape))
        return {self.key: size} if size >= 1 else None

    def grow(self, shape, hyper: Hyper, opts) -> Optional[Hyper]:
        return {self.key: hyper[self.key] + 1} if hyper[self.key] < self.limit(shape) else None
