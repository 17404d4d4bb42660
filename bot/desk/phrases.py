"""What the desk says to customers, from domain.yml's responses (where trainers
edit every customer-facing sentence), in the customer's language.

A response's variation for Chinese has the condition `language = zh`; the one
without a condition is English (the bot's own convention, see domain.yml).
"""

from __future__ import annotations

import string
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List

import yaml

from bot.settings import get_settings


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def _language_of(variation: Dict[str, Any]) -> str | None:
    for condition in variation.get("condition") or []:
        if condition.get("name") == "language":
            return str(condition.get("value"))
    return None


class Phrases:
    def __init__(self, responses: Dict[str, List[Dict[str, Any]]]) -> None:
        self.responses = responses

    @classmethod
    def from_domain(cls, path: Path) -> Phrases:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return cls(data.get("responses") or {})

    def has(self, name: str) -> bool:
        return name in self.responses

    def message(self, name: str, language: str, **values: Any) -> Dict[str, Any]:
        """The response as a bot message ({"text", "buttons"…}) for `language`."""
        variations = self.responses.get(name)
        if not variations:
            raise KeyError(f"no response {name!r} in domain.yml")
        chosen = next((v for v in variations if _language_of(v) == language), None)
        if chosen is None:
            chosen = next((v for v in variations if _language_of(v) is None), variations[0])
        fill = _Blank({k: "" if v is None else str(v) for k, v in values.items()})
        formatter = string.Formatter()
        message: Dict[str, Any] = {}
        if chosen.get("text"):
            message["text"] = formatter.vformat(str(chosen["text"]), (), fill)
        if chosen.get("buttons"):
            message["buttons"] = [
                {"title": formatter.vformat(str(b.get("title", "")), (), fill),
                 "payload": str(b.get("payload", ""))}
                for b in chosen["buttons"]
            ]
        for key in ("image", "custom", "attachment"):
            if chosen.get(key):
                message[key] = chosen[key]
        return message

    def text(self, name: str, language: str, **values: Any) -> str:
        return str(self.message(name, language, **values).get("text", ""))


@lru_cache(maxsize=1)
def phrases() -> Phrases:
    return Phrases.from_domain(get_settings().root / "domain.yml")
