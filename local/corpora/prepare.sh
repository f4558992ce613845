# Shared steps of the real-corpus recipes' local/data.sh (sourced after db.sh and path.sh):
# checking the db.sh variables, skipping a preparation already done with the same settings, and
# the LibriSpeech forgetting sets. Each function exits with one clear line on bad input.

# require_db_var NAME HINT: the db.sh variable NAME must be set.
require_db_var() {
    if [ -z "${!1:-}" ]; then
        echo "local/data.sh: $1 is not set: edit db.sh ($1=$2; see README.md)" >&2
        exit 1
    fi
}

# require_librispeech: LIBRISPEECH must be set unless the forgetting sets are skipped.
require_librispeech() {
    if [ -n "${librispeech_sets}" ] && [ -z "${LIBRISPEECH:-}" ]; then
        echo "local/data.sh: LIBRISPEECH is not set: edit db.sh (LIBRISPEECH=/path/containing/LibriSpeech/test-clean)" \
             "or pass --librispeech_sets ''" >&2
        exit 1
    fi
}

# skip_if_prepared NAME SETTINGS: exit 0 when data/ was prepared for NAME with exactly SETTINGS
# (unless --force true); otherwise forget the old stamp. mark_prepared writes it when all is done.
skip_if_prepared() {
    mkdir -p data
    prep_stamp="data/.prepared_$1"
    prep_settings="$2"
    if [ "${force}" = false ] && [ -f "${prep_stamp}" ] && [ "$(cat "${prep_stamp}")" = "${prep_settings}" ]; then
        echo "local/data.sh: data/ already prepared with these settings (${prep_stamp}); --force true to redo"
        exit 0
    fi
    rm -f "${prep_stamp}"
}

# prepare_librispeech: data/librispeech_<set> for every set of ${librispeech_sets}.
prepare_librispeech() {
    if [ -n "${librispeech_sets}" ]; then
        # shellcheck disable=SC2086
        "${python}" "${MAIN_ROOT}/local/corpora/librispeech.py" --corpus "${LIBRISPEECH}" --out data --max_dur "${max_dur}" \
            --sets ${librispeech_sets}
    fi
}

mark_prepared() { echo "${prep_settings}" > "${prep_stamp}"; }
