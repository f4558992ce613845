#!/usr/bin/env bash
# Stage 1 of the MyST recipe: Kaldi data directories (wav.scp, text, utt2spk, spk2utt, utt2dur)
#   data/myst_{train,dev,test}                   target domain: children's conversational speech
#   data/librispeech_test_{clean,other}          forgetting sets (adult read speech)
# Corpus locations come from db.sh. The cleaning and filtering rules are documented in
# local/corpora/myst.py and local/corpora/librispeech.py; what was dropped and why is listed in
# data/local/{myst,librispeech}/.
set -euo pipefail

max_dur=30                  # drop utterances longer than this (s; OWSM's 30 s window; 0: keep all)
drop_unintelligible=true    # drop turns with (( )), <no_signal>, <inaudible>, ... (false: strip the markers)
drop_fillers=true           # remove filled pauses (um, uh, hmm, ...) from the references
split_lists=""              # directory with {train,dev,test}.list utterance ids to keep (e.g. ESPnet's filtered lists)
librispeech_sets="test-clean test-other"    # forgetting sets ("" to skip LibriSpeech)
force=false                 # redo the preparation even if data/ is up to date
help_message="Usage: local/data.sh [--max_dur 30] [--drop_unintelligible true|false] [--drop_fillers true|false]
                     [--split_lists DIR] [--librispeech_sets 'test-clean test-other'] [--force false]"

. ./path.sh  # MAIN_ROOT: the repository, whose local/ holds the shared scripts
. "${MAIN_ROOT}/local/parse_options.sh"
if [ $# -ne 0 ]; then
    echo "${help_message}" >&2
    exit 1
fi
. ./db.sh
python="${python:-python3}"
. "${MAIN_ROOT}/local/corpora/prepare.sh"

require_db_var MYST "/path/to/the MyST corpus, LDC2021S05 or the Boulder Learning release"
require_librispeech

skip_if_prepared myst \
    "MYST=${MYST} LIBRISPEECH=${LIBRISPEECH} max_dur=${max_dur} drop_unintelligible=${drop_unintelligible} drop_fillers=${drop_fillers} split_lists=${split_lists} librispeech_sets=${librispeech_sets}"

opts=(--max_dur "${max_dur}" --drop_unintelligible "${drop_unintelligible}" --drop_fillers "${drop_fillers}")
[ -n "${split_lists}" ] && opts+=(--split_lists "${split_lists}")
"${python}" "${MAIN_ROOT}/local/corpora/myst.py" --corpus "${MYST}" --out data "${opts[@]}"

prepare_librispeech
mark_prepared
