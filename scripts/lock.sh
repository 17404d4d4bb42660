#!/usr/bin/env bash
# Re-resolves the locks after pyproject.toml or requirements/*.in changed:
#   requirements/lock.txt   the project (runtime and dev extras), setuptools and wheel
#   requirements/pip.txt    the pip that installs it
#   requirements/audit.txt  pip-audit, in its own venv (scripts/audit.sh)
# for Python 3.10 on Linux x86_64, every file's sha256 of each pinned version.
# Versions already in a lock are kept while they still fit; to move one:
#   scripts/lock.sh --upgrade-package NAME   (or --upgrade for all)
# uv resolves against the package index only (no pip.conf, no local wheels),
# so the hashes are the index's own.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
tools=${LOCK_TOOLS_DIR:-${TMPDIR:-/tmp}/jade-lock-tools-$UV_VERSION}
if [ ! -x "$tools/bin/uv" ]; then
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet "uv==$UV_VERSION"
fi

export UV_NO_CONFIG=1
compile=("$tools/bin/uv" pip compile --quiet --generate-hashes
         --python-version 3.10 --python-platform x86_64-manylinux_2_28 "$@")
"${compile[@]}" --extra dev -o requirements/lock.txt pyproject.toml
"${compile[@]}" -o requirements/pip.txt requirements/pip.in
"${compile[@]}" -o requirements/audit.txt requirements/audit.in
echo "requirements/lock.txt: $(grep -c '^[A-Za-z0-9]' requirements/lock.txt) packages pinned;" \
     "run 'make install' (a changed lock reinstalls) and 'make audit'"
