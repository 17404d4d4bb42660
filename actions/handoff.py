"""Handing a conversation to a person (the desk, bot/desk).

`action_handoff` runs when the customer asks for a person or complains, after
two misses in a row (`action_default_fallback`), and when desk.yml's `direct`
rules send a verified member's task straight to a person (the dialogue policy
decides that; the reason is then "vip"). It queues the conversation in the
right skill group (from the customer's task) with its priority (VIP,
complaint) and pauses the bot: Rasa then records what the customer says without
answering, and the desk carries it to the agent. When no person can come
(outside business hours, nobody online) the bot says so and offers to leave a
message instead; for a direct handoff, which the customer didn't ask for, it
says nothing and hands their message back to the dialogue, which serves it as
it would anyone's.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Dict, List

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ConversationPaused, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from redis import asyncio as aioredis

from actions.common import language, level_label
from actions.dialogue import replay_latest
from actions.shop import (
    MEMBER_LEVEL_SLOT,
    identity_of,
    in_thread,
    shop_session,
    verified_customer,
)
from bot import hours
from bot.desk import handoffs
from bot.desk.config import BadDeskConfig, desk_config
from bot.privacy import mask_name
from bot.settings import get_settings

logger = logging.getLogger(__name__)

# Not a task of their own: the handoff is about the task before them.
_NOT_A_TOPIC = {
    "human_handoff", "affirm", "deny", "greet", "goodbye", "thank", "inform",
    "nlu_fallback", "out_of_scope", "bot_challenge", "faq", "rate",
}
_redis: aioredis.Redis | None = None


def redis() -> aioredis.Redis:
    global _redis
    if _redis is None:
        _redis = aioredis.Redis.from_url(get_settings().redis_url or "redis://127.0.0.1:6379",
                                         socket_timeout=5)
    return _redis


def topic_of(tracker: Tracker) -> str | None:
    """The customer's latest task in this session (what the person should help with)."""
    for event in reversed(tracker.events):
        if event.get("event") == "session_started":
            break
        if event.get("event") != "user":
            continue
        intent = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
        if intent and intent not in _NOT_A_TOPIC:
            return intent
    return None


def direct_rule_matched(tracker: Tracker, intent: str | None) -> bool:
    """Whether desk.yml's `direct` rules sent this message here: the handoff is the
    turn's first step, for a verified member's task (the same check as the dialogue
    policy's, which predicted it)."""
    if tracker.latest_action_name != "action_listen":
        return False
    try:
        return desk_config().direct_for(tracker.get_slot(MEMBER_LEVEL_SLOT), intent)
    except BadDeskConfig:
        logger.exception("desk.yml can't be read; no direct handoffs")
        return False


def reason_of(tracker: Tracker, misunderstood: bool) -> str:
    if misunderstood:
        return "misunderstood"
    intent = (tracker.latest_message.get("intent") or {}).get("name")
    if intent == "complain":  # a complaint keeps its own priority and apology
        return "complaint"
    return "vip" if direct_rule_matched(tracker, intent) else "asked"


def opening_phrase(opens: dt.datetime | None, lang: str, now: dt.datetime) -> str:
    """When people answer next, as the customer reads it ("明天 09:00")."""
    if opens is None:
        return "工作日" if lang == "zh" else "on working days"
    local = opens.astimezone(hours.configured().timezone)
    today = now.astimezone(local.tzinfo).date()
    days = (local.date() - today).days
    clock = local.strftime("%H:%M")
    if lang == "zh":
        day = {0: "今天", 1: "明天"}.get(days, f"{local.month}月{local.day}日")
        return f"{day} {clock}"
    day = {0: "today", 1: "tomorrow"}.get(days, local.strftime("%a %d %b"))
    return f"{day} at {clock}"


async def hand_off(
    dispatcher: CollectingDispatcher, tracker: Tracker, misunderstood: bool = False
) -> List[Dict[str, Any]]:
    """Queue for a person and pause the bot, or offer a message; the events to return."""
    lang = language(tracker)
    identity = identity_of(tracker)
    channel = tracker.sender_id.split(":", 1)[0] if ":" in tracker.sender_id else "rest"

    def customer() -> tuple[int, str, str]:
        with shop_session() as session:
            found = verified_customer(session, identity)
            return (found.id, mask_name(found.name), found.level) if found else (0, "", "")

    try:
        customer_id, name, level = await in_thread(customer)
    except Exception:  # the desk still helps a customer it can't look up
        logger.exception("handoff: customer look-up failed")
        # The level verified earlier in the session still counts for the priority.
        customer_id, name, level = 0, "", str(tracker.get_slot(MEMBER_LEVEL_SLOT) or "")
    now = dt.datetime.now(dt.timezone.utc)
    opening = hours.configured()
    request = handoffs.Request(
        conversation_id=tracker.sender_id, channel=channel, language=lang,
        reason=reason_of(tracker, misunderstood), topic_intent=topic_of(tracker),
        customer_id=customer_id, customer_name=name, customer_level=level,
        verified=bool(customer_id), last_text=tracker.latest_message.get("text") or "",
    )
    try:
        outcome = await handoffs.request(
            redis(), get_settings().database_url, desk_config(), request,
            is_open=opening.is_open(now), opens=opening.next_opening(now),
        )
    except Exception:  # Redis or the database away: nobody can be reached now
        logger.exception("handoff request failed for %s", tracker.sender_id)
        outcome = handoffs.Outcome("no_agent")
    if request.reason == "complaint":
        dispatcher.utter_message(response="utter_complaint_sorry")
    # The slot also shows that the action ran (DialoguePolicy's speaking actions).
    outcome_slot = SlotSet("handoff_outcome", outcome.kind)
    if request.reason == "vip" and outcome.kind in ("closed_hours", "no_agent"):
        # Nobody can come, and they didn't ask for a person: the dialogue serves their
        # message as anyone's (it doesn't hand the same session over twice).
        replayed = replay_latest(tracker, outcome_slot)
        if replayed:
            return replayed
    if outcome.kind == "closed_hours":
        dispatcher.utter_message(response="utter_handoff_closed_hours",
                                 opens=opening_phrase(outcome.opens, lang, now))
        return [outcome_slot]
    if outcome.kind == "no_agent":
        dispatcher.utter_message(response="utter_handoff_no_agent")
        return [outcome_slot]
    if request.reason == "vip":
        # Why a person comes though they only asked for the task.
        dispatcher.utter_message(response="utter_handoff_vip", level=level_label(level, lang))
    if outcome.kind == "connecting":
        dispatcher.utter_message(response="utter_handoff_connecting")
    else:
        dispatcher.utter_message(response="utter_handoff_queued", position=outcome.position,
                                 wait_minutes=outcome.wait_minutes)
    return [outcome_slot, ConversationPaused()]


class ActionHandoff(Action):
    def name(self) -> str:
        return "action_handoff"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        return await hand_off(dispatcher, tracker)
