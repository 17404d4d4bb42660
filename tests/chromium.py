"""Debian's Chromium for the browser tests (the widget's, the desk console's),
driven by Playwright: Playwright's own browser download can't work here."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest

from tests.conftest import ROOT

# Without these, Chromium keeps dialling Google on this closed network.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _found() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium", path="/usr/bin")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def executable(install: bool = False) -> str:
    """Chromium's path. Missing: with `install`, scripts/ensure-chromium.sh installs
    it (if we may) and a browser still missing fails the test; without, the test is
    skipped, except in CI (`make test` there runs with CI=true): a skip is not a pass."""
    found = _found()
    if found is None and install:
        subprocess.run([str(ROOT / "scripts" / "ensure-chromium.sh")],
                       env={**os.environ, "CI": "true"}, check=False)
        found = _found()
    if found is not None:
        return found
    if install:
        pytest.fail("Debian's chromium is not installed and could not be "
                    "(scripts/ensure-chromium.sh)", pytrace=False)
    reason = "Debian's chromium is not installed (scripts/ensure-chromium.sh installs it)"
    if _in_ci():
        pytest.fail(f"{reason}, and CI must run the browser tests", pytrace=False)
    pytest.skip(reason)


def launch_options(install: bool = False) -> dict[str, Any]:
    """For Playwright's `chromium.launch` (sync or async API)."""
    return {"executable_path": executable(install), "args": ARGS, "headless": True}
