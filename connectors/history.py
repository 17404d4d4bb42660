"""A conversation's transcript as the customer saw it, read from the tracker.

The tracker is the transcript (DESIGN.md): customer messages are `user`
events, bot and agent messages `bot` events. Widgets restore it on reload and
apps on a new device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connectors.retry_keys import REPEAT_KEY

if TYPE_CHECKING:  # importing Agent loads TensorFlow: the desk imports this module
    from rasa.core.agent import Agent

# What of a bot event's `data` a client can render.
_RICH_KEYS = ("buttons", "quick_replies", "image", "attachment", "custom", "elements")


# Metadata the dialogue puts on user events it adds itself: a message replayed
# after a task switch, or a later request of a message that held several
# (bot.policies.turn.DIALOGUE_METADATA_KEY). The customer sent those words once.
DIALOGUE_METADATA_KEY = "dialogue"


def _not_reverted(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events without those Rasa took back (`rewind`: the latest user message and
    what followed, as when the dialogue replays it)."""
    kept: list[dict[str, Any]] = []
    for event in events:
        if event.get("event") == "rewind":
            while kept and kept.pop().get("event") != "user":
                pass
        else:
            kept.append(event)
    return kept


def _added_by_dialogue(event: dict[str, Any]) -> bool:
    marks = (event.get("metadata") or {}).get(DIALOGUE_METADATA_KEY) or {}
    return isinstance(marks, dict) and isinstance(marks.get("index"), int)


def transcript_of(events: list[dict[str, Any]], limit: int = 200) -> list[dict[str, Any]]:
    """[{"sender": "customer"|"bot", "text", "timestamp", ...rich}] of the last `limit`."""
    lines: list[dict[str, Any]] = []
    for event in _not_reverted(events):
        kind = event.get("event")
        if kind == "user" and _added_by_dialogue(event):
            continue
        if kind == "user":
            text = event.get("text") or ""
            # "/intent" payloads are button clicks; show what the button said if known.
            metadata = event.get("metadata") or {}
            shown = metadata.get("display_text") or text
            line = {"sender": "customer", "text": shown, "timestamp": event["timestamp"]}
            if metadata.get(REPEAT_KEY):  # a client that resends knows it by this
                line["message_id"] = metadata[REPEAT_KEY]
            lines.append(line)
        elif kind == "bot":
            line: dict[str, Any] = {
                "sender": "bot",
                "text": event.get("text") or "",
                "timestamp": event["timestamp"],
            }
            data = event.get("data") or {}
            line.update({k: data[k] for k in _RICH_KEYS if data.get(k)})
            agent = (event.get("metadata") or {}).get("agent")
            if agent:
                line["sender"] = "agent"
                line["agent"] = agent
            if line["text"] or len(line) > 3:
                lines.append(line)
    return lines[-limit:]


async def transcript(agent: Agent, conversation_id: str, limit: int = 200) -> list[dict[str, Any]]:
    store = agent.tracker_store
    if store is None:
        return []
    tracker = await store.retrieve(conversation_id)
    if tracker is None:
        return []
    return transcript_of([e.as_dict() for e in tracker.events], limit)
