"""Fixes to Rasa 3.6 internals, installed when Rasa loads our components.

- `RemoteAction._validate_action_result` calls `jsonschema.validate()` on every
  action-server response, which first re-checks the schema itself: 55 ms a call
  here (42 % of the server's CPU in a form-heavy load). With a validator built
  once it still cost ~6 ms a response on a busy server: the event schema is a
  `oneOf` of 23 event kinds, each tried for every event. Each kind's branch
  fixes `event` to a constant, so "exactly one branch holds" is the same as
  "the branch named by `event` holds": that one is checked (~0.2 ms). Only a
  response found invalid goes through the full `oneOf`, for the same error.
- `rasa.server.validate_events_in_request_body` does the same for every
  `POST /conversations/<id>/tracker/events`, i.e. for every line the desk
  appends to a transcript (each agent message, pause, resume): 100+ ms of
  Rasa's event loop a call on a loaded 2-core machine, against about 2 ms with
  a validator built once (bench/handoff.py); same error, same 400 answer.
- `Event.resolve_by_type` walks every subclass of `Event` (recursively, with an
  `inspect.isabstract` check each) for every event it deserialises, i.e. for
  every event of a conversation each time its tracker is read from the store.
  The answer for a type name never changes once found, so it is remembered.
- A custom action may take up to 5 minutes (`DEFAULT_REQUEST_TIMEOUT`) before
  Rasa gives up on a hung action server, with the customer waiting in silence.
  The limit is `ACTION_TIMEOUT_SECONDS` (10 s) instead: then the call fails
  and the dialogue apologises (bot.policies.dialogue).
- Our `action_session_start` runs on the action server (it looks up the
  customer's member level). When that server is down, Rasa drops the failed
  action's events, so the conversation would start without `SessionStarted`
  and its carried-over slots. Rasa's own session start runs instead, and the
  customer is served without their level.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any, Dict

import rasa.core.actions.action as rasa_actions
from rasa.core.actions.action import ActionSessionStart, RemoteAction
from rasa.shared.core.constants import ACTION_SESSION_START_NAME
from rasa.shared.core.events import Event

logger = logging.getLogger(__name__)
_resolve_by_type = Event.resolve_by_type
_event_classes: Dict[str, Any] = {}


@lru_cache(maxsize=1)
def _action_response_validator() -> Any:
    from jsonschema.validators import validator_for

    schema = RemoteAction.action_response_format_spec()
    validator_class = validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


@lru_cache(maxsize=1)
def _event_validators() -> Dict[str, Any]:
    """One validator per event kind: the event schema with only that kind's branch."""
    from jsonschema.validators import validator_for
    from rasa.shared.utils.schemas.events import EVENT_SCHEMA

    base = {k: v for k, v in EVENT_SCHEMA.items() if k != "oneOf"}
    validators = {}
    for branch in EVENT_SCHEMA["oneOf"]:
        schema = {"allOf": [base, branch]}
        validators[branch["properties"]["event"]["const"]] = validator_for(schema)(schema)
    return validators


def _events_look_valid(events: Any) -> bool:
    """EVENTS_SCHEMA's verdict, by each event's own kind (see the module's docstring)."""
    if not isinstance(events, list):
        return False
    validators = _event_validators()
    for event in events:
        validator = validators.get(event.get("event")) if isinstance(event, dict) else None
        if validator is None or not validator.is_valid(event):
            return False
    return True


def _response_looks_valid(result: Any) -> bool:
    if not isinstance(result, dict):
        return False
    if "events" in result and not _events_look_valid(result["events"]):
        return False
    responses = result.get("responses", [])
    return isinstance(responses, list) and all(isinstance(r, dict) for r in responses)


@lru_cache(maxsize=1)
def _events_validator() -> Any:
    from jsonschema.validators import validator_for
    from rasa.server import EVENTS_SCHEMA

    validator_class = validator_for(EVENTS_SCHEMA)
    validator_class.check_schema(EVENTS_SCHEMA)
    return validator_class(EVENTS_SCHEMA)


def _validate_events_in_request_body(request: Any) -> None:
    """rasa.server's check of appended events, with the validator built once."""
    from http import HTTPStatus

    from jsonschema.exceptions import best_match
    from rasa.server import ErrorResponse, _docs

    events = request.json if isinstance(request.json, list) else [request.json]
    if _events_look_valid(events):
        return
    error = best_match(_events_validator().iter_errors(events))
    if error is not None:
        raise ErrorResponse(
            HTTPStatus.BAD_REQUEST,
            "BadRequest",
            f"Failed to validate the events format. "
            f"For more information about the format visit the docs. Error: {error}",
            help_url=_docs("/pages/http-api"),
        ) from error


def _validate_action_result(self: RemoteAction, result: Dict[str, Any]) -> bool:
    from jsonschema.exceptions import best_match

    if _response_looks_valid(result):
        return True
    error = best_match(_action_response_validator().iter_errors(result))
    if error is None:
        return True
    error.message += (
        ". Failed to validate Action server response from API, make sure your "
        "response from the Action endpoint is valid."
    )
    raise error


def _cached_resolve_by_type(type_name: str, default: Any = None) -> Any:
    found = _event_classes.get(type_name)
    if found is None:
        found = _resolve_by_type(type_name, default)
        if found is not None and getattr(found, "type_name", None) == type_name:
            _event_classes[type_name] = found
    return found


_remote_run = RemoteAction.run


async def _run_remote(self: RemoteAction, output_channel: Any, nlg: Any, tracker: Any,
                      domain: Any) -> Any:
    if self.name() != ACTION_SESSION_START_NAME:
        return await _remote_run(self, output_channel, nlg, tracker, domain)
    try:
        return await _remote_run(self, output_channel, nlg, tracker, domain)
    except Exception:  # the action server is away: start the session as Rasa would
        logger.warning("action_session_start failed on the action server; "
                       "starting %s's session without it", tracker.sender_id, exc_info=True)
        return await ActionSessionStart().run(output_channel, nlg, tracker, domain)


def _handled_unless_paused(tracker: Any) -> bool:
    return not tracker.is_paused()


def _session_kept_while_paused(update: Any) -> Any:
    async def update_session(self: Any, tracker: Any, *args: Any, **kwargs: Any) -> None:
        if tracker.is_paused():
            return
        await update(self, tracker, *args, **kwargs)

    update_session.__wrapped__ = update  # type: ignore[attr-defined]
    return update_session


def install() -> None:
    from bot.settings import get_settings

    rasa_actions.DEFAULT_REQUEST_TIMEOUT = get_settings().action_timeout_seconds
    RemoteAction._validate_action_result = _validate_action_result  # type: ignore[method-assign]
    if RemoteAction.run is _remote_run:
        RemoteAction.run = _run_remote  # type: ignore[method-assign]
    import rasa.server

    rasa.server.validate_events_in_request_body = _validate_events_in_request_body
    Event.resolve_by_type = staticmethod(_cached_resolve_by_type)  # type: ignore[method-assign]
    from rasa.core.processor import MessageProcessor

    MessageProcessor._should_handle_message = staticmethod(  # type: ignore[method-assign]
        _handled_unless_paused
    )
    if not hasattr(MessageProcessor._update_tracker_session, "__wrapped__"):
        MessageProcessor._update_tracker_session = _session_kept_while_paused(  # type: ignore[method-assign]
            MessageProcessor._update_tracker_session
        )
