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
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
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


# --- the lock (requirements/lock.txt) and the audit over it -------------------

LOCK = ROOT / "requirements" / "lock.txt"


def locked_pins(text: str) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) for each `name==version \\ --hash=...` entry."""
    from packaging.utils import canonicalize_name

    pins: dict[str, tuple[str, int]] = {}
    name = ""
    for line in text.splitlines():
        stripped = line.strip()
        if line and not line[0].isspace() and not line.startswith("#"):
            requirement = stripped.rstrip("\\").strip()
            assert "==" in requirement and ";" not in requirement, requirement
            raw_name, version = requirement.split("==", 1)
            name = canonicalize_name(raw_name.split("[", 1)[0])
            pins[name] = (version, 0)
        elif stripped.startswith("--hash=sha256:") and name:
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
    return pins


def test_lock_pins_every_requirement_of_the_project_with_hashes() -> None:
    import tomli
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    pins = locked_pins(LOCK.read_text())
    assert len(pins) > 150, "the lock holds Rasa's whole tree"
    unhashed = [name for name, (_, hashes) in pins.items() if hashes == 0]
    assert not unhashed, f"pinned without a hash: {unhashed}"
    project = tomli.loads((ROOT / "pyproject.toml").read_text())
    wanted = [
        *project["project"]["dependencies"],
        *project["project"]["optional-dependencies"]["dev"],
        *project["build-system"]["requires"],  # installed with --no-build-isolation
    ]
    for line in wanted:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in the lock: run `make lock`"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"the lock has {name}=={version}, pyproject.toml wants {requirement}: run `make lock`"
        )
    # Older python-socketio unpickles what arrives on its Redis pub/sub channel.
    assert Version(pins["python-socketio"][0]) >= Version("5.14")
    assert "hypothesis" in pins
    assert pins["rasa"][0] == "3.6.21"


def fake_python(venv_bin: Path, log: Path) -> None:
    """A .venv/bin/python that records how bootstrap.sh calls it instead of installing."""
    venv_bin.mkdir(parents=True)
    python = venv_bin / "python"
    python.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    python.chmod(0o755)


def test_install_is_from_the_lock_with_hashes_and_repeats_when_the_lock_changes(
    tmp_path: Path,
) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "bootstrap.sh", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    log = tmp_path / "pip.log"
    fake_python(tmp_path / ".venv" / "bin", log)

    def bootstrap() -> list[str]:
        log.unlink(missing_ok=True)
        done = subprocess.run(["bash", "scripts/bootstrap.sh"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return log.read_text().splitlines() if log.exists() else []

    calls = bootstrap()
    assert calls == [
        "-m pip install --quiet --require-hashes --no-deps -r requirements/pip.txt",
        "-m pip install --quiet --require-hashes -r requirements/lock.txt",
        "-m pip install --quiet --no-deps --no-build-isolation -e .",
    ]
    stamps = list((tmp_path / ".venv").glob(".installed-*"))
    assert len(stamps) == 1
    assert bootstrap() == [], "nothing changed: no second install"

    lock = tmp_path / "requirements" / "lock.txt"
    lock.write_text(lock.read_text().replace("==", "==0+", 1))  # any change to the lock
    assert len(bootstrap()) == 3, "a changed lock installs again"
    new_stamps = list((tmp_path / ".venv").glob(".installed-*"))
    assert len(new_stamps) == 1 and new_stamps != stamps


class FakeOSV:
    """OSV's query API on 127.0.0.1 (the edge: the real one is on the internet)."""

    def __init__(self, vulns: dict[str, list[dict]]) -> None:
        import http.server
        import json
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                found = vulns.get(query["package"]["name"], [])
                body = json.dumps({"vulns": found} if found else {}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/query"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def osv_vuln(vuln_id: str, package: str, fixed: str, aliases: list[str]) -> dict:
    return {
        "id": vuln_id, "aliases": aliases, "summary": f"test advisory {vuln_id}",
        "affected": [{
            "package": {"name": package, "ecosystem": "PyPI"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
        }],
    }


def audit(tmp_path: Path, osv_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    environ = {
        **os.environ, "AUDIT_SERVICES": "osv", "AUDIT_OSV_URL": osv_url,
        "AUDIT_REPORT": str(tmp_path / "audit-report.json"), "AUDIT_TIMEOUT": "5", **env,
    }
    return subprocess.run(["bash", str(ROOT / "scripts" / "audit.sh")], env=environ,
                          capture_output=True, text=True, timeout=600)


def test_audit_fails_on_a_finding_not_explained_and_passes_an_explained_one(
    tmp_path: Path,
) -> None:
    explained = osv_vuln("GHSA-test-0001", "aiohttp", "3.10.2", ["CVE-2024-42367"])
    new = osv_vuln("GHSA-test-0002", "sanic", "99.0", ["CVE-2099-0001"])
    osv = FakeOSV({"aiohttp": [explained]})
    try:
        done = audit(tmp_path, osv.url)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "no known vulnerability outside requirements/audit-ignore.txt" in done.stdout
    finally:
        osv.close()
    osv = FakeOSV({"aiohttp": [explained], "sanic": [new]})
    try:
        done = audit(tmp_path, osv.url)
    finally:
        osv.close()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NEW VULNERABILITIES" in done.stderr
    line = next(line for line in done.stderr.splitlines() if "sanic" in line)
    assert line.strip().startswith("sanic 21.12.2: ")
    assert "GHSA-test-0002" in line and "CVE-2099-0001" in line and "fixed in: 99.0" in line
    assert "aiohttp" not in done.stderr, "an explained finding is not reported"


def test_audit_without_a_vulnerability_service_says_so_and_is_not_a_pass(
    tmp_path: Path,
) -> None:
    import socket

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1/query"
    done = audit(tmp_path, url)
    # pip-audit alone would print "No known vulnerabilities found" here.
    assert "No known vulnerabilities found" not in done.stdout
    assert "pip-audit: NOT AUDITED" in done.stdout
    assert "this lock was never audited" in done.stdout
    assert done.returncode == 0  # CI here reaches no service: loud, not failing
    assert audit(tmp_path, url, AUDIT_REQUIRED="1").returncode == 3
