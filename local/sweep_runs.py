"""The identities of a sweep's runs: each run's experiment name, PEFT config, training options, and
the identity (foundation, data, frozen configs) its records must carry to be current."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import numpy as np
import yaml

from espnet_peft.errors import PeftError
from espnet_peft.sweep import experiment_tag
from sweep_records import config_hash


class Run(NamedTuple):
    """One run whose record a job writes when it finishes: a rate's dev run (``kind`` "dev") or a seed's
    test decoding at one interpolation ``alpha`` ("test")."""

    cell: object          # the grid's Cell
    lr: Optional[float]
    seed: Optional[int]
    tag: str              # the experiment
    kind: str             # "dev" | "test"
    alpha: float = 1.0


def number(x: float) -> str:
    """A rate as ESPnet's YAML reads it back as a float (``1e-05`` is a string in YAML 1.1)."""
    return np.format_float_positional(float(x), trim="-")


def accepts_seed(config, seeds) -> bool:
    """Whether a PEFT config takes each of ``seeds`` as its ``seed`` option: the methods with a
    randomised SVD. (A seed equal to the option's default passes even where it has no effect, so the
    sweep's own seeds are tried: SVD-initialised methods with an exact SVD refuse them.)"""
    from espnet_peft.config import PeftConfig

    try:
        for s in seeds:
            PeftConfig.from_any(dict(config, seed=s))
        return True
    except PeftError:
        return False


class RunIdentities:
    """Names and identities of the runs of one sweep (``args``: the driver's options)."""

    def __init__(self, args: argparse.Namespace, proto, seeds: List[Optional[int]], data_id: str,
                 foundation_id: Optional[str]):
        self.args, self.proto, self.seeds = args, proto, seeds
        self.data_id, self.foundation_id = data_id, foundation_id
        self.seeded: Dict[str, bool] = {}
        self.idents: Dict[tuple, dict] = {}

    def tag(self, c, lr, seed) -> str:
        return experiment_tag(self.args.tag_prefix, c, lr, seed, self.proto)

    def short(self, t: str) -> str:
        return t[len(self.args.tag_prefix):]

    def cfg_path(self, c, s) -> Path:
        return self.args.out / "configs" / (f"{c.name}.s{s}.yaml" if self.seeded[c.name] else f"{c.name}.yaml")

    def identity(self, c, s) -> dict:
        """What every record of this cell and seed must have been measured on (else it is stale)."""
        if (c.name, s) not in self.idents:
            self.idents[(c.name, s)] = {"foundation_id": self.foundation_id, "data_id": self.data_id,
                                        "config_hash": config_hash([self.cfg_path(c, s)] + list(self.args.frozen),
                                                                   {"train_args": self.args.train_args})}
        return self.idents[(c.name, s)]

    def peft_args(self, lr, s) -> str:
        parts = ([f"--optim_conf lr={number(lr)}"] if lr is not None else []) + ([f"--seed {s}"] if s is not None else [])
        return " ".join(parts + ([self.args.train_args] if self.args.train_args else []))

    def trained(self, t: str) -> bool:
        return (self.args.expdir / t / "train_wall.json").is_file()

    def cell_results(self, t: str) -> Path:
        return self.args.out / "cells" / f"{self.short(t)}.md"

    def write_configs(self, cells, infeasible) -> None:
        """The PEFT configs: one per cell, one per seed for methods with a seed option. Every config a
        run will train with is checked as the recipe checks it, before any run starts (the seeded ones
        by ``accepts_seed``, the others here); raises PeftError naming the cell."""
        from espnet_peft.config import PeftConfig

        configs = self.args.out / "configs"
        for c in cells:
            path = configs / f"{c.name}.yaml"
            path.write_text(yaml.safe_dump(c.config, sort_keys=False))
            feasible = c.name not in infeasible
            self.seeded[c.name] = self.proto.seeds_declared and feasible and accepts_seed(c.config, self.seeds)
            for s in self.seeds if self.seeded[c.name] else []:
                (configs / f"{c.name}.s{s}.yaml").write_text(yaml.safe_dump(dict(c.config, seed=s), sort_keys=False))
            if feasible and not self.seeded[c.name]:
                try:
                    PeftConfig.from_any(c.config)
                except PeftError as e:
                    raise PeftError(f"cell {c.name}: {path}: {e}") from None
