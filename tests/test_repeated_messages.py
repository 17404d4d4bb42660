"""A message sent again with the same key is answered once (bot.repeated_messages),
on the running service: REST returns the stored replies, the web socket runs no
second turn, and the history tells the widget what arrived."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    BotUttered,
    Event,
    UserUtteranceReverted,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker

from bot.repeated_messages import stored_replies
from tests.conftest import REST_TOKEN, Service
from tests.web_client import WebClient, tracker

KEY = "client_message_id"


def user(text: str, key: str | None = None) -> UserUttered:
    return UserUttered(text, {"name": "greet"}, metadata={KEY: key} if key else {})


def listen() -> ActionExecuted:
    return ActionExecuted("action_listen")


def replies_of(events: list[Event], key: str) -> list[str] | None:
    state = DialogueStateTracker.from_events("c", events, domain=Domain.empty())
    found = stored_replies(state.applied_events(), key)
    return None if found is None else [r.text for r in found]


def test_the_turn_of_the_keyed_message_and_no_more() -> None:
    events: list[Event] = [
        listen(), user("hi", "k1"), ActionExecuted("utter_greet"), BotUttered("Hello!"),
        BotUttered("How can I help?"), listen(),
        BotUttered("an agent's line, later"),
        user("bye", "k2"), ActionExecuted("utter_bye"), BotUttered("Bye!"), listen(),
    ]
    assert replies_of(events, "k1") == ["Hello!", "How can I help?"]
    assert replies_of(events, "k2") == ["Bye!"]
    assert replies_of(events, "k3") is None
    # Stored, with no reply (a paused conversation): answered with nothing, not run.
    assert replies_of([listen(), user("hi", "k4"), listen()], "k4") == []


def test_a_rewound_first_run_is_not_the_turn() -> None:
    # The dialogue takes a message back and runs it again (task switch): the
    # replies of the run that stayed are the turn's.
    events: list[Event] = [
        listen(), user("refund", "k1"), ActionExecuted("utter_a"), BotUttered("first run"),
        UserUtteranceReverted(), user("refund", "k1"), ActionExecuted("utter_b"),
        BotUttered("second run"), listen(),
    ]
    assert replies_of(events, "k1") == ["second run"]


def rest(service: Service, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{service.url}/webhooks/rest/webhook",
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {REST_TOKEN}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def keyed_users(service: Service, conversation: str, key: str) -> list[dict[str, Any]]:
    events = tracker(service, conversation)["events"]
    return [
        e for e in events
        if e["event"] == "user" and (e.get("metadata") or {}).get(KEY) == key
    ]


def test_rest_resend_gets_the_stored_replies_without_a_second_turn(service: Service) -> None:
    sender, key = f"repeat-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    status, first = rest(service, {"sender": sender, "message": "运费怎么算", "message_id": key})
    assert status == 200 and first, first
    events_before = len(tracker(service, sender)["events"])
    # The caller lost the answer (time-out, crash) and sends the message again.
    status, again = rest(service, {"sender": sender, "message": "运费怎么算", "message_id": key})
    assert status == 200
    assert [m.get("text") for m in again] == [m.get("text") for m in first]
    assert len(tracker(service, sender)["events"]) == events_before  # nothing ran
    assert len(keyed_users(service, sender, key)) == 1
    # A new key is a new message, even with the same words.
    status, third = rest(
        service, {"sender": sender, "message": "运费怎么算", "message_id": uuid.uuid4().hex}
    )
    assert status == 200 and third
    assert len(tracker(service, sender)["events"]) > events_before
    # The key is per conversation: another customer's message with it runs.
    other = f"repeat-{uuid.uuid4().hex[:10]}"
    status, theirs = rest(service, {"sender": other, "message": "运费怎么算", "message_id": key})
    assert status == 200 and theirs
    assert len(keyed_users(service, other, key)) == 1


@pytest.mark.parametrize(
    "message_id", ["", "a" * 101, "has space", "new\nline", "k\n", 7, ["k"], {"k": 1}]
)
def test_rest_refuses_a_bad_message_id(service: Service, message_id: Any) -> None:
    status, answer = rest(
        service, {"sender": "repeat-bad", "message": "hi", "message_id": message_id}
    )
    assert status == 400 and "message_id" in answer["error"], answer


def test_rest_metadata_cannot_set_the_key_itself(service: Service) -> None:
    # One way to give the key: metadata's own client_message_id is dropped.
    sender, key = f"repeat-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    for _ in range(2):
        status, answer = rest(
            service, {"sender": sender, "message": "运费怎么算", "metadata": {KEY: key}}
        )
        assert status == 200 and answer
    said = [e for e in tracker(service, sender)["events"] if e["event"] == "user"]
    assert len(said) == 2 and not keyed_users(service, sender, key)


@pytest.mark.asyncio
async def test_web_resend_runs_no_second_turn_and_the_history_names_it(
    service: Service,
) -> None:
    client = await WebClient(service.url).connect()
    try:
        await client.session()
        key = uuid.uuid4().hex
        payload = {"message": "运费怎么算", "session_id": client.token, "customData": {},
                   "message_id": key}
        ack = await client.sio.call("user_uttered", payload, timeout=120)
        assert ack == {"message_id": key, "status": "done"}
        conversation = client.conversation_id
        assert len(keyed_users(service, conversation, key)) == 1
        events_before = len(tracker(service, conversation)["events"])

        # The widget reconnects after a drop and finds the message in the history.
        again = await WebClient(service.url).connect()
        try:
            await again.session(client.token)
            keyed = [m for m in again.history or [] if m.get("message_id") == key]
            assert [m["text"] for m in keyed] == ["运费怎么算"]
            # Had it resent anyway (no history yet), no second turn runs.
            start = len(again.events)
            ack = await again.sio.call("user_uttered", payload, timeout=120)
            assert ack == {"message_id": key, "status": "done"}
            assert not again.since(start, "bot_uttered")
        finally:
            await again.close()
        assert len(tracker(service, conversation)["events"]) == events_before
        assert len(keyed_users(service, conversation, key)) == 1
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_web_acknowledges_a_refused_message_too(service: Service) -> None:
    client = await WebClient(service.url).connect()
    try:
        await client.session()
        ack = await client.sio.call(
            "user_uttered",
            {"message": "hi", "session_id": client.token, "message_id": "bad id"},
            timeout=30,
        )
        assert ack == {"message_id": "bad id", "status": "refused"}
        error = await client.wait("error")
        assert error["code"] == "bad_request" and "message_id" in error["message"]
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_app_retry_after_a_crash_between_stored_and_done_runs_no_second_turn(
    scaled: list[Service],
) -> None:
    # The server stored the turn and died before recording the key as done:
    # its "processing" lease lapses (here: deleted) and the app's retry comes in.
    import redis

    from connectors.identity import conversation_id
    from tests.app_client import say
    from tests.conftest import SYSTEM_REDIS_URL

    first, other = scaled
    customer, key = f"repeat-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    done = await say(first.url, customer, "运费怎么算", client_message_id=key)
    assert done["replies"] >= 1
    conversation = conversation_id("app", customer)
    events_before = len(tracker(first, conversation)["events"])
    assert redis.Redis.from_url(SYSTEM_REDIS_URL).delete(f"app:idem:{key}:{customer}") == 1
    again = await say(other.url, customer, "运费怎么算", client_message_id=key)
    assert again["replies"] == 0  # its replies went to the outbox the first time
    assert len(tracker(first, conversation)["events"]) == events_before
    assert len(keyed_users(first, conversation, key)) == 1
