"""Budget sweeps: grid expansion, the tuning protocol, the learning / forgetting report with
confidence intervals, the significance-aware Pareto front, the plot.

A grid (``conf/sweep/*.yaml``)::

    methods: [lora, dora, pissa, ssvd, ssvd_o, full]
    configs: {lora: conf/peft/lora.yaml, ...}     # the base PEFT config of each method
                                                  # ({config: FILE, name: LABEL} renames its cells)
    budgets: ["0.5%", "1%", "2%", "4%"]           # for every budgeted method
    allocations:                                   # extra variants; each is a partial PEFT config
      ssvd_o: [{allocation: {inner: 0.0}}, {allocation: {inner: 0.25}}, ...]
      ssvd: [{directions: top}, {directions: tail}]
      "*": [{allocation: {weights: uniform}}, {allocation: {weights: attention}}]   # every budgeted method
    interpolation: {cells: [full, ssvd_o_b1pct_inner0.5], alphas: [0, 0.25, 0.5, 0.75, 1]}
    # the protocol (all optional):
    learning_rates: {lora: [1.0e-3, 3.0e-3, 1.0e-2], full: [1.0e-4, 3.0e-4, 1.0e-3]}
                                                  # per method (or cell label): the grid each cell
                                                  # is tuned on, on the target dev set
    seeds: [1, 2, 3]                               # every reported cell is the mean over these
    selection: {metric: dev_wer, seeds: 1, variants: inherit, priority_seeds: 2,
                forgetting: {set: source_dev, bound: 3.0}}   # optional: rates within this forgetting only
    bootstrap: {unit: utterance, resamples: 2000, seed: 0, level: 0.95, resample_seeds: true}
    priority_budgets: ["1%", "4%"]                 # these cells (and full) run first
    placement: upper_first                         # a budget below one unit per target module adapts
                                                   # the deepest modules that fit (allocation.placement
                                                   # of every budgeted cell; default: all, i.e. infeasible)

expands into cells: one PEFT config each, named by method, budget and variant. The report
reads each experiment's ``summary.json`` (recipe stage 15), one per cell, seed and alpha, and
the per-utterance errors the driver attaches to them (``_utt``, ``_base_utt``).

The package's rooms: ``grid`` (the grid and its cells), ``metrics`` (what is compared, in which
direction), ``protocol`` (seeds, learning-rate selection), ``analysis`` (statistics), ``render``
(tables, plot, JSON).
"""
from .analysis import BASE, analyse, pareto_front, reference_summary, sweep_rows  # noqa: F401
from .grid import (BLOCK_KEYS, GRID_KEYS, Cell, deep_update, expand, experiment_tag, load_grid,  # noqa: F401
                   order_cells, priority_group)
from .metrics import (REPORT_METRICS, SELECTION_METRICS, Metric, report_metric,  # noqa: F401
                      selection_metric)
from .protocol import (BOOTSTRAP_DEFAULTS, BOOTSTRAP_KEYS, SELECTION_KEYS, Protocol, at_grid_edge,  # noqa: F401
                       choose_lr, lr_label, protocol, rate_beyond, reachable_rates, seed_mean, tuning_grid)
from .render import modules_note, plot, sweep_table, tuning_table, write_report  # noqa: F401
