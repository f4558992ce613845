#!/usr/bin/env bash
# Stage 1 of the CMU Kids recipe: Kaldi data directories (wav.scp, text, utt2spk, spk2utt, utt2dur,
# spk2gender)
#   data/cmu_kids_{train,dev,test}               target domain: children reading aloud, ages 6-11
#   data/librispeech_test_{clean,other}          forgetting sets (adult read speech)
# Corpus locations come from db.sh. The cleaning, filtering and split rules are documented in
# utils/corpora/cmu_kids.py and utils/corpora/librispeech.py; what was dropped and why is listed in
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

. utils/parse_options.sh
if [ $# -ne 0 ]; then
    echo "${help_message}" >&2
    exit 1
fi
. ./db.sh
. ./path.sh
python="${python:-python3}"

if [ -z "${CMU_KIDS}" ]; then
    echo "local/data.sh: CMU_KIDS is not set: edit db.sh (CMU_KIDS=/path/to/cmu_kids, LDC97S63; see README.md)" >&2
    exit 1
fi
if [ -n "${librispeech_sets}" ] && [ -z "${LIBRISPEECH}" ]; then
    echo "local/data.sh: LIBRISPEECH is not set: edit db.sh (LIBRISPEECH=/path/containing/LibriSpeech/test-clean)" \
         "or pass --librispeech_sets ''" >&2
    exit 1
fi

mkdir -p data
stamp=data/.prepared_cmu_kids
settings="CMU_KIDS=${CMU_KIDS} LIBRISPEECH=${LIBRISPEECH} text_source=${text_source} bins=${bins} max_dur=${max_dur} split_lists=${split_lists} librispeech_sets=${librispeech_sets}"
if [ "${force}" = false ] && [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${settings}" ]; then
    echo "local/data.sh: data/ already prepared with these settings (${stamp}); --force true to redo"
    exit 0
fi
rm -f "${stamp}"

# shellcheck disable=SC2206
opts=(--text_source "${text_source}" --bins ${bins} --max_dur "${max_dur}")
[ -n "${split_lists}" ] && opts+=(--split_lists "${split_lists}")
"${python}" utils/corpora/cmu_kids.py --corpus "${CMU_KIDS}" --out data "${opts[@]}"

if [ -n "${librispeech_sets}" ]; then
    # shellcheck disable=SC2086
    "${python}" utils/corpora/librispeech.py --corpus "${LIBRISPEECH}" --out data --max_dur "${max_dur}" \
        --sets ${librispeech_sets}
fi
echo "${settings}" > "${stamp}"
