"""The metrics a sweep chooses learning rates by and reports: one :class:`Metric` per score, with the
fields it reads and the direction that is better. The protocol (``selection.metric``,
``report.metric``), the analysis, the run records, the report and the driver's ``--metric`` all look
a metric up here; nothing else names one.

A report metric is an error rate (or a score) per test set: a summary's scores hold it under
``field`` (``summary["adapted"][set][field]``, as ``result.json`` does), and a run record's
per-utterance block holds its numerators under ``errors`` and the sweep's ``data.json`` its
denominators under ``lengths`` (the bootstrap reads them). Every comparison reads ``higher_is_better``:
the gain over the base model, the forgetting, the best cell, the Pareto front, the findings."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Dict, Optional, Union


@dataclass(frozen=True)
class Metric:
    name: str                       # how a grid and the command line name it
    label: str                      # how the report writes it
    field: str                      # its key in a set's scores (result.json, summary.json)
    higher_is_better: bool = False
    errors: Optional[str] = None    # per-utterance numerators in a run record's block
    lengths: Optional[str] = None   # per-utterance denominators in data.json's set block
    fmt: str = ".2f"                # how a value is written in the report
    source: str = "decode"          # a selection score: "decode" (the dev set decoded) or "valid" (ESPnet's validation)

    @property
    def sign(self) -> int:
        """+1 when lower is better, -1 when higher is: ``sign * value`` is lower for a better value."""
        return -1 if self.higher_is_better else 1

    def key(self, value: float) -> float:
        """A sort key that puts the best value first."""
        return self.sign * value

    def gain(self, base: float, value: float) -> float:
        """How much better ``value`` is than ``base`` (in the metric's units; negative: worse)."""
        return self.sign * (base - value)

    def worse_by(self, value: float, than: float) -> float:
        """How much worse ``value`` is than ``than`` (negative: better)."""
        return self.sign * (value - than)

    @property
    def worst(self) -> float:
        """The worst possible score (a run that diverged)."""
        return self.sign * math.inf

    @property
    def best_word(self) -> str:
        return "highest" if self.higher_is_better else "lowest"

    @property
    def worse_word(self) -> str:
        return "lower" if self.higher_is_better else "higher"

    @property
    def improves_word(self) -> str:
        return "raises" if self.higher_is_better else "lowers"

    @property
    def better_text(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


WER = Metric("wer", "WER", "wer", errors="errors", lengths="words")
CER = Metric("cer", "CER", "cer", errors="char_errors", lengths="chars")
#: what a report compares (``report.metric``, ``--metric``)
REPORT_METRICS: Dict[str, Metric] = {m.name: m for m in (WER, CER)}
#: what a learning rate is chosen by (``selection.metric``): a dev set decoded, or ESPnet's validation
SELECTION_METRICS: Dict[str, Metric] = {m.name: m for m in (
    replace(WER, name="dev_wer"), replace(CER, name="dev_cer"),
    Metric("valid_acc", "validation accuracy", "acc", higher_is_better=True, fmt=".4g", source="valid"))}


def _lookup(table: Dict[str, Metric], kind: str, metric: Union[str, Metric]) -> Metric:
    if isinstance(metric, Metric):
        return metric
    if metric not in table:
        raise ValueError(f"unknown {kind} metric {metric!r}; expected one of {sorted(table)}")
    return table[metric]


def report_metric(metric: Union[str, Metric]) -> Metric:
    """The report metric named ``metric`` (a :class:`Metric` is its own)."""
    return _lookup(REPORT_METRICS, "report", metric)


def selection_metric(metric: Union[str, Metric]) -> Metric:
    """The selection metric named ``metric`` (a :class:`Metric` is its own)."""
    return _lookup(SELECTION_METRICS, "selection", metric)
