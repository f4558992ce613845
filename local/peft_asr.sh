#!/usr/bin/env bash
# The shared stage driver of every espnet-peft ASR recipe (the role of ESPnet's asr.sh).
# A recipe's run.sh sets its corpus options and calls:  utils/peft_asr.sh [options] "$@"
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
#  15 report: RESULTS.md block, JSON summary, printed table
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') ($(basename "$0"):${BASH_LINENO[0]}) $*"; }
min() { [ "$1" -lt "$2" ] && echo "$1" || echo "$2"; }

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
source_test_sets=""     # source-domain test sets (forgetting, stage 14)
target_train_set=""     # adaptation training set (stage 10)
target_valid_set=""     # adaptation validation set
target_test_sets=""     # target-domain test sets (stages 12-13)
# the foundation (pretrained) model
foundation_dir=foundation           # config.yaml + model.pth + bpe.model + tokens.txt
foundation_source=""                # stage 6 without --pretrain: a model-zoo tag (e.g. espnet/owsm_v3.1_ebf_base,
                                    # needs a network) or a local model directory, fetched into foundation_dir
pretrain=false                      # true: (re)train the foundation model in stages 6-9
foundation_config=conf/train_foundation.yaml
foundation_exp=exp/foundation
nbpe=300                            # BPE units when a tokenizer is trained (stage 5)
foundation_args=""                  # extra options for espnet2.bin.asr_train
lm_config=""                        # with --pretrain: stage 7 also trains a language model (ESPnet lm_train)
lm_train_text=data/lm_train.txt     # its training text (Kaldi text: id + words; local/data.sh writes it)
lm_exp=exp/foundation_lm
lm_args=""                          # extra options for espnet2.bin.lm_train
# adaptation
peft_config=conf/peft/ssvd_o.yaml   # method, targets, budget, allocation
train_config=conf/train_peft.yaml   # optimiser, schedule, batches, epochs of adaptation
budget=""                           # overrides the PEFT config's budget (count, fraction or x%)
peft_args=""                        # extra options for espnet_peft.bin.asr_train
tag=""                              # experiment name (default: tag_prefix + peft_config's name)
tag_prefix=""                       # prefix of the default tag (run.sh: the target domain)
alpha=1.0                           # stage 11: interpolation toward the pretrained model
checkpoint=valid.acc.ave.pth        # which adapter checkpoint to merge
decode_config=conf/decode.yaml      # beam search options for Speech2Text
expdir=exp                          # experiments live in ${expdir}/<tag>
dumpdir=dump                        # formatted data
results=RESULTS.md                  # stage 15 writes its block here
recipe_name=""                      # for the report (default: the recipe directory name)
prepare_only=false                  # sweeps: only the shared work (adaptation statistics, base decoding)

help_message="Usage: $0 [options]   (every option above, e.g. --stage 10 --peft_config conf/peft/lora.yaml)
  --stage / --stop_stage N   stages to run (1-15)      --tag NAME   experiment name
  --peft_config FILE         PEFT config                --alpha A    interpolation (stage 11)
  --pretrain true            retrain the foundation model (stages 6-9) instead of using ${foundation_dir}
  --nj N / --ngpu N          parallel jobs / training GPUs"

. utils/parse_options.sh
. ./path.sh
. ./cmd.sh

# ---------------------------------------------------------------- checks before compute
case "${task}" in asr|s2t) ;; *) echo "$0: --task must be asr or s2t, got '${task}'" >&2; exit 1 ;; esac
case "${stage}" in ''|*[!0-9]*) echo "$0: --stage must be a number 1-15, got '${stage}'" >&2; exit 1 ;; esac
case "${stop_stage}" in ''|*[!0-9]*) echo "$0: --stop_stage must be a number 1-15, got '${stop_stage}'" >&2; exit 1 ;; esac
if [ "${stage}" -lt 1 ] || [ "${stage}" -gt 15 ] || [ "${stop_stage}" -lt 1 ] || [ "${stop_stage}" -gt 15 ]; then
    echo "$0: unknown stage: stages are 1-15 (got --stage ${stage} --stop_stage ${stop_stage})" >&2; exit 1
fi
if [ "${task}" = s2t ] && [ "${pretrain}" = true ]; then
    echo "$0: --pretrain true trains ASR foundation models only; S2T (OWSM) models come from --foundation_source" >&2
    exit 1
