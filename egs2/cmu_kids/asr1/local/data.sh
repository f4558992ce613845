#!/usr/bin/env bash
# Stage 1 of the CMU Kids recipe: Kaldi data directories (wav.scp, text, utt2spk, spk2utt, utt2dur,
# spk2gender)
#   data/cmu_kids_{train,dev,test}               target domain: children reading aloud, ages 6-11
#   data/librispeech_test_{clean,other}          forgetting sets (adult read speech)
# Corpus locations come from db.sh. The cleaning, filtering and split rules are documented in
# local/corpora/cmu_kids.py and local/corpora/librispeech.py; what was dropped and why is listed in
# data/local/{cmu_kids,librispeech}/. The SPHERE audio is read by libsndfile directly; shorten-
# compressed copies need sph2pipe on PATH (see README.md).
set -euo pipefail

text_source=prompt          # prompt (the sentence read; ESPnet/lhotse practice) or spoken (the .trn transcript)
bins="1 2"                  # transcription bins to keep (1: read as prompted, 2: noise/deviations)
max_dur=30                  # drop utterances longer than this (s; OWSM's 30 s window; 0: keep all)
split_lists=""              # directory with {train,dev,test}.list (default: hashed speaker split 80/10/10)
librispeech_sets="test-clean test-other"    # forgetting sets ("" to skip LibriSpeech)
force=false                 # redo the preparation even if data/ is up to date
help_message="Usage: local/data.sh [--text_source prompt|spoken] [--bins '1 2'] [--max_dur 30] [--split_lists DIR]
                     [--librispeech_sets 'test-clean test-other'] [--force false]"

. ./path.sh  # MAIN_ROOT: the repository, whose local/ holds the shared scripts
. "${MAIN_ROOT}/local/parse_options.sh"
if [ $# -ne 0 ]; then
    echo "${help_message}" >&2
    exit 1
fi
. ./db.sh
python="${python:-python3}"
. "${MAIN_ROOT}/local/corpora/prepare.sh"

require_db_var CMU_KIDS "/path/to/cmu_kids, LDC97S63"
require_librispeech

skip_if_prepared cmu_kids \
    "CMU_KIDS=${CMU_KIDS} LIBRISPEECH=${LIBRISPEECH} text_source=${text_source} bins=${bins} max_dur=${max_dur} split_lists=${split_lists} librispeech_sets=${librispeech_sets}"

# shellcheck disable=SC2206
opts=(--text_source "${text_source}" --bins ${bins} --max_dur "${max_dur}")
[ -n "${split_lists}" ] && opts+=(--split_lists "${split_lists}")
"${python}" "${MAIN_ROOT}/local/corpora/cmu_kids.py" --corpus "${CMU_KIDS}" --out data "${opts[@]}"

prepare_librispeech
mark_prepared
