#!/usr/bin/env bash
# Kaldi/ESPnet-style option parsing for recipe scripts (an independent implementation).
#
# Source it after declaring every option as a shell variable with its default:
#     stage=1; stop_stage=15; decode_config=conf/decode.yaml
#     . ./path.sh; . "${MAIN_ROOT}/local/parse_options.sh"
# then `--stop-stage 12`, `--stop_stage=12` and `--decode_config FILE` set those variables.
# An option that names no declared variable is an error; `--help` prints ${help_message}.
# Positional arguments are left in "$@".
#
# A script that declares some options and hands the rest to another script (a recipe's run.sh
# calling ./peft_asr.sh) sets `parse_options_pass=true` before sourcing: undeclared options are then
# left in "$@" (each with its value, in order) for the other script to check, and `--help` prints
# ${help_message} and is left in "$@" too.
_po_positional=()
_po_pass="${parse_options_pass:-false}"
unset parse_options_pass
while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            printf '%s\n' "${help_message:-no help for this script}"
            if [ "${_po_pass}" = true ]; then _po_positional+=("$1"); shift; continue; fi
            exit 0 ;;
        --*=*)
            _po_name="${1%%=*}"; _po_value="${1#*=}"; _po_given=("$1"); shift ;;
        --*)
            _po_name="$1"
            if [ $# -lt 2 ]; then
                echo "$0: option $1 needs a value" >&2; exit 1
            fi
            _po_value="$2"; _po_given=("$1" "$2"); shift 2 ;;
        *)
            _po_positional+=("$1"); shift; continue ;;
    esac
    _po_var="${_po_name#--}"; _po_var="${_po_var//-/_}"
    if ! [[ "${_po_var}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ -z "${!_po_var+set}" ]; then
        if [ "${_po_pass}" = true ]; then _po_positional+=("${_po_given[@]}"); continue; fi
        echo "$0: unknown option ${_po_name} (see --help)" >&2
        exit 1
    fi
    # booleans stay booleans
    if [ "${!_po_var}" = "true" ] || [ "${!_po_var}" = "false" ]; then
        if [ "${_po_value}" != "true" ] && [ "${_po_value}" != "false" ]; then
            echo "$0: option ${_po_name} takes true or false, got '${_po_value}'" >&2
            exit 1
        fi
    fi
    printf -v "${_po_var}" '%s' "${_po_value}"
done
set -- "${_po_positional[@]+"${_po_positional[@]}"}"
unset _po_name _po_value _po_var _po_positional _po_pass _po_given
