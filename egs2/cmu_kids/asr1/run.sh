#!/usr/bin/env bash
# CMU Kids: children (6-11) reading sentences aloud.
# Adapts OWSM v3.1 (downloaded through espnet_model_zoo, or a local model directory) with a
# PEFT method, decodes the target test sets, and measures forgetting on LibriSpeech.
#
#   ./run.sh                                            # OWSM v3.1 base (0.1 B), SSVD-O at 1%, one GPU
#   ./run.sh --owsm espnet/owsm_v3.1_ebf                # the 1 B model
#   ./run.sh --stage 10 --peft_config conf/peft/lora_r32.yaml
#   cmd_backend=slurm ./run.sh --ngpu 1                 # jobs through Slurm (cmd.sh)
set -euo pipefail
cd "$(dirname "$0")"

owsm=espnet/owsm_v3.1_ebf_base   # a model-zoo tag or a local model directory (meta.yaml or config.yaml + .pth)
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --owsm) owsm="$2"; shift 2 ;;
        --owsm=*) owsm="${1#*=}"; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
name="$(basename "${owsm}")"
export ESPNET_PEFT_RUN_CMD="egs2/cmu_kids/asr1/run.sh --owsm ${owsm}${args[*]+ ${args[*]}}"

utils/peft_asr.sh --task s2t --lang_sym "<eng>" --task_sym "<asr>" \
    --target_train_set cmu_kids_train --target_valid_set cmu_kids_dev --target_test_sets "cmu_kids_test" \
    --source_test_sets "librispeech_test_clean librispeech_test_other" \
    --foundation_dir "foundation/${name}" --foundation_source "${owsm}" \
    --peft_config conf/peft/ssvd_o.yaml --train_config conf/train_peft_owsm.yaml \
    --decode_config conf/decode_owsm.yaml --max_dur 30 --ngpu 1 --nj 8 \
    --tag_prefix "cmu_kids_${name}_" --recipe_name cmu_kids \
    "${args[@]+"${args[@]}"}"
