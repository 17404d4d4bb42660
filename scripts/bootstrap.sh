#!/usr/bin/env bash
# Creates .venv with Python 3.10 and installs the project into it.
# Rasa 3.6 supports Python 3.8-3.10 only, so a newer python3 won't do.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
    local candidates=()
    [ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
    command -v python3.10 >/dev/null 2>&1 && candidates+=("$(command -v python3.10)")
    if command -v pyenv >/dev/null 2>&1; then
        candidates+=("$(pyenv root)"/versions/3.10*/bin/python3.10)
    fi
    candidates+=("$HOME"/.pyenv/versions/3.10*/bin/python3.10 /usr/local/bin/python3.10 /usr/bin/python3.10)
    for py in "${candidates[@]}"; do
        if [ -x "$py" ] && "$py" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then
            echo "$py"
            return 0
        fi
    done
    return 1
}

stamp=.venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ]; then
    exit 0
fi

if [ ! -x .venv/bin/python ]; then
    if ! py=$(find_python); then
        cat >&2 <<'MSG'
Python 3.10 was not found (Rasa 3.6 runs on Python 3.8-3.10 only).
Install it, then run this command again. For example:
  any Linux or macOS, with pyenv:  pyenv install 3.10.13
  Ubuntu (deadsnakes PPA):         sudo apt-get install python3.10 python3.10-venv
  macOS, with Homebrew:            brew install python@3.10
Or point PYTHON at a python3.10 binary:  PYTHON=/path/to/python3.10 make run
MSG
        exit 1
    fi
    echo "Creating .venv with $py"
    "$py" -m venv .venv
fi

echo "Installing dependencies into .venv (Rasa is large: a few minutes the first time)"
.venv/bin/python -m pip install --quiet --upgrade "pip>=23,<25" wheel
.venv/bin/python -m pip install --quiet -e ".[dev]"
rm -f .venv/.installed-*
touch "$stamp"
