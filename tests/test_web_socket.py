"""The web channel over real socket.io, against the running service (`bot run`).

python-socketio clients speak Rasa's socket.io protocol as rasa-webchat and our
widget do; what the server did is checked in the Rasa tracker.
"""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest
import socketio

from connectors.web.identity import user_hash
from tests.conftest import (
    SYSTEM_REDIS_URL,
    WEB_IDENTITY_SECRET,
    WEB_VISITOR_SECRET,
    Service,
    push_from_outside,
)
from tests.web_client import (
    WebClient,
    append_bot_events,
    claims_of,
    conversation_of,
    forge,
    host_auth,
    texts,
    tracker,
    user_texts,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


async def visitor(service: Service, token: str | None = None) -> WebClient:
    client = await WebClient(service.url).connect()
    await client.session(token)
    return client


async def test_new_visitor_gets_a_signed_token_and_no_history(service: Service) -> None:
    client = await visitor(service)
    try:
        # Like stock Rasa: the session id is a plain string.
        assert isinstance(client.token, str)
        claims = jwt.decode(
            client.token, WEB_VISITOR_SECRET, algorithms=["HS256"], audience="jade-web-session"
        )
        assert claims["sub"].startswith("v-") and len(claims["sub"]) == 34
        assert claims["iat"] > 0
        assert client.history == []
    finally:
        await client.close()


async def test_chinese_question_gets_the_chinese_answer(service: Service) -> None:
    client = await visitor(service)
    try:
        replies = await client.say("运费怎么算")
        assert "包邮" in texts(replies)
        events = tracker(service, client.conversation_id)["events"]
        user = [e for e in events if e["event"] == "user"]
        assert [e["text"] for e in user] == ["运费怎么算"]
        assert user[0]["input_channel"] == "web"
        metadata = user[0]["metadata"]
        assert metadata["channel"] == "web"
        assert metadata["identity"] == {
            "channel": "web",
            "subject": client.conversation_id.removeprefix("web:"),
            "verified_by": "visitor_token",
            "customer": False,
        }
    finally:
        await client.close()


async def test_buttons_arrive_as_socketio_quick_replies(service: Service) -> None:
    client = await visitor(service)
    try:
        replies = await client.say("你好")
        with_buttons = [m for m in replies if m.get("quick_replies")]
        assert with_buttons, replies
        first = with_buttons[0]["quick_replies"][0]
        # Exactly stock SocketIOOutput's shape, which rasa-webchat renders.
        assert set(first) == {"content_type", "title", "payload"}
        assert first["content_type"] == "text"
        titles = [q["title"] for q in with_buttons[0]["quick_replies"]]
        assert "转人工" in titles
    finally:
        await client.close()


async def test_reconnect_and_second_tab_share_the_conversation(service: Service) -> None:
    first = await visitor(service)
    await first.say("运费怎么算")
    await first.close()

    again = await visitor(service, first.token)
    other_tab = await visitor(service, first.token)
    try:
        assert again.conversation_id == other_tab.conversation_id == first.conversation_id
        history = again.history or []
        assert history[0] == {
            "sender": "customer",
            "text": "运费怎么算",
            "timestamp": history[0]["timestamp"],
        }
        assert "包邮" in history[1]["text"] and history[1]["sender"] == "bot"

        # What one tab says and hears, the other tab sees too.
        start = len(other_tab.events)
        replies = await again.say("怎么开发票")
        assert "发票" in texts(replies)
        echoed = await other_tab.wait("customer_uttered")
        assert echoed == {"text": "怎么开发票"}
        await other_tab.wait("bot_uttered", lambda m: "发票" in m.get("text", ""))
        assert not again.since(0, "customer_uttered"), "the sender doesn't get its own echo"
        assert other_tab.since(start, "typing")
    finally:
        await again.close()
        await other_tab.close()


async def test_forged_token_is_refused_and_gets_a_fresh_session(service: Service) -> None:
    victim = await visitor(service)
    await victim.say("运费怎么算")
    attacker = await visitor(service)
    try:
        # The attacker's own valid token, re-signed… with no secret: subject swapped.
        own = attacker.conversation_id
        forged = forge(attacker.token or "", victim.conversation_id.removeprefix("web:"))
        start = len(attacker.events)
        new_token = await attacker.session(forged)
        error = attacker.since(start, "error")
        assert error and error[0]["code"] == "invalid_session"
        assert conversation_of(new_token) not in (victim.conversation_id, own)
        assert attacker.history == [], "nothing of the victim's conversation is shown"
        for garbage in ("not-a-token", "web:" + victim.conversation_id, 42):
            start = len(attacker.events)
            token = await attacker.session(garbage)  # type: ignore[arg-type]
            assert attacker.since(start, "error")[0]["code"] == "invalid_session"
            assert conversation_of(token) != victim.conversation_id
        assert user_texts(service, victim.conversation_id) == ["运费怎么算"]
    finally:
        await victim.close()
        await attacker.close()


async def test_someone_elses_session_id_is_refused_and_nothing_processed(
    service: Service,
) -> None:
    victim = await visitor(service)
    await victim.say("运费怎么算")
    attacker = await visitor(service)
    try:
        await attacker.emit(
            "user_uttered", {"message": "我要退款 JM202411230456", "session_id": victim.token}
        )
        error = await attacker.wait("error")
        assert error["code"] == "wrong_session"
        # The owner's next message is answered, and is the only one after the first.
        await victim.say("怎么开发票")
        assert user_texts(service, victim.conversation_id) == ["运费怎么算", "怎么开发票"]
        assert user_texts(service, attacker.conversation_id) == []
        assert not victim.since(0, "customer_uttered")
    finally:
        await victim.close()
        await attacker.close()


async def test_user_uttered_before_a_session_is_refused(service: Service) -> None:
    client = await WebClient(service.url).connect()
    try:
        await client.emit("user_uttered", {"message": "运费怎么算", "session_id": None})
        assert (await client.wait("error"))["code"] == "no_session"
        assert not client.since(0, "bot_uttered")
    finally:
        await client.close()


async def test_malformed_payloads_get_an_error_and_the_socket_keeps_working(
    service: Service,
) -> None:
    client = await visitor(service)
    try:
        for bad in ["运费怎么算", ["运费怎么算"], {}, {"message": 5}, {"message": "  "},
                    {"message": "运费", "customData": "zh"}, None]:
            await client.emit("user_uttered", bad)
            error = await client.wait("error")
            assert error["code"] == "bad_request", (bad, error)
            assert error["message"]
        await client.emit("session_request", "not an object")
        assert (await client.wait("error"))["code"] == "bad_request"
        assert "包邮" in texts(await client.say("运费怎么算"))
        assert user_texts(service, client.conversation_id) == ["运费怎么算"]
    finally:
        await client.close()


async def test_a_resumed_visitor_gets_a_fresh_token_and_the_old_one_still_speaks(
    service: Service,
) -> None:
    """Sliding tokens: each resume issues a new token (30 days from now) for the same
    conversation; a tab still holding the previous one (stock rasa-webchat sends what
    its storage holds) is not cut off, but only for its own conversation."""
    first = await visitor(service)
    await first.say("运费怎么算")
    old = first.token or ""
    back = await visitor(service, old)
    stranger = await visitor(service)
    try:
        assert back.token != old
        assert back.conversation_id == first.conversation_id
        fresh, previous = claims_of(back.token or ""), claims_of(old)
        assert fresh["iat"] >= previous["iat"] and fresh["jti"] != previous["jti"]
        assert [line["text"] for line in back.history or []][0] == "运费怎么算"
        # The renewed socket hears a message sent with the older token of its chat …
        await back.emit("user_uttered", {"message": "怎么开发票", "session_id": old})
        await back.wait("typing", lambda d: d == {"typing": False})
        assert user_texts(service, first.conversation_id) == ["运费怎么算", "怎么开发票"]
        # … and another visitor's socket refuses it.
        await stranger.emit("user_uttered", {"message": "我要退款", "session_id": old})
        assert (await stranger.wait("error"))["code"] == "wrong_session"
        assert user_texts(service, stranger.conversation_id) == []
    finally:
        await first.close()
        await back.close()
        await stranger.close()


async def test_any_origin_is_refused_but_the_services_own(service: Service) -> None:
    """No WEB_ALLOWED_ORIGINS (the test service's case): a page elsewhere can't open
    the socket (it could, from any origin, before); the demo page on the service can."""
    for evil in ("http://evil.example", "null", service.url + ".evil.example"):
        with pytest.raises(socketio.exceptions.ConnectionError):
            await WebClient(service.url).connect(headers={"Origin": evil})
    own = await WebClient(service.url).connect(headers={"Origin": service.url})
    try:
        await own.session()
        assert "包邮" in texts(await own.say("运费怎么算"))
    finally:
        await own.close()
    log = service.log.read_text()
    assert "web widget" in log and "ANY origin" not in log


async def test_an_expired_or_unexpiring_host_signature_is_refused(service: Service) -> None:
    """A user_hash that leaked (a log, a cached page) stops working at its expiry;
    one without an expiry (the old form, valid forever) is refused outright."""
    expired = host_auth("alice-1001", expires=int(time.time()) - 5)
    moved = {**expired, "user_expires": int(time.time()) + 3600}  # its expiry pushed back
    unexpiring = {"user_id": "alice-1001", "user_hash": user_hash(WEB_IDENTITY_SECRET,
                                                                  "alice-1001")}
    for auth, why in [(expired, "expired"), (moved, "does not match"),
                      (unexpiring, "user_expires is missing")]:
        refused = WebClient(service.url)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(auth=auth)
        error = refused.since(0, "connect_error")[0]
        assert error["data"] == {"code": "identity_refused"}, auth
        assert why in error["message"]

        client = await WebClient(service.url).connect()
        try:
            await client.emit("session_request", {"session_id": None, **auth})
            error = await client.wait("error")
            assert error["code"] == "identity_refused" and why in error["message"]
            assert not client.since(0, "session_confirm")
        finally:
            await client.close()


async def test_host_site_user_with_a_good_hmac(service: Service) -> None:
    by_auth = await WebClient(service.url).connect(auth=host_auth("alice-1001"))
    by_request = await WebClient(service.url).connect()
    try:
        await by_auth.session()
        await by_request.session(None, **host_auth("alice-1001"))
        assert by_auth.conversation_id == by_request.conversation_id == "web:u-alice-1001"
        await by_auth.say("运费怎么算")
        user = [
            e for e in tracker(service, "web:u-alice-1001")["events"] if e["event"] == "user"
        ][-1]
        assert user["metadata"]["identity"]["verified_by"] == "host_hmac"
        assert user["metadata"]["identity"]["customer"] is True
        # The user's token alone (say, after the host site logged them out) is not them.
        anonymous = await visitor(service, by_auth.token)
        assert anonymous.conversation_id.startswith("web:v-")
        assert anonymous.history == []
        await anonymous.close()
    finally:
        await by_auth.close()
        await by_request.close()


async def test_host_site_user_with_a_bad_hmac_is_refused(service: Service) -> None:
    refused = WebClient(service.url)
    with pytest.raises(Exception, match="(?i)connect"):
        await refused.connect(auth=host_auth("alice-1001", secret="not-the-shared-secret"))
    error = refused.since(0, "connect_error")[0]
    assert error["data"] == {"code": "identity_refused"}
    assert "does not match" in error["message"]

    client = await WebClient(service.url).connect()
    try:
        wrong = {"user_id": "alice-1001", "user_hash": user_hash(WEB_IDENTITY_SECRET, "bob")}
        await client.emit("session_request", {"session_id": None, **wrong})
        assert (await client.wait("error"))["code"] == "identity_refused"
        await client.emit("user_uttered", {"message": "我的订单到哪了"})
        assert (await client.wait("error"))["code"] == "no_session"
        assert not client.since(0, "session_confirm")
    finally:
        await client.close()


async def test_too_long_gets_a_notice_and_nothing_processed(service: Service) -> None:
    client = await visitor(service)
    try:
        await client.emit("user_uttered", {"message": "运" * 2001, "session_id": client.token})
        notice = await client.wait("bot_uttered")
        assert notice["notice"] == "too_long"
        assert "2000" in notice["text"] and "太长" in notice["text"]
        await client.emit(
            "user_uttered", {"message": "a" * 2001, "session_id": client.token}
        )
        assert "too long" in (await client.wait("bot_uttered"))["text"]
        assert not client.since(0, "typing"), "nothing was processed"
        # At the limit is fine.
        at_limit = "运费怎么算" + "啊" * 1995
        await client.say(at_limit)
        assert user_texts(service, client.conversation_id) == [at_limit]
    finally:
        await client.close()


async def test_too_fast_gets_a_notice_and_nothing_processed(service: Service) -> None:
    client = await visitor(service)
    try:
        burst = [f"运费怎么算 {i}" for i in range(9)]
        for text in burst:
            await client.emit("user_uttered", {"message": text, "session_id": client.token})
        first_notice = await client.wait("bot_uttered", lambda m: m.get("notice") == "too_fast")
        assert "太快" in first_notice["text"]

        async def settled() -> list[str]:
            # Until every message is either refused or answered, in order.
            while True:
                refused = [m for m in client.since(0, "bot_uttered") if m.get("notice")]
                stored = user_texts(service, client.conversation_id)
                turns = client.since(0, "typing").count({"typing": False})
                if len(refused) + turns == len(burst) and len(stored) == turns:
                    return stored
                await asyncio.sleep(0.2)

        stored = await asyncio.wait_for(settled(), 120)
        refused = len(burst) - len(stored)
        assert 1 <= refused <= len(burst) - 5, "a burst of 5 is allowed, then 1 a second"
        # The accepted ones were processed in the order they were sent.
        assert stored == sorted(stored, key=burst.index)
    finally:
        await client.close()


async def test_agent_messages_and_widget_payloads_through_rasa_api(service: Service) -> None:
    """A bot event appended through Rasa's API reaches the widget via the in-process
    output channel, with custom payloads under "custom" and rich history after."""
    client = await visitor(service)
    try:
        await client.say("你好")
        start = len(client.events)
        append_bot_events(
            service,
            client.conversation_id,
            [
                {"event": "bot", "text": "", "data": {"custom": {"type": "queue_position",
                                                                "position": 2, "wait_minutes": 3}}},
                {"event": "bot", "text": "", "data": {"custom": {"type": "agent_joined",
                                                                "agent": "小李"}}},
                {"event": "bot", "text": "您好，我是小李", "metadata": {"agent": "小李"}},
            ],
        )
        got = [await client.wait("bot_uttered") for _ in range(3)]
        assert got[0] == {"custom": {"type": "queue_position", "position": 2, "wait_minutes": 3}}
        assert got[1] == {"custom": {"type": "agent_joined", "agent": "小李"}}
        assert got[2]["text"] == "您好，我是小李" and got[2]["agent"] == "小李"
        assert len(client.since(start, "bot_uttered")) == 3

        again = await visitor(service, client.token)
        agent_line = again.history[-1] if again.history else {}
        assert agent_line["sender"] == "agent" and agent_line["agent"] == "小李"
        assert any(line.get("custom", {}).get("type") == "agent_joined" for line in again.history)
        await again.close()
    finally:
        await client.close()


async def test_push_reaches_clients_on_both_instances(
    scaled: list[Service], wechat_api, app_push  # type: ignore[no-untyped-def]
) -> None:
    one, two = scaled
    on_one = await visitor(one)
    on_two = await visitor(two, on_one.token)
    try:
        assert on_two.conversation_id == on_one.conversation_id
        with push_from_outside(SYSTEM_REDIS_URL, wechat_api, app_push) as push:
            await push.send(on_one.conversation_id, {"text": "您的工单已受理"})
            await push.send(
                on_one.conversation_id, {"custom": {"type": "agent_joined", "agent": "小王"}}
            )
        for client in (on_one, on_two):
            assert await client.wait("bot_uttered") == {"text": "您的工单已受理"}
            assert await client.wait("bot_uttered") == {
                "custom": {"type": "agent_joined", "agent": "小王"}
            }
        # A bot answer on instance one reaches the tab on instance two.
        assert "包邮" in texts(await on_one.say("运费怎么算"))
        await on_two.wait("bot_uttered", lambda m: "包邮" in m.get("text", ""))
    finally:
        await on_one.close()
        await on_two.close()
