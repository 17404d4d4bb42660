"""The satisfaction survey after a person's chat (actions/survey.py): through the
dialogue in process with the real action server on the session's shop database
(the desk's handoff rows written here, as the desk writes them), the desk's
closing turn triggered the way Rasa's trigger_intent does; and the actions on a
database that fails."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path
from typing import Any, Dict, List

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.survey import (
    ActionSurveyComment,
    ActionSurveyRating,
    ActionSurveySolved,
    score_in,
)
from bot.nlu.language import message_language
from bot.settings import get_settings
from bot.shop import database
from bot.shop.schema import Handoff, Rating
from tests.conversations import Chat, _with_utter_actions


@pytest.mark.parametrize(
    ("value", "score"),
    [
        (5, 5), ("4", 4), (4.0, 4), ("5分", 5), ("五星", 5), ("两星", 2), ("一颗星", 1),
        ("满分", 5), ("4 stars", 4), ("4/5", 4), ("five stars", 5), ("give it a 3", 3),
        ("rating: 2", 2), (9, 9), ("10分", 10), ("abc", None), (True, None), (None, None),
        (4.5, None),
    ],
)
def test_a_score_is_read_from_digits_numerals_and_words(value: Any, score: int | None) -> None:
    assert score_in(value) == score


# --- through the dialogue ------------------------------------------------------------------


def visitor() -> Dict[str, Any]:
    return {"channel": "web", "subject": f"v-{uuid.uuid4().hex}",
            "verified_by": "visitor_token", "customer": False}


def trigger(chat: Chat, intent: str) -> List[Dict[str, Any]]:
    """What the desk does after resuming a conversation: Rasa's trigger_intent (the
    same processor call its HTTP API makes); the bot's messages of that turn."""
    from rasa.core.channels.channel import CollectingOutputChannel

    async def run() -> List[Dict[str, Any]]:
        output = CollectingOutputChannel()
        processor = chat.agent.processor
        tracker = await processor.fetch_tracker_with_initial_session(chat.sender, output)
        before = len(tracker.events)
        await processor.trigger_external_user_uttered(intent, None, tracker, output)
        tracker = await chat.agent.tracker_store.retrieve(chat.sender)
        chat._seen = len(tracker.events)
        chat.tracker = tracker
        return _with_utter_actions(output.messages, tracker, before)

    return asyncio.run(run())


def closed_handoff(shop_url: str, conversation_id: str, minutes_ago: int = 10) -> int:
    """A handoff the desk has closed, as the desk records it."""
    now = dt.datetime.now(dt.timezone.utc)
    with database.session(shop_url) as session:
        handoff = Handoff(
            conversation_id=conversation_id, channel="web", language="zh",
            group_name="general", priority=0, reason="asked", state="closed",
            requested_at=now - dt.timedelta(minutes=minutes_ago),
            assigned_at=now - dt.timedelta(minutes=minutes_ago - 1),
            ended_at=now - dt.timedelta(minutes=1), ended_by="agent:xiaoqing",
        )
        session.add(handoff)
        session.flush()
        return int(handoff.id)


def ratings_of(shop_url: str, conversation_id: str) -> List[Rating]:
    with database.session(shop_url) as session:
        found = session.scalars(
            select(Rating).where(Rating.conversation_id == conversation_id).order_by(Rating.id)
        ).all()
        session.expunge_all()
        return list(found)


def said(messages: List[Dict[str, Any]]) -> List[str]:
    """The responses of a turn. A response with a custom payload (the survey) comes
    as two messages, its text and its payload, from one bot event: the payload's
    message has no response name of its own."""
    return [str(m["utter_action"]) for m in messages if "custom" not in m or m.get("text")]


def texts(messages: List[Dict[str, Any]]) -> str:
    return "\n".join(m.get("text") or "" for m in messages)


@pytest.mark.slow
def test_a_solved_chat_is_rated_by_number_and_commented(
    dialogue_agent: Any, shop_url: str
) -> None:
    chat = Chat(dialogue_agent, identity=visitor())
    assert said(chat.say("你好")) == ["utter_greet"]
    older = closed_handoff(shop_url, chat.sender, minutes_ago=90)
    handoff = closed_handoff(shop_url, chat.sender)
    assert older != handoff
    asked = trigger(chat, "handoff_closed")
    # Rasa's external message reads "EXTERNAL: handoff_closed": still Chinese.
    assert said(asked) == ["utter_ask_solved"] and message_language(texts(asked)) == "zh"
    solved = chat.say("解决了")
    assert said(solved)[0] == "utter_ask_rating"
    assert {"type": "satisfaction", "language": "zh"} in [m.get("custom") for m in solved]
    (row,) = ratings_of(shop_url, chat.sender)
    assert (row.handoff_id, row.solved, row.score, row.comment) == (handoff, 1, None, None)
    # WeChat shows the scores as numbered options; "4" is four points.
    rated = chat.say("4")
    assert said(rated) == ["utter_rating_thanks", "utter_ask_rating_comment"]
    assert "4 分" in texts(rated)
    (row,) = ratings_of(shop_url, chat.sender)
    assert (row.handoff_id, row.solved, row.score) == (handoff, 1, 4)
    assert said(chat.say("排队时间太长了")) == ["utter_comment_thanks"]
    (row,) = ratings_of(shop_url, chat.sender)
    assert row.comment == "排队时间太长了"
    # The survey is over: thanks are thanks.
    assert said(chat.say("谢谢")) == ["utter_thank"]
    assert chat.tracker.active_loop_name is None


