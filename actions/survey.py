"""The satisfaction survey after a person's chat: was the problem solved, a 1–5
score, an optional comment.

The desk closes a handoff by resuming the conversation and triggering
`handoff_closed`; the bot asks "was your problem solved?" (utter_ask_solved).
The answers go into one `ratings` row per handoff, linked to the conversation's
latest handoff. A score counts whenever it comes, also without the survey
("5分", "4 stars", the survey's buttons): it updates this conversation's row of
the last hour, or starts one. A database that fails loses the answer, never the
turn: the customer is still thanked and the conversation goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any, Dict, List

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy import or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from actions.accounts import READY_SLOT
from actions.forms import LimitedValidation
from actions.shop import in_thread, shop_session
from bot.shop.schema import Handoff, Rating

logger = logging.getLogger(__name__)

# A score or comment belongs to the row of a survey (or handoff) this recent;
# later ones start a row of their own.
RECENT = dt.timedelta(hours=1)
MAX_COMMENT = 2000
SCORES = range(1, 6)
COMMENT_SLOT = "rating_comment"
SOLVED_SLOT = "survey_solved"
# The comment the customer skipped ("Skip" button, "no"): nothing is stored.
SKIPPED = "-"
_NUMERALS = {
    "一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
    "八": 8, "九": 9, "十": 10,
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10,
}
_NUMBER = re.compile(r"\d+|[一二两俩三四五六七八九十]|\b(?:one|two|three|four|five|six|seven|eight|"
                     r"nine|ten)\b", re.IGNORECASE)
_DIGITS = re.compile(r"(?<![0-9.])\d{1,3}(?![0-9.])")


def score_in(value: Any) -> int | None:
    """The number a score entity or a message stands for (5分, 五星, "give it a 3",
    满分, 4), in or out of 1–5; None when it names no number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if not isinstance(value, str):
        return None
    if "满分" in value:
        return 5
    found = _NUMBER.search(value)
    if found is None:
        return None
    word = found.group().lower()
    return int(word) if word.isdigit() else _NUMERALS[word]


def score_of(tracker: Tracker) -> int | None:
    """The customer's score: the `score` entity (the survey's buttons, or what the
    regexes found in typed text), else a number in what they typed."""
    message = tracker.latest_message or {}
    entities = sorted(
        (e for e in message.get("entities") or [] if e.get("entity") == "score"),
        key=lambda e: e.get("start") or 0,
    )
    for entity in entities:
        found = score_in(entity.get("value"))
        if found is not None:
            return found
    # Typed text: digits only ("给你打10分", "I'd rate the chat a 4"). Chinese
    # numerals and number words are read only where the regexes found a score:
    # "评价一下" and "rate this one" name no score.
    found = _DIGITS.search(message.get("text") or "")
    return int(found.group()) if found else None


