#!/usr/bin/env bash
# Stage 1 of the embedded recipe: synthesise the benchmark corpus (deterministic from --seed).
# Source domain: adult US voices (+ source_style_test: sentences of another style, local/style_test_sentences.txt);
# child domain: tens of children (adult voices through Praat's child transform, a profile each); accent
# domain: six Scottish / English-regional / Caribbean accents, several voices each. Each target domain also
# gets <domain>_unseen_test, its test sentences read by speakers it never trains or tunes on.
set -euo pipefail
size=1.0      # scale of every split (1.0: ~3 h of audio, ~80 s on 2 cores)
seed=1
nj=2
mbrola=false  # add mbrola L2 voices (Debian contrib/non-free, must be installed)
source_train=true   # synthesise the source training / dev sets (only the foundation model's training needs them)
help_message="Usage: local/data.sh [--size 1.0] [--seed 1] [--nj 2] [--mbrola false] [--source_train true]"
. ./path.sh  # MAIN_ROOT: the repository, whose local/ holds the shared scripts
. "${MAIN_ROOT}/local/parse_options.sh"

version=2     # the corpus design (2: many target speakers, unseen-speaker and style test sets)
stamp="data/.corpus_v${version}_size${size}_seed${seed}_mbrola${mbrola}_source${source_train}"
full="data/.corpus_v${version}_size${size}_seed${seed}_mbrola${mbrola}_sourcetrue"  # also holds every set of a sourcefalse one
found="${stamp}"; [ -f "${found}" ] || found="${full}"
if [ -f "${found}" ]; then
    echo "local/data.sh: corpus already synthesised (${found}); delete it to rebuild"
else
    opts=()
    [ "${mbrola}" = true ] && opts+=(--mbrola)
    [ "${source_train}" = true ] || opts+=(--skip source_train,source_dev)
    rm -f data/lm_train.txt
    "${python}" "${MAIN_ROOT}/local/synth_corpus.py" --out data --wavdir downloads/wav --size "${size}" --seed "${seed}" \
        --nj "${nj}" --train_only local/train_only_sentences.txt --style_test local/style_test_sentences.txt \
        "${opts[@]+"${opts[@]}"}"
    rm -f data/.corpus_*
    touch "${stamp}"
fi
if [ "${source_train}" = true ] && [ ! -f data/lm_train.txt ]; then
    exclude=()
    for d in data/*_dev data/*_test; do exclude+=(--exclude "${d}/text"); done
    fraction=$(awk -v s="${size}" 'BEGIN { print (s < 1 ? s : 1) }')
    "${python}" "${MAIN_ROOT}/local/lm_text.py" --out data/lm_train.txt --fraction "${fraction}" --seed "${seed}" "${exclude[@]}"
fi
