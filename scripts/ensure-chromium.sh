#!/usr/bin/env bash
# The widget tests drive Debian's Chromium through Playwright (Playwright's own
# browser download can't work here). They measure the chat on a phone's screen and
# take screenshots, so they need the fonts a customer's phone has: without CJK fonts
# Chinese is drawn as boxes of other widths. Install what is missing when we may.
# In CI (CI set, as `make test` there runs) a browser we can't have is an error, not
# a reason to skip: a skipped test is not a passed one.
set -euo pipefail

in_ci() {
  case "${CI:-}" in "" | 0 | false | FALSE | False) return 1 ;; *) return 0 ;; esac
}

browser=()
fonts=()
command -v chromium >/dev/null 2>&1 || browser=(chromium)
if ! fc-list :lang=zh 2>/dev/null | grep -q .; then fonts+=(fonts-noto-cjk); fi
if ! fc-list 2>/dev/null | grep -qi "color emoji"; then fonts+=(fonts-noto-color-emoji); fi
missing=("${browser[@]}" "${fonts[@]}")
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} for the widget tests ..."
  install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/tmp/apt-chromium.log 2>&1; }
  install || { apt-get update -q >/dev/null 2>&1 && install; } || {
    echo "could not install ${missing[*]} (see /tmp/apt-chromium.log)" >&2
    exit 1
  }
  exit 0
fi

if [ ${#browser[@]} -gt 0 ]; then
  if in_ci; then
    echo "chromium is not installed and can't be installed here (not root, or no apt-get):" \
         "CI must run the browser tests; install Debian's 'chromium' package" >&2
    exit 1
  fi
  echo "chromium is not installed: the browser tests will be skipped" \
       "(install Debian's 'chromium' package to run them)" >&2
fi
if [ ${#fonts[@]} -gt 0 ]; then
  echo "without ${fonts[*]} the widget tests draw Chinese and emoji as boxes" >&2
fi
