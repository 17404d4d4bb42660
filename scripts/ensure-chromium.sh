#!/usr/bin/env bash
# The widget tests drive Debian's Chromium through Playwright (Playwright's own
# browser download can't work here). Install it when missing and we may.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the widget tests ..."
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/tmp/apt-chromium.log 2>&1 || {
    apt-get update -q >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/tmp/apt-chromium.log 2>&1
  } || { echo "could not install chromium (see /tmp/apt-chromium.log)" >&2; exit 1; }
else
  echo "chromium is not installed: the browser tests will be skipped" \
       "(install Debian's 'chromium' package to run them)" >&2
fi
