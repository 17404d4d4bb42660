#!/usr/bin/env bash
# Creates .venv with Python 3.10 and installs the project into it, exactly as
# locked: every package and version in requirements/lock.txt, each file checked
# against its sha256 there (pip --require-hashes), then the project itself
# (editable, no dependencies of its own). Regenerate the lock as README.md says.
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

# A new stamp (so a new install) whenever the project or either lock changes.
stamp=.venv/.installed-$(cat pyproject.toml requirements/pip.txt requirements/lock.txt \
    | sha256sum | cut -c1-16)
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

echo "Installing requirements/lock.txt into .venv (Rasa is large: a few minutes the first time)"
# pip first (its own locked version), then everything else; --require-hashes
# refuses any file whose hash is not in the lock and any package not pinned there.
.venv/bin/python -m pip install --quiet --require-hashes --no-deps -r requirements/pip.txt
.venv/bin/python -m pip install --quiet --require-hashes -r requirements/lock.txt
# The project: its dependencies are all in the lock, and it builds with the
# locked setuptools and wheel rather than ones fetched for an isolated build.
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
rm -f .venv/.installed-*
touch "$stamp"
