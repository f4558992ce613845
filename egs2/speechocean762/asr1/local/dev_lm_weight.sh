#!/usr/bin/env bash
# The LM weight of the recipe's decoding, chosen on dev sets only: decodes the dev sets with a model
# at several LM weights (the rest of conf/decode.yaml kept), scores them and prints a WER table
# (and exp/<out>/lm_weights.md). No test set is read.
#
#   local/dev_lm_weight.sh --model_dir exp/foundation/package --weights "0.0 0.3 0.6" \
#       --sets "so762_dev_adult so762_dev_child source_dev"
set -euo pipefail

model_dir=foundation
lm_dir=""            # default: <model_dir>/lm
weights="0.0 0.3 0.6"
sets="so762_dev_adult so762_dev_child source_dev"
decode_config=conf/decode.yaml
out=exp/dev_lm_weight
nj=2
help_message="Usage: local/dev_lm_weight.sh [--model_dir DIR] [--weights '0.0 0.3 0.6'] [--sets '...'] [--out DIR]"
. ./path.sh
. "${MAIN_ROOT}/local/parse_options.sh"
lm_dir="${lm_dir:-${model_dir}/lm}"
case " ${sets} " in *_test*) echo "$0: dev sets only (got '${sets}')" >&2; exit 1 ;; esac
mkdir -p "${out}"
dargs=()
for s in ${sets}; do dargs+=(--data_dir "dump/raw/${s}"); done
for w in ${weights}; do
    conf="${out}/decode_lm${w}.yaml"
    "${python}" -c "import sys, yaml; c = yaml.safe_load(open(sys.argv[1])); c['lm_weight'] = float(sys.argv[2]); \
yaml.safe_dump(c, open(sys.argv[3], 'w'), sort_keys=False)" "${decode_config}" "${w}" "${conf}"
    lm=(); awk -v w="${w}" 'BEGIN { exit !(w + 0 > 0) }' && lm=(--lm_dir "${lm_dir}")
    d="${out}/lm${w}"
    for ((j = 1; j <= nj; j++)); do
        "${python}" "${MAIN_ROOT}/local/decode.py" --model_dir "${model_dir}" --output_dir "${d}" "${dargs[@]}" \
            "${lm[@]+"${lm[@]}"}" --decode_config "${conf}" --job "${j}" --nj "${nj}" > "${out}/decode_lm${w}.${j}.log" 2>&1 &
    done
    wait
    "${python}" "${MAIN_ROOT}/local/decode.py" --merge --model_dir "${model_dir}" --output_dir "${d}" "${dargs[@]}" \
        "${lm[@]+"${lm[@]}"}" --decode_config "${conf}" --nj "${nj}"
    for s in ${sets}; do
        ref="dump/raw/${s}/text"
        "${python}" "${MAIN_ROOT}/local/score.py" --ref "${ref}" --hyp "${d}/${s}/text" --out "${d}/${s}/result.json" >/dev/null
    done
done
"${python}" - "${out}" "${sets}" ${weights} <<'EOF' | tee "${out}/lm_weights.md"
import json, sys
out, sets, weights = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
print("| LM weight | " + " | ".join(f"{s} WER" for s in sets) + " |")
print("|---:|" + "---:|" * len(sets))
for w in weights:
    row = [json.load(open(f"{out}/lm{w}/{s}/result.json"))["wer"] for s in sets]
    print(f"| {w} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
EOF
