"""Audit requirements/lock.txt with pip-audit; fail on any finding not explained.

Known findings that Rasa 3.6's pins keep us from fixing are listed, each with
its reason, in requirements/audit-ignore.txt. pip-audit asks a vulnerability
service about every pinned version: PyPI's per-release JSON, then OSV. Where
neither answers (a machine that reaches the package index but not those
services), pip-audit on its own would say "No known vulnerabilities found" and
exit 0 with every package skipped; here that is "NOT AUDITED", said loudly,
with what the last real audit of this lock (requirements/audit-report.json)
found, and it fails when AUDIT_REQUIRED=1.

Exit status: 0 audited and nothing new (or not audited, loudly, unless
AUDIT_REQUIRED=1); 1 a finding not in the ignore list, or a bad ignore list;
3 not audited and AUDIT_REQUIRED=1.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
IGNORE = ROOT / "requirements" / "audit-ignore.txt"
# Where an audit that ran records what it found (tests point it elsewhere).
REPORT = Path(os.environ.get("AUDIT_REPORT", ROOT / "requirements" / "audit-report.json"))
EXIT_NEW_FINDINGS = 1
EXIT_NOT_AUDITED = 3


class IgnoreListError(ValueError):
    """requirements/audit-ignore.txt has an entry without an id or a reason."""


def check_ignore_list(text: str) -> dict[str, str]:
    """`ID  reason` per line ('#' starts a comment line); every id needs a reason."""
    ignores: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        vuln_id, _, reason = line.partition(" ")
        if not reason.strip():
            raise IgnoreListError(f"{IGNORE.name}:{number}: {vuln_id} has no reason")
        ignores[vuln_id] = reason.strip()
    return ignores


def lock_digest() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()


def run_pip_audit(service: str, ignores: dict[str, str], out: Path) -> tuple[int, str]:
    """pip-audit over the lock, strict: a package it can't look up is an error."""
    cmd = [
        sys.executable, "-m", "pip_audit", "--strict", "--progress-spinner", "off",
        "--disable-pip", "--require-hashes", "-r", str(LOCK),
        "--vulnerability-service", service, "--timeout", os.environ.get("AUDIT_TIMEOUT", "15"),
        "--aliases", "on", "--desc", "on", "--format", "json", "--output", str(out),
    ]
    if service == "osv" and os.environ.get("AUDIT_OSV_URL"):
        cmd += ["--osv-url", os.environ["AUDIT_OSV_URL"]]
    for vuln_id in ignores:
        cmd += ["--ignore-vuln", vuln_id]
    done = subprocess.run(cmd, capture_output=True, text=True)
    return done.returncode, (done.stderr or done.stdout).strip()


def findings(report: dict) -> list[tuple[str, str, str, list[str]]]:
    """(package, version, id with aliases, fix versions) for each reported finding."""
    rows = []
    for dep in report.get("dependencies", []):
        for vuln in dep.get("vulns", []):
            ids = " / ".join([vuln["id"], *vuln.get("aliases", [])])
            rows.append((dep["name"], dep.get("version", "?"), ids, vuln.get("fix_versions", [])))
    return rows


def do_write_report(service: str, report: dict, ignores: dict[str, str]) -> None:
    """Record this audit, so machines that can't reach a service can say what it found."""
    REPORT.write_text(json.dumps({
        "lock_sha256": lock_digest(),
        "audited_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "service": service,
        "ignored": sorted(ignores),
        "pip_audit": report,
    }, indent=1, sort_keys=True) + "\n")


def last_audit_note() -> str:
    if not REPORT.exists():
        return f"No audit report is committed ({REPORT.name}): this lock was never audited."
    last = json.loads(REPORT.read_text())
    when = f"{last.get('audited_at', '?')} with service {last.get('service', '?')}"
    if last.get("lock_sha256") != lock_digest():
        return (f"The committed report ({when}) is for another version of the lock: "
                "this lock was never audited.")
    ignored = len(last.get("ignored", []))
    new = len(findings(last.get("pip_audit", {})))
    return (f"The committed report audited this exact lock on {when}: "
            f"{new} finding(s) outside the ignore list, {ignored} ignored ids.")


def main() -> int:
    try:
        ignores = check_ignore_list(IGNORE.read_text())
    except IgnoreListError as error:
        print(f"pip-audit: {error}", file=sys.stderr)
        return EXIT_NEW_FINDINGS
    services = os.environ.get("AUDIT_SERVICES", "pypi,osv").split(",")
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for service in services:
            out = Path(tmp, f"{service}.json")
            code, message = run_pip_audit(service, ignores, out)
            report = json.loads(out.read_text()) if out.exists() and out.stat().st_size else None
            if report is None:
                # No report: the service didn't answer for some package (or at all).
                last_line = message.splitlines()[-1] if message else f"exit status {code}"
                failures.append(f"{service}: {last_line[:200]}")
                continue
            if code == 0:
                do_write_report(service, report, ignores)
                print(f"pip-audit ({service}): {len(report.get('dependencies', []))} locked "
                      f"packages, no known vulnerability outside {IGNORE.relative_to(ROOT)} "
                      f"({len(ignores)} ids ignored, each with its reason)")
                return 0
            do_write_report(service, report, ignores)
            print(f"pip-audit ({service}): NEW VULNERABILITIES in requirements/lock.txt "
                  f"(upgrade the package, or explain it in {IGNORE.relative_to(ROOT)}):",
                  file=sys.stderr)
            for name, version, ids, fixes in findings(report):
                print(f"  {name} {version}: {ids} (fixed in: {', '.join(fixes) or 'none yet'})",
                      file=sys.stderr)
            return EXIT_NEW_FINDINGS
    banner = "=" * 78
    print("\n".join([
        banner,
        "pip-audit: NOT AUDITED. No vulnerability service answered from this machine:",
        *(f"  {failure}" for failure in failures),
        last_audit_note(),
        "Run `make audit` where the internet is reachable and commit "
        "requirements/audit-report.json (see docs/dependency-audit.md).",
        banner,
    ]))
    required = os.environ.get("AUDIT_REQUIRED", "") not in ("", "0", "false")
    return EXIT_NOT_AUDITED if required else 0


if __name__ == "__main__":
    sys.exit(main())