def _applied(events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The events without the turns Rasa rewound (UserUtteranceReverted): a task
    switch replays the customer's message, and the first reading never happened."""
    kept: List[Dict[str, Any]] = []
    for event in events:
        if event.get("event") != "rewind":
            kept.append(event)
            continue
        while kept and kept[-1].get("event") != "user":
            kept.pop()
        if kept:
            kept.pop()
    return kept


def last_response(tracker: Tracker) -> str | None:
    """The response the bot said last before the customer's latest message."""
    seen_user = False
    for event in reversed(_applied(list(tracker.events))):
        kind = event.get("event")
        if kind == "user":
            if seen_user:
                return None
            seen_user = True
        elif kind == "bot" and seen_user:
            return (event.get("metadata") or {}).get("utter_action")
    return None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def latest_handoff(session: Session, conversation_id: str, since: dt.datetime | None = None
                   ) -> int | None:
    """The id of the conversation's most recent handoff (requested, or ended, since
    `since` when given)."""
    query = select(Handoff.id).where(Handoff.conversation_id == conversation_id)
    if since is not None:
        query = query.where(or_(Handoff.requested_at >= since, Handoff.ended_at >= since))
    return session.scalar(
        query.order_by(Handoff.requested_at.desc(), Handoff.id.desc()).limit(1)
    )


def recent_rating(session: Session, conversation_id: str, now: dt.datetime) -> Rating | None:
    """The conversation's latest ratings row of the last hour."""
    return session.scalars(
        select(Rating)
        .where(Rating.conversation_id == conversation_id, Rating.created_at >= now - RECENT)
        .order_by(Rating.created_at.desc(), Rating.id.desc())
        .limit(1)
    ).first()


def record_solved(conversation_id: str, solved: bool) -> int:
    """Store the answer to "was it solved?" for the latest handoff; the row's id."""
    now = _now()
    with shop_session() as session:
        handoff_id = latest_handoff(session, conversation_id)
        rating = recent_rating(session, conversation_id, now)
        if rating is None or rating.handoff_id != handoff_id or rating.solved is not None:
            # One row per survey: an earlier handoff's row keeps its own answer.
            rating = Rating(conversation_id=conversation_id, handoff_id=handoff_id,
                            created_at=now)
            session.add(rating)
        rating.solved = 1 if solved else 0
        rating.updated_at = now
        session.flush()
        return int(rating.id)


def record_score(conversation_id: str, score: int) -> int:
    """Store a 1–5 score in the conversation's row of the last hour, or a new row
    (linked to a handoff of the last hour, if there was one); the row's id."""
    now = _now()
    with shop_session() as session:
        rating = recent_rating(session, conversation_id, now)
        if rating is None:
            rating = Rating(conversation_id=conversation_id, created_at=now,
                            handoff_id=latest_handoff(session, conversation_id, now - RECENT))
            session.add(rating)
        rating.score = score
        rating.updated_at = now
        session.flush()
        return int(rating.id)


def record_comment(conversation_id: str, comment: str) -> None:
    now = _now()
    with shop_session() as session:
        rating = recent_rating(session, conversation_id, now)
        if rating is None:  # the row went meanwhile (or is older): keep the words anyway
            rating = Rating(conversation_id=conversation_id, created_at=now)
            session.add(rating)
        rating.comment = comment
        rating.updated_at = now


class ActionSurveySolved(Action):
    """The answer to utter_ask_solved: a score for a solved problem, else a person
    again or a message."""

    def name(self) -> str:
        return "action_survey_solved"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        intent = ((tracker.latest_message or {}).get("intent") or {}).get("name")
        solved = intent == "affirm"
        try:
            await in_thread(lambda: record_solved(tracker.sender_id, solved))
        except SQLAlchemyError:
            # The customer's answer still decides what comes next.
            logger.exception("survey: the shop database failed; the answer is lost")
        dispatcher.utter_message(response="utter_ask_rating" if solved else "utter_not_solved")
        return [SlotSet(SOLVED_SLOT, solved)]


class ActionSurveyRating(Action):
    """A 1–5 score: stored, thanked for, then the comment form (the next rule)."""

    def name(self) -> str:
        return "action_survey_rating"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        score = score_of(tracker)
        if score not in SCORES:
            return self.no_score(dispatcher, tracker, score)
        stored = True
        try:
            await in_thread(lambda: record_score(tracker.sender_id, score))
        except SQLAlchemyError:
            logger.exception("survey: the shop database failed; the score is lost")
            stored = False
        dispatcher.utter_message(response="utter_rating_thanks", score=score)
        # The comment is asked for once per survey: a score given instead of the
        # comment (a change of mind) is thanked for, and the survey ends there. A
        # comment could not be stored either when the score wasn't.
        asked = last_response(tracker) == f"utter_ask_{COMMENT_SLOT}"
        return [SlotSet(READY_SLOT, stored and not asked)]

    @staticmethod
    def no_score(
        dispatcher: CollectingDispatcher, tracker: Tracker, score: int | None
    ) -> List[Dict[str, Any]]:
        """Show the scores (again) once; a second answer without one is thanked for
        and let go, so the survey never keeps a customer."""
        said = last_response(tracker)
        if said == "utter_ask_rating_again":
            dispatcher.utter_message(response="utter_rating_unclear")
        elif score is None and said != "utter_ask_rating":
            dispatcher.utter_message(response="utter_ask_rating")  # "I want to rate you"
        else:
            dispatcher.utter_message(response="utter_ask_rating_again")
        return [SlotSet(READY_SLOT, False)]


class ValidateCommentForm(LimitedValidation):
    def name(self) -> str:
        return "validate_comment_form"

    def validate_rating_comment(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
        domain: DomainDict,
    ) -> Dict[str, Any]:
        intent = ((tracker.latest_message or {}).get("intent") or {}).get("name")
        if intent == "deny":  # the skip button, "no", "没有了": nothing to add
            return {COMMENT_SLOT: SKIPPED}
        text = slot_value.strip() if isinstance(slot_value, str) else ""
        return {COMMENT_SLOT: text[:MAX_COMMENT] if text else None}


class ActionSurveyComment(Action):
    """The comment form is done: store the comment (unless skipped) and say goodbye."""

    def name(self) -> str:
        return "action_survey_comment"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        comment = tracker.get_slot(COMMENT_SLOT)
        done = [SlotSet(COMMENT_SLOT, None), SlotSet(READY_SLOT, None)]
        if not comment or comment == SKIPPED:
            # Skipped, or the form let go: the rating stands on its own.
            dispatcher.utter_message(response="utter_comment_skipped")
            return done
        try:
            await in_thread(lambda: record_comment(tracker.sender_id, comment))
        except SQLAlchemyError:
            logger.exception("survey: the shop database failed; the comment is lost")
        dispatcher.utter_message(response="utter_comment_thanks")
        return done
