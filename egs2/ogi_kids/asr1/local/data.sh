#!/usr/bin/env bash
# Stage 1 of the OGI Kids recipe: Kaldi data directories (wav.scp, text, utt2spk, spk2utt, utt2dur)
#   data/ogi_scripted_{train,dev,test}           target domain: prompted children's speech, grades K-10
#   data/ogi_spont_{train,dev,test}              (--subsets ... spontaneous) the monologues, long-form
#   data/librispeech_test_{clean,other}          forgetting sets (adult read speech)
# Corpus locations come from db.sh. The cleaning, filtering and split rules are documented in
# local/corpora/ogi_kids.py and local/corpora/librispeech.py; what was dropped and why is listed in
# data/local/{ogi_kids,librispeech}/.
set -euo pipefail

subsets="scripted"          # scripted and/or spontaneous
max_dur=30                  # drop utterances longer than this (s; OWSM's 30 s window; 0: keep all)
verify_labels="1 4"         # verification labels of scripted files to keep (1 good, 2 maybe, 3 bad, 4 puff)
require_verification=true   # drop scripted files without a verification label
drop_fillers=true           # remove filled pauses (um, uh, hmm, ...) from the spontaneous references
spont_max_dur=0             # longest monologue kept whole (s; 0: no limit = long-form sets)
spont_segments=""           # aligner segments file cutting the monologues (writes data/ogi_spont_*/segments)
split_lists=""              # directory with {train,dev,test}.list (default: hashed speaker split 80/10/10)
librispeech_sets="test-clean test-other"    # forgetting sets ("" to skip LibriSpeech)
force=false                 # redo the preparation even if data/ is up to date
help_message="Usage: local/data.sh [--subsets 'scripted spontaneous'] [--max_dur 30] [--verify_labels '1 4']
                     [--require_verification true|false] [--drop_fillers true|false] [--spont_max_dur 0]
                     [--spont_segments FILE] [--split_lists DIR] [--librispeech_sets 'test-clean test-other'] [--force false]"

. ./path.sh  # MAIN_ROOT: the repository, whose local/ holds the shared scripts
. "${MAIN_ROOT}/local/parse_options.sh"
if [ $# -ne 0 ]; then
    echo "${help_message}" >&2
    exit 1
fi
. ./db.sh
python="${python:-python3}"
. "${MAIN_ROOT}/local/corpora/prepare.sh"

require_db_var OGI_KIDS "/path/to/cslu_kids, LDC2007S18, the directory with docs/ and speech/"
require_librispeech

skip_if_prepared ogi_kids \
    "OGI_KIDS=${OGI_KIDS} LIBRISPEECH=${LIBRISPEECH} subsets=${subsets} max_dur=${max_dur} verify_labels=${verify_labels} require_verification=${require_verification} drop_fillers=${drop_fillers} spont_max_dur=${spont_max_dur} spont_segments=${spont_segments} split_lists=${split_lists} librispeech_sets=${librispeech_sets}"

# shellcheck disable=SC2206
opts=(--subsets ${subsets} --max_dur "${max_dur}" --verify_labels ${verify_labels}
      --require_verification "${require_verification}" --drop_fillers "${drop_fillers}" --spont_max_dur "${spont_max_dur}")
[ -n "${spont_segments}" ] && opts+=(--spont_segments "${spont_segments}")
[ -n "${split_lists}" ] && opts+=(--split_lists "${split_lists}")
"${python}" "${MAIN_ROOT}/local/corpora/ogi_kids.py" --corpus "${OGI_KIDS}" --out data "${opts[@]}"

prepare_librispeech
mark_prepared
