# The budget sweep of a recipe (sourced by its run_sweep.sh, run from the recipe directory): every
# cell of a grid (method x budget x allocation) through stages 10-15 at matched budgets, then the
# learning / forgetting report. The recipe's run_sweep.sh sets, before sourcing this file:
#   sweep_targets    the target domains it has (e.g. "child accent"); --target all runs them in turn
#   grid             the default grid (conf/sweep/<name>.yaml)
#   target_opts()    a function of the target that sets the array target_args: the options of
#                    local/budget_sweep.py that depend on it (--run, --dev_set, --data_sets, --tag_prefix)
#   cmdline          the recipe's name for itself in the report (egs2/<corpus>/asr1/run_sweep.sh)
# Every option below can be given to it.
#
# A finished run (a dev score, or a seed's test decoding) is a small record in
# sweep_records/<grid>_<target>/ (tracked: commit them as they finish): the sweep skips every run with
# a current record (same foundation model, data and frozen configs), on any machine, and the report
# renders from the records alone. The grid's protocol (docs/sweeps.md): every cell's learning rate
# is chosen on the target dev set before any test set is decoded with it, every reported number is a
# mean over seeds with its spread and speaker-level bootstrap intervals, every claim is corrected
# within its family, forgetting is reported on every source test set. Re-running continues a
# killed sweep (finished runs and choices are kept).

target="${sweep_targets%% *}"  # a target of sweep_targets, or all (phase by phase: see --last_phase)
max_parallel=1
dry_run=false
report_only=false  # true: run nothing, write the report from the records
metric=""          # the metric the report compares (local/budget_sweep.py --help: --metric; default: the grid's
                   # report.metric, else wer); a report in another than wer is RESULTS_sweep_<grid>_<target>_<metric>.md
run_args=""      # extra options for every cell's run.sh (e.g. "--train_config conf/x.yaml")
train_args=""    # extra ESPnet training options for every run (e.g. "--max_epoch 8"); they travel in
                 # --peft_args with the learning rate and seed of the run (do not pass --peft_args in run_args)
dev_args="${dev_args:-}"  # extra options for run.sh in the rate-choice (dev) runs only (e.g. a cheaper decoding)
bootstrap_unit=""    # utterance | speaker | speaker_utterance (default: the grid's bootstrap.unit)
archive_stale=false  # true: cells trained on another foundation model move to exp/stale/ and run again
records=sweep_records  # the run records (tracked): ${records}/<grid name>_<target>/
results_dir=.        # where RESULTS_sweep_<grid name>_<target>.{md,png,json} are written
sweep_dir=""         # the sweep's working directory (configs, logs; default exp/sweep_<grid name>_<target>;
                     # with --target all, <sweep_dir>/<target>)
last_phase=""        # the last phase to run (local/budget_sweep.py --list_phases, in order; local/sweep_phases.py says
                     # what each holds: the priority block first, the interpolation curves last); default: all
priority_only=false  # true: --last_phase <the first phase> (priority_block)
pin=false            # true: run from a git worktree of the current commit (../<repo>_sweep_<commit>; data/,
                     # dump/, downloads/, exp/ and the records stay this checkout's)
. ./path.sh  # MAIN_ROOT: the repository, whose local/ holds the shared scripts; python: its interpreter
phases="$("${python}" "${MAIN_ROOT}/local/budget_sweep.py" --list_phases)" ||  # in the order they run
    { echo "$0: local/budget_sweep.py --list_phases failed" >&2; exit 1; }
help_message="Usage: $0 [--target $(echo ${sweep_targets} all | tr ' ' '|')] [--grid FILE] [--max_parallel N] [--dry_run true] [--run_args '...'] [--train_args '...'] [--dev_args '...'] [--bootstrap_unit utterance|speaker|speaker_utterance] [--archive_stale true] [--records DIR] [--pin true] [--last_phase ${phases// /|}] [--priority_only true] [--report_only true] [--metric NAME (local/budget_sweep.py --help)]"
if [ $# -gt 0 ]; then cmdline+="$(printf ' %q' "$@")"; fi
cmdline="${ESPNET_PEFT_SWEEP_CMDLINE:-${cmdline}}"  # (a pinned run cites the command that started it)
orig_args=("$@")
. "${MAIN_ROOT}/local/parse_options.sh"
. ./cmd.sh
case " ${sweep_targets} all " in *" ${target} "*) ;;
    *) echo "$0: --target must be one of: ${sweep_targets} all" >&2; exit 1 ;; esac
