#!/usr/bin/env bash
# Audits requirements/lock.txt for known vulnerabilities with pip-audit (see
# scripts/audit.py and docs/dependency-audit.md). pip-audit lives in its own
# venv, .venv-audit, installed from requirements/audit.txt with hashes: it needs
# packaging>=23 and Rasa 3.6 pins packaging<21, so it can't share .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=.venv-audit/.installed-$(sha256sum < requirements/audit.txt | cut -c1-16)
if [ ! -f "$stamp" ]; then
    # A venv cut short (an install killed during ensurepip) has a python but
    # no pip: made again rather than failing every later run.
    if [ -x .venv-audit/bin/python ] && ! .venv-audit/bin/python -m pip --version >/dev/null 2>&1; then
        rm -rf .venv-audit
    fi
    if [ ! -x .venv-audit/bin/python ]; then
        # Any Python 3.10 will do; bootstrap.sh has found or made one in .venv.
        py=${PYTHON:-}
        if [ -z "$py" ]; then
            if [ -x .venv/bin/python ]; then
                py=$(.venv/bin/python -c 'import sys; print(sys._base_executable)')
            else
                py=$(command -v python3.10 || command -v python3)
            fi
        fi
        "$py" -m venv .venv-audit
    fi
    echo "Installing pip-audit into .venv-audit (requirements/audit.txt)"
    .venv-audit/bin/python -m pip install --quiet --require-hashes -r requirements/audit.txt
    rm -f .venv-audit/.installed-*
    touch "$stamp"
fi

exec .venv-audit/bin/python scripts/audit.py "$@"
