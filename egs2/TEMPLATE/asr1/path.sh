# Environment of the recipe: the project's virtual environment and library.
MAIN_ROOT="${MAIN_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}"
export MAIN_ROOT
if [ ! -x "${MAIN_ROOT}/.venv/bin/python" ]; then
    echo "path.sh: ${MAIN_ROOT}/.venv is missing: run 'bash local/install.sh' in ${MAIN_ROOT}" >&2
    exit 1
fi
export PATH="${MAIN_ROOT}/.venv/bin:${PATH}"
export PYTHONPATH="${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export PYTHONIOENCODING=UTF-8
export LC_ALL=C
python="${MAIN_ROOT}/.venv/bin/python"
