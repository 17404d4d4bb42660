"""What a customer types is text; only the bot's own buttons send payloads.

Rasa reads any message starting with "/" as an intent payload: "/restart"
resets the conversation, `/inform{"order_id": …}` sets slots. Buttons need
that, customers must not have it. This component runs first in the NLU
pipeline, where Rasa hands it the conversation's tracker, and for messages from
customer channels (their metadata carries a verified `identity`):

- a payload the bot offered in this session (a button, a quick reply, a
  satisfaction survey) is kept: that is a click;
- a bare number ("2", "２") picks that option of the list the bot sent last,
  for channels that show buttons as numbered text (WeChat), and only while
  that list is the bot's latest turn: once the conversation moves on, the
  number is just a number;
- any other text that would read as a payload ("/restart", "\u3000/restart",
  "／restart") loses its leading slashes and is understood as words.

Trusted callers (the REST channel with the API token, `rasa shell`, tests) and
payloads a channel generates itself (WeChat's subscribe and menu events mark
them `server_payload`) are left alone. The customer's own words stay in the
tracker's user event; the parse data (`text`) holds what was understood, and
the event's metadata says why (`option`: the number and the payload it picked,
or `typed_payload`: true). Metadata, because for an intent payload Rasa's
RegexMessageHandler rebuilds the parse data from the payload alone.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Dict, List

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.core.events import BotUttered, Restarted, SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.policies.turn import is_request_part
from connectors.rich import option_number, options_of

# Metadata a customer channel sets (connectors.identity.Identity.metadata), and
# the flag a channel sets on payloads it generates itself (not customer text).
IDENTITY_KEY = "identity"
SERVER_PAYLOAD_KEY = "server_payload"
_SLASHES = "/／"


def _is_filler(char: str) -> bool:
    """Spaces, invisible and control characters a payload could hide behind."""
    return char.isspace() or unicodedata.category(char) in {"Zs", "Zl", "Zp", "Cc", "Cf"}


def _visible_start(text: str) -> str:
    index = 0
    while index < len(text) and _is_filler(text[index]):
        index += 1
    return text[index:]


def looks_like_payload(text: str) -> bool:
    return _visible_start(text).startswith(tuple(_SLASHES))


def as_words(text: str) -> str:
    """The text without what makes Rasa read it as a payload."""
    rest = _visible_start(text)
    while rest and (rest[0] in _SLASHES or _is_filler(rest[0])):
        rest = rest[1:]
    return rest


def offered_options(tracker: DialogueStateTracker) -> tuple[List[str], set[str]]:
    """(payloads of the option list the bot sent last, if it was in its reply to the
    customer's latest message; every payload offered in this session).

    Read from every event of the session, the reverted ones included: what the
    customer saw is what counts, and Rasa's fallback sends its last offer ("a
    person or a message?") and then reverts the turn it answered.
    """
    latest: List[str] = []
    offered: set[str] = set()
    in_latest_turn = True
    for event in reversed(_session(tracker)):
        if isinstance(event, UserUttered) and not is_request_part(event):
            in_latest_turn = False  # later requests of one message are still its reply
        elif isinstance(event, BotUttered):
            payloads = [o["payload"] for o in options_of(event.data or {})]
            offered.update(payloads)
            if in_latest_turn and payloads and not latest:
                latest = payloads
    return latest, offered


def _session(tracker: DialogueStateTracker) -> List[Any]:
    events = list(tracker.events)
    starts = [
        i for i, e in enumerate(events) if isinstance(e, (SessionStarted, Restarted))
    ]
    return events[starts[-1] + 1 :] if starts else events


def check_customer_text(
    text: str, tracker: DialogueStateTracker | None
) -> tuple[str, Dict[str, Any]]:
    """(what the message means, what to note in the parse data) for customer text."""
    number = option_number(text)
    if number is None and not looks_like_payload(text):
        return text, {}
    latest, offered = offered_options(tracker) if tracker is not None else ([], set())
    if number is not None:
        if 1 <= number <= len(latest):
            payload = latest[number - 1]
            return payload, {"option": {"number": number, "payload": payload}}
        return text, {}
    clicked = _visible_start(text).strip()
    if clicked in offered:
        return clicked, {}
    return as_words(text), {"typed_payload": True}


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False
)
class PayloadGuard(GraphComponent):
    """Customer text can't be an intent payload unless it clicks one of the bot's buttons."""

    @staticmethod
    def get_default_config() -> Dict[str, Any]:
        return {}

    @classmethod
    def create(
        cls,
        config: Dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> PayloadGuard:
        return cls()

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data

    def process(
        self, messages: List[Message], tracker: DialogueStateTracker | None = None
    ) -> List[Message]:
        for message in messages:
            metadata = message.get("metadata") or {}
            if not isinstance(metadata, dict) or not metadata.get(IDENTITY_KEY):
                continue  # a trusted caller
            if metadata.get(SERVER_PAYLOAD_KEY):
                continue
            text = message.get(TEXT) or ""
            meaning, notes = check_customer_text(text, tracker)
            if meaning != text:
                message.set(TEXT, meaning)
            # The same dict as the UserMessage's metadata (Rasa's NLUMessageConverter
            # passes it through), which the user event keeps.
            metadata.update(notes)
        return messages
