"""bench/dialogue.py: a real (short) run against our model and action server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import base_env

ROOT = Path(__file__).resolve().parents[1]


def test_dialogue_bench_counts_turns_by_kind(model: Path, tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "dialogue.py"), "--no-stock",
         "--conversations", "8", "--seed", "3", "--model", str(model), "--out", str(tmp_path)],
        cwd=ROOT, env=base_env(), check=True, timeout=600, capture_output=True,
    )
    figures = json.loads((tmp_path / "dialogue.json").read_text())
    ours = figures["results"]["ours"]
    assert figures["seed"] == 3 and figures["conversations"] == 8
    assert ours["model"] == model.name
    assert ours["turns"] >= 8  # every conversation has at least one turn
    for kind in ("silent", "language", "template", "error_text", "empty_message", "asks"):
        assert 0 <= ours[kind]["turns"] <= ours["turns"]
    # The invariant the fuzzer enforces holds here too.
    assert ours["silent"]["turns"] == 0 and ours["language"]["turns"] == 0
    report = (tmp_path / "dialogue.md").read_text()
    assert "| silent | 0 (0.0%) |" in report
    assert f"| turns played | {ours['turns']} |" in report
