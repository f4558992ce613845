#!/usr/bin/env bash
# Embedded benchmark recipe: adapt a small E-Branchformer foundation model trained on synthetic
# adult US speech to synthetic child speech (--target child) or unseen accents (--target accent),
# then measure what it learned (target test WER) and what it forgot (source test WERs).
#
#   ./run.sh                                  # the demo: child target, SSVD-O at a 1% budget
#   ./run.sh --target accent --peft_config conf/peft/lora.yaml --budget 2%
#   ./run.sh --stage 10 --peft_config conf/peft/ssvd.yaml     # adaptation onward
#   ./run.sh --pretrain true --stage 1                        # retrain the foundation model too
#   ./run.sh --help                                           # this recipe's options, then the stages'
#
# The stages are ./peft_asr.sh (linked to the shared driver, local/peft_asr.sh): every option of it
# can be given here. Reports go to exp/RESULTS.md; `--results RESULTS.md` updates the committed one.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh  # MAIN_ROOT: the repository, whose local/ holds the shared scripts

target=child    # child | accent: the target domain
size=1.0        # corpus scale (local/data.sh --size)
pretrain=false  # true: also synthesise the source training sets and retrain the foundation model (stages 6-9)
help_message="Usage: $0 [--target child|accent] [--size 1.0] [--pretrain false] [options of ./peft_asr.sh]"
parse_options_pass=true  # the options above are this script's; the others are left for ./peft_asr.sh
. "${MAIN_ROOT}/local/parse_options.sh"

case "${target}" in
    child|accent) ;;
    *) echo "$0: --target must be child or accent, got '${target}'" >&2; exit 1 ;;
esac

exec ./peft_asr.sh \
    --source_train_set source_train --source_valid_set source_dev --source_test_sets "source_test source_unseen_test source_style_test" \
    --target_train_set "${target}_train" --target_valid_set "${target}_dev" --target_test_sets "${target}_unseen_test ${target}_test" \
    --data_opts "--size ${size} --source_train ${pretrain}" --pretrain "${pretrain}" \
    --foundation_dir foundation --foundation_config conf/train_foundation.yaml --lm_config conf/train_lm.yaml \
    --peft_config conf/peft/ssvd_o.yaml --train_config conf/train_peft.yaml --decode_config conf/decode.yaml --nolm_decode_config conf/decode_nolm.yaml \
    --tag_prefix "${target}_" --nbpe 300 --recipe_name embedded \
    "$@"
