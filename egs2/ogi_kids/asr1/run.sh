#!/usr/bin/env bash
# OGI / CSLU Kids' speech (grades K-10), scripted prompts.
# Adapts OWSM v3.1 (espnet_model_zoo download, or a local model directory) with a PEFT method,
# decodes the target test sets and measures forgetting on LibriSpeech (stages: ./peft_asr.sh,
# the shared driver local/peft_asr.sh, through local/run_owsm.sh).
#
#   ./run.sh                                      # OWSM v3.1 base (0.1 B), SSVD-O at 1%, one GPU
#   ./run.sh --owsm espnet/owsm_v3.1_ebf          # the 1 B model
#   ./run.sh --stage 10 --peft_config conf/peft/lora_r32.yaml
#   cmd_backend=slurm ./run.sh                    # jobs through Slurm (cmd.sh)
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh  # MAIN_ROOT: the repository, whose local/ holds the shared scripts

exec "${MAIN_ROOT}/local/run_owsm.sh" --recipe ogi_kids \
    --target_train_set ogi_scripted_train --target_valid_set ogi_scripted_dev --target_test_sets "ogi_scripted_test" \
    --peft_config conf/peft/ssvd_o.yaml "$@"
