#!/usr/bin/env bash
# The main job timed alone on a fresh clone (the README's first command): the repository is cloned
# into a scratch directory, this checkout's venv linked (local/install.sh is then a no-op), and every
# output line time-stamped; prints the wall time, the longest silence, any nltk line, and the machine's
# speed (CPU model, cores, torch's float32 1024x1024 GEMM rate, measured after the job) so that the
# time can be compared with another machine's.
#
#     bash bench/time_main_job.sh [SCRATCH_DIR]      # run it with nothing else on the machine
set -u
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-/tmp/espnet_peft_fresh}"
log="${dir}.log"
rm -rf "${dir}" && git clone -q "${root}" "${dir}" && cd "${dir}" || exit 1
ln -s "${root}/.venv" .venv
start=$(date +%s)
(bash local/install.sh && egs2/embedded/asr1/run.sh --target child) 2>&1 |
    while IFS= read -r line; do printf '%s %s\n' "$(date +%s)" "${line}"; done > "${log}"
rc=${PIPESTATUS[0]}
end=$(date +%s)
echo "main job: rc=${rc}, wall ${end}-${start} = $((end - start)) s; log ${log}"
awk '$1 ~ /^[0-9]+$/ { if (p && $1 - p > m) { m = $1 - p; at = $0 } p = $1 }
     END { printf "longest silence: %d s, before: %s\n", m, substr(at, 12, 140) }' "${log}"
echo "nltk lines: $(grep -ci nltk "${log}")"
(cd "${root}" && .venv/bin/python -c "from espnet_peft.bench import machine_line, machine_speed
print('machine:', machine_line(machine_speed()))")
exit "${rc}"
