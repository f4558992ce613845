#!/usr/bin/env bash
# Budget sweep of the speechocean762 recipe (conf/sweep/speechocean762.yaml): every method at 1% and 4%
# and full fine-tuning, adapting the real-speech foundation model to the training children, through the
# shared launcher local/run_sweep.sh (its options, pinning and phases; docs/sweeps.md).
#
#   ./run_sweep.sh --pin true                     # from a worktree of the current commit
#   ./run_sweep.sh --last_phase priority_block    # rate choices and seeds 1-2 of the priority cells first
#   ./run_sweep.sh --report_only true             # the report from the committed records
#
# Made affordable on 2 CPU cores (a run of about 10 minutes): the rate-choice runs score so762_dev_child
# by CTC greedy decoding (--dev_args), the test runs decode per-speaker subsets of the test sets (every
# test speaker, 6 utterances of a child, 3 of an adult) and the synthetic source_test (the run.sh options
# below); the base model's decodings are shared by every run. The recipe's own ./run.sh reports the full
# test sets.
set -euo pipefail
cd "$(dirname "$0")"

sweep_targets="child"
grid=../../../conf/sweep/speechocean762.yaml
cmdline="egs2/speechocean762/asr1/run_sweep.sh"  # cited by the report
dev_args="--decode_config conf/decode_nolm.yaml --nolm_decode_config ''"
sets="--target_test_sets so762_test_child_sub --source_test_sets 'so762_test_adult_sub source_test'"
target_opts() {
    target_args=(--run "./run.sh ${sets} ${run_args}" --tag_prefix "sweep_$1_" --dev_set "so762_dev_$1"
                 --data_sets "so762_train_$1 so762_dev_$1 so762_test_$1_sub so762_test_adult_sub source_test")
}
. "$(cd ../../.. && pwd)/local/run_sweep.sh"
