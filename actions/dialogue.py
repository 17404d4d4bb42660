"""Turns the dialogue policy (bot.policies.dialogue) replays or injects.

Both return the events Rasa's own two-stage fallback uses to hand a message
back to the dialogue: `action_listen` followed by a user event, which Rasa
processes like a message just received (slot mappings included).
"""

from __future__ import annotations

import copy
import time
from typing import Any, Dict, List

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, ActiveLoop, SlotSet, UserUtteranceReverted
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

# Same key as bot.policies.turn.DIALOGUE_METADATA_KEY (the action server doesn't
# import the Rasa server's modules).
DIALOGUE_METADATA_KEY = "dialogue"


def _latest_user_event(tracker: Tracker) -> Dict[str, Any] | None:
    return next((e for e in reversed(tracker.events) if e.get("event") == "user"), None)


def _is_request_part(event: Dict[str, Any]) -> bool:
    meta = (event.get("metadata") or {}).get(DIALOGUE_METADATA_KEY) or {}
    return isinstance(meta, dict) and isinstance(meta.get("index"), int)


def _user_event(source: Dict[str, Any], **changes: Any) -> Dict[str, Any]:
    """A copy of a user event, stamped now, with `dialogue` metadata added."""
    event = copy.deepcopy(source)
    marks = dict((event.get("metadata") or {}).get(DIALOGUE_METADATA_KEY) or {})
    marks.update(changes.pop("marks", {}))
    event.update(changes)
    event["timestamp"] = time.time()
    event["metadata"] = {**(event.get("metadata") or {}), DIALOGUE_METADATA_KEY: marks}
    return event


def replay_latest(tracker: Tracker, *meanwhile: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Take back the customer's latest message and hand it to the dialogue again, with
    `meanwhile` (events that stay) in between. Empty when there is no message."""
    latest = _latest_user_event(tracker)
    if latest is None:
        return []
    return [
        UserUtteranceReverted(),
        *meanwhile,
        ActionExecuted("action_listen"),
        _user_event(latest, marks={"replayed": True}),
    ]


class ActionSwitchTask(Action):
    """The customer asked for something else while a form was asking: leave the form
    and replay their message as if no form had been active."""

    def name(self) -> str:
        return "action_switch_task"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        leave = [ActiveLoop(None), SlotSet("requested_slot", None)]
        return replay_latest(tracker, *leave) or leave


class ActionNextRequest(Action):
    """The customer's message held several requests: hand the next one to the dialogue."""

    def name(self) -> str:
        return "action_next_request"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        injected = 0
        source: Dict[str, Any] | None = None
        for event in reversed(tracker.events):
            if event.get("event") != "user":
                continue
            if _is_request_part(event):
                injected += 1
                continue
            source = event
            break
        if source is None:
            return []
        parse = source.get("parse_data") or {}
        requests = parse.get("requests") or []
        index = 1 + injected
        if index >= len(requests):
            return []
        request = requests[index]
        return [
            ActionExecuted("action_listen"),
            _user_event(
                source,
                text=request.get("text") or source.get("text"),
                parse_data=_request_parse(parse, request),
                marks={"index": index},
            ),
        ]


def _request_parse(message: Dict[str, Any], request: Dict[str, Any]) -> Dict[str, Any]:
    """Parse data for one request: its own intent and answer, the entities in its span."""
    start, end = request.get("start"), request.get("end")
    entities = [
        entity
        for entity in message.get("entities") or []
        if isinstance(start, int)
        and isinstance(end, int)
        and start <= entity.get("start", -1)
        and entity.get("end", end + 1) <= end
    ]
    parse = {
        "text": request.get("text") or message.get("text"),
        "intent": request.get("intent") or {},
        "intent_ranking": request.get("intent_ranking") or [request.get("intent") or {}],
        "entities": entities,
    }
    for key in ("response_selector", "language"):
        if key in request:
            parse[key] = request[key]
        elif key in message and key == "language":
            parse[key] = message[key]
    return parse
