#!/usr/bin/env bash
# Embedded benchmark recipe: adapt a small E-Branchformer foundation model trained on synthetic
# adult US speech to synthetic child speech (--target child) or unseen accents (--target accent),
# then measure what it learned (target test WER) and what it forgot (source test WER).
#
#   ./run.sh                                  # the demo: child target, SSVD-O at a 1% budget
#   ./run.sh --target accent --peft_config conf/peft/lora.yaml --budget 2%
#   ./run.sh --stage 10 --peft_config conf/peft/ssvd.yaml     # adaptation onward
#   ./run.sh --pretrain true --stage 1                        # retrain the foundation model too
set -euo pipefail
cd "$(dirname "$0")"

target=child    # child | accent
size=1.0        # corpus scale (local/data.sh --size)
pretrain=false  # passed on; the source training sets are only synthesised when it is true
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --target) target="$2"; shift 2 ;;
        --target=*) target="${1#*=}"; shift ;;
        --size) size="$2"; shift 2 ;;
        --size=*) size="${1#*=}"; shift ;;
        --pretrain) pretrain="$2"; args+=("$1" "$2"); shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
case "${target}" in
    child|accent) ;;
    *) echo "run.sh: --target must be child or accent, got '${target}'" >&2; exit 1 ;;
esac
export ESPNET_PEFT_RUN_CMD="egs2/embedded/asr1/run.sh --target ${target}${args[*]+ ${args[*]}}"

utils/peft_asr.sh \
    --source_train_set source_train --source_valid_set source_dev --source_test_sets "source_test source_unseen_test" \
    --target_train_set "${target}_train" --target_valid_set "${target}_dev" --target_test_sets "${target}_test" \
    --data_opts "--size ${size} --source_train ${pretrain}" --foundation_dir foundation --foundation_config conf/train_foundation.yaml \
    --lm_config conf/train_lm.yaml \
    --peft_config conf/peft/ssvd_o.yaml --train_config conf/train_peft.yaml --decode_config conf/decode.yaml \
    --tag_prefix "${target}_" --nbpe 300 --recipe_name embedded \
    "${args[@]+"${args[@]}"}"
