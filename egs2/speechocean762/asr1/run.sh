#!/usr/bin/env bash
# speechocean762: English read by Mandarin-L1 speakers, half of them children (6-12). Adapts the
# recipe's real-speech foundation model (foundation/: the embedded benchmark's model trained further
# on the corpus's training adults and synthetic adult-US speech) to the training children, then
# measures learning on the test children (speakers it never heard) and forgetting on the test
# adults (real speech it was not adapted to) and on the synthetic source sets, with and without the LM.
#
#   ./run.sh                                         # SSVD-O at a 1% budget, stages 1-15
#   ./run.sh --stage 10 --peft_config conf/peft/lora.yaml --budget 4%
#   ./run.sh --pretrain true --stage 1 --stop_stage 9   # retrain the real-speech foundation model
#   SPEECHOCEAN762=/data/speechocean762 ./run.sh     # the corpus folder (db.sh)
#
# The stages are ./peft_asr.sh (linked to the shared driver, local/peft_asr.sh): every option of it
# can be given here. Reports go to exp/RESULTS.md; `--results RESULTS.md` updates the committed one.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh  # MAIN_ROOT: the repository, whose local/ holds the shared scripts

pretrain=false  # true: (re)train the real-speech foundation model (stages 6-9), warm-started from the embedded one
help_message="Usage: $0 [--pretrain false] [options of ./peft_asr.sh]"
parse_options_pass=true  # the options above are this script's; the others are left for ./peft_asr.sh
. "${MAIN_ROOT}/local/parse_options.sh"

foundation_opts=()
[ "${pretrain}" = false ] || foundation_opts=(--foundation_init ../../embedded/asr1/foundation)
exec ./peft_asr.sh \
    --source_train_set so762_foundation_train --source_valid_set so762_foundation_dev \
    --source_test_sets "so762_test_adult source_test source_unseen_test source_style_test" \
    --target_train_set so762_train_child --target_valid_set so762_dev_child --target_test_sets "so762_test_child" \
    --data_opts "--foundation_data ${pretrain}" --pretrain "${pretrain}" "${foundation_opts[@]}" \
    --foundation_dir foundation --foundation_config conf/train_foundation.yaml \
    --peft_config conf/peft/ssvd_o.yaml --train_config conf/train_peft.yaml --decode_config conf/decode.yaml \
    --nolm_decode_config conf/decode_nolm.yaml --tag_prefix child_ --recipe_name speechocean762 \
    "$@"
