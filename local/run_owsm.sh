#!/usr/bin/env bash
# The shared body of the OWSM real-corpus recipes (egs2/{myst,ogi_kids,cmu_kids,cv_accents}):
# picks the OWSM model (--owsm: a model-zoo tag or a local model directory), keeps one
# foundation directory and one tag prefix per model, and calls the stage driver with the S2T
# settings and the papers' training / decoding configs. A recipe's run.sh passes its data sets,
# its name and the user's options; later options override earlier ones.
set -euo pipefail

owsm=espnet/owsm_v3.1_ebf_base   # default: OWSM v3.1 base (0.1 B); espnet/owsm_v3.1_ebf is the 1 B model
recipe=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --owsm) owsm="$2"; shift 2 ;;
        --owsm=*) owsm="${1#*=}"; shift ;;
        --recipe) recipe="$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
[ -n "${recipe}" ] || { echo "run_owsm.sh: --recipe NAME is required" >&2; exit 1; }
name="$(basename "${owsm}")"
export ESPNET_PEFT_RUN_CMD="egs2/${recipe}/asr1/run.sh --owsm ${owsm}${args[*]+ ${args[*]}}"

exec utils/peft_asr.sh --task s2t --lang_sym "<eng>" --task_sym "<asr>" \
    --source_test_sets "librispeech_test_clean librispeech_test_other" \
    --foundation_dir "foundation/${name}" --foundation_source "${owsm}" \
    --peft_config conf/peft/ssvd_o.yaml --train_config conf/train_peft_owsm.yaml \
    --decode_config conf/decode_owsm.yaml --max_dur 30 --ngpu 1 --nj 8 \
    --tag_prefix "${recipe}_${name}_" --recipe_name "${recipe}" \
    "${args[@]+"${args[@]}"}"
