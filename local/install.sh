#!/usr/bin/env bash
# Install everything espnet-peft needs on a fresh Debian machine (Python 3.11, root or sudo):
# the speech synthesis packages of the embedded benchmark and a virtual environment at .venv/
# with the torch / torchaudio / espnet combination that works (see README, "Installation").
# Idempotent: a second run only checks.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

# with_progress WHAT CMD...: run CMD, saying every 20 s that WHAT is still going (pip is silent for minutes)
with_progress() {
    local what="$1" start="${SECONDS}" next=20 pid
    shift
    echo "install.sh: ${what}" >&2
    "$@" &
    pid=$!
    while kill -0 "${pid}" 2>/dev/null; do
        sleep 1
        if [ $((SECONDS - start)) -ge "${next}" ]; then
            echo "install.sh: ${what}: still working ($((SECONDS - start)) s)" >&2
            next=$((next + 20))
        fi
    done
    wait "${pid}"
}

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
    with_progress "apt-get update" ${sudo} apt-get update -qq
    with_progress "apt-get install (${#missing[@]} packages)" env DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install \
        -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
with_progress "pip install torch 2.11.0 and torchaudio (about 5 GB, the longest step)" \
    "${pip[@]}" install -q "torch==2.11.0" "torchaudio==2.11.0"
with_progress "pip install espnet-peft and ESPnet 202511 (setup.cfg)" "${pip[@]}" install -q -e "${root}"
# g2p_en (imported with espnet2's tokenizers) looks for two NLTK resources at every import and, when they
# are missing, tries to download them and prints 8 lines of failure without a network. They are fetched
# once here when online; offline, empty placeholders (valid empty zips, in the venv's nltk_data) stop the
# attempts. Only phoneme tokenisation (g2p_en) uses them: delete the placeholders and run nltk.download.
"${venv}/bin/python" - "${venv}/nltk_data" <<'EOF'
import contextlib, io, os, sys, zipfile
import nltk
root = sys.argv[1]
for kind, name in (("taggers", "averaged_perceptron_tagger_eng"), ("corpora", "cmudict")):
    try:
        nltk.data.find(f"{kind}/{name}.zip")
        continue
    except LookupError:
        pass
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        ok = nltk.download(name, download_dir=root, quiet=True, raise_on_error=False, print_error_to=io.StringIO())
    if not ok:
        os.makedirs(os.path.join(root, kind), exist_ok=True)
        with zipfile.ZipFile(os.path.join(root, kind, f"{name}.zip"), "w") as z:
            z.writestr(f"{name}/PLACEHOLDER", "written offline by espnet-peft's local/install.sh (no network); "
                       "delete this zip and run nltk.download to fetch the real resource\n")
        print(f"install.sh: no network for NLTK's {name}: placeholder {root}/{kind}/{name}.zip")
EOF
"${venv}/bin/python" -W ignore -c "import espnet2.tasks.asr, espnet2.tasks.s2t, espnet2.bin.asr_inference, espnet_peft"
echo "${want}" > "${stamp}"
echo "install.sh: ready (${venv})"
