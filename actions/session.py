"""A conversation session's start: Rasa's own, plus who the customer is.

`action_session_start` does what Rasa's default does (SessionStarted, the slots
carried over when domain.yml's session_config says so, then action_listen) and
sets `member_level` from the verified customer, so desk.yml's `direct` rules
(bot.policies.dialogue) know a platinum member from their first message. Who
the customer is comes from the channel identity in the first message's metadata
(Rasa puts it in the `session_started_metadata` slot), never from what they
type. Nothing here may fail a session start: a database that fails is logged
and the level is left out (the bot then serves the customer itself).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, SessionStarted
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.shop import (
    MEMBER_LEVEL_SLOT,
    ChannelIdentity,
    identity_in,
    identity_of,
    in_thread,
    member_level,
    shop_session,
    verified_customer,
)

logger = logging.getLogger(__name__)
SESSION_METADATA_SLOT = "session_started_metadata"


def carried_over(tracker: Tracker, domain: DomainDict) -> List[Dict[str, Any]]:
    """The previous session's slot events, as Rasa's default session start carries
    them over (domain.yml `session_config.carry_over_slots_to_new_session`)."""
    config = domain.get("session_config") or {}
    if not config.get("carry_over_slots_to_new_session", True):
        return []
    events = []
    for event in tracker.applied_events():
        if event.get("event") != "slot" or event.get("name") == MEMBER_LEVEL_SLOT:
            continue  # the level is looked up afresh (a failed look-up leaves none)
        kept = {"event": "slot", "timestamp": None, "name": event.get("name"),
                "value": event.get("value")}
        if event.get("metadata"):
            kept["metadata"] = event["metadata"]
        events.append(kept)
    return events


def session_identity(tracker: Tracker) -> ChannelIdentity | None:
    """The identity the session's first message carries, else the latest message's
    (a session the desk starts by triggering an intent has no metadata of its own)."""
    return identity_in(tracker.get_slot(SESSION_METADATA_SLOT)) or identity_of(tracker)


class ActionSessionStart(Action):
    def name(self) -> str:
        return "action_session_start"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        events: List[Dict[str, Any]] = [SessionStarted(), *carried_over(tracker, domain)]
        try:
            identity = session_identity(tracker)
            if identity is not None:
                events.append(await in_thread(lambda: self.level_of(identity)))
        except Exception:  # never fail the session start; the bot serves them itself
            logger.exception("session start: the member level could not be looked up")
        events.append(ActionExecuted("action_listen"))
        return events

    @staticmethod
    def level_of(identity: ChannelIdentity) -> Dict[str, Any]:
        with shop_session() as session:
            return member_level(verified_customer(session, identity))