fi
if [ "${stage}" -gt "${stop_stage}" ]; then
    echo "$0: --stage ${stage} is after --stop_stage ${stop_stage}" >&2; exit 1
fi
for v in source_test_sets target_train_set target_valid_set target_test_sets; do
    [ -n "${!v}" ] || { echo "$0: --${v} must be set (by run.sh)" >&2; exit 1; }
done
if [ "${pretrain}" = true ] && { [ -z "${source_train_set}" ] || [ -z "${source_valid_set}" ]; }; then
    echo "$0: --pretrain true needs --source_train_set and --source_valid_set" >&2; exit 1
fi
wall_start() {  # start time for train_wall.json; a resumed run adds to the time already spent
    local prev=0
    [ -f "$1/checkpoint.pth" ] && [ -f "$1/train_wall.json" ] && \
        prev=$("${python}" -c "import json,sys; print(json.load(open(sys.argv[1]))['train_wall_seconds'])" \
            "$1/train_wall.json")
    echo $(( $(date +%s) - prev ))
}
keep_log() {  # a resumed training run keeps the earlier log as <log>.1, <log>.2, ...
    [ -s "$1" ] || return 0
    local n=1
    while [ -e "$1.${n}" ]; do n=$((n + 1)); done
    mv "$1" "$1.${n}"
}
# train_exp EXP MODULE [options]: an ESPnet training run in EXP (resumed if a checkpoint is there;
# the earlier log kept) that records its wall time, a resumed run's included, in EXP/train_wall.json
train_exp() {
    local exp="$1" module="$2" start
    shift 2
    mkdir -p "${exp}"
    start=$(wall_start "${exp}")
    keep_log "${exp}/train.log"
    ${cuda_cmd} --gpu "${ngpu}" "${exp}/train.log" "${python}" -m "${module}" "$@" \
        --output_dir "${exp}" --ngpu "${ngpu}" --resume true
    echo "{\"train_wall_seconds\": $(( $(date +%s) - start ))}" > "${exp}/train_wall.json"
}
need_file() { [ -f "$1" ] || { echo "$0: $2 not found: $1" >&2; exit 1; }; }
[ "${stop_stage}" -lt 10 ] || [ "${stage}" -gt 10 ] || need_file "${train_config}" "--train_config"
[ "${stop_stage}" -lt 12 ] || need_file "${decode_config}" "--decode_config"
if [ -n "${lm_config}" ] && [ "${pretrain}" = true ] && [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 6 ]; then
    need_file "${lm_config}" "--lm_config"
    [ "${stage}" -le 1 ] || need_file "${lm_train_text}" "--lm_train_text (written by local/data.sh, stage 1)"
