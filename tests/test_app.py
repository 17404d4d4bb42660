"""The mobile app channel against the running service (`bot run`, embedded defaults).

Real HTTP (httpx) and a real WebSocket client (websockets); the app's
push-notification service is the recorder behind the `app_push` fixture.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.app_client import (
    AppSocket,
    app_token,
    bearer,
    expected_signature,
    new_customer,
    poll,
    post,
    pushes_for,
    refused_socket,
    say,
    user_events,
    wait_for_pushes,
)
from tests.conftest import APP_JWT_SECRET, Service
from tests.http_recorder import Recorder

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


def texts(frames: list[dict[str, Any]]) -> str:
    return "\n".join(f["message"].get("text", "") for f in frames)


# --- identity -----------------------------------------------------------------


async def test_chinese_question_answered_over_the_websocket(service: Service) -> None:
    customer = new_customer()
    socket = await AppSocket.open(service.url, app_token(customer))
    try:
        answer = await say(service.url, customer, "运费怎么算")
        assert answer["replies"] >= 1 and len(answer["reply_ids"]) == answer["replies"]
        frames = await socket.messages(answer["replies"])
        assert [f["id"] for f in frames] == answer["reply_ids"]
        assert "包邮" in texts(frames)
    finally:
        await socket.close()
    # The conversation is the token's subject, and actions see who vouched for it.
    (event,) = user_events(service.url, customer)
    assert event["text"] == "运费怎么算"
    assert event["input_channel"] == "app"
    assert event["message_id"] == answer["message_id"]
    assert event["metadata"]["identity"] == {
        "channel": "app",
        "subject": customer,
        "verified_by": "jwt",
        "customer": True,
    }


async def test_history_is_the_whole_conversation_for_the_tokens_customer(service: Service) -> None:
    """Where an app goes when the outbox says it no longer keeps what it missed (a "gap")."""
    import httpx

    customer = new_customer()
    answer = await say(service.url, customer, "运费怎么算")
    url = f"{service.url}/webhooks/app/history"
    async with httpx.AsyncClient(timeout=30) as client:
        found = await client.get(url, headers=bearer(app_token(customer)))
        assert found.status_code == 200, found.text
        body = found.json()
        assert body["conversation_id"] == f"app:{customer}"
        assert body["messages"][0] == {
            "sender": "customer",
            "text": "运费怎么算",
            "timestamp": body["messages"][0]["timestamp"],
        }
        bot_lines = [m for m in body["messages"] if m["sender"] == "bot"]
        assert len(bot_lines) == answer["replies"] and "包邮" in bot_lines[-1]["text"]
        # Only the token's own customer: another's token sees another conversation.
        other = await client.get(url, headers=bearer(app_token(new_customer())))
        assert other.status_code == 200 and other.json()["messages"] == []
        assert (await client.get(url)).status_code == 401
        limited = await client.get(url, params={"limit": 0}, headers=bearer(app_token(customer)))
        assert limited.status_code == 400


def bad_tokens(customer: str) -> dict[str, str | None]:
    import base64

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return {
        "expired": app_token(customer, lifetime=-3600),
        "forged": app_token(customer, secret="not-the-app-backends-secret-0123456789"),
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'sub': customer, 'exp': 4e9})}.",
        "wrong algorithm": app_token(customer, secret=APP_JWT_SECRET * 2, algorithm="HS512"),
        "no subject": app_token("", lifetime=600),
        # Made by the app's backend for another of its services: no audience, or another.
        "no audience": app_token(customer, aud=None),
        "another audience": app_token(customer, aud="shop-api"),
        "year-long": app_token(customer, lifetime=365 * 86400),
        "subject with a newline": app_token(customer + "\n"),
        "malformed": "not.a.jwt",
        "missing": None,
    }


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("expired", "token expired"),
        ("forged", "bad token signature"),
        ("alg none", "'none' is not accepted"),
        ("wrong algorithm", "'HS512' is not accepted"),
        ("no subject", "sub"),
        ("no audience", "lacks the 'aud' claim"),
        ("another audience", "audience (aud) is not 'customer-service'"),
        ("year-long", "exceeds 3600 s"),
        ("subject with a newline", "subject must be"),
        ("malformed", "malformed token"),
        ("missing", "missing token"),
    ],
)
async def test_bad_tokens_are_refused_and_nothing_is_processed(
    service: Service, app_push: Recorder, case: str, reason: str
) -> None:
    customer = new_customer()
    token = bad_tokens(customer)[case]

    answer = await post(service.url, token, {"text": "运费怎么算", "client_message_id": "k1"})
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "unauthorized"
    assert reason in answer.json()["detail"]
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")

    listing = await poll(service.url, token)
    assert listing.status_code == 401

    if token is None:
        # No header: the server waits for an auth frame; send something else.
        error, code = await refused_socket(service.url, first_frame={"type": "hello"})
    else:
        error, code = await refused_socket(service.url, token=token)
    assert error["type"] == "error" and error["error"] == "unauthorized"
    assert code == 4401

    assert user_events(service.url, customer) == []
    # The refused token's customer can't be reached through it, and later,
    # with a good token, has nothing waiting: nothing was queued.
    good = await poll(service.url, app_token(customer))
    assert good.status_code == 200 and good.json()["messages"] == []
    assert pushes_for(customer, app_push) == []


async def test_socket_auth_by_first_frame_and_protocol_errors(service: Service) -> None:
    customer = new_customer()
    token = app_token(customer)
    socket = await AppSocket.open(service.url, token, auth_frame=True)
    try:
        await socket.ws.send(json.dumps({"type": "ping"}))
        assert await socket.next_frame() == {"type": "pong"}
        await socket.ws.send("not json")
        error = await socket.next_frame()
        assert error["error"] == "unsupported" and "POST /webhooks/app/messages" in error["detail"]
        # The socket stays usable after a bad frame.
        answer = await say(service.url, customer, "hello there")
        frames = await socket.messages(answer["replies"])
        assert frames[0]["message"]["text"].startswith("Hi, I'm Jade")
    finally:
        await socket.close()

    error, code = await refused_socket(service.url, token=token, since="$")
    assert (error["error"], code) == ("bad_request", 4400)
    assert "since" in error["detail"]
    bad_frame = {"type": "auth", "token": app_token(customer, lifetime=-600)}
    error, code = await refused_socket(service.url, first_frame=bad_frame)
    assert (error["detail"], code) == ("token expired", 4401)


# --- offline delivery -------------------------------------------------------------


async def test_offline_messages_are_pushed_then_delivered_in_order_on_reconnect(
    service: Service, app_push: Recorder
) -> None:
    customer = new_customer()
    offline_ids: list[str] = []
    for text in ("你好", "运费怎么算", "what is your return policy?"):
        offline_ids += (await say(service.url, customer, text))["reply_ids"]
    assert len(offline_ids) >= 3

    # The push service hears of every message, signed with the shared secret.
    pushes = await wait_for_pushes(customer, app_push, len(offline_ids))
    assert sorted(p.json()["message_id"] for p in pushes) == sorted(offline_ids)
    for push in pushes:
        assert push.headers["x-signature"] == expected_signature(push.body)
        body = push.json()
        assert body["conversation_id"] == f"app:{customer}"
        assert body["preview"] and len(body["preview"]) <= 120
    assert any("包邮" in p.json()["preview"] for p in pushes)

    # Reconnecting from the start: everything, in order.
    socket = await AppSocket.open(service.url, app_token(customer), since="0")
    try:
        frames = await socket.messages(len(offline_ids))
        assert [f["id"] for f in frames] == offline_ids
        assert "青玉商城" in frames[0]["message"]["text"]  # the greeting, first
        assert any(f["message"].get("buttons") for f in frames)  # rich parts kept whole
        assert "包邮" in texts(frames) and "within 7 days" in texts(frames)

        # While connected: new replies come live, old ones not again, no push.
        online = await say(service.url, customer, "谢谢")
        frames = await socket.messages(online["replies"])
        assert [f["id"] for f in frames] == online["reply_ids"]
        last_seen = socket.seen[-1]
    finally:
        await socket.close()
    assert len(set(socket.seen)) == len(socket.seen)
    assert socket.seen == sorted(socket.seen, key=lambda i: tuple(map(int, i.split("-"))))

    # Offline again: pushed; a reconnect with the last id gets only what is newer.
    later = await say(service.url, customer, "how much is shipping")
    pushes = await wait_for_pushes(customer, app_push, len(offline_ids) + later["replies"])
    pushed = {p.json()["message_id"] for p in pushes}
    assert pushed == set(offline_ids) | set(later["reply_ids"])
    assert not pushed & set(online["reply_ids"])

    socket = await AppSocket.open(
        service.url, app_token(customer), since=last_seen, auth_frame=True
    )
    try:
        frames = await socket.messages(later["replies"])
        assert [f["id"] for f in frames] == later["reply_ids"]
        await socket.ws.send(json.dumps({"type": "ping"}))
        # Nothing else was queued before the pong.
        assert await socket.next_frame() == {"type": "pong"}
    finally:
        await socket.close()

    # Clients that poll see the same outbox, page by page.
    token = app_token(customer)
    everything = offline_ids + online["reply_ids"] + later["reply_ids"]
    first = (await poll(service.url, token, since="0", limit=2)).json()
    assert [m["id"] for m in first["messages"]] == everything[:2] and first["more"]
    rest = (await poll(service.url, token, since=first["last_id"])).json()
    assert [m["id"] for m in rest["messages"]] == everything[2:] and not rest["more"]
    assert (await poll(service.url, token, since="yesterday")).status_code == 400


async def test_push_webhook_failure_loses_nothing(service: Service, app_push: Recorder) -> None:
    customer = new_customer()
    original = app_push.route
    app_push.route = lambda request: (503, {"error": "push service down"})
    try:
        answer = await say(service.url, customer, "运费怎么算")
        await wait_for_pushes(customer, app_push, answer["replies"])
    finally:
        app_push.route = original
    listing = (await poll(service.url, app_token(customer))).json()
    assert [m["id"] for m in listing["messages"]] == answer["reply_ids"]


# --- bad input ----------------------------------------------------------------


async def test_same_client_message_id_is_processed_once(service: Service) -> None:
    customer = new_customer()
    first = await say(service.url, customer, "运费怎么算", client_message_id="m-0001")
    again = await post(
        service.url,
        app_token(customer),
        {"text": "运费怎么算", "client_message_id": "m-0001"},
    )
    assert again.status_code == 200
    assert again.json() == {"duplicate": True, **first}
    assert [e["text"] for e in user_events(service.url, customer)] == ["运费怎么算"]
    listing = (await poll(service.url, app_token(customer))).json()
    assert [m["id"] for m in listing["messages"]] == first["reply_ids"]

    # Another message, or another customer with the same key, is new.
    await say(service.url, customer, "运费怎么算", client_message_id="m-0002")
    other = new_customer()
    await say(service.url, other, "运费怎么算", client_message_id="m-0001")
    assert len(user_events(service.url, customer)) == 2
    assert len(user_events(service.url, other)) == 1

    # A retry racing the original: one turn; the other copy hears "in progress" or "done".
    token = app_token(customer)
    racing = await asyncio.gather(
        *(
            post(service.url, token, {"text": "怎么开发票", "client_message_id": "m-0003"})
            for _ in range(2)
        )
    )
    statuses = sorted(a.status_code for a in racing)
    assert statuses in ([200, 200], [200, 409]), statuses
    bodies = [a.json() for a in racing]
    assert len({b["message_id"] for b in bodies}) == 1
    assert sum(1 for b in bodies if "reply_ids" in b and not b.get("duplicate")) == 1
    assert [e["text"] for e in user_events(service.url, customer)].count("怎么开发票") == 1


@pytest.mark.parametrize(
    ("body", "status", "error", "notice"),
    [
        (b"{not json", 400, "bad_request", None),
        (b"\xff\xfe", 400, "bad_request", None),
        (b'["text"]', 400, "bad_request", None),
        (b"{}", 400, "bad_request", None),
        (b'{"text": "   "}', 400, "bad_request", None),
        (b'{"text": 42}', 400, "bad_request", None),
        (b'{"text": "hi", "client_message_id": "has spaces"}', 400, "bad_request", None),
        (b'{"text": "hi", "client_message_id": 7}', 400, "bad_request", None),
        (
            json.dumps({"text": "运" * 2001}).encode(),
            413,
            "too_long",
            "消息太长了（最多 2000 个字）",
        ),
        (json.dumps({"text": "a" * 2001}).encode(), 413, "too_long", "at most 2000 characters"),
        (json.dumps({"text": "hi", "pad": "x" * 70000}).encode(), 413, "too_large", None),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_processed(
    service: Service, body: bytes, status: int, error: str, notice: str | None
) -> None:
    customer = new_customer()
    answer = await post(service.url, app_token(customer), raw=body)
    assert answer.status_code == status, answer.text
    if error == "too_large":
        # Refused before it is read (connectors.body_limit): Sanic's own 413.
        assert "too large" in answer.text.lower(), answer.text
    else:
        assert answer.json()["error"] == error and answer.json()["detail"]
    if notice:
        assert notice in answer.json()["message"]
    assert user_events(service.url, customer) == []
    # The customer's next good message goes through (nothing stuck, no tokens spent).
    assert (await say(service.url, customer, "hello there"))["replies"] >= 1


async def test_too_fast_gets_429_with_retry_after(service: Service) -> None:
    customer = new_customer()
    token = app_token(customer)
    answers = await asyncio.gather(
        *(post(service.url, token, {"text": f"运费怎么算 {i}"}) for i in range(10))
    )
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) == {200, 429}, statuses
    refused = [a for a in answers if a.status_code == 429]
    for answer in refused:
        assert int(answer.headers["Retry-After"]) >= 1
        assert answer.json()["error"] == "too_fast"
        assert "您发送得太快了" in answer.json()["message"]
    accepted = {a.json()["message_id"] for a in answers if a.status_code == 200}
    # Only the accepted ones reached the bot.
    assert {e["message_id"] for e in user_events(service.url, customer)} == accepted


async def test_a_logged_in_demo_customer_sees_their_own_balance(service: Service) -> None:
    """The app's JWT subject is bound to a demo account (bot run seeded it)."""
    from actions.shop import money
    from bot.shop import database
    from bot.shop.schema import Customer, Identity

    url = f"sqlite:///{service.var_dir / 'shop.db'}"
    with database.session(url) as session:
        bound = session.query(Identity).filter_by(channel="app", subject="app-demo-en").one()
        balance = money(session.get(Customer, bound.customer_id).wallet_cents)
    socket = await AppSocket.open(service.url, app_token("app-demo-en"))
    try:
        answer = await say(service.url, "app-demo-en", "what's my wallet balance")
        frames = await socket.messages(answer["replies"])
        assert texts(frames) == f"Your Jade Wallet balance is {balance}."
    finally:
        await socket.close()
    stranger = new_customer()
    socket = await AppSocket.open(service.url, app_token(stranger))
    try:
        answer = await say(service.url, stranger, "what's my wallet balance")
        frames = await socket.messages(answer["replies"])
        # An app login no shop account knows: nothing shown, a person offered.
        assert "¥" not in texts(frames) and "isn't linked" in texts(frames)
    finally:
        await socket.close()
