"""Rasa test stories (tests/test_stories.yml): every flow, in both languages.

`rasa test core` replays each story's user messages through the trained model
(NLU included: the stories carry the messages' text) and checks every predicted
intent, entity and action.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
STORIES = ROOT / "tests" / "test_stories.yml"


def test_stories_cover_both_languages() -> None:
    names = [s["story"] for s in yaml.safe_load(STORIES.read_text())["stories"]]
    assert sum("(zh)" in n for n in names) >= 20
    assert sum("(en)" in n for n in names) >= 20


@pytest.mark.slow
def test_every_story_passes(model: Path, tmp_path: Path) -> None:
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [
            sys.executable, "-m", "rasa", "test", "core",
            "--model", str(model),
            "--stories", str(STORIES),
            "--out", str(tmp_path),
            "--no-plot",
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    failed = (tmp_path / "failed_test_stories.yml").read_text(encoding="utf-8")
    assert "None of the test stories failed" in failed, failed
