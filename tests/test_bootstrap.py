"""`make run` / `make test` on a machine without Python 3.10 say what to install."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_no_python_310_stops_with_what_to_install(tmp_path: Path) -> None:
    if any(Path(d, "python3.10").exists() for d in ("/usr/bin", "/bin")):
        pytest.skip("this machine has a system python3.10")
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "bootstrap.sh", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    # A PATH with no python3.10 and no pyenv, and a HOME with no ~/.pyenv.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        ["bash", "scripts/bootstrap.sh"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "Python 3.10 was not found" in result.stderr
    assert "pyenv install 3.10" in result.stderr
    assert not (tmp_path / ".venv").exists()
