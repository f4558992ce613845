#!/usr/bin/env bash
# The shared stage driver of every espnet-peft ASR recipe (the role of ESPnet's asr.sh). It lives in
# the top-level local/; each recipe links it beside its run.sh (egs2/<corpus>/asr1/peft_asr.sh ->
# ../../../local/peft_asr.sh, as ESPnet recipes link asr.sh), and run.sh ends with
#     exec ./peft_asr.sh [its corpus options] "$@"
# Run from the recipe directory. The other shared tools are reached by their one name,
# "${MAIN_ROOT}/local/<name>" (path.sh sets MAIN_ROOT to the repository); a recipe's own local/
# holds only its corpus-specific data.sh.
# Stages (see README, "Recipes"):
#   1 data preparation (local/data.sh)     2 data check      3 format (16 kHz mono)
#   4 filter lengths                        5 tokenizer (the foundation model's BPE)
#   6 foundation: statistics                7 foundation: training (ESPnet asr_train, and lm_train
#                                             when --lm_config is set; decoding uses ${foundation_dir}/lm
#                                             whenever the decode config sets lm_weight > 0)
#   8 foundation: decode + score source     9 foundation: package into ${foundation_dir}
#  10 PEFT adaptation (espnet_peft.bin.asr_train)   11 merge (+ interpolation --alpha)
#  12 decode target test sets              13 score target test sets
#  14 forgetting: decode + score source test sets, base vs adapted
#     (with --nolm_decode_config, stages 12-14 also decode and score every test set without the LM,
#      into ${expdir}/base_decode_nolm and ${merged}/decode_nolm, and stage 15 reports both)
#  15 report: ${expdir}/RESULTS.md, JSON summary, printed table (--results FILE: that file too)
#  16 (on request) several domains, one model: a mixed test set decoded on one load of the foundation
#     model, each utterance routed to its adapter (--route_adapters, --route_sets), against the base
#     and each merged model (${expdir}/routed_${route_name}/RESULTS.md)
# Reliability (README, "Reliability"): options, configs and data are checked before compute; a
# running experiment holds ${exp}/run.lock; a signal to this script stops the job it runs (its
# whole process group); caches (statistics, decodings) are keyed by the content they depend on.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') ($(basename "$0"):${BASH_LINENO[0]}) $*"; }
min() { [ "$1" -lt "$2" ] && echo "$1" || echo "$2"; }
# print_args ARGS...: the arguments as one shell command line (quoted where needed)
print_args() {
    local a out=""
    for a in "$@"; do
        if [[ "${a}" =~ ^[A-Za-z0-9_./:=,+%@-]+$ ]]; then out+=" ${a}"; else out+=" '${a//\'/\'\\\'\'}'"; fi
    done
    echo "${out# }"
}
# this script's own command line (as ESPnet's asr.sh keeps run_args): stage 10 records it in
# ${exp}/command.txt and the report cites it
me="$0"; [ "$(dirname "$0")" != "$(pwd)" ] || me="./$(basename "$0")"  # (exec gives the absolute path)
run_args="$(print_args "${me}" "$@")"

# ---------------------------------------------------------------- options (defaults)
stage=1                 # first stage to run
stop_stage=15           # last stage to run
nj=2                    # parallel jobs for data preparation and decoding
ngpu=0                  # GPUs for training (0: CPU)
task=asr                # asr (espnet2 ASR models) or s2t (OWSM speech-to-text models)
lang_sym="<eng>"        # s2t: language token of the data
task_sym="<asr>"        # s2t: task token
python=python3          # the interpreter of the venv (path.sh sets it)
data_opts=""            # options passed to local/data.sh
fs=16000                # sampling rate of the formatted audio
min_dur=0.3             # stage 4: shortest training utterance (s)
max_dur=20.0            # stage 4: longest training utterance (s)
# data sets
source_train_set=""     # foundation training set (stages 6-9)
source_valid_set=""     # foundation validation set
source_test_sets=""     # source-domain test sets (forgetting, stage 14; every one is reported)
target_train_set=""     # adaptation training set (stage 10)
target_valid_set=""     # adaptation validation set
target_test_sets=""     # target-domain test sets (stages 12-13)
# the foundation (pretrained) model
foundation_dir=foundation           # config.yaml + model.pth + bpe.model + tokens.txt
foundation_source=""                # stage 6 without --pretrain: a model-zoo tag (e.g. espnet/owsm_v3.1_ebf_base,
                                    # needs a network) or a local model directory, fetched into foundation_dir
pretrain=false                      # true: (re)train the foundation model in stages 6-9
foundation_config=conf/train_foundation.yaml
foundation_init=""                  # with --pretrain true: a model directory (model.pth, bpe.model, tokens.txt; e.g.
                                    # foundation) to warm-start from: its tokenizer is kept, its weights are
                                    # the initial ones (--init_param)
foundation_exp=exp/foundation
nbpe=300                            # BPE units when a tokenizer is trained (stage 5)
foundation_args=""                  # extra options for espnet2.bin.asr_train
lm_config=""                        # with --pretrain: stage 7 also trains a language model (ESPnet lm_train)
lm_train_text=data/lm_train.txt     # its training text (Kaldi text: id + words; local/data.sh writes it)
lm_exp=exp/foundation_lm
lm_args=""                          # extra options for espnet2.bin.lm_train
# adaptation
peft_config=""                      # method, targets, budget, allocation (run.sh gives its default)
train_config=conf/train_peft.yaml   # optimiser, schedule, batches, epochs of adaptation
budget=""                           # overrides the PEFT config's budget (count, fraction or x%)
peft_args=""                        # extra options for espnet_peft.bin.asr_train
tag=""                              # experiment name (default: tag_prefix + peft_config's name)
tag_prefix=""                       # prefix of the default tag (run.sh: the target domain)
alpha=1.0                           # stage 11: interpolation toward the pretrained model, in [0, 1]
checkpoint=valid.acc.ave.pth        # which adapter checkpoint to merge
decode_config=conf/decode.yaml      # beam search options for Speech2Text
nolm_decode_config=""               # a second decoding without the LM (e.g. conf/decode_nolm.yaml: CTC
                                    # greedy), reported beside the recipe's; empty: none
expdir=exp                          # experiments live in ${expdir}/<tag>
dumpdir=dump                        # formatted data
results=""                          # stage 15 always writes ${expdir}/RESULTS.md; a FILE here (e.g. the
                                    # committed RESULTS.md) is updated too: only the sections of the
                                    # targets run here change, the others are kept
recipe_name=""                      # for the report (default: the recipe directory name)
prepare_only=false                  # sweeps: only the shared work (adaptation statistics, base decoding)
# serving several domains (stage 16): one model load, each utterance of a mixed set routed to its adapter
route_adapters=""                   # NAME=TAG ...: the adapters (${expdir}/TAG/${checkpoint}, merged at stage 11)
route_sets=""                       # SET=NAME ...: the test sets mixed, each routed to an adapter or to base
route_name=mixed                    # the mixed set (${dumpdir}/raw/NAME) and its results (${expdir}/routed_NAME)
# ---------------------------------------------------------------- end of options