@pytest.mark.slow
def test_a_chat_that_didnt_solve_it_offers_a_person_or_a_message(
    dialogue_agent: Any, shop_url: str
) -> None:
    chat = Chat(dialogue_agent, identity=visitor())
    chat.say("hello")
    handoff = closed_handoff(shop_url, chat.sender)
    (asked,) = trigger(chat, "handoff_closed")
    assert asked["utter_action"] == "utter_ask_solved" and message_language(asked["text"]) == "en"
    (sorry,) = chat.say(asked["buttons"][1]["payload"])  # "No, not solved"
    assert sorry["utter_action"] == "utter_not_solved"
    assert [b["payload"] for b in sorry["buttons"]] == ["/human_handoff", "/leave_message"]
    (row,) = ratings_of(shop_url, chat.sender)
    assert (row.handoff_id, row.solved, row.score) == (handoff, 0, None)
    # Their buttons still work: a message this time.
    assert said(chat.say("/leave_message")) == ["utter_ask_ticket_message"]


@pytest.mark.slow
def test_a_score_counts_anywhere_and_the_comment_may_be_skipped(
    dialogue_agent: Any, shop_url: str
) -> None:
    chat = Chat(dialogue_agent, identity=visitor())
    rated = chat.say("4 stars, took a while but sorted")
    assert said(rated) == ["utter_rating_thanks", "utter_ask_rating_comment"]
    assert message_language(texts(rated)) == "en"
    (row,) = ratings_of(shop_url, chat.sender)
    assert (row.handoff_id, row.solved, row.score, row.comment) == (None, None, 4, None)
    skip = rated[-1]["buttons"][0]
    assert skip["title"] == "Skip"
    assert said(chat.say(skip["payload"])) == ["utter_comment_skipped"]
    (row,) = ratings_of(shop_url, chat.sender)
    assert row.comment is None
    # A second score within the hour corrects the first (one row).
    assert said(chat.say("给你打五星")) == ["utter_rating_thanks", "utter_ask_rating_comment"]
    assert [r.score for r in ratings_of(shop_url, chat.sender)] == [5]
    # A score instead of the comment: thanked for, the comment isn't asked again.
    assert said(chat.say("还是4分吧")) == ["utter_rating_thanks"]
    assert [r.score for r in ratings_of(shop_url, chat.sender)] == [4]
    assert chat.tracker.active_loop_name is None


@pytest.mark.slow
def test_another_task_leaves_the_comment_question(dialogue_agent: Any, shop_url: str) -> None:
    chat = Chat(dialogue_agent, identity=visitor())
    assert said(chat.say("5分"))[-1] == "utter_ask_rating_comment"
    assert said(chat.say("我的订单到哪了")) == ["utter_ask_order_id"]
    (row,) = ratings_of(shop_url, chat.sender)
    assert (row.score, row.comment) == (5, None)


@pytest.mark.slow
def test_a_score_out_of_range_is_asked_for_once_more_then_let_go(
    dialogue_agent: Any, shop_url: str
) -> None:
    # A trusted caller may send payloads (a broken client's, say).
    chat = Chat(dialogue_agent, customer=False)
    chat.say("hi")
    again = chat.say('/rate{"score": 9}')
    assert said(again) == ["utter_ask_rating_again"]
    assert {"type": "satisfaction", "language": "en"} in [m.get("custom") for m in again]
    assert said(chat.say('/rate{"score": 0}')) == ["utter_rating_unclear"]
    assert ratings_of(shop_url, chat.sender) == []


# --- a database that fails ---------------------------------------------------------------


def run_action(action: Any, intent: str, text: str, entities: List[Dict[str, Any]] | None = None,
               slots: Dict[str, Any] | None = None) -> tuple[List[str], List[Dict[str, Any]]]:
    tracker = Tracker(
        f"web:v-{uuid.uuid4().hex}", {"language": "zh", **(slots or {})},
        {"intent": {"name": intent, "confidence": 1.0}, "entities": entities or [], "text": text},
        [], False, None, {}, "action_listen",
    )
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker, {}))
    return [m["response"] for m in dispatcher.messages], events


@pytest.fixture
def broken_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A shop database that answers every query with an error (never migrated)."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'gone' / 'shop.db'}")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_failing_database_loses_the_answer_not_the_turn(broken_database: Any) -> None:
    responses, events = run_action(ActionSurveySolved(), "affirm", "解决了")
    assert responses == ["utter_ask_rating"]
    assert events == [{"event": "slot", "timestamp": None, "name": "survey_solved",
                       "value": True}]
    responses, events = run_action(
        ActionSurveyRating(), "rate", "5分", [{"entity": "score", "value": "5分", "start": 0}]
    )
    # Thanked, but no comment asked for: it couldn't be kept either.
    assert responses == ["utter_rating_thanks"]
    assert [(e["name"], e["value"]) for e in events] == [("task_ready", False)]
    responses, _ = run_action(ActionSurveyComment(), "complain", "太慢了",
                              slots={"rating_comment": "太慢了"})
    assert responses == ["utter_comment_thanks"]


def test_the_last_response_ignores_a_rewound_first_reading() -> None:
    from actions.survey import last_response

    asked = {"event": "bot", "metadata": {"utter_action": "utter_ask_rating_comment"}}
    # A score given instead of the comment: the dialogue switches task and replays it.
    events = [
        {"event": "user", "text": "5分"}, asked, {"event": "user", "text": "4分"},
        {"event": "action", "name": "action_switch_task"}, {"event": "rewind"},
        {"event": "active_loop", "name": None}, {"event": "action", "name": "action_listen"},
        {"event": "user", "text": "4分"},
    ]
    tracker = Tracker("t", {}, {}, events, False, None, {}, "action_listen")
    assert last_response(tracker) == "utter_ask_rating_comment"
