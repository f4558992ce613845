#!/usr/bin/env bash
# Install everything espnet-peft needs on a fresh Debian machine (Python 3.11, root or sudo):
# the speech synthesis packages of the embedded benchmark and a virtual environment at .venv/
# with the torch / torchaudio / espnet combination that works (see README, "Installation").
# Idempotent: a second run only checks.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

apt_packages=(flite espeak-ng sox wordnet-base festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts)
apt_packages+=(${ESPNET_PEFT_EXTRA_APT:-})
missing=()
for p in "${apt_packages[@]}"; do
    dpkg -s "${p}" >/dev/null 2>&1 || missing+=("${p}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install.sh: apt-get install ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    ${sudo} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python="${PYTHON:-python3}"
venv="${root}/.venv"
stamp="${venv}/.espnet_peft_installed"
want="$(cat setup.cfg setup.py local/install.sh | sha256sum | cut -d' ' -f1)"
if [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${want}" ]; then
    exit 0
fi
[ -x "${venv}/bin/python" ] || "${python}" -m venv "${venv}"
pip=("${venv}/bin/python" -m pip --disable-pip-version-check)
# pip >= 26 rejects a dependency of espnet (ci_sdr); keep the venv's own bundled pip 23.x.
# torch and torchaudio must be a matching pair: 2.11.0 is the newest torchaudio release.
"${pip[@]}" install -q "torch==2.11.0" "torchaudio==2.11.0"
"${pip[@]}" install -q -e "${root}"
"${venv}/bin/python" -W ignore -c "import espnet2.tasks.asr, espnet2.tasks.s2t, espnet2.bin.asr_inference, espnet_peft"
echo "${want}" > "${stamp}"
echo "install.sh: ready (${venv})"