[ "${priority_only}" = true ] && last_phase="${phases%% *}"  # the first phase
final="${phases##* }"  # the last phase: the whole sweep
case " ${phases} " in *" ${last_phase:-${final}} "*) ;;
    *) echo "$0: --last_phase must be one of: ${phases}" >&2; exit 1 ;; esac
[ -f "${grid}" ] || { echo "$0: grid not found: ${grid}" >&2; exit 1; }

# one directory and one RESULTS file per grid and target: exp/sweep_<grid name>_<target>
sweep="$(basename "${grid}" .yaml)_${target}"
if [ "${pin}" = true ]; then
    # the sweep runs the code of one commit from start to end: a worktree of HEAD, made once per commit
    root="$(git rev-parse --show-toplevel)"
    commit="$(git rev-parse HEAD)"
    here="$(pwd)"; rel="${here#"${root}"/}"
    if ! git -C "${root}" diff --quiet HEAD -- espnet_peft local conf "${rel}/conf" "${rel}/run.sh" "${rel}/local"; then
        echo "$0: --pin true runs the commit ${commit:0:10}, but the code or configs have uncommitted changes:" \
             "commit them first" >&2
        exit 1
    fi
    wt="$(dirname "${root}")/$(basename "${root}")_sweep_${commit:0:10}"
    [ -d "${wt}" ] || git -C "${root}" worktree add --detach "${wt}" "${commit}" >&2
    ln -sfn "${root}/.venv" "${wt}/.venv"
    for d in data dump downloads exp; do
        mkdir -p "${here}/${d}"
        [ -e "${wt}/${rel}/${d}" ] || ln -s "${here}/${d}" "${wt}/${rel}/${d}"
    done
    echo "$0: running from ${wt} (commit ${commit:0:10}); records in ${here}/${records}/${sweep}" >&2
    # MAIN_ROOT (exported by this checkout's path.sh) names the worktree: its path.sh then puts the
    # worktree's espnet_peft first on PYTHONPATH, so every training imports the pinned library
    ESPNET_PEFT_SWEEP_CMDLINE="${cmdline}" MAIN_ROOT="${wt}" exec "${wt}/${rel}/$(basename "$0")" "${orig_args[@]}" \
        --pin false --records "${here}/${records}" --results_dir "${here}/${results_dir}"
fi
if [ "${target}" = all ]; then
    # every target phase by phase, in the grid's priority order: every target's priority block, then
    # every target's later seeds, ... up to --last_phase (pinned: the whole chain runs one commit)
    run_phases="${phases}"
    if [ "${report_only}" = true ] || [ "${dry_run}" = true ]; then run_phases="${last_phase:-${final}}"; fi
    rc=0
    for phase in ${run_phases}; do
        for t in ${sweep_targets}; do
            ESPNET_PEFT_SWEEP_CMDLINE="${cmdline}" bash "$0" "${orig_args[@]}" --pin false --priority_only false \
                --target "${t}" --last_phase "${phase}" --sweep_dir "${sweep_dir:+${sweep_dir}/${t}}" || rc=$?
        done
        [ "${phase}" = "${last_phase:-${final}}" ] && break
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
[ -z "${dev_args}" ] || opts+=(--dev_args "${dev_args}")
target_args=()
target_opts "${target}"
exec "${python}" "${MAIN_ROOT}/local/budget_sweep.py" --grid "${grid}" --out "${sweep_dir:-exp/sweep_${sweep}}" \
    --cmd "${cuda_cmd}" --max_parallel "${max_parallel}" --model_config foundation/config.yaml --dumpdir dump \
    --records "${records}/${sweep}" "${target_args[@]}" --frozen conf/train_peft.yaml --frozen conf/decode.yaml \
    --frozen conf/decode_nolm.yaml --frozen foundation/lm/config.yaml --frozen foundation/lm/model.pth \
    --results "${results_dir}/RESULTS_sweep_${sweep}${suffix}.md" --command "${cmdline}" "${opts[@]+"${opts[@]}"}"
