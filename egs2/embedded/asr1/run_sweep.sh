#!/usr/bin/env bash
# Budget sweep of the embedded benchmark: every cell of a grid (method x budget x allocation)
# through stages 10-15 at matched budgets, then the learning / forgetting report.
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
# A finished run (a dev score, or a seed's test decoding) is a small record in sweep_records/<grid>_<target>/
# (tracked: commit them as they finish): the sweep skips every run with a current record (same foundation
# model, data and frozen configs), on any machine, and the report renders from the records alone.
#
# The grid's protocol (learning_rates, seeds, selection, bootstrap, priority_budgets; README,
# "The sweep protocol"): every cell's learning rate is chosen on the target dev set
# (<target>_dev) before any test set is decoded with it, every reported number is a mean over
# seeds with its spread and 95% bootstrap intervals, forgetting is reported on every source test
# set of run.sh. Re-running continues a killed sweep (finished runs and choices are kept).
set -euo pipefail
cd "$(dirname "$0")"

target=child     # child | accent | all (both targets, phase by phase: see --last_phase)
grid=../../../conf/sweep/embedded.yaml
max_parallel=1
dry_run=false
report_only=false  # true: run nothing, write the report from the records
metric=""          # wer | cer: the error rate the report compares (default: the grid's report.metric, else
                   # wer); a cer report is RESULTS_sweep_<grid>_<target>_cer.md
run_args=""      # extra options for every cell's run.sh (e.g. "--train_config conf/x.yaml")
train_args=""    # extra ESPnet training options for every run (e.g. "--max_epoch 8"); they travel in
                 # --peft_args with the learning rate and seed of the run (do not pass --peft_args in run_args)
bootstrap_unit=""    # utterance | speaker | speaker_utterance (default: the grid's bootstrap.unit)
archive_stale=false  # true: cells trained on another foundation model move to exp/stale/ and run again
records=sweep_records  # the run records (tracked): ${records}/<grid name>_<target>/
results_dir=.        # where RESULTS_sweep_<grid name>_<target>.{md,png,json} are written
sweep_dir=""         # the sweep's working directory (configs, logs; default exp/sweep_<grid name>_<target>;
                     # with --target all, <sweep_dir>/<target>)
last_phase=""        # the last phase to run, of (in order) priority_block (the grid's priority_budgets and full
                     # at selection.priority_seeds), later_seeds (those cells' other seeds), other_cells
                     # (variants, other budgets), curves (interpolation alphas); default: all
priority_only=false  # true: --last_phase priority_block
pin=false            # true: run from a git worktree of the current commit (../<repo>_sweep_<commit>; data/,
                     # dump/, downloads/, exp/ and the records stay this checkout's)
help_message="Usage: $0 [--target child|accent|all] [--grid FILE] [--max_parallel N] [--dry_run true] [--run_args '...'] [--train_args '...'] [--bootstrap_unit utterance|speaker|speaker_utterance] [--archive_stale true] [--records DIR] [--pin true] [--last_phase priority_block|later_seeds|other_cells|curves] [--priority_only true] [--report_only true] [--metric wer|cer]"
cmdline="egs2/embedded/asr1/run_sweep.sh"  # cited by the report
if [ $# -gt 0 ]; then cmdline+="$(printf ' %q' "$@")"; fi
cmdline="${ESPNET_PEFT_SWEEP_CMDLINE:-${cmdline}}"  # (a pinned run cites the command that started it)
orig_args=("$@")
. ./path.sh  # MAIN_ROOT: the repository, whose local/ holds the shared scripts
. "${MAIN_ROOT}/local/parse_options.sh"
. ./cmd.sh
case "${target}" in child|accent|all) ;; *) echo "$0: --target must be child, accent or all" >&2; exit 1 ;; esac
[ "${priority_only}" = true ] && last_phase=priority_block
case "${last_phase}" in ""|priority_block|later_seeds|other_cells|curves) ;;
    *) echo "$0: --last_phase must be priority_block, later_seeds, other_cells or curves" >&2; exit 1 ;; esac
[ -f "${grid}" ] || { echo "$0: grid not found: ${grid}" >&2; exit 1; }