fi
if [ "${pretrain}" = true ] && [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
    need_file "${foundation_config}" "--foundation_config"
fi
if [ -n "${budget}" ]; then  # a copy of the PEFT config with this budget (explicit hyperparameters dropped)
    need_file "${peft_config}" "--peft_config"
    name="$(basename "${peft_config}" .yaml)_b$(echo "${budget}" | tr -d ' ' | sed 's/%/pct/')"
    mkdir -p "${expdir}/peft_configs"
    "${python}" -c "import sys, yaml; c = yaml.safe_load(open(sys.argv[1])); c['budget'] = sys.argv[2]; \
[c.pop(k, None) for k in ('r', 'rank', 'k', 'k_in', 'k_out', 'head_blocks')]; yaml.safe_dump(c, open(sys.argv[3], 'w'), sort_keys=False)" \
        "${peft_config}" "${budget}" "${expdir}/peft_configs/${name}.yaml"
    peft_config="${expdir}/peft_configs/${name}.yaml"
fi
[ -n "${tag}" ] || tag="${tag_prefix}$(basename "${peft_config}" .yaml)"
if [ "${stop_stage}" -ge 10 ] && [ "${stage}" -le 11 ]; then
    need_file "${peft_config}" "--peft_config"
    "${python}" -c "import sys; from espnet_peft.config import PeftConfig; PeftConfig.from_any(sys.argv[1])" \
        "${peft_config}" || { echo "$0: invalid --peft_config ${peft_config}" >&2; exit 1; }
fi
# decoding with an LM (lm_weight > 0) needs one: the foundation model's, or the one stage 7 trains
decode_lm_dir=""
if [ "${stop_stage}" -ge 8 ] && [ -f "${decode_config}" ] && "${python}" -c "import sys, yaml; \
sys.exit(0 if float((yaml.safe_load(open(sys.argv[1])) or {}).get('lm_weight') or 0) > 0 else 1)" "${decode_config}"; then
    decode_lm_dir="${foundation_dir}/lm"
    if [ ! -f "${decode_lm_dir}/model.pth" ] && ! { [ "${pretrain}" = true ] && [ -n "${lm_config}" ]; }; then
        echo "$0: ${decode_config} sets lm_weight > 0 but ${decode_lm_dir}/model.pth does not exist" \
             "(retrain with --pretrain true --lm_config FILE, or set lm_weight: 0)" >&2
        exit 1
    fi
fi
# an experiment belongs to the foundation model it was trained on (${exp}/foundation_id): adapting
# again on another one (a retrained or fetched model) would mix the two, so it is refused up front.
# Sets foundation_fid, the current model file's id (stage 10 records it).
foundation_fid=""
check_foundation_id() {
    [ -f "${foundation_dir}/model.pth" ] || return 0
    foundation_fid=$("${python}" utils/file_id.py "${foundation_dir}/model.pth")
    if [ -f "${exp}/foundation_id" ]; then
        [ "$(cat "${exp}/foundation_id")" = "${foundation_fid}" ] && return 0
        echo "$0: ${exp} was trained on another foundation model (id $(cat "${exp}/foundation_id"), now ${foundation_fid});" \
             "move it away or choose another --tag" >&2
        exit 1
    elif [ -f "${exp}/checkpoint.pth" ] || [ -f "${exp}/peft_plan.json" ]; then
        echo "$0: ${exp} holds a run without a recorded foundation model (${exp}/foundation_id);" \
             "move it away or choose another --tag" >&2
        exit 1
    fi
}
[ -n "${recipe_name}" ] || recipe_name="$(basename "$(dirname "$(pwd)")")"
exp="${expdir}/${tag}"
merged="${exp}/merged"; [ "${alpha}" = "1.0" ] || merged="${exp}/merged_alpha${alpha}"
base_decode="${expdir}/base_decode"
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

# decode_sets "SETS" MODEL_DIR OUT_DIR [MODEL_DIR OUT_DIR ...]: every model decodes every set not
# decoded yet, all in the same ${decode_cmd} jobs (one espnet2 import per job)
decode_sets() {
    local sets="$1"; shift
    local pairs=("$@") dargs=() margs=() s i n
    for s in ${sets}; do dargs+=(--data_dir "${dumpdir}/raw/${s}"); done
    for ((i = 0; i < ${#pairs[@]}; i += 2)); do
        margs+=(--model_dir "${pairs[i]}" --output_dir "${pairs[i + 1]}")
    done
    # the LM of the model being decoded: the foundation model's (a new one's, at stage 8)
    [ -z "${decode_lm_dir}" ] || dargs+=(--lm_dir "${decode_lm_dir}")
    # done = decoded with these model files, decoding options and LM (decode.py's signature)
    if [ "$("${python}" utils/decode.py --pending "${margs[@]}" "${dargs[@]}" --decode_config "${decode_config}")" = 0 ]; then
        log "already decoded: ${sets}"; return 0
    fi
    n=$(min "${nj}" "$(for s in ${sets}; do wc -l < "${dumpdir}/raw/${s}/wav.scp"; done | sort -n | head -1)")
    mkdir -p "${pairs[1]}/log"
    log "decoding ${sets} with $(for ((i = 0; i < ${#pairs[@]}; i += 2)); do printf '%s ' "${pairs[i]}"; done)(${n} jobs)"
    ${decode_cmd} JOB=1:"${n}" "${pairs[1]}/log/decode.JOB.log" \
        "${python}" utils/decode.py --task "${task}" "${margs[@]}" "${dargs[@]}" --decode_config "${decode_config}" \
        --job JOB --nj "${n}"
    "${python}" utils/decode.py --merge "${margs[@]}" "${dargs[@]}" --decode_config "${decode_config}" --nj "${n}"
}

# score SETS decoded in DIR
score_sets() {
    local dir="$1"; shift
    local s
    for s in "$@"; do
        ref="${dumpdir}/raw/${s}/text"
        [ ! -f "${dumpdir}/raw/${s}/text.plain" ] || ref="${dumpdir}/raw/${s}/text.plain"
        "${python}" utils/score.py --ref "${ref}" --hyp "${dir}/${s}/text" \
            --out "${dir}/${s}/result.json"
    done
}

# adaptation data options, and the statistics (shapes) of the adaptation sets, computed once
peft_data_args=()
for _split in train valid; do
    _set="${target_train_set}"; [ "${_split}" = train ] || _set="${target_valid_set}"
    peft_data_args+=(--${_split}_data_path_and_name_and_type "${dumpdir}/raw/${_set}/wav.scp,speech,sound"
                     --${_split}_data_path_and_name_and_type "${dumpdir}/raw/${_set}/text,text,text")
    if [ "${task}" = s2t ]; then
        peft_data_args+=(--${_split}_data_path_and_name_and_type "${dumpdir}/raw/${_set}/text.prev,text_prev,text"
                         --${_split}_data_path_and_name_and_type "${dumpdir}/raw/${_set}/text.ctc,text_ctc,text")
    fi
done
peft_stats="${expdir}/stats_${target_train_set}"
peft_statistics() {
    [ ! -f "${peft_stats}/train/speech_shape" ] || return 0
    need_file "${foundation_dir}/model.pth" "foundation model"
    ${train_cmd} "${peft_stats}/stats.log" "${python}" -m "espnet_peft.bin.${task}_train" --collect_stats true \
        --pretrained_model "${foundation_dir}/model.pth" --bpemodel "${foundation_dir}/bpe.model" \
        --normalize none "${peft_data_args[@]}" \
        --train_shape_file "${dumpdir}/raw/${target_train_set}/wav.scp" \
        --valid_shape_file "${dumpdir}/raw/${target_valid_set}/wav.scp" \
        --output_dir "${peft_stats}" --batch_type unsorted --batch_size 16 --ngpu 0
}

if [ "${prepare_only}" = true ]; then
    log "preparing shared work: adaptation statistics, base-model decoding of every test set"
    peft_statistics
    decode_sets "${target_test_sets} ${source_test_sets}" "${foundation_dir}" "${base_decode}"
    # shellcheck disable=SC2086
    score_sets "${base_decode}" ${target_test_sets} ${source_test_sets}
    exit 0
fi

# ---------------------------------------------------------------- 1: data preparation
if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "stage 1: data preparation (local/data.sh ${data_opts})"
    # shellcheck disable=SC2086
    local/data.sh ${data_opts}
fi

# ---------------------------------------------------------------- 2: data check
if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    log "stage 2: checking data directories"
    # shellcheck disable=SC2086
    "${python}" utils/check_data.py --fs 0 $(for s in ${all_sets}; do echo "data/${s}"; done | sort -u)
fi

# ---------------------------------------------------------------- 3-4: format, filter
if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    log "stage 3: formatting audio to ${fs} Hz mono (dump/raw); stage 4 filters the training sets"
    for s in $(echo ${all_sets} | tr ' ' '\n' | sort -u); do
        f=false
        [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ] && [[ " ${train_sets} " == *" ${s} "* ]] && f=true
        "${python}" utils/format_data.py --fs "${fs}" --filter "${f}" --min_dur "${min_dur}" \
            --max_dur "${max_dur}" --owsm_prefix "${owsm_prefix}" "data/${s}" "${dumpdir}/raw/${s}"
    done
elif [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
    log "stage 4: filtering the training sets by length (${min_dur}-${max_dur} s)"
    for s in $(echo ${train_sets} | tr ' ' '\n' | sort -u); do
        "${python}" utils/format_data.py --fs "${fs}" --filter true --min_dur "${min_dur}" --max_dur "${max_dur}" \
            --owsm_prefix "${owsm_prefix}" "data/${s}" "${dumpdir}/raw/${s}"
    done
fi

# ---------------------------------------------------------------- 5: tokenizer
bpedir="data/token_list/bpe${nbpe}"
if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
    if [ "${pretrain}" = true ]; then
        log "stage 5: training a ${nbpe}-unit BPE model on ${source_train_set}"
        mkdir -p "${bpedir}"
        cut -d' ' -f2- "${dumpdir}/raw/${source_train_set}/text" > "${bpedir}/train.txt"
        "${python}" -c "import sentencepiece as spm, sys; spm.SentencePieceTrainer.train(input=sys.argv[1], \
vocab_size=int(sys.argv[2]), model_type='unigram', model_prefix=sys.argv[3], character_coverage=1.0, \
input_sentence_size=100000000, minloglevel=2)" "${bpedir}/train.txt" "${nbpe}" "${bpedir}/bpe"
        "${python}" -m espnet2.bin.tokenize_text --token_type bpe --input "${bpedir}/train.txt" \
            --output "${bpedir}/tokens.txt" --bpemodel "${bpedir}/bpe.model" --field 1- --cleaner none \
            --write_vocabulary true --add_symbol '<blank>:0' --add_symbol '<unk>:1' --add_symbol '<sos/eos>:-1'
    elif [ -f "${foundation_dir}/model.pth" ]; then
        need_file "${foundation_dir}/bpe.model" "the foundation model's BPE model"
        log "stage 5: reusing the foundation model's tokenizer (${foundation_dir}/bpe.model)"
    elif [ -n "${foundation_source}" ]; then
        log "stage 5: the tokenizer comes with the foundation model, fetched at stage 6"
    else
        echo "$0: no foundation model in ${foundation_dir}: set --foundation_source or --pretrain true" >&2
        exit 1
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
        ${train_cmd} "${stats}/stats.log" "${python}" -m espnet2.bin.asr_train --collect_stats true \
            --config "${foundation_config}" --normalize none "${tok_args[@]}" "${data_args[@]}" \
            --train_shape_file "${dumpdir}/raw/${source_train_set}/wav.scp" \
            --valid_shape_file "${dumpdir}/raw/${source_valid_set}/wav.scp" \
            --output_dir "${stats}" --batch_type unsorted --batch_size 16 --ngpu 0
        if [ -n "${lm_config}" ]; then
            log "stage 6: language model statistics (${lm_train_text})"
            mkdir -p "${lm_exp}_stats"
            ${train_cmd} "${lm_exp}_stats/stats.log" "${python}" -m espnet2.bin.lm_train --collect_stats true \
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
            ${foundation_args}
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
        fi
        # the new model decodes with the new LM (stages 12 and 14 use ${foundation_dir}/lm after stage 9)
        lm_dir_after="${decode_lm_dir}"
        [ -z "${decode_lm_dir}" ] || decode_lm_dir="${pkg}/lm"
        decode_sets "${source_valid_set} ${source_test_sets} ${target_test_sets}" "${pkg}" "${foundation_exp}/decode"
        decode_lm_dir="${lm_dir_after}"
        score_sets "${foundation_exp}/decode" ${source_valid_set} ${source_test_sets} ${target_test_sets}
    fi
    if [ "${stage}" -le 9 ] && [ "${stop_stage}" -ge 9 ]; then
        log "stage 9: packaging the foundation model into ${foundation_dir}"
        "${python}" utils/package_foundation.py --exp "${foundation_exp}" --bpedir "${bpedir}" \
            --decode_dir "${foundation_exp}/decode" --out "${foundation_dir}" \
            ${lm_config:+--lm_exp "${lm_exp}"} --decode_config "${decode_config}"
        rm -rf "${base_decode}"  # base results of an older foundation model are stale
    fi
elif [ "${stage}" -le 9 ] && [ "${stop_stage}" -ge 6 ]; then
    if [ -f "${foundation_dir}/model.pth" ]; then
        log "stages 6-9: using the foundation model in ${foundation_dir} (--pretrain true retrains it)"
    elif [ -n "${foundation_source}" ]; then
        log "stage 6: fetching the foundation model ${foundation_source} into ${foundation_dir}"
        "${python}" utils/fetch_foundation.py --source "${foundation_source}" --out "${foundation_dir}"
    else
        echo "$0: no foundation model in ${foundation_dir}: set --foundation_source (a model-zoo tag or a" \
             "local model directory) or --pretrain true" >&2
        exit 1
    fi
fi

# ---------------------------------------------------------------- 10: PEFT adaptation
if [ "${stage}" -le 10 ] && [ "${stop_stage}" -ge 10 ]; then
    need_file "${foundation_dir}/model.pth" "foundation model"
    log "stage 10: PEFT adaptation ${exp} (${peft_config}); log: ${exp}/train.log"
    need_file "${foundation_dir}/model.pth" "the foundation model"
    check_foundation_id  # the model may have changed since the up-front check (stage 6 fetches it)
    mkdir -p "${exp}"
    echo "${foundation_fid}" > "${exp}/foundation_id"
    cp "${peft_config}" "${exp}/peft_config.source.yaml"
    echo "${ESPNET_PEFT_RUN_CMD:-}" > "${exp}/command.txt"  # the report cites the training command
    peft_statistics
    start=$(wall_start "${exp}")
    keep_log "${exp}/train.log"
    # shellcheck disable=SC2086
    ${cuda_cmd} --gpu "${ngpu}" "${exp}/train.log" "${python}" -m "espnet_peft.bin.${task}_train" \
        --config "${train_config}" --peft_config "${peft_config}" \
        --pretrained_model "${foundation_dir}/model.pth" --bpemodel "${foundation_dir}/bpe.model" \
        "${peft_data_args[@]}" \
        --train_shape_file "${peft_stats}/train/speech_shape" --train_shape_file "${peft_stats}/train/text_shape" \
        --valid_shape_file "${peft_stats}/valid/speech_shape" --valid_shape_file "${peft_stats}/valid/text_shape" \
        --output_dir "${exp}" --ngpu "${ngpu}" --resume true ${peft_args}
    echo "{\"train_wall_seconds\": $(( $(date +%s) - start ))}" > "${exp}/train_wall.json"
fi

# ---------------------------------------------------------------- 11: merge
if [ "${stage}" -le 11 ] && [ "${stop_stage}" -ge 11 ]; then
    need_file "${exp}/${checkpoint}" "adapter checkpoint (run stage 10)"
    log "stage 11: merging ${exp}/${checkpoint} into ${merged} (alpha=${alpha})"
    "${python}" -m espnet_peft.bin.merge --train_config "${exp}/config.yaml" --model_file "${exp}/${checkpoint}" \
        --output_dir "${merged}" --alpha "${alpha}"
fi

# ---------------------------------------------------------------- 12-13: target domain
if [ "${stage}" -le 12 ] && [ "${stop_stage}" -ge 12 ]; then
    need_file "${merged}/model.pth" "merged model (run stage 11)"
    sets="${target_test_sets}"
    [ "${stop_stage}" -lt 14 ] || sets="${sets} ${source_test_sets}"  # stage 14's sets in the same jobs
    log "stage 12: decoding the target test sets (${target_test_sets}) with the base and adapted models"
    decode_sets "${sets}" "${foundation_dir}" "${base_decode}" "${merged}" "${merged}/decode"
fi
if [ "${stage}" -le 13 ] && [ "${stop_stage}" -ge 13 ]; then
    log "stage 13: scoring the target test sets"
    # shellcheck disable=SC2086
    score_sets "${base_decode}" ${target_test_sets}
    # shellcheck disable=SC2086
    score_sets "${merged}/decode" ${target_test_sets}
fi

# ---------------------------------------------------------------- 14: forgetting
if [ "${stage}" -le 14 ] && [ "${stop_stage}" -ge 14 ]; then
    need_file "${merged}/model.pth" "merged model (run stage 11)"
    log "stage 14: forgetting evaluation on the source test sets (${source_test_sets})"
    decode_sets "${source_test_sets}" "${foundation_dir}" "${base_decode}" "${merged}" "${merged}/decode"
    # shellcheck disable=SC2086
    score_sets "${base_decode}" ${source_test_sets}
    # shellcheck disable=SC2086
    score_sets "${merged}/decode" ${source_test_sets}
fi

# ---------------------------------------------------------------- 15: report
if [ "${stage}" -le 15 ] && [ "${stop_stage}" -ge 15 ]; then
    log "stage 15: report"
    "${python}" utils/report.py --exp "${exp}" --merged "${merged}" --base_decode "${base_decode}" \
        --source_test_sets "${source_test_sets}" --target_test_sets "${target_test_sets}" \
        --recipe "${recipe_name}" --results "${results}" --expdir "${expdir}" --alpha "${alpha}"
fi
log "done (stages ${stage}-${stop_stage})"
