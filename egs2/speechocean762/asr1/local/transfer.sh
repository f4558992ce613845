#!/usr/bin/env bash
# Does synthetic adaptation transfer to real speech? Decodes this recipe's real test sets with the
# embedded benchmark's foundation model and with its demo child adapter merged into it (make it
# first: ../../embedded/asr1/run.sh --target child --stage 10 --stop_stage 11), with the embedded
# recipe's decoding and LM, scores them and prints a WER table (exp/transfer/transfer.md).
#
#   local/transfer.sh [--sets "so762_test_child so762_test_adult"]
set -euo pipefail

embedded=../../embedded/asr1
models="embedded_foundation=${embedded}/foundation embedded_child_ssvd_o=${embedded}/exp/child_ssvd_o/merged"
sets="so762_test_child so762_test_adult"
out=exp/transfer
nj=2
help_message="Usage: local/transfer.sh [--models 'NAME=DIR ...'] [--sets '...'] [--out DIR]"
. ./path.sh
. "${MAIN_ROOT}/local/parse_options.sh"
mkdir -p "${out}"
margs=() dargs=()
for m in ${models}; do
    [ -f "${m#*=}/model.pth" ] || { echo "$0: ${m#*=}/model.pth not found (see the header of $0)" >&2; exit 1; }
    margs+=(--model_dir "${m#*=}" --output_dir "${out}/${m%%=*}")
done
for s in ${sets}; do dargs+=(--data_dir "dump/raw/${s}"); done
opts=(--decode_config "${embedded}/conf/decode.yaml" --lm_dir "${embedded}/foundation/lm")
for ((j = 1; j <= nj; j++)); do
    "${python}" "${MAIN_ROOT}/local/decode.py" "${margs[@]}" "${dargs[@]}" "${opts[@]}" --job "${j}" --nj "${nj}" \
        > "${out}/decode.${j}.log" 2>&1 &
done
wait
"${python}" "${MAIN_ROOT}/local/decode.py" --merge "${margs[@]}" "${dargs[@]}" "${opts[@]}" --nj "${nj}"
for m in ${models}; do
    for s in ${sets}; do
        "${python}" "${MAIN_ROOT}/local/score.py" --ref "dump/raw/${s}/text" --hyp "${out}/${m%%=*}/${s}/text" \
            --out "${out}/${m%%=*}/${s}/result.json" > /dev/null
    done
done
"${python}" - "${out}" "${sets}" ${models} <<'EOF' | tee "${out}/transfer.md"
import json, sys
out, sets, models = sys.argv[1], sys.argv[2].split(), [m.split("=")[0] for m in sys.argv[3:]]
print("| model | " + " | ".join(f"{s} WER / CER" for s in sets) + " |")
print("|---|" + "---:|" * len(sets))
for m in models:
    cells = []
    for s in sets:
        r = json.load(open(f"{out}/{m}/{s}/result.json"))
        cells.append(f"{r['wer']:.2f} / {r['cer']:.2f}")
    print(f"| {m} | " + " | ".join(cells) + " |")
EOF
