#!/usr/bin/env bash
# Budget sweep of the embedded benchmark: every cell of a grid (method x budget x allocation)
# through stages 10-15 at matched budgets, then the learning / forgetting report.
#
#   ./run_sweep.sh --target child                        # conf/sweep/embedded.yaml, one cell at a time:
#                                                        # exp/sweep_embedded_child, RESULTS_sweep_embedded_child.md
#   ./run_sweep.sh --target accent --max_parallel 2
#   cmd_backend=slurm ./run_sweep.sh --max_parallel 0    # every cell as its own Slurm job
#   ./run_sweep.sh --dry_run true                        # list the cells and their commands
#   ./run_sweep.sh --archive_stale true                  # after a new foundation model: move the old
#                                                        # cells to exp/stale/ and run them again
#   ./run_sweep.sh --bootstrap_unit speaker              # intervals over speakers instead of utterances
#
# The grid's protocol (learning_rates, seeds, selection, bootstrap, priority_budgets; README,
# "The sweep protocol"): every cell's learning rate is chosen on the target dev set
# (<target>_dev) before any test set is decoded with it, every reported number is a mean over
# seeds with its spread and 95% bootstrap intervals, forgetting is reported on every source test
# set of run.sh. Re-running continues a killed sweep (finished runs and choices are kept).
set -euo pipefail
cd "$(dirname "$0")"

target=child
grid=../../../conf/sweep/embedded.yaml
max_parallel=1
dry_run=false
run_args=""      # extra options for every cell's run.sh (e.g. "--train_config conf/x.yaml")
train_args=""    # extra ESPnet training options for every run (e.g. "--max_epoch 8"); they travel in
                 # --peft_args with the learning rate and seed of the run (do not pass --peft_args in run_args)
bootstrap_unit=""    # utterance | speaker (default: the grid's bootstrap.unit)
archive_stale=false  # true: cells trained on another foundation model move to exp/stale/ and run again
help_message="Usage: $0 [--target child|accent] [--grid FILE] [--max_parallel N] [--dry_run true] [--run_args '...'] [--train_args '...'] [--bootstrap_unit utterance|speaker] [--archive_stale true]"
cmdline="egs2/embedded/asr1/run_sweep.sh"  # cited by the report
if [ $# -gt 0 ]; then cmdline+="$(printf ' %q' "$@")"; fi
. utils/parse_options.sh
. ./path.sh
. ./cmd.sh
case "${target}" in child|accent) ;; *) echo "$0: --target must be child or accent" >&2; exit 1 ;; esac
[ -f "${grid}" ] || { echo "$0: grid not found: ${grid}" >&2; exit 1; }

# one directory and one RESULTS file per grid and target: exp/sweep_<grid name>_<target>
sweep="$(basename "${grid}" .yaml)_${target}"
opts=()
[ "${dry_run}" = true ] && opts+=(--dry_run)
[ "${archive_stale}" = true ] && opts+=(--archive_stale)
[ -z "${bootstrap_unit}" ] || opts+=(--bootstrap_unit "${bootstrap_unit}")
[ -z "${train_args}" ] || opts+=(--train_args "${train_args}")
"${python}" utils/budget_sweep.py --grid "${grid}" --out "exp/sweep_${sweep}" \
    --run "./run.sh --target ${target} ${run_args}" --cmd "${cuda_cmd}" --max_parallel "${max_parallel}" \
    --tag_prefix "${target}_" --model_config foundation/config.yaml --dev_set "${target}_dev" --dumpdir dump \
    --results "RESULTS_sweep_${sweep}.md" --command "${cmdline}" "${opts[@]+"${opts[@]}"}"
