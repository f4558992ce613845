"""Families of comparisons and Holm's correction within each: a report claims "significantly
better / worse" only where the corrected p-value is below 1 - level.

A family is the set of comparisons that answer one question of the report, e.g. "which cells
learn less than the best cell of their budget on the headline target set" (every budget at
once) or "does each cell forget on source_test". Holm's step-down procedure controls the
family-wise error rate at 1 - level without assuming the comparisons independent (they share
the test set and the base model)."""
from __future__ import annotations

from typing import Any, Dict, List, MutableMapping, Optional

from ..scoring import holm


class Families:
    """Collects paired tests (the dicts of :func:`espnet_peft.scoring.difference_stats`) by family;
    :meth:`correct` then writes into each: ``p_holm``, ``family``, ``family_size``,
    ``significant_uncorrected`` (the test's own interval excluding 0) and ``significant``
    (``p_holm`` < 1 - level)."""

    def __init__(self, level: float):
        self.alpha = 1.0 - float(level)
        self.members: Dict[str, List[MutableMapping[str, Any]]] = {}
        self.corrected = False

    def add(self, family: str, test: Optional[MutableMapping[str, Any]]) -> Optional[MutableMapping[str, Any]]:
        """Put ``test`` (None is ignored) in ``family``; returns it. A test belongs to one family."""
        if test is None:
            return None
        if "family" in test or any(test is t for ts in self.members.values() for t in ts):
            raise ValueError(f"a test is already in a family (adding it to {family!r})")
        self.members.setdefault(family, []).append(test)
        return test

    def correct(self) -> None:
        for name, tests in self.members.items():
            for t, p in zip(tests, holm([float(t["p_value"]) for t in tests])):
                t.update(family=name, family_size=len(tests), p_holm=p,
                         significant_uncorrected=bool(t["significant"]), significant=bool(p < self.alpha))
        self.corrected = True

    def sizes(self) -> Dict[str, int]:
        return {name: len(tests) for name, tests in self.members.items()}
