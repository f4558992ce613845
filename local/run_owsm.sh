#!/usr/bin/env bash
# The shared body of the OWSM real-corpus recipes (egs2/{myst,ogi_kids,cmu_kids,cv_accents}): a
# recipe's run.sh ends with `exec "${MAIN_ROOT}/local/run_owsm.sh" --recipe NAME [its data sets] "$@"`. It picks the
# OWSM model (--owsm: a model-zoo tag or a local model directory), keeps one foundation directory
# and one tag prefix per model, and runs the recipe's ./peft_asr.sh (the shared stage driver) with
# the S2T settings and the papers' training / decoding configs; later options override earlier ones.
set -euo pipefail

owsm=espnet/owsm_v3.1_ebf_base   # OWSM v3.1 base (0.1 B); espnet/owsm_v3.1_ebf is the 1 B model
recipe=""                        # the recipe's name (tags, reports)
help_message="Usage: $0 [--owsm TAG_OR_DIR] [options of ./peft_asr.sh]"
parse_options_pass=true  # the options above are this script's; the others are left for ./peft_asr.sh
. ./path.sh  # (run from the recipe directory)
. "${MAIN_ROOT}/local/parse_options.sh"
[ -n "${recipe}" ] || { echo "$0: --recipe NAME is required (the recipe's run.sh passes it)" >&2; exit 1; }
name="$(basename "${owsm}")"

exec ./peft_asr.sh --task s2t --lang_sym "<eng>" --task_sym "<asr>" \
    --source_test_sets "librispeech_test_clean librispeech_test_other" \
    --foundation_dir "foundation/${name}" --foundation_source "${owsm}" \
    --train_config conf/train_peft_owsm.yaml \
    --decode_config conf/decode_owsm.yaml --max_dur 30 --ngpu 1 --nj 8 \
    --tag_prefix "${recipe}_${name}_" --recipe_name "${recipe}" \
    "$@"
