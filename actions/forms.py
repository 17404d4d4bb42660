"""What every form's validation shares: a form lets go after two answers that
don't do.

The dialogue policy lets a form go after two turns that don't answer its
question at all (bot.policies.dialogue). A free-text slot takes any message as
an answer, though, and then only its validation knows the answer won't do (not
a phone number, not an address): it says why, and the form would ask again
forever. `LimitedValidation` stops that at the same limit: once the question
has been asked `MAX_ASKS` times in a row and the answer still won't do, the
bot says it lets go and the form ends (`requested_slot` None). The action
that the form's "done" rule runs then finds the form's slots unfilled and says
nothing more.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Dict, FrozenSet, List, Sequence

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import REQUESTED_SLOT, FormValidationAction
from rasa_sdk.types import DomainDict

MAX_ASKS = 2  # as the dialogue policy's max_asks (config.yml)
LET_GO = "utter_task_let_go"


def asks_in_a_row(tracker: Tracker, slot: str) -> int:
    """How many of the bot's turns before the customer's latest message, one after
    another, asked for `slot` (utter_ask_<slot>…, by the form or its ask action)."""
    prefix = f"utter_ask_{slot}"
    events = list(tracker.events)
    latest = max((i for i, e in enumerate(events) if e.get("event") == "user"), default=0)
    count = 0
    asked = False
    for event in reversed(events[:latest]):
        kind = event.get("event")
        if kind == "user":
            if not asked:
                return count
            count += 1
            asked = False
        elif kind == "bot":
            action = str((event.get("metadata") or {}).get("utter_action") or "")
            asked = asked or action.startswith(prefix)
        elif kind in ("restart", "session_started"):
            break
    return count + (1 if asked else 0)


class LimitedValidation(FormValidationAction):
    """FormValidationAction whose form lets go after MAX_ASKS answers that won't do."""

    # Answers refused with one of these have a limit of their own (a wrong one-time
    # code: five tries, then a lock); any other refusal counts here.
    own_limit_responses: FrozenSet[str] = frozenset()

    @abstractmethod
    def name(self) -> str:
        """validate_<form>; abstract, so rasa_sdk registers only the forms' own classes."""

    async def _extract_validation_events(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict,
    ) -> List[Dict[str, Any]]:
        given = {k: v for k, v in tracker.slots_to_validate().items() if v is not None}
        events = await super()._extract_validation_events(dispatcher, tracker, domain)
        asked = tracker.get_slot(REQUESTED_SLOT)
        said = {m.get("response") for m in dispatcher.messages}
        refused = (
            asked in given
            and not said & self.own_limit_responses
            and any(e.get("name") == asked and e.get("value") is None for e in events)
        )
        if refused and asks_in_a_row(tracker, asked) >= MAX_ASKS:
            dispatcher.utter_message(response=LET_GO)
            events.append(SlotSet(REQUESTED_SLOT, None))  # ends the form
        return events


def gave_up(tracker: Tracker, slots: Sequence[str]) -> bool:
    """Whether a form's "done" action runs for a form that let go (a slot unfilled)."""
    return any(tracker.get_slot(slot) is None for slot in slots)
