"""The training data and domain: complete, bilingual, and valid for Rasa."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
FIXED_INTENTS = {
    "greet",
    "goodbye",
    "thank",
    "affirm",
    "deny",
    "bot_challenge",
    "human_handoff",
    "complain",
    "leave_message",
    "check_balance",
    "check_points",
    "account_info",
    "order_status",
    "cancel_order",
    "request_refund",
    "refund_status",
    "reset_password",
    "update_address",
    "out_of_scope",
}
FIXED_FAQ = {
    "business_hours",
    "shipping_time",
    "shipping_fee",
    "return_policy",
    "payment_methods",
    "invoice",
    "membership_levels",
    "delivery_area",
    "warranty",
}
_ANNOTATION = re.compile(r"\[([^\]]+)\]\((\w+)\)")


def examples(language: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in sorted((ROOT / "data" / "nlu" / language).glob("*.yml")):
        for item in yaml.safe_load(path.read_text(encoding="utf-8")).get("nlu", []):
            if "intent" in item:
                lines = [ln[2:] for ln in item["examples"].splitlines() if ln.startswith("- ")]
                out.setdefault(item["intent"], []).extend(lines)
    return out


def domain() -> dict:
    return yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_intent_has_40_examples_in_each_language(language: str) -> None:
    data = examples(language)
    faq_keys = {name.split("/", 1)[1] for name in data if name.startswith("faq/")}
    assert faq_keys >= FIXED_FAQ
    assert set(data) >= FIXED_INTENTS
    short = {intent: len(lines) for intent, lines in data.items() if len(lines) < 40}
    assert not short, f"fewer than 40 {language} examples: {short}"


@pytest.mark.parametrize("language", ["zh", "en"])
def test_no_example_is_repeated(language: str) -> None:
    counts = Counter(
        line.strip().lower() for lines in examples(language).values() for line in lines
    )
    assert [text for text, n in counts.items() if n > 1] == []


def test_entities_order_id_phone_amount_are_annotated_in_both_languages() -> None:
    for language in ("zh", "en"):
        found = Counter(
            entity
            for lines in examples(language).values()
            for line in lines
            for _, entity in _ANNOTATION.findall(line)
        )
        for entity in ("order_id", "phone", "amount"):
            assert found[entity] >= 10, (language, entity, found)


def test_regexes_find_every_annotated_entity() -> None:
    regexes = {
        item["regex"]: [
            re.compile(p, re.IGNORECASE)
            for p in item["examples"]
            and [ln[2:] for ln in item["examples"].splitlines() if ln.startswith("- ")]
        ]
        for item in yaml.safe_load((ROOT / "data/nlu/regex.yml").read_text())["nlu"]
        if "regex" in item
    }
    missed = []
    for language in ("zh", "en"):
        for lines in examples(language).values():
            for line in lines:
                text = _ANNOTATION.sub(r"\1", line)
                for value, entity in _ANNOTATION.findall(line):
                    if not any(
                        p.search(text) and value in [m.group() for m in p.finditer(text)]
                        for p in regexes[entity]
                    ):
                        missed.append((entity, line))
    assert missed == []


def test_every_response_speaks_chinese_and_english() -> None:
    for name, variations in domain()["responses"].items():
        zh = [
            v
            for v in variations
            if v.get("condition") == [{"type": "slot", "name": "language", "value": "zh"}]
        ]
        en = [v for v in variations if not v.get("condition")]
        assert zh and en, name
        assert re.search(r"[\u4e00-\u9fff]", zh[0]["text"]), name
        assert not re.search(r"[\u4e00-\u9fff]", en[0]["text"]), name
        # Buttons, where given, are given in both languages.
        assert bool(zh[0].get("buttons")) == bool(en[0].get("buttons")), name


def test_every_faq_key_has_an_answer() -> None:
    answers = {
        name.split("/", 1)[1] for name in domain()["responses"] if name.startswith("utter_faq/")
    }
    keys = {name.split("/", 1)[1] for name in examples("zh") if name.startswith("faq/")}
    assert keys == answers


@pytest.mark.slow
def test_bot_validate_passes_with_no_warnings() -> None:
    # `bot validate` is `rasa data validate --fail-on-warnings` that knows which
    # responses our actions and the dialogue policy send (bot/validation.py).
    result = subprocess.run(
        [str(Path(sys.executable).with_name("bot")), "validate"],
        cwd=ROOT,
        env={**os.environ, "RASA_TELEMETRY_ENABLED": "false"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "warning:" not in output
    assert "utter_task_let_go" in result.stdout  # sent by the policy, and said so


@pytest.mark.slow
def test_bot_validate_fails_on_a_response_nothing_uses(tmp_path: Path) -> None:
    from bot.validation import validate

    for name in ("config.yml", "domain.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "data", tmp_path / "data")
    shutil.copytree(ROOT / "actions", tmp_path / "actions")
    with (tmp_path / "domain.yml").open("a", encoding="utf-8") as domain:
        domain.write("  utter_nobody_sends_this:\n  - text: hello\n")
    report = validate(tmp_path)
    assert not report.ok
    assert any("utter_nobody_sends_this" in problem for problem in report.problems)
    assert "utter_core_fallback" in report.accepted
