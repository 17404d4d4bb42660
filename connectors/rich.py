"""Rich bot messages for channels that show only text.

Besides Rasa's keys (text, buttons, quick_replies, image, attachment), the
service sends `custom` payloads with a `type` that every channel understands:

    {"type": "agent_joined", "agent": "小李"}        a person took over
    {"type": "agent_left", "agent": "小李"}          the person handed back
    {"type": "queue_position", "position": 3, "wait_minutes": 2}
    {"type": "satisfaction"}                         rate the service (1–5)

Widgets render them natively; text channels get a sentence (below). A
satisfaction survey on a text channel is its question (the message's text, or
a default one) and the five scores as numbered options, numbered by score
("5" is five points, as the question says), shown once.

Buttons and quick replies become numbered options ("1. 查订单") and the
customer may answer with the number: the dialogue reads a bare number as the
payload of that option in the list the bot sent last (bot.nlu.payloads, from
the tracker, the same for every channel). Images and links become their URL on
a line of its own.
"""

from __future__ import annotations

import re
from typing import Any

from connectors.text import detect_language

_NUMBER = re.compile(r"^\s*([0-9０-９]{1,2})\s*[.。、)）]?\s*$")
_HINT = {"zh": "回复数字即可选择。", "en": "Reply with a number to choose."}


def language_of(text: str) -> str:
    """The text's language as the bot judges a customer's (dominant script); zh if none."""
    return detect_language(text or "") or "zh"


def is_survey(message: dict[str, Any]) -> bool:
    custom = message.get("custom")
    return isinstance(custom, dict) and custom.get("type") == "satisfaction"


def options_of(message: dict[str, Any]) -> list[dict[str, str]]:
    """Buttons or quick replies (or a satisfaction survey's), as [{"title", "payload"}]."""
    found = message.get("buttons") or message.get("quick_replies") or []
    if not found and is_survey(message):
        custom = message["custom"]
        # Worst first, so that option N is N points: a customer who types "5" to a
        # 1–5 question means five, whichever list they were shown.
        found = satisfaction_buttons("en" if custom.get("language") == "en" else "zh")[::-1]
    return [
        {"title": str(b.get("title", "")), "payload": str(b.get("payload") or b.get("title", ""))}
        for b in found
        if isinstance(b, dict) and (b.get("title") or b.get("payload"))
    ]


def as_text(message: dict[str, Any]) -> str:
    """One plain-text rendering of a Rasa bot message."""
    parts: list[str] = []
    text = (message.get("text") or "").strip()
    if text:
        parts.append(text)
    elif is_survey(message):
        # The survey's own question, before its options (which are its scores).
        parts.append(survey_question(message["custom"]))
    options = options_of(message)
    if options:
        parts.append("\n".join(f"{i}. {o['title']}" for i, o in enumerate(options, 1)))
        parts.append(_HINT[language_of(text or options[0]["title"])])
    for key in ("image", "attachment"):
        value = message.get(key)
        if isinstance(value, str) and value:
            parts.append(value)
        elif isinstance(value, dict) and value.get("payload", {}).get("src"):
            parts.append(str(value["payload"]["src"]))
    custom = message.get("custom")
    if isinstance(custom, dict) and not is_survey(message):
        sentence = custom_text(custom)
        if sentence:
            parts.append(sentence)
    return "\n\n".join(parts)


SATISFACTION_OPTIONS = {
    "zh": ["非常满意", "满意", "一般", "不满意", "非常不满意"],
    "en": ["Very satisfied", "Satisfied", "Neutral", "Dissatisfied", "Very dissatisfied"],
}


def satisfaction_buttons(language: str) -> list[dict[str, str]]:
    """Five answers, best first; the payload carries the score 5…1."""
    return [
        {"title": title, "payload": f'/rate{{"score": {5 - i}}}'}
        for i, title in enumerate(SATISFACTION_OPTIONS[language])
    ]


def custom_text(custom: dict[str, Any]) -> str:
    """A sentence for a typed custom payload (or its own "text")."""
    lang = "en" if custom.get("language") == "en" else "zh"
    kind = custom.get("type")
    agent = custom.get("agent") or ("客服" if lang == "zh" else "an agent")
    if kind == "agent_joined":
        return f"人工客服 {agent} 为您服务。" if lang == "zh" else f"{agent} has joined the chat."
    if kind == "agent_left":
        return f"{agent} 已离开对话。" if lang == "zh" else f"{agent} has left the chat."
    if kind == "queue_position":
        position, wait = custom.get("position"), custom.get("wait_minutes")
        if lang == "zh":
            text = f"您前面还有 {position} 位。"
            return text + (f"预计等待约 {wait} 分钟。" if wait is not None else "")
        text = f"You are number {position} in the queue."
        return text + (f" About {wait} min to wait." if wait is not None else "")
    if kind == "satisfaction":
        return as_text({"custom": custom})
    return str(custom.get("text") or "")


def survey_question(custom: dict[str, Any]) -> str:
    """A satisfaction survey's question when no text came with it."""
    if custom.get("text"):
        return str(custom["text"])
    if custom.get("language") == "en":
        return "How did we do? 5 is best."
    return "请为本次服务打分（5 分最满意）："


def merge_split_texts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One turn's messages with each custom-only message joined to the text before it.

    Rasa's output channels send a response's text and its custom payload as two
    messages; read apart, a satisfaction survey would ask its question twice
    (the response's and its own default)."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        alone = isinstance(message.get("custom"), dict) and not any(
            message.get(key) for key in ("text", "buttons", "quick_replies", "image", "attachment")
        )
        before = merged[-1] if merged else None
        if alone and before is not None and before.get("text") and not before.get("custom"):
            merged[-1] = {**before, "custom": message["custom"]}
        else:
            merged.append(message)
    return merged


def option_number(text: str) -> int | None:
    """The option a bare number stands for ("2", " 2. ", "２"), or None."""
    match = _NUMBER.match(text or "")
    if not match:
        return None
    return int(match.group(1).translate(str.maketrans("０１２３４５６７８９", "0123456789")))
