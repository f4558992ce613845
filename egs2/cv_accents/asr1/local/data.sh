#!/usr/bin/env bash
# Stage 1 of the Common Voice accents recipe: Kaldi data directories (wav.scp, text, utt2spk, spk2utt,
# utt2dur)
#   data/cv_<accent>_test                        one test set per target accent (official test.tsv)
#   data/cv_accents_dev                          official dev.tsv clips of the target accents
#   data/cv_accents_train                        validated.tsv clips of the target accents, minus every
#                                                dev/test speaker and dev/test sentence
#   data/librispeech_test_{clean,other}          forgetting sets (adult read speech, mostly US)
# Corpus locations come from db.sh. The accent choice, cleaning and split rules are documented in
# local/corpora/common_voice.py and local/corpora/librispeech.py; what was dropped and why is listed
# in data/local/{common_voice,librispeech}/.
set -euo pipefail

accents="indian scottish southern_african"  # target accents (see README.md for the registry)
train_source=validated      # validated (minus dev/test speakers) or train (the official train.tsv)
max_per_speaker=0           # cap on training clips per speaker (0: none)
max_dur=30                  # drop utterances longer than this (s; OWSM's 30 s window; 0: keep all)
mp3_cmd=""                  # MP3 decoder template with {path} when libsndfile cannot read MP3
librispeech_sets="test-clean test-other"    # forgetting sets ("" to skip LibriSpeech)
force=false                 # redo the preparation even if data/ is up to date
help_message="Usage: local/data.sh [--accents 'indian scottish southern_african'] [--train_source validated|train]
                     [--max_per_speaker 0] [--max_dur 30] [--mp3_cmd 'CMD {path} |']
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

require_db_var COMMONVOICE "/path/to/cv-corpus-<version>/en"
require_librispeech

skip_if_prepared cv_accents \
    "COMMONVOICE=${COMMONVOICE} LIBRISPEECH=${LIBRISPEECH} accents=${accents} train_source=${train_source} max_per_speaker=${max_per_speaker} max_dur=${max_dur} mp3_cmd=${mp3_cmd} librispeech_sets=${librispeech_sets}"

# shellcheck disable=SC2206
opts=(--accents ${accents} --train_source "${train_source}" --max_per_speaker "${max_per_speaker}"
      --max_dur "${max_dur}")
[ -n "${mp3_cmd}" ] && opts+=(--mp3_cmd "${mp3_cmd}")
"${python}" "${MAIN_ROOT}/local/corpora/common_voice.py" --corpus "${COMMONVOICE}" --out data "${opts[@]}"

prepare_librispeech
mark_prepared