# one directory and one RESULTS file per grid and target: exp/sweep_<grid name>_<target>
sweep="$(basename "${grid}" .yaml)_${target}"
if [ "${pin}" = true ]; then
    # the sweep runs the code of one commit from start to end: a worktree of HEAD, made once per commit
    root="$(git rev-parse --show-toplevel)"
    commit="$(git rev-parse HEAD)"
    if ! git -C "${root}" diff --quiet HEAD -- espnet_peft local conf "egs2/embedded/asr1/conf" \
            "egs2/embedded/asr1/run.sh" "egs2/embedded/asr1/local"; then
        echo "$0: --pin true runs the commit ${commit:0:10}, but the code or configs have uncommitted changes:" \
             "commit them first" >&2
        exit 1
    fi
    wt="$(dirname "${root}")/$(basename "${root}")_sweep_${commit:0:10}"
    [ -d "${wt}" ] || git -C "${root}" worktree add --detach "${wt}" "${commit}" >&2
    here="$(pwd)"; rel="${here#"${root}"/}"
    ln -sfn "${root}/.venv" "${wt}/.venv"
    for d in data dump downloads exp; do
        mkdir -p "${here}/${d}"
        [ -e "${wt}/${rel}/${d}" ] || ln -s "${here}/${d}" "${wt}/${rel}/${d}"
    done
    echo "$0: running from ${wt} (commit ${commit:0:10}); records in ${here}/${records}/${sweep}" >&2
    # MAIN_ROOT (exported by this checkout's path.sh) names the worktree: its path.sh then puts the
    # worktree's espnet_peft first on PYTHONPATH, so every training imports the pinned library
    ESPNET_PEFT_SWEEP_CMDLINE="${cmdline}" MAIN_ROOT="${wt}" exec "${wt}/${rel}/run_sweep.sh" "${orig_args[@]}" --pin false \
        --records "${here}/${records}" --results_dir "${here}/${results_dir}"
fi
if [ "${target}" = all ]; then
    # both targets phase by phase, in the grid's priority order: every target's priority block, then
    # every target's later seeds, ... up to --last_phase (pinned: the whole chain runs one commit)
    phases="priority_block later_seeds other_cells curves"
    if [ "${report_only}" = true ] || [ "${dry_run}" = true ]; then phases="${last_phase:-curves}"; fi
    rc=0
    for phase in ${phases}; do
        for t in child accent; do
            ESPNET_PEFT_SWEEP_CMDLINE="${cmdline}" bash "${BASH_SOURCE[0]}" "${orig_args[@]}" --pin false --priority_only false \
                --target "${t}" --last_phase "${phase}" --sweep_dir "${sweep_dir:+${sweep_dir}/${t}}" || rc=$?
        done
        [ "${phase}" = "${last_phase:-curves}" ] && break
    done
    exit "${rc}"
fi
opts=()
[ "${dry_run}" = true ] && opts+=(--dry_run)
[ "${report_only}" = true ] && opts+=(--report_only)
[ -z "${last_phase}" ] || opts+=(--last_phase "${last_phase}")
[ -z "${metric}" ] || opts+=(--metric "${metric}")
suffix=""; [ -z "${metric}" ] || [ "${metric}" = wer ] || suffix="_${metric}"
[ "${archive_stale}" = true ] && opts+=(--archive_stale)
[ -z "${bootstrap_unit}" ] || opts+=(--bootstrap_unit "${bootstrap_unit}")
[ -z "${train_args}" ] || opts+=(--train_args "${train_args}")
exec "${python}" "${MAIN_ROOT}/local/budget_sweep.py" --grid "${grid}" --out "${sweep_dir:-exp/sweep_${sweep}}" \
    --run "./run.sh --target ${target} ${run_args}" --cmd "${cuda_cmd}" --max_parallel "${max_parallel}" \
    --tag_prefix "${target}_" --model_config foundation/config.yaml --dev_set "${target}_dev" --dumpdir dump \
    --records "${records}/${sweep}" --data_sets "${target}_train ${target}_dev ${target}_unseen_test ${target}_test
source_test source_unseen_test source_style_test" --frozen conf/train_peft.yaml --frozen conf/decode.yaml \
    --frozen conf/decode_nolm.yaml --frozen foundation/lm/config.yaml --frozen foundation/lm/model.pth \
    --results "${results_dir}/RESULTS_sweep_${sweep}${suffix}.md" --command "${cmdline}" "${opts[@]+"${opts[@]}"}"
