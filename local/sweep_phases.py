#!/usr/bin/env python3
"""The phases of a budget sweep, in the order it runs them (the grid's priority order), and the
phase of each run: the one place they are spelled. ``local/budget_sweep.py --list_phases`` prints
them for the launcher (``local/run_sweep.sh``), which checks ``--last_phase`` and walks ``--target
all`` phase by phase with them. Standard library only: the launcher asks before anything is imported.

* ``priority_block``: every method at the grid's ``priority_budgets`` (and the unbudgeted cells, i.e.
  full fine-tuning) at the first ``selection.priority_seeds`` seeds, their rate choices included;
* ``later_seeds``: the other seeds of those cells;
* ``other_cells``: the other cells (variants, other budgets) at every seed;
* ``curves``: the interpolation alphas other than 1.
"""
from __future__ import annotations

from typing import Dict, Tuple

PHASES: Tuple[str, ...] = ("priority_block", "later_seeds", "other_cells", "curves")
WORDS: Dict[str, str] = {"priority_block": "priority block", "later_seeds": "later seeds",
                         "other_cells": "other cells", "curves": "interpolation curves"}
PRIORITY_BLOCK, LATER_SEEDS, OTHER_CELLS, CURVES = range(len(PHASES))


def phase_of(priority_cell: bool, seed_index: int, priority_seeds: int, curve: bool = False) -> int:
    """The index in PHASES of one run: of a cell of the priority block or not (``priority_cell``), at
    its ``seed_index``-th seed, ``curve``: at an interpolation alpha other than 1."""
    if curve:
        return CURVES
    if not priority_cell:
        return OTHER_CELLS
    return LATER_SEEDS if priority_seeds and seed_index >= priority_seeds else PRIORITY_BLOCK


def words(phase: int) -> str:
    """How the sweep's messages name a phase (by its index)."""
    return WORDS[PHASES[phase]]


if __name__ == "__main__":
    print(" ".join(PHASES))
