#!/usr/bin/env bash
# Stage 1 of the speechocean762 recipe: Kaldi data directories
#   data/so762_{train,dev,test}_{child,adult}   real English read by Mandarin-L1 speakers, by age group
#                                               (child: 12 or younger); dev = 15% of train/'s speakers of
#                                               each group; test = the official test/ split
#   data/so762_train_adult_sp                   the training adults with speed-perturbed copies (x0.9, x1.1)
#   data/source_{test,unseen_test,style_test}   the embedded benchmark's synthetic adult-US source sets
#                                               (synthesised by ../../embedded/asr1/local/data.sh, once for
#                                               both recipes): forgetting of the synthetic domain
# With --foundation_data true (run.sh --pretrain true), also the real-speech foundation model's sets:
#   data/so762_foundation_train   a --source_share of the synthetic source_train + so762_train_adult_sp
#   data/so762_foundation_dev     source_dev + so762_dev_adult
# The corpus folder comes from db.sh (SPEECHOCEAN762). Children are never in the foundation's data.
set -euo pipefail

dev_share=0.15            # share of train/'s speakers (per age group) held out as dev
speed_perturb="0.9 1.1"   # extra speed factors of so762_train_adult_sp ('' for none)
foundation_data=false     # also the foundation model's training / validation sets
source_share=0.34         # share of the synthetic source_train in so762_foundation_train
source_recipe=""          # the recipe whose local/data.sh synthesises the source sets (default: the embedded one)
force=false               # redo the preparation even if data/ is up to date
help_message="Usage: local/data.sh [--dev_share 0.15] [--speed_perturb '0.9 1.1'] [--foundation_data false]
                     [--source_share 0.34] [--source_recipe DIR] [--force false]"

. ./path.sh  # MAIN_ROOT: the repository, whose local/ holds the shared scripts
. "${MAIN_ROOT}/local/parse_options.sh"
if [ $# -ne 0 ]; then
    echo "${help_message}" >&2
    exit 1
fi
. ./db.sh
python="${python:-python3}"
. "${MAIN_ROOT}/local/corpora/prepare.sh"

require_db_var SPEECHOCEAN762 "/path/to/speechocean762, OpenSLR 101 or github.com/jimbozhang/speechocean762"

# the synthetic source sets: the embedded recipe synthesises them (deterministic, seed 1, size 1.0)
embedded="$(cd "${source_recipe:-${MAIN_ROOT}/egs2/embedded/asr1}" && pwd)"
synth_sets="source_test source_unseen_test source_style_test"
if [ "${foundation_data}" = true ]; then
    synth_sets+=" source_train source_dev"
fi
(cd "${embedded}" && bash local/data.sh --source_train "${foundation_data}")

skip_if_prepared speechocean762 \
    "SPEECHOCEAN762=${SPEECHOCEAN762} dev_share=${dev_share} speed_perturb=${speed_perturb} foundation_data=${foundation_data} source_share=${source_share} embedded=$(ls "${embedded}"/data/.corpus_* 2>/dev/null | head -1)"

"${python}" "${MAIN_ROOT}/local/corpora/speechocean762.py" --corpus "${SPEECHOCEAN762}" --out data \
    --dev_share "${dev_share}" --speed_perturb "${speed_perturb}"
for s in ${synth_sets}; do
    [ "${s}" = source_train ] && continue  # used only through so762_foundation_train
    "${python}" "${MAIN_ROOT}/local/combine_data.py" --out "data/${s}" --set "${embedded}/data/${s}"
done
if [ "${foundation_data}" = true ]; then
    real=data/so762_train_adult_sp
    [ -n "${speed_perturb}" ] || real=data/so762_train_adult
    "${python}" "${MAIN_ROOT}/local/combine_data.py" --out data/so762_foundation_train \
        --set "${embedded}/data/source_train:${source_share}" --set "${real}"
    "${python}" "${MAIN_ROOT}/local/combine_data.py" --out data/so762_foundation_dev \
        --set data/source_dev --set data/so762_dev_adult
fi
mark_prepared
