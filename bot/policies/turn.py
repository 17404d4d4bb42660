"""What the current turn looks like: the customer's latest message and what the
bot has done since, read from the tracker's events.

Policies decide step by step (one action per call) and keep no state between
calls, so every step re-reads the turn from the tracker: one pass over the
session's events with reverted ones left out. (Rasa's `applied_events()` also
folds a form's happy-path runs together, dropping the customer's answers,
which is not what a turn is.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Collection, Dict, List

from rasa.shared.constants import UTTER_PREFIX
from rasa.shared.core.constants import ACTION_LISTEN_NAME, REQUESTED_SLOT
from rasa.shared.core.events import (
    ActionExecuted,
    ActionReverted,
    ActiveLoop,
    BotUttered,
    Event,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUtteranceReverted,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker

# Metadata of a user event that the dialogue added itself: a later request of a
# message that held several ({"index": k}), or a message replayed after a task
# switch ({"replayed": true}). Shared with actions/dialogue.py and the channels'
# transcript, which shows the customer's message once.
DIALOGUE_METADATA_KEY = "dialogue"


def is_request_part(event: UserUttered) -> bool:
    """True for a later request of a multi-request message, injected by the dialogue."""
    meta = (event.metadata or {}).get(DIALOGUE_METADATA_KEY) or {}
    return isinstance(meta, dict) and isinstance(meta.get("index"), int)


@dataclass
class Turn:
    """The customer's latest message and the bot's steps since."""

    user: UserUttered | None
    # Applied events after the latest user message.
    since: List[Event] = field(default_factory=list)
    # Active loop and requested slot when the message arrived.
    loop_at_user: str | None = None
    slot_at_user: str | None = None
    # How many times in a row the loop had asked for `slot_at_user` by then.
    asks_at_user: int = 0
    # Slot values set in this session before the message.
    slots_at_user: Dict[str, Any] = field(default_factory=dict)
    # The customer's own message this turn belongs to (a request part's source).
    message: UserUttered | None = None
    # Request parts of `message` injected so far.
    parts_injected: int = 0
    # The response the bot said last before the message (its question, say).
    said_before: str | None = None

    @property
    def intent(self) -> str | None:
        return self.user.intent_name if self.user else None

    @property
    def confidence(self) -> float:
        if not self.user:
            return 0.0
        return float(self.user.intent.get("confidence") or 0.0)

    @property
    def actions(self) -> List[str]:
        """Actions run since the message, in order (action_listen excluded)."""
        return [
            e.action_name
            for e in self.since
            if isinstance(e, ActionExecuted)
            and e.action_name
            and e.action_name != ACTION_LISTEN_NAME
        ]

    def spoke(self, forms: Collection[str]) -> bool:
        """Whether the bot has said something since the message.

        A bot message is the evidence at run time. `rasa test` replays stories
        without running actions, so there a response action (utter_…) or one of
        `forms` (forms ask their question; speaking custom actions answer)
        counts as having spoken.
        """
        return any(
            isinstance(e, BotUttered)
            or (
                isinstance(e, ActionExecuted)
                and e.action_name is not None
                and (e.action_name.startswith(UTTER_PREFIX) or e.action_name in forms)
            )
            for e in self.since
        )

    def extracted_slots(self) -> Dict[str, Any]:
        """Slots filled from the message itself (before the first action ran)."""
        filled: Dict[str, Any] = {}
        for event in self.since:
            if isinstance(event, ActionExecuted):
                break
            if isinstance(event, SlotSet) and event.key != REQUESTED_SLOT:
                filled[event.key] = event.value
        return filled

    def changed_slots(self) -> Dict[str, Any]:
        """Slots the message itself gave a new value (not the one they had)."""
        return {
            key: value
            for key, value in self.extracted_slots().items()
            if value is not None and self.slots_at_user.get(key) != value
        }

    def pending_requests(self) -> List[Dict[str, Any]]:
        """Requests of the customer's message not handled yet (beyond the first)."""
        if self.message is None:
            return []
        requests = self.message.parse_data.get("requests") or []  # type: ignore[union-attr]
        if not isinstance(requests, list) or len(requests) < 2:
            return []
        return requests[1 + self.parts_injected :]


def session_events(tracker: DialogueStateTracker) -> List[Event]:
    """The current session's events, without the reverted ones."""
    events: List[Event] = []
    for event in tracker.events:
        if isinstance(event, (Restarted, SessionStarted)):
            events = []
        elif isinstance(event, UserUtteranceReverted):
            _undo_till(UserUttered, events)
            _undo_till(ActionExecuted, events)  # the action_listen before it
        elif isinstance(event, ActionReverted):
            _undo_till(ActionExecuted, events)
        else:
            events.append(event)
    return events


def _undo_till(kind: type, events: List[Event]) -> None:
    while events:
        if isinstance(events.pop(), kind):
            return


def read_turn(tracker: DialogueStateTracker) -> Turn:
    events = session_events(tracker)
    user_index = next(
        (i for i in range(len(events) - 1, -1, -1) if isinstance(events[i], UserUttered)),
        None,
    )
    if user_index is None:
        return Turn(user=None, since=events)
    user: UserUttered = events[user_index]  # type: ignore[assignment]
    before = events[:user_index]
    turn = Turn(user=user, since=events[user_index + 1 :])
    turn.loop_at_user, turn.slot_at_user, turn.asks_at_user = _loop_state(before)
    turn.slots_at_user = {e.key: e.value for e in before if isinstance(e, SlotSet)}
    turn.message, turn.parts_injected = _source_message(events[: user_index + 1])
    turn.said_before = next(
        ((e.metadata or {}).get("utter_action") for e in reversed(before)
         if isinstance(e, BotUttered)),
        None,
    )
    return turn


def _loop_state(events: List[Event]) -> tuple[str | None, str | None, int]:
    """Active loop, requested slot and how often in a row it was asked, after `events`.

    A form asks by setting `requested_slot` in a run of its own (whether or not
    its question reaches the tracker: `rasa test` replays stories without it).
    """
    loop: str | None = None
    slot: str | None = None
    asks = 0
    running: str | None = None  # the action whose events these are
    counted = False
    for event in events:
        if isinstance(event, ActiveLoop):
            if event.name != loop:
                asks = 0
            loop = event.name
        elif isinstance(event, ActionExecuted):
            running, counted = event.action_name, False
        elif isinstance(event, UserUttered):
            running = None
        elif isinstance(event, SlotSet) and event.key == REQUESTED_SLOT:
            if event.value != slot:
                asks = 0
            slot = event.value
            if running is not None and running == loop and slot is not None and not counted:
                asks += 1
                counted = True  # one question per run of the loop
    if loop is None:
        return None, None, 0
    return loop, slot, asks


def _source_message(events: List[Event]) -> tuple[UserUttered | None, int]:
    """The latest message the customer sent, and how many of its parts followed it."""
    parts = 0
    for event in reversed(events):
        if isinstance(event, UserUttered):
            if is_request_part(event):
                parts += 1
                continue
            return event, parts
    return None, 0