help_message="Usage: ${me} [options]   e.g. --stage 10 --peft_config conf/peft/METHOD.yaml --tag child_METHOD
Options (--name value or --name=value; defaults as shown):
$(sed -n '/^# -* options (defaults)$/,/^# -* end of options$/p' "$0" | sed '1d;$d')"

. ./path.sh  # MAIN_ROOT: the repository, whose local/ holds the shared scripts
. "${MAIN_ROOT}/local/parse_options.sh"
. ./cmd.sh
recipe_rel="$(pwd)"; [ -z "${MAIN_ROOT:-}" ] || recipe_rel="${recipe_rel#"${MAIN_ROOT}"/}"
run_cmd="cd $(print_args "${recipe_rel}") && ${run_args}"  # what reproduces this run, from the repository

# ---------------------------------------------------------------- checks before compute
die() { echo "${me}: $*" >&2; exit 1; }
case "${task}" in asr|s2t) ;; *) die "--task must be asr or s2t, got '${task}'" ;; esac
case "${stage}" in ''|*[!0-9]*) die "--stage must be a number 1-16, got '${stage}'" ;; esac
case "${stop_stage}" in ''|*[!0-9]*) die "--stop_stage must be a number 1-16, got '${stop_stage}'" ;; esac
if [ "${stage}" -lt 1 ] || [ "${stage}" -gt 16 ] || [ "${stop_stage}" -lt 1 ] || [ "${stop_stage}" -gt 16 ]; then
    die "unknown stage: stages are 1-16 (got --stage ${stage} --stop_stage ${stop_stage})"
fi
if [ "${task}" = s2t ] && [ "${pretrain}" = true ]; then
    die "--pretrain true trains ASR foundation models only; S2T (OWSM) models come from --foundation_source"
fi
[ "${stage}" -le "${stop_stage}" ] || die "--stage ${stage} is after --stop_stage ${stop_stage}"
# --alpha is used at stage 11, after training: checked now
awk -v a="${alpha}" 'BEGIN { exit !(a ~ /^([0-9]+\.?[0-9]*|\.[0-9]+)$/ && a + 0 >= 0 && a + 0 <= 1) }' ||
    die "--alpha must be a number in [0, 1] (the interpolation weight toward the adapted model), got '${alpha}'"
for v in source_test_sets target_train_set target_valid_set target_test_sets; do
    [ -n "${!v}" ] || die "--${v} must be set (by run.sh)"
done
if [ "${pretrain}" = true ] && { [ -z "${source_train_set}" ] || [ -z "${source_valid_set}" ]; }; then
    die "--pretrain true needs --source_train_set and --source_valid_set"
fi
need_file() { [ -f "$1" ] || die "$2 not found: $1"; }
[ "${stop_stage}" -lt 10 ] || [ "${stage}" -gt 10 ] || need_file "${train_config}" "--train_config"
[ "${stop_stage}" -lt 12 ] || need_file "${decode_config}" "--decode_config"
if [ -n "${nolm_decode_config}" ] && [ "${stop_stage}" -ge 12 ]; then
    need_file "${nolm_decode_config}" "--nolm_decode_config"
    ! "${python}" -c "import sys, yaml; \
sys.exit(0 if float((yaml.safe_load(open(sys.argv[1])) or {}).get('lm_weight') or 0) > 0 else 1)" "${nolm_decode_config}" ||
        die "--nolm_decode_config ${nolm_decode_config} sets lm_weight > 0: it is the decoding without the LM"
fi
if [ -n "${lm_config}" ] && [ "${pretrain}" = true ] && [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 6 ]; then
    need_file "${lm_config}" "--lm_config"
    [ "${stage}" -le 1 ] || need_file "${lm_train_text}" "--lm_train_text (written by local/data.sh, stage 1)"
fi
if [ -n "${foundation_init}" ]; then
    [ "${pretrain}" = true ] || die "--foundation_init warm-starts a foundation training: it needs --pretrain true"
    if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
        for f in model.pth bpe.model tokens.txt; do need_file "${foundation_init}/${f}" "--foundation_init's ${f}"; done
    fi
