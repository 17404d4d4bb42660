"""A message sent again is answered once: its stored turn is not run a second time.

A client that lost its connection mid-turn can't tell whether the server died
before the turn was stored or after: the REST caller whose instance was
killed, the web widget whose socket dropped. Both resend the message with the
key they gave it the first time (`client_message_id` in the message's
metadata; the channels check its shape). Here, inside Rasa's per-conversation
lock (`Agent.handle_message` holds it), the conversation's stored events are
searched for a user message with that key:

- not there: the turn runs as usual (the first attempt never got stored);
- there: the turn is not run again. A collecting channel (REST), whose caller
  gets the replies only in its answer, gets the stored replies of that turn
  again; a pushing channel (web, app) pushed them while the turn ran (Rasa
  stores a turn after its replies went out), and the client finds them in the
  conversation's history.

The lookup reads the tracker, only for messages that carry a key; when the
turn runs, Rasa's own read of it (`get_tracker`) takes that tracker instead of
reading it again.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any, Iterable

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.processor import MessageProcessor
from rasa.shared.constants import DEFAULT_SENDER_ID
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.events import ActionExecuted, BotUttered, Event, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from connectors.retry_keys import REPEAT_KEY

logger = logging.getLogger(__name__)

# The metadata key channels put a client's retry key under.
KEY = REPEAT_KEY

_rasa_handle_message = MessageProcessor.handle_message
_rasa_get_tracker = MessageProcessor.get_tracker
# The tracker the lookup read, for this turn's first get_tracker (same task).
_read: ContextVar[DialogueStateTracker | None] = ContextVar("repeat_lookup_read", default=None)


def repeat_key(message: UserMessage) -> str | None:
    key = (message.metadata or {}).get(KEY)
    return key if isinstance(key, str) and key else None


def stored_replies(events: Iterable[Event], key: str) -> list[BotUttered] | None:
    """The bot messages of the turn of the user message keyed `key`; None if
    no such message is stored. `events` as applied (a rewound message's first
    run left out). The turn ends where the bot listens again: a later agent's
    line is not part of it."""
    replies: list[BotUttered] | None = None
    for event in events:
        if replies is None:
            if isinstance(event, UserUttered) and (event.metadata or {}).get(KEY) == key:
                replies = []
        elif isinstance(event, BotUttered):
            replies.append(event)
        elif isinstance(event, UserUttered) or (
            isinstance(event, ActionExecuted) and event.action_name == ACTION_LISTEN_NAME
        ):
            break
    return replies


async def handle_message(
    self: MessageProcessor, message: UserMessage
) -> list[dict[str, Any]] | None:
    key = repeat_key(message)
    if key is not None:
        tracker = await self.tracker_store.retrieve(message.sender_id)
        replies = stored_replies(tracker.applied_events(), key) if tracker is not None else None
        if replies is not None:
            logger.info(
                "message %s of %s was answered before: not run again", key, message.sender_id
            )
            output = message.output_channel
            if isinstance(output, CollectingOutputChannel):
                for reply in replies:
                    await output.send_response(message.sender_id, reply.message())
                return output.messages
            return None
        if tracker is not None:
            token = _read.set(tracker)
            try:
                return await _rasa_handle_message(self, message)
            finally:
                _read.reset(token)
    return await _rasa_handle_message(self, message)


async def get_tracker(self: MessageProcessor, conversation_id: str) -> DialogueStateTracker:
    tracker = _read.get()
    if tracker is None or tracker.sender_id != (conversation_id or DEFAULT_SENDER_ID):
        return await _rasa_get_tracker(self, conversation_id)
    _read.set(None)  # once: a later read must see what the turn stored
    # As Rasa's get_tracker does with the tracker it reads.
    tracker.model_id = self.model_metadata.model_id
    if tracker.assistant_id is None:
        tracker.assistant_id = self.model_metadata.assistant_id
    return tracker


def install() -> None:
    if MessageProcessor.handle_message is _rasa_handle_message:
        MessageProcessor.handle_message = handle_message  # type: ignore[method-assign]
        MessageProcessor.get_tracker = get_tracker  # type: ignore[method-assign]
