#!/usr/bin/env bash
# Budget sweep of the embedded benchmark: every cell of a grid (method x budget x allocation)
# through stages 10-15 at matched budgets, then the learning / forgetting report (the shared
# launcher local/run_sweep.sh: its options, pinning and phases).
#
#   ./run_sweep.sh --target child                        # conf/sweep/embedded.yaml, one cell at a time:
#                                                        # exp/sweep_embedded_child, RESULTS_sweep_embedded_child.md
#   ./run_sweep.sh --target accent --max_parallel 2
#   cmd_backend=slurm ./run_sweep.sh --max_parallel 0    # every cell as its own Slurm job
#   ./run_sweep.sh --dry_run true                        # list the cells and their commands
#   ./run_sweep.sh --report_only true                    # the report from the records (nothing runs)
#   ./run_sweep.sh --report_only true --metric cer       # the same comparison in CER (RESULTS_sweep_*_cer.md)
#   ./run_sweep.sh --archive_stale true                  # after a new foundation model: move the old
#                                                        # cells to exp/stale/ and run them again
#   ./run_sweep.sh --bootstrap_unit utterance            # intervals over utterances (the grid: speakers, then
#                                                        # utterances within each drawn speaker)
#   ./run_sweep.sh --target child --pin true             # run from a git worktree pinned at the current commit:
#                                                        # edits of this checkout never change a running sweep
#   ./run_sweep.sh --target child --priority_only true   # the priority block only (every method at the priority
#   ./run_sweep.sh --target accent --priority_only true  # budgets, and full, at the priority seeds): both targets'
#                                                        # comparisons before any third seed, variant or curve
#   ./run_sweep.sh --target child --last_phase later_seeds   # then both targets' third seeds, before any
#                                                        # variant or curve (the phases: priority_block,
#                                                        # later_seeds, other_cells, curves)
#   ./run_sweep.sh --target all --pin true               # all of it in that order, both targets phase by
#                                                        # phase, from one pinned commit
#
# A finished run is a small record in sweep_records/<grid>_<target>/ (tracked: commit them as they finish);
# the protocol and the statistics: docs/sweeps.md.
set -euo pipefail
cd "$(dirname "$0")"

sweep_targets="child accent"
grid=../../../conf/sweep/embedded.yaml
cmdline="egs2/embedded/asr1/run_sweep.sh"  # cited by the report
# what depends on the target: its run.sh, its dev set (the rate choice), the sets whose content is the data identity
target_opts() {
    target_args=(--run "./run.sh --target $1 ${run_args}" --tag_prefix "$1_" --dev_set "$1_dev"
                 --data_sets "$1_train $1_dev $1_unseen_test $1_test source_test source_unseen_test source_style_test")
}
. "$(cd ../../.. && pwd)/local/run_sweep.sh"