fi
if [ "${pretrain}" = true ] && [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
    need_file "${foundation_config}" "--foundation_config"
fi
if [ "${stop_stage}" -ge 10 ]; then  # the PEFT config names the experiment of stages 10-15
    [ -n "${peft_config}" ] || die "--peft_config must be set (by run.sh) for stages 10-15"
    need_file "${peft_config}" "--peft_config"
fi
if [ -n "${budget}" ] && [ "${stop_stage}" -ge 10 ]; then  # a copy with this budget (explicit sizes dropped)
    name="$(basename "${peft_config}" .yaml)_b$(echo "${budget}" | tr -d ' ' | sed 's/%/pct/')"
    "${python}" -m espnet_peft.bin.peft_config "${peft_config}" "${expdir}/peft_configs/${name}.yaml" \
        --set "budget=${budget}" || die "invalid --budget ${budget} for --peft_config ${peft_config}"
    peft_config="${expdir}/peft_configs/${name}.yaml"
fi
[ -n "${tag}" ] || tag="${tag_prefix}$(basename "${peft_config}" .yaml)"
# names that become paths (exp/<tag>, dump/raw/<route_name>, exp/routed_<route_name>) are plain names:
# nothing is written outside exp/ or dump/ whatever is given
plain_name() { [[ "$2" =~ ^[A-Za-z0-9_][A-Za-z0-9_.,+=%-]*$ ]] && [[ "$2" != *..* ]] ||
    die "$1 must be a plain name (letters, digits and _ . , + = % -, no '/' or '..'), got '$2'"; }
plain_name --tag "${tag}"
plain_name --route_name "${route_name}"
for _x in ${route_adapters}; do
    [[ "${_x}" == *=* ]] || die "--route_adapters takes NAME=TAG pairs, got '${_x}'"
    plain_name "--route_adapters name" "${_x%%=*}"; plain_name "--route_adapters tag" "${_x#*=}"
done
exp="${expdir}/${tag}"
if [ "${stop_stage}" -ge 10 ] && [ "${stage}" -le 11 ]; then
    "${python}" -m espnet_peft.bin.peft_config "${peft_config}" || die "invalid --peft_config ${peft_config}"
    # a resumed experiment keeps the PEFT config frozen in it (nothing of ${exp} is written before)
    if [ "${stage}" -le 10 ] && [ -f "${exp}/checkpoint.pth" ]; then
        "${python}" -c "import sys; from espnet_peft.espnet_task import check_resume_config, PeftError
try:
    check_resume_config(sys.argv[1], sys.argv[2])
except PeftError as e:
    sys.exit(f'{sys.argv[3]}: error: {e}')" "${exp}" "${peft_config}" "${me}" || exit 1
    fi
fi
# decoding with an LM (lm_weight > 0) needs one: the foundation model's, or the one stage 7 trains
decode_lm_dir=""
if [ "${stop_stage}" -ge 8 ] && [ -f "${decode_config}" ] && "${python}" -c "import sys, yaml; \
sys.exit(0 if float((yaml.safe_load(open(sys.argv[1])) or {}).get('lm_weight') or 0) > 0 else 1)" "${decode_config}"; then
    decode_lm_dir="${foundation_dir}/lm"
    if [ ! -f "${decode_lm_dir}/model.pth" ] && ! { [ "${pretrain}" = true ] && [ -n "${lm_config}" ]; } &&
        ! { [ "${pretrain}" = true ] && [ -f "${foundation_init}/lm/model.pth" ]; }; then
        die "${decode_config} sets lm_weight > 0 but ${decode_lm_dir}/model.pth does not exist" \
            "(retrain with --pretrain true --lm_config FILE, or set lm_weight: 0)"
    fi
fi
# an experiment belongs to the foundation model it was trained on (${exp}/foundation_id): adapting
# again on another one (a retrained or fetched model) would mix the two, so it is refused up front.
# Sets foundation_fid, the current model file's id (stage 10 records it).
foundation_fid=""
check_foundation_id() {
    [ -f "${foundation_dir}/model.pth" ] || return 0
    foundation_fid=$("${python}" "${MAIN_ROOT}/local/file_id.py" "${foundation_dir}/model.pth")
    if [ -f "${exp}/foundation_id" ]; then
        [ "$(cat "${exp}/foundation_id")" = "${foundation_fid}" ] && return 0
        die "${exp} was trained on another foundation model (id $(cat "${exp}/foundation_id"), now ${foundation_fid});" \
            "move it away or choose another --tag"
    elif [ -f "${exp}/checkpoint.pth" ] || [ -f "${exp}/peft_plan.json" ]; then
        die "${exp} holds a run without a recorded foundation model (${exp}/foundation_id);" \
            "move it away or choose another --tag"
    fi
}
[ -n "${recipe_name}" ] || recipe_name="$(basename "$(dirname "$(pwd)")")"
merged="${exp}/merged"; [ "${alpha}" = "1.0" ] || merged="${exp}/merged_alpha${alpha}"
base_decode="${expdir}/base_decode"
base_decode_nolm="${expdir}/base_decode_nolm"  # (--nolm_decode_config)
# the source training sets matter only when the foundation model is (re)trained here
pre_sets=""
[ "${pretrain}" = false ] || pre_sets="${source_train_set} ${source_valid_set}"
all_sets="${pre_sets} ${source_test_sets} ${target_train_set} ${target_valid_set} ${target_test_sets}"
train_sets="${pre_sets} ${target_train_set} ${target_valid_set}"
owsm_prefix=""
[ "${task}" = asr ] || owsm_prefix="${lang_sym}${task_sym}<notimestamps>"
if [ "${stage}" -le 10 ] && [ "${stop_stage}" -ge 10 ] && ! { [ "${pretrain}" = true ] && [ "${stage}" -le 9 ]; }; then
    check_foundation_id
fi
mkdir -p "${expdir}"

# ---------------------------------------------------------------- jobs, signals, locks
# run_job CMD...: CMD in a process group of its own, in the background, waited for: a signal to this
# script then reaches on_signal at once (bash runs traps only between foreground commands), which
# stops that whole group (launch.py, which cmd.sh's commands are, stops the jobs it started), so no
# trainer is left writing into ${exp} after its recipe is gone.
_job=""
run_job() {
    setsid "$@" < /dev/null &
    _job=$!
    local rc=0
    wait "${_job}" || rc=$?
    _job=""
    return "${rc}"
}
on_signal() {  # on_signal NAME NUMBER
    trap - INT TERM HUP
    if [ -n "${_job}" ]; then
        log "stopped by SIG$1: stopping the running job (process group ${_job})"
        kill -TERM -- "-${_job}" 2>/dev/null || true
        (   # a watchdog; it must not hold the experiment's lock
            [ -z "${exp_lock_fd}" ] || exec {exp_lock_fd}>&-
            sleep "$(( ${ESPNET_PEFT_KILL_GRACE:-10} + 5 ))"; kill -KILL -- "-${_job}" 2>/dev/null
        ) &
        local watchdog=$!
        wait "${_job}" 2>/dev/null || true
        kill "${watchdog}" 2>/dev/null || true
        kill -KILL -- "-${_job}" 2>/dev/null || true
    fi
    exit $((128 + $2))
}
trap 'on_signal INT 2' INT
trap 'on_signal TERM 15' TERM
trap 'on_signal HUP 1' HUP

# lock_exp: a running experiment holds ${exp}/run.lock (an flock, released when this script and
# the jobs it started are gone): a second run of the same experiment is refused
exp_lock_fd=""
lock_exp() {
    [ -z "${exp_lock_fd}" ] || return 0
    mkdir -p "${exp}"
    exec {exp_lock_fd}>>"${exp}/run.lock"
    if ! flock -n "${exp_lock_fd}"; then
        die "${exp} is in use by another run ($(head -c 300 "${exp}/run.lock" || true)); wait for it to finish" \
            "or stop it, or choose another --tag"
    fi
    echo "pid $$ on $(hostname): ${run_cmd}" > "${exp}/run.lock"
    trap unlock_exp EXIT
}
# unlock_exp: at exit, the lock file goes, and an experiment directory the run left empty (a run
# refused before it wrote anything) with it
unlock_exp() {
    [ -n "${exp_lock_fd}" ] || return 0
    rm -f "${exp}/run.lock"
    rmdir "${exp}" 2>/dev/null || true
}

# wall_add EXP SECONDS: add a training run's wall time to EXP/train_wall.json
wall_add() {
    "${python}" - "$1/train_wall.json" "$2" <<'EOF'
import json, os, sys
path, seconds = sys.argv[1], int(sys.argv[2])
before = json.load(open(path))["train_wall_seconds"] if os.path.isfile(path) else 0
open(path, "w").write(json.dumps({"train_wall_seconds": before + seconds}) + "\n")
EOF
}
keep_log() {  # a resumed training run keeps the earlier log as <log>.1, <log>.2, ...
    [ -s "$1" ] || return 0
    local n=1
    while [ -e "$1.${n}" ]; do n=$((n + 1)); done
    mv "$1" "$1.${n}"
}
# train_exp EXP MODULE [options]: an ESPnet training run in EXP through ${cuda_cmd}, resumed from
# EXP/checkpoint.pth when there is one (the earlier log kept). A fresh run records this script's
# command line in EXP/command.txt; a run that trained at least one epoch adds its wall time to
# EXP/train_wall.json (re-running a finished training changes neither).
train_exp() {
    local exp="$1" module="$2" before after t0
    shift 2
    mkdir -p "${exp}"
    # a trainer still holding the experiment (e.g. left by a killed recipe) is named here, before its
    # live log is touched
    if [ -f "${exp}/train.lock" ] && ! flock -n "${exp}/train.lock" true; then
        die "${exp} is being trained by another process ($(head -c 200 "${exp}/train.lock" | tr -d '\n')):" \
            "wait for it or stop it (kill that pid), then run again"
    fi
    if [ ! -f "${exp}/checkpoint.pth" ]; then  # a fresh start
        rm -f "${exp}/train_wall.json" "${exp}/train_started"
        echo "${run_cmd}" > "${exp}/command.txt"
    fi
    # a run killed before it could add its time (even by SIGKILL) left train_started: its time up to
    # its last checkpoint counts
    if [ -f "${exp}/train_started" ] && [ -f "${exp}/checkpoint.pth" ]; then
        local started last
        started="$(cat "${exp}/train_started")"; last="$(stat -c %Y "${exp}/checkpoint.pth")"
        [ "${last}" -le "${started}" ] || wall_add "${exp}" "$(( last - started ))"
        log "${exp}: a killed training's $(( last > started ? last - started : 0 )) s up to its last checkpoint are kept"
    fi
    rm -f "${exp}/train_started"
    before="$(readlink "${exp}/latest.pth" || true)"
    keep_log "${exp}/train.log"
    t0=$(date +%s)
    echo "${t0}" > "${exp}/train_started"
    local rc=0 follower
    # a line per epoch on the console while it trains (the log has everything)
    "${python}" "${MAIN_ROOT}/local/follow.py" --log "${exp}/train.log" --kind train --prefix "$(basename "${exp}")" &
    follower=$!
    # shellcheck disable=SC2086  # ${cuda_cmd} is a command line
    run_job ${cuda_cmd} --gpu "${ngpu}" "${exp}/train.log" "${python}" -m "${module}" "$@" \
        --output_dir "${exp}" --ngpu "${ngpu}" --resume true || rc=$?
    kill -TERM "${follower}" 2>/dev/null || true
    wait "${follower}" 2>/dev/null || true
    rm -f "${exp}/train_started"
    # the time of a run that trained at least one epoch counts, whether it finished or failed
    after="$(readlink "${exp}/latest.pth" || true)"
    [ "${after}" = "${before}" ] || wall_add "${exp}" "$(( $(date +%s) - t0 ))"
    if [ "${rc}" -ne 0 ]; then  # e.g. a diverged run: its reason, then stop before anything uses it
        grep -h "espnet_peft: error:\|: error: " "${exp}/train.log" | tail -n 3 >&2 || true
        die "training in ${exp} failed (exit ${rc}); see ${exp}/train.log"
    fi
    grep -h "espnet_peft: warning:" "${exp}/train.log" >&2 || true  # e.g. text the tokenizer cannot spell
}

# decode_sets CONFIG LM_DIR "SETS" MODEL_DIR OUT_DIR [MODEL_DIR OUT_DIR ...]: every model decodes every
# set not decoded yet with the decoding options CONFIG (and the LM in LM_DIR, "" for none). The base
# model's decodings are shared by every experiment: they are made under a lock, alone (another run
# waiting for them waits only for them), and once done they are left out; the other models decode
# together, in the same ${decode_cmd} jobs (one espnet2 import per job).
decode_sets() {
    local config="$1" lm_dir="$2" sets="$3"; shift 3
    local pairs=("$@") i lock_fd=""
    for ((i = 0; i < ${#pairs[@]}; i += 2)); do
        [ "${pairs[i + 1]}" = "${base_decode}" ] || [ "${pairs[i + 1]}" = "${base_decode_nolm}" ] || continue
        exec {lock_fd}>>"${pairs[i + 1]}.lock"
        flock "${lock_fd}"
        share_base "${config}" "${lm_dir}" "${sets}" "${pairs[i]}" "${pairs[i + 1]}"
        decode_now "${config}" "${lm_dir}" "${sets}" "${pairs[i]}" "${pairs[i + 1]}"
        exec {lock_fd}>&-
        pairs=("${pairs[@]:0:i}" "${pairs[@]:i+2}")
        break
    done
    [ "${#pairs[@]}" -eq 0 ] || decode_now "${config}" "${lm_dir}" "${sets}" "${pairs[@]}"
}

# share_base CONFIG LM_DIR "SETS" MODEL_DIR OUT_DIR: the base model's decodings shipped beside it
# (MODEL_DIR/decodings: local/shared_decodings.py) are installed for the sets whose whole key matches
# (model, options, audio, software); the others are decoded
share_base() {
    [ -d "$4/decodings" ] || return 0
    local dargs=() s
    for s in $3; do dargs+=(--data_dir "${dumpdir}/raw/${s}"); done
    [ -z "$2" ] || dargs+=(--lm_dir "$2")
    "${python}" "${MAIN_ROOT}/local/shared_decodings.py" --reuse --model_dir "$4" --output_dir "$5" \
        "${dargs[@]}" --decode_config "$1" > /dev/null || die "cannot check the shared decodings in $4/decodings"
}

# decode_now CONFIG LM_DIR "SETS" MODEL_DIR OUT_DIR [...]: decode_sets' work, without the lock
decode_now() {
    local config="$1" lm_dir="$2" sets="$3"; shift 3
    local pairs=("$@") dargs=() margs=() s i n
    for s in ${sets}; do dargs+=(--data_dir "${dumpdir}/raw/${s}"); done
    dargs+=("${route_args[@]+"${route_args[@]}"}")  # (stage 16: the adapters and utt2adapter of a routed decoding)
    # the LM of the model being decoded: the foundation model's (a new one's, at stage 8)
    [ -z "${lm_dir}" ] || dargs+=(--lm_dir "${lm_dir}")
    for ((i = 0; i < ${#pairs[@]}; i += 2)); do
        margs+=(--model_dir "${pairs[i]}" --output_dir "${pairs[i + 1]}")
    done
    # done = decoded with these model files, decoding options and LM (decode.py's signature)
    if [ "$("${python}" "${MAIN_ROOT}/local/decode.py" --pending "${margs[@]}" "${dargs[@]}" --decode_config "${config}")" = 0 ]; then
        log "already decoded: ${sets} (${config})"
        return 0
    fi
    n=$(min "${nj}" "$(for s in ${sets}; do wc -l < "${dumpdir}/raw/${s}/wav.scp"; done | sort -n | head -1)")
    mkdir -p "${pairs[1]}/log"
    log "decoding ${sets} with $(for ((i = 0; i < ${#pairs[@]}; i += 2)); do printf '%s ' "${pairs[i]}"; done)(${config}, ${n} jobs)"
    # job 1's progress (utterances done, time left) on the console while it decodes
    "${python}" "${MAIN_ROOT}/local/follow.py" --log "${pairs[1]}/log/decode.1.log" --kind decode --from_end --prefix decoding &
    local follower=$! rc=0
    # shellcheck disable=SC2086  # ${decode_cmd} is a command line
    run_job ${decode_cmd} JOB=1:"${n}" "${pairs[1]}/log/decode.JOB.log" \
        "${python}" "${MAIN_ROOT}/local/decode.py" --task "${task}" "${margs[@]}" "${dargs[@]}" --decode_config "${config}" \
        --job JOB --nj "${n}" || rc=$?
    kill -TERM "${follower}" 2>/dev/null || true
    wait "${follower}" 2>/dev/null || true
    [ "${rc}" -eq 0 ] || die "decoding with ${config} failed (exit ${rc}); see ${pairs[1]}/log/decode.*.log"
    "${python}" "${MAIN_ROOT}/local/decode.py" --merge "${margs[@]}" "${dargs[@]}" --decode_config "${config}" --nj "${n}"
}

route_args=()

# check_decoded CONFIG LM_DIR STAGE "SETS" MODEL_DIR OUT_DIR [MODEL_DIR OUT_DIR ...]: every set is decoded
# in every OUT_DIR by its MODEL_DIR's current model files with CONFIG (and LM_DIR): scores and reports are
# never made of another model's hypotheses (a re-merged model, another checkpoint, a changed beam or LM)
check_decoded() {
    local config="$1" lmdir="$2" stage_hint="$3" sets="$4" s n
    shift 4
    local dargs=() margs=() outs=()
    for s in ${sets}; do dargs+=(--data_dir "${dumpdir}/raw/${s}"); done
    [ -z "${lmdir}" ] || dargs+=(--lm_dir "${lmdir}")
    while [ $# -gt 0 ]; do margs+=(--model_dir "$1" --output_dir "$2"); outs+=("$2"); shift 2; done
    n="$("${python}" "${MAIN_ROOT}/local/decode.py" --pending "${margs[@]}" "${dargs[@]}" --decode_config "${config}")" ||
        die "cannot check the decodings in ${outs[*]} (see above)"
    [ "${n}" = 0 ] || die "${n} decoding(s) of ${sets} in ${outs[*]} are missing or of another model, decoding" \
        "config (${config}) or LM than the current ones: run stage ${stage_hint} first"
}

# score SETS decoded in DIR (one process for all of them)
score_sets() {
    local dir="$1"; shift
    local s ref sargs=()
    [ $# -gt 0 ] || return 0
    for s in "$@"; do
        ref="${dumpdir}/raw/${s}/text"
        [ ! -f "${dumpdir}/raw/${s}/text.plain" ] || ref="${dumpdir}/raw/${s}/text.plain"
        sargs+=(--ref "${ref}" --hyp "${dir}/${s}/text" --out "${dir}/${s}/result.json")
    done
    "${python}" "${MAIN_ROOT}/local/score.py" "${sargs[@]}"
}

# adaptation data options, and the statistics (shapes) of the adaptation sets
peft_data_args=()
peft_data_files=()
for _split in train valid; do
    _set="${target_train_set}"; [ "${_split}" = train ] || _set="${target_valid_set}"
    peft_data_args+=(--${_split}_data_path_and_name_and_type "${dumpdir}/raw/${_set}/wav.scp,speech,sound"
                     --${_split}_data_path_and_name_and_type "${dumpdir}/raw/${_set}/text,text,text")
    peft_data_files+=("${dumpdir}/raw/${_set}/wav.scp" "${dumpdir}/raw/${_set}/text")
    if [ "${task}" = s2t ]; then
        peft_data_args+=(--${_split}_data_path_and_name_and_type "${dumpdir}/raw/${_set}/text.prev,text_prev,text"
                         --${_split}_data_path_and_name_and_type "${dumpdir}/raw/${_set}/text.ctc,text_ctc,text")
        peft_data_files+=("${dumpdir}/raw/${_set}/text.prev" "${dumpdir}/raw/${_set}/text.ctc")
    fi
    peft_data_files+=("${dumpdir}/raw/${_set}/utt2dur")  # (stage 3 writes it: optional, checked when used)
done
peft_stats="${expdir}/stats_${target_train_set}"
peft_data_id=""
# peft_statistics: the statistics describe the data (and the tokenizer that counts text lengths):
# they are keyed by the content of both (${peft_stats}/data_id) and collected again when it
# changes; collected under a lock, since every experiment of these sets shares them
peft_statistics() {
    local lock_fd f key files=()
    for f in "${peft_data_files[@]}" "${foundation_dir}/config.yaml" "${foundation_dir}/bpe.model"; do
        case "${f}" in
            */utt2dur|*/bpe.model) [ ! -f "${f}" ] || files+=("${f}") ;;
            *) need_file "${f}" "adaptation data (stages 3-4)"; files+=("${f}") ;;
        esac
    done
    key="$("${python}" "${MAIN_ROOT}/local/file_id.py" "${files[@]}")"
    peft_data_id="${key}"
    exec {lock_fd}>>"${peft_stats}.lock"
    flock "${lock_fd}"
    if [ -f "${peft_stats}/train/speech_shape" ] && [ "$(cat "${peft_stats}/data_id" 2>/dev/null)" = "${key}" ]; then
        exec {lock_fd}>&-
        return 0
    fi
    if [ -e "${peft_stats}" ]; then
        log "the statistics in ${peft_stats} describe other data (id $(cat "${peft_stats}/data_id" 2>/dev/null ||
             echo unknown), now ${key}): collecting them again"
        rm -rf "${peft_stats}"
    fi
    # the plan must fit the model before the statistics are collected (a budget that rounds to nothing,
    # a target module the model lacks): refused here, before that compute (with the statistics cached,
    # the training refuses it at once)
    "${python}" -m espnet_peft.bin.plan --peft_config "${peft_config}" --model_config "${foundation_dir}/config.yaml" \
        > /dev/null || die "the PEFT config ${peft_config} does not fit ${foundation_dir} (the reason above)"
    log "collecting the statistics of ${target_train_set} / ${target_valid_set} into ${peft_stats}"
    mkdir -p "${peft_stats}"
    # shellcheck disable=SC2086  # ${train_cmd} is a command line
    if ! run_job ${train_cmd} "${peft_stats}/stats.log" "${python}" -m "espnet_peft.bin.${task}_train" --collect_stats true \
        --pretrained_model "${foundation_dir}/model.pth" --bpemodel "${foundation_dir}/bpe.model" \
        --normalize none "${peft_data_args[@]}" \
        --train_shape_file "${dumpdir}/raw/${target_train_set}/wav.scp" \
        --valid_shape_file "${dumpdir}/raw/${target_valid_set}/wav.scp" \
        --output_dir "${peft_stats}" --batch_type unsorted --batch_size 16 --ngpu 0; then
        grep -h -i "error" "${peft_stats}/stats.log" | tail -n 3 >&2 || tail -n 3 "${peft_stats}/stats.log" >&2
        die "collecting the statistics of ${target_train_set} / ${target_valid_set} failed (the reason above; the" \
            "whole log: ${peft_stats}/stats.log)"
    fi
    echo "${key}" > "${peft_stats}/data_id"
    log "statistics collected into ${peft_stats}"
    exec {lock_fd}>&-
}

if [ "${prepare_only}" = true ]; then
    log "preparing shared work: adaptation statistics, base-model decoding of every test set"
    need_file "${foundation_dir}/model.pth" "the foundation model"
    peft_statistics
    decode_sets "${decode_config}" "${decode_lm_dir}" "${target_test_sets} ${source_test_sets}" \
        "${foundation_dir}" "${base_decode}"
    # shellcheck disable=SC2086
    score_sets "${base_decode}" ${target_test_sets} ${source_test_sets}
    if [ -n "${nolm_decode_config}" ]; then  # the same without the LM
        decode_sets "${nolm_decode_config}" "" "${target_test_sets} ${source_test_sets}" \
            "${foundation_dir}" "${base_decode_nolm}"
        # shellcheck disable=SC2086
        score_sets "${base_decode_nolm}" ${target_test_sets} ${source_test_sets}
    fi
    exit 0
fi

# ---------------------------------------------------------------- 1: data preparation
if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "stage 1: data preparation (local/data.sh ${data_opts})"
    # shellcheck disable=SC2086
    run_job local/data.sh ${data_opts}
fi

# ---------------------------------------------------------------- 2: data check
if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    log "stage 2: checking data directories"
    # shellcheck disable=SC2046
    run_job "${python}" "${MAIN_ROOT}/local/check_data.py" --fs 0 $(for s in ${all_sets}; do echo "data/${s}"; done | sort -u)
fi

# ---------------------------------------------------------------- 3-4: format, filter
if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    log "stage 3: formatting audio to ${fs} Hz mono (dump/raw); stage 4 filters the training sets"
    for s in $(echo ${all_sets} | tr ' ' '\n' | sort -u); do
        f=false
        [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ] && [[ " ${train_sets} " == *" ${s} "* ]] && f=true
        run_job "${python}" "${MAIN_ROOT}/local/format_data.py" --fs "${fs}" --filter "${f}" --min_dur "${min_dur}" \
            --max_dur "${max_dur}" --owsm_prefix "${owsm_prefix}" "data/${s}" "${dumpdir}/raw/${s}"
    done
elif [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
    log "stage 4: filtering the training sets by length (${min_dur}-${max_dur} s)"
    for s in $(echo ${train_sets} | tr ' ' '\n' | sort -u); do
        run_job "${python}" "${MAIN_ROOT}/local/format_data.py" --fs "${fs}" --filter true --min_dur "${min_dur}" \
            --max_dur "${max_dur}" --owsm_prefix "${owsm_prefix}" "data/${s}" "${dumpdir}/raw/${s}"
    done
fi

# ---------------------------------------------------------------- 5: tokenizer
bpedir="data/token_list/bpe${nbpe}"
[ -z "${foundation_init}" ] || bpedir="data/token_list/init"  # a copy: ${foundation_init} may be ${foundation_dir}
if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
    if [ "${pretrain}" = true ] && [ -n "${foundation_init}" ]; then
        log "stage 5: keeping the tokenizer of ${foundation_init} (warm start)"
        mkdir -p "${bpedir}"
        cp "${foundation_init}/bpe.model" "${foundation_init}/tokens.txt" "${bpedir}/"
        cp -L "${foundation_init}/model.pth" "${bpedir}/init_model.pth"
    elif [ "${pretrain}" = true ]; then
        log "stage 5: training a ${nbpe}-unit BPE model on ${source_train_set}"
        mkdir -p "${bpedir}"
        cut -d' ' -f2- "${dumpdir}/raw/${source_train_set}/text" > "${bpedir}/train.txt"
        run_job "${python}" -c "import sentencepiece as spm, sys; spm.SentencePieceTrainer.train(input=sys.argv[1], \
vocab_size=int(sys.argv[2]), model_type='unigram', model_prefix=sys.argv[3], character_coverage=1.0, \
input_sentence_size=100000000, minloglevel=2)" "${bpedir}/train.txt" "${nbpe}" "${bpedir}/bpe"
        run_job "${python}" -m espnet2.bin.tokenize_text --token_type bpe --input "${bpedir}/train.txt" \
            --output "${bpedir}/tokens.txt" --bpemodel "${bpedir}/bpe.model" --field 1- --cleaner none \
            --write_vocabulary true --add_symbol '<blank>:0' --add_symbol '<unk>:1' --add_symbol '<sos/eos>:-1'
    elif [ -f "${foundation_dir}/model.pth" ]; then
        need_file "${foundation_dir}/bpe.model" "the foundation model's BPE model"
        log "stage 5: reusing the foundation model's tokenizer (${foundation_dir}/bpe.model)"
    elif [ -n "${foundation_source}" ]; then
        log "stage 5: the tokenizer comes with the foundation model, fetched at stage 6"
    else
        die "no foundation model in ${foundation_dir}: set --foundation_source or --pretrain true"
    fi
fi

# ---------------------------------------------------------------- 6-9: the foundation model
if [ "${pretrain}" = true ]; then
    stats="${foundation_exp}_stats"
    data_args=(--train_data_path_and_name_and_type "${dumpdir}/raw/${source_train_set}/wav.scp,speech,sound"
               --train_data_path_and_name_and_type "${dumpdir}/raw/${source_train_set}/text,text,text"
               --valid_data_path_and_name_and_type "${dumpdir}/raw/${source_valid_set}/wav.scp,speech,sound"
               --valid_data_path_and_name_and_type "${dumpdir}/raw/${source_valid_set}/text,text,text")
    tok_args=(--token_type bpe --bpemodel "${bpedir}/bpe.model" --token_list "${bpedir}/tokens.txt"
              --cleaner none --g2p none --use_preprocessor true)
    lm_tok_args=(--token_type bpe --bpemodel "${bpedir}/bpe.model" --token_list "${bpedir}/tokens.txt"
                 --cleaner none --g2p none)
    lm_data_args=(--train_data_path_and_name_and_type "${lm_train_text},text,text"
                  --valid_data_path_and_name_and_type "${dumpdir}/raw/${source_valid_set}/text,text,text")
    if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
        log "stage 6: foundation statistics"
        mkdir -p "${stats}"
        # shellcheck disable=SC2086  # ${train_cmd} is a command line
        run_job ${train_cmd} "${stats}/stats.log" "${python}" -m espnet2.bin.asr_train --collect_stats true \
            --config "${foundation_config}" --normalize none "${tok_args[@]}" "${data_args[@]}" \
            --train_shape_file "${dumpdir}/raw/${source_train_set}/wav.scp" \
            --valid_shape_file "${dumpdir}/raw/${source_valid_set}/wav.scp" \
            --output_dir "${stats}" --batch_type unsorted --batch_size 16 --ngpu 0
        if [ -n "${lm_config}" ]; then
            log "stage 6: language model statistics (${lm_train_text})"
            mkdir -p "${lm_exp}_stats"
            # shellcheck disable=SC2086
            run_job ${train_cmd} "${lm_exp}_stats/stats.log" "${python}" -m espnet2.bin.lm_train --collect_stats true \
                --config "${lm_config}" "${lm_tok_args[@]}" "${lm_data_args[@]}" \
                --train_shape_file "${lm_train_text}" --valid_shape_file "${dumpdir}/raw/${source_valid_set}/text" \
                --output_dir "${lm_exp}_stats" --batch_type unsorted --batch_size 64 --ngpu 0
        fi
    fi
    if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
        log "stage 7: training the foundation model (${foundation_exp}); log: ${foundation_exp}/train.log"
        # shellcheck disable=SC2086
        train_exp "${foundation_exp}" espnet2.bin.asr_train \
            --config "${foundation_config}" "${tok_args[@]}" "${data_args[@]}" \
            --train_shape_file "${stats}/train/speech_shape" --train_shape_file "${stats}/train/text_shape" \
            --valid_shape_file "${stats}/valid/speech_shape" --valid_shape_file "${stats}/valid/text_shape" \
            ${foundation_init:+--init_param "${bpedir}/init_model.pth"} ${foundation_args}
        if [ -n "${lm_config}" ]; then
            log "stage 7: training the language model (${lm_exp}); log: ${lm_exp}/train.log"
            # shellcheck disable=SC2086
            train_exp "${lm_exp}" espnet2.bin.lm_train \
                --config "${lm_config}" "${lm_tok_args[@]}" "${lm_data_args[@]}" \
                --train_shape_file "${lm_exp}_stats/train/text_shape" \
                --valid_shape_file "${lm_exp}_stats/valid/text_shape" ${lm_args}
        fi
    fi
    if [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; then
        log "stage 8: decoding the source sets with the new foundation model"
        pkg="${foundation_exp}/package"
        mkdir -p "${pkg}"
        cp "${foundation_exp}/config.yaml" "${pkg}/config.yaml"
        cp -L "${foundation_exp}/valid.acc.ave.pth" "${pkg}/model.pth"
        if [ -n "${lm_config}" ]; then
            mkdir -p "${pkg}/lm"
            cp "${lm_exp}/config.yaml" "${pkg}/lm/config.yaml"
            cp -L "${lm_exp}/valid.loss.ave.pth" "${pkg}/lm/model.pth"
        elif [ -f "${foundation_init}/lm/model.pth" ]; then  # no LM trained: the warm start's is kept
            mkdir -p "${pkg}/lm"
            cp "${foundation_init}/lm/config.yaml" "${pkg}/lm/config.yaml"
            cp -L "${foundation_init}/lm/model.pth" "${pkg}/lm/model.pth"
        fi
        # the new model decodes with the new LM (stages 12 and 14 use ${foundation_dir}/lm after stage 9)
        new_lm_dir=""
        [ -z "${decode_lm_dir}" ] || new_lm_dir="${pkg}/lm"
        decode_sets "${decode_config}" "${new_lm_dir}" "${source_valid_set} ${source_test_sets} ${target_test_sets}" \
            "${pkg}" "${foundation_exp}/decode"
        # shellcheck disable=SC2086
        score_sets "${foundation_exp}/decode" ${source_valid_set} ${source_test_sets} ${target_test_sets}
    fi
    if [ "${stage}" -le 9 ] && [ "${stop_stage}" -ge 9 ]; then
        log "stage 9: packaging the foundation model into ${foundation_dir}"
        # a training in rounds (local/foundation_round.py --out ${foundation_dir}/round): its history goes
        # into the model's RESULTS.md
        foundation_rounds=""
        [ ! -f "${foundation_dir}/round/round.json" ] || foundation_rounds="${foundation_dir}/round/round.json"
        run_job "${python}" "${MAIN_ROOT}/local/package_foundation.py" --exp "${foundation_exp}" --bpedir "${bpedir}" \
            --decode_dir "${foundation_exp}/decode" --out "${foundation_dir}" \
            ${lm_config:+--lm_exp "${lm_exp}"} --decode_config "${decode_config}" \
            $([ -n "${lm_config}" ] || [ ! -f "${foundation_exp}/package/lm/model.pth" ] || echo --lm_from "${foundation_exp}/package/lm") \
            ${foundation_rounds:+--rounds "${foundation_rounds}"}
        rm -rf "${base_decode}" "${base_decode_nolm}"  # base results of an older foundation model are stale
    fi
elif [ "${stage}" -le 9 ] && [ "${stop_stage}" -ge 6 ]; then
    if [ -f "${foundation_dir}/model.pth" ]; then
        log "stages 6-9: using the foundation model in ${foundation_dir} (--pretrain true retrains it)"
    elif [ -n "${foundation_source}" ]; then
        log "stage 6: fetching the foundation model ${foundation_source} into ${foundation_dir}"
        run_job "${python}" "${MAIN_ROOT}/local/fetch_foundation.py" --source "${foundation_source}" --out "${foundation_dir}"
    else
        die "no foundation model in ${foundation_dir}: set --foundation_source (a model-zoo tag or a" \
            "local model directory) or --pretrain true"
    fi
fi

# ---------------------------------------------------------------- 10: PEFT adaptation
if [ "${stage}" -le 10 ] && [ "${stop_stage}" -ge 10 ]; then
    lock_exp
    log "stage 10: PEFT adaptation ${exp} (${peft_config}); log: ${exp}/train.log"
    need_file "${foundation_dir}/model.pth" "the foundation model"
    check_foundation_id  # the model may have changed since the up-front check (stage 6 fetches it)
    # a resumed experiment keeps the training config it started with (optimiser, schedule, epochs)
    if [ -f "${exp}/checkpoint.pth" ] && [ -f "${exp}/train_config.yaml" ]; then
        cmp -s "${exp}/train_config.yaml" "${train_config}" ||
            die "${exp} was trained with another --train_config (${exp}/train_config.yaml; now ${train_config}):" \
                "resume with that one, or choose another --tag"
    fi
    peft_statistics
    # an experiment also belongs to the data it was trained on (the statistics' key)
    if [ -f "${exp}/checkpoint.pth" ] && [ -f "${exp}/data_id" ] && [ "$(cat "${exp}/data_id")" != "${peft_data_id}" ]; then
        die "${exp} was trained on other data (id $(cat "${exp}/data_id"), now ${peft_data_id}: ${target_train_set}" \
            "or ${target_valid_set} changed); move it away or choose another --tag"
    fi
    echo "${foundation_fid}" > "${exp}/foundation_id"
    echo "${peft_data_id}" > "${exp}/data_id"
    [ -f "${exp}/checkpoint.pth" ] || cp "${peft_config}" "${exp}/peft_config.source.yaml"
    [ -f "${exp}/checkpoint.pth" ] || cp "${train_config}" "${exp}/train_config.yaml"
    # shellcheck disable=SC2086  # ${peft_args}: extra options
    train_exp "${exp}" "espnet_peft.bin.${task}_train" \
        --config "${train_config}" --peft_config "${peft_config}" \
        --pretrained_model "${foundation_dir}/model.pth" --bpemodel "${foundation_dir}/bpe.model" \
        "${peft_data_args[@]}" \
        --train_shape_file "${peft_stats}/train/speech_shape" --train_shape_file "${peft_stats}/train/text_shape" \
        --valid_shape_file "${peft_stats}/valid/speech_shape" --valid_shape_file "${peft_stats}/valid/text_shape" \
        ${peft_args}
fi

# ---------------------------------------------------------------- 11: merge
if [ "${stage}" -le 11 ] && [ "${stop_stage}" -ge 11 ]; then
    lock_exp
    if [ -f "${exp}/diverged.json" ]; then
        die "the training in ${exp} stopped on non-finite values (${exp}/diverged.json): nothing of it is merged;" \
            "train again with a lower learning rate (move ${exp} away, or choose another --tag)"
    fi
    need_file "${exp}/${checkpoint}" "adapter checkpoint (run stage 10)"
    log "stage 11: merging ${exp}/${checkpoint} into ${merged} (alpha=${alpha})"
    # merge.py builds the whole directory beside ${merged} and swaps it in: the old model and what was
    # made from it (decodings, summary) stay until the swap and go with it
    merge_log="${exp}/merge$( [ "${alpha}" = "1.0" ] || echo "_alpha${alpha}").log"
    if ! run_job "${python}" -m espnet_peft.bin.merge --train_config "${exp}/config.yaml" \
            --model_file "${exp}/${checkpoint}" --output_dir "${merged}" --alpha "${alpha}" > "${merge_log}" 2>&1; then
        grep -h "error" "${merge_log}" >&2 || tail -n 5 "${merge_log}" >&2
        die "merging ${exp}/${checkpoint} failed; see ${merge_log}"
    fi
    log "merged: $(grep -ho "merged model written to .*" "${merge_log}" | sed -E "s/'(train_config|model_file|pretrained_model)': '[^']*', //g" | cut -c1-220)"
fi

# ---------------------------------------------------------------- 12-13: target domain
if [ "${stage}" -le 12 ] && [ "${stop_stage}" -ge 12 ]; then
    lock_exp
    need_file "${merged}/model.pth" "merged model (run stage 11)"
    sets="${target_test_sets}"
    [ "${stop_stage}" -lt 14 ] || sets="${sets} ${source_test_sets}"  # stage 14's sets in the same jobs
    log "stage 12: decoding the target test sets (${target_test_sets}) with the base and adapted models"
    decode_sets "${decode_config}" "${decode_lm_dir}" "${sets}" "${foundation_dir}" "${base_decode}" \
        "${merged}" "${merged}/decode"
    if [ -n "${nolm_decode_config}" ]; then
        log "stage 12: the same without the LM (${nolm_decode_config})"
        decode_sets "${nolm_decode_config}" "" "${sets}" "${foundation_dir}" "${base_decode_nolm}" \
            "${merged}" "${merged}/decode_nolm"
    fi
fi
if [ "${stage}" -le 13 ] && [ "${stop_stage}" -ge 13 ]; then
    lock_exp
    need_file "${merged}/model.pth" "merged model (run stages 11-12)"
    check_decoded "${decode_config}" "${decode_lm_dir}" 12 "${target_test_sets}" \
        "${foundation_dir}" "${base_decode}" "${merged}" "${merged}/decode"
    [ -z "${nolm_decode_config}" ] || check_decoded "${nolm_decode_config}" "" 12 "${target_test_sets}" \
        "${foundation_dir}" "${base_decode_nolm}" "${merged}" "${merged}/decode_nolm"
    log "stage 13: scoring the target test sets"
    # shellcheck disable=SC2086
    score_sets "${base_decode}" ${target_test_sets}
    # shellcheck disable=SC2086
    score_sets "${merged}/decode" ${target_test_sets}
    if [ -n "${nolm_decode_config}" ]; then
        # shellcheck disable=SC2086
        score_sets "${base_decode_nolm}" ${target_test_sets}
        # shellcheck disable=SC2086
        score_sets "${merged}/decode_nolm" ${target_test_sets}
    fi
fi

# ---------------------------------------------------------------- 14: forgetting
if [ "${stage}" -le 14 ] && [ "${stop_stage}" -ge 14 ]; then
    lock_exp
    need_file "${merged}/model.pth" "merged model (run stage 11)"
    log "stage 14: forgetting evaluation on the source test sets (${source_test_sets})"
    decode_sets "${decode_config}" "${decode_lm_dir}" "${source_test_sets}" "${foundation_dir}" "${base_decode}" \
        "${merged}" "${merged}/decode"
    # shellcheck disable=SC2086
    score_sets "${base_decode}" ${source_test_sets}
    # shellcheck disable=SC2086
    score_sets "${merged}/decode" ${source_test_sets}
    if [ -n "${nolm_decode_config}" ]; then
        log "stage 14: the same without the LM (${nolm_decode_config})"
        decode_sets "${nolm_decode_config}" "" "${source_test_sets}" "${foundation_dir}" "${base_decode_nolm}" \
            "${merged}" "${merged}/decode_nolm"
        # shellcheck disable=SC2086
        score_sets "${base_decode_nolm}" ${source_test_sets}
        # shellcheck disable=SC2086
        score_sets "${merged}/decode_nolm" ${source_test_sets}
    fi
fi

# ---------------------------------------------------------------- 15: report
if [ "${stage}" -le 15 ] && [ "${stop_stage}" -ge 15 ]; then
    lock_exp
    need_file "${merged}/model.pth" "merged model (run stages 11-14)"
    check_decoded "${decode_config}" "${decode_lm_dir}" "12-14" "${target_test_sets} ${source_test_sets}" \
        "${foundation_dir}" "${base_decode}" "${merged}" "${merged}/decode"
    [ -z "${nolm_decode_config}" ] || check_decoded "${nolm_decode_config}" "" "12-14" \
        "${target_test_sets} ${source_test_sets}" "${foundation_dir}" "${base_decode_nolm}" "${merged}" "${merged}/decode_nolm"
    log "stage 15: report (${expdir}/RESULTS.md${results:+ and ${results}})"
    "${python}" "${MAIN_ROOT}/local/report.py" --exp "${exp}" --merged "${merged}" --base_decode "${base_decode}" \
        --source_test_sets "${source_test_sets}" --target_test_sets "${target_test_sets}" \
        --recipe "${recipe_name}" --expdir "${expdir}" --alpha "${alpha}" ${results:+--results "${results}"} \
        ${nolm_decode_config:+--nolm_decode_config "${nolm_decode_config}" --base_decode_nolm "${base_decode_nolm}"}
fi
# ---------------------------------------------------------------- 16: several domains, one model
if [ "${stage}" -le 16 ] && [ "${stop_stage}" -ge 16 ]; then
    route_opts=(--expdir "${expdir}" --dumpdir "${dumpdir}" --checkpoint "${checkpoint}")
    route_tags=()
    for _x in ${route_adapters}; do route_opts+=(--adapter "${_x}"); route_tags+=("${_x#*=}"); done
    for _x in ${route_sets}; do route_opts+=(--set "${_x}"); done
    [ -n "${route_adapters}" ] && [ -n "${route_sets}" ] ||
        die "stage 16 needs --route_adapters 'NAME=TAG ...' and --route_sets 'SET=NAME ...'"
    "${python}" "${MAIN_ROOT}/local/routed_eval.py" check "${route_opts[@]}" || exit 1
    routed="${expdir}/routed_${route_name}"
    mixed_sets="$(for _x in ${route_sets}; do printf '%s ' "${_x%%=*}"; done)"
    log "stage 16: ${route_name} = ${mixed_sets}routed to their adapters; every set also decoded by each merged model"
    merged_pairs=()
    for _t in "${route_tags[@]}"; do merged_pairs+=("${expdir}/${_t}/merged" "${expdir}/${_t}/merged/decode"); done
    decode_sets "${decode_config}" "${decode_lm_dir}" "${mixed_sets}" "${foundation_dir}" "${base_decode}" \
        "${merged_pairs[@]}"
    "${python}" "${MAIN_ROOT}/local/mix_sets.py" --out "${dumpdir}/raw/${route_name}" \
        $(for _x in ${route_sets}; do printf -- '--set %s ' "${dumpdir}/raw/${_x}"; done)
    route_args=(--utt2adapter "${dumpdir}/raw/${route_name}/utt2adapter")
    for _x in ${route_adapters}; do route_args+=(--adapter "${_x%%=*}=${expdir}/${_x#*=}/${checkpoint}"); done
    decode_sets "${decode_config}" "${decode_lm_dir}" "${route_name}" "${foundation_dir}" "${routed}/decode"
    route_args=()
    "${python}" "${MAIN_ROOT}/local/routed_eval.py" report "${route_opts[@]}" \
        --routed "${routed}/decode/${route_name}/text" --base_decode "${base_decode}" \
        --foundation "${foundation_dir}/model.pth" --out "${routed}" --command "${run_cmd}"
fi
log "done (stages ${stage}-${stop_stage})"
