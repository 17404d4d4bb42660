"""The web channel's limits per client address, tried the way an attacker would:
many visitors minted from one address, many sockets, messages spread over fresh
visitors, and a forged X-Forwarded-For.

The channel's own blueprint on a real Sanic server in this process (its limits
set low), real socket.io clients and the machine's Redis (database
TEST_SYSTEM_REDIS_DB, default 11); the bot is a stand-in that answers "ok".
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import pytest
import socketio

from connectors.web.addresses import AddressLimits
from connectors.web.channel import WebInput
from tests.channel_server import serve_channel
from tests.conftest import WEB_VISITOR_SECRET
from tests.redis_db import flushed_redis, redis_url
from tests.web_client import WebClient, claims_of

pytestmark = pytest.mark.asyncio

REDIS_URL = redis_url("TEST_SYSTEM_REDIS_DB", 11)
redis = flushed_redis(REDIS_URL)


@asynccontextmanager
async def web_server(
    monkeypatch: pytest.MonkeyPatch, real_ip_header: str = "", **limits: int
) -> AsyncIterator[tuple[str, list[str]]]:
    """The web channel with these per-address limits; (its URL, what the bot heard)."""
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    heard: list[str] = []

    async def bot(message: Any) -> None:
        heard.append(message.text)
        await message.output_channel.send_text_message(message.sender_id, "ok")

    channel = WebInput(
        visitor_secret=WEB_VISITOR_SECRET,
        real_ip_header=real_ip_header,
        address_limits=AddressLimits(**limits),
    )
    async with serve_channel(channel, bot) as url:
        yield url, heard


async def new_visitor(
    url: str, headers: dict[str, str] | None = None
) -> tuple[WebClient, Any]:
    """A fresh socket asking for a new visitor: the client and session_confirm's token,
    or the error it got instead."""
    client = await WebClient(url).connect(headers=headers)
    await client.emit("session_request", {"session_id": None})
    name, data = await first_of(client, "session_confirm", "error")
    if name == "session_confirm":
        client.token = data
    return client, data if name == "session_confirm" else {"error": data}


async def first_of(client: WebClient, *events: str) -> tuple[str, Any]:
    seen = client._seen

    def found() -> tuple[str, Any] | None:
        for name, data in client.events[seen:]:
            if name in events:
                return name, data
        return None

    while (hit := found()) is None:
        client._changed.clear()
        await client._changed.wait()
    client._seen = client.events.index(hit, seen) + 1
    return hit


async def close_all(clients: list[WebClient]) -> None:
    for client in clients:
        await client.close()


async def test_minting_visitors_from_one_address_is_refused_after_the_limit(
    monkeypatch: pytest.MonkeyPatch, redis: Any
) -> None:
    """Before: any number of visitors from one address, each with a fresh rate
    bucket. Now the fourth of 3 an hour gets `error` rate_limited and no session;
    a returning visitor is not a new one and still gets in."""
    clients: list[WebClient] = []
    async with web_server(monkeypatch, new_visitors_per_hour=3) as (url, heard):
        try:
            tokens = []
            for _ in range(3):
                client, token = await new_visitor(url)
                clients.append(client)
                assert isinstance(token, str), token
                tokens.append(token)
            for _ in range(3):  # new sockets, or the same one asking again
                client, refused = await new_visitor(url)
                clients.append(client)
                error = refused["error"]
                assert error["code"] == "rate_limited"
                assert "too many new visitors" in error["message"]
                assert 1 <= error["retry_after"] <= 1200  # one more every 20 minutes
                assert not client.since(0, "session_confirm")
                await client.emit("user_uttered", {"message": "hi"})
                assert (await client.wait("error"))["code"] == "no_session"
            await clients[0].emit("session_request", {"session_id": None})
            assert (await clients[0].wait("error"))["code"] == "rate_limited"
            # A forged token is no way around it: it would mint a visitor too.
            await clients[0].emit("session_request", {"session_id": "forged"})
            assert (await clients[0].wait("error"))["code"] == "invalid_session"
            assert (await clients[0].wait("error"))["code"] == "rate_limited"

            # A visitor who comes back is let in, with a fresh token of the same chat.
            back = await WebClient(url).connect()
            clients.append(back)
            renewed = await back.session(tokens[0])
            assert claims_of(renewed)["sub"] == claims_of(tokens[0])["sub"]
            await back.emit("user_uttered", {"message": "我又来了"})
            assert (await back.wait("bot_uttered")) == {"text": "ok"}
            assert heard == ["我又来了"]
        finally:
            await close_all(clients)


async def test_a_forged_forwarded_for_is_ignored_without_the_setting(
    monkeypatch: pytest.MonkeyPatch, redis: Any
) -> None:
    """Without real_ip_header every header is the client's own word: all these
    sockets are 127.0.0.1, whatever they claim."""
    clients: list[WebClient] = []
    async with web_server(monkeypatch, new_visitors_per_hour=2) as (url, _):
        try:
            claims = [
                {"X-Forwarded-For": "198.51.100.1"},
                {"X-Real-IP": "198.51.100.2"},
                {"X-Forwarded-For": "198.51.100.3, 198.51.100.4", "Forwarded": "for=1.2.3.4"},
                {"X-Forwarded-For": "198.51.100.5"},
            ]
            results = []
            for headers in claims:
                client, result = await new_visitor(url, headers)
                clients.append(client)
                results.append(result)
            assert all(isinstance(r, str) for r in results[:2]), results
            assert [r["error"]["code"] for r in results[2:]] == ["rate_limited"] * 2
            keys = sorted(await redis.keys("ratelimit:web:visitor:*"))
            assert keys == [b"ratelimit:web:visitor:127.0.0.1"]
        finally:
            await close_all(clients)


async def test_behind_a_proxy_the_configured_header_counts_its_last_entry(
    monkeypatch: pytest.MonkeyPatch, redis: Any
) -> None:
    """With real_ip_header: X-Forwarded-For, the entry our proxy appended (the
    last) is the client; what the client put before it changes nothing."""
    clients: list[WebClient] = []
    async with web_server(
        monkeypatch, real_ip_header="X-Forwarded-For", new_visitors_per_hour=2
    ) as (url, _):
        try:

            async def from_(header: str) -> Any:
                client, result = await new_visitor(url, {"X-Forwarded-For": header})
                clients.append(client)
                return result

            assert isinstance(await from_("198.51.100.7"), str)
            assert isinstance(await from_("10.0.0.1, 198.51.100.7"), str)
            # The same client, however it dresses up the part it controls.
            for spoofed in ("198.51.100.99, 198.51.100.7", "1.1.1.1,2.2.2.2, 198.51.100.7"):
                assert (await from_(spoofed))["error"]["code"] == "rate_limited"
            # Someone else behind the proxy is not held up.
            assert isinstance(await from_("198.51.100.8"), str)
            # IPv6: one /64 is one client.
            assert isinstance(await from_("2001:db8:7:7::1"), str)
            assert isinstance(await from_("2001:db8:7:7::2"), str)
            assert (await from_("2001:db8:7:7:ffff::3"))["error"]["code"] == "rate_limited"
            # Not an address (a misconfigured proxy): the socket's peer counts.
            assert isinstance(await from_("unknown"), str)
            keys = sorted(k.decode() for k in await redis.keys("ratelimit:web:visitor:*"))
            assert keys == [f"ratelimit:web:visitor:{a}" for a in
                            ("127.0.0.1", "198.51.100.7", "198.51.100.8", "2001:db8:7:7::/64")]
        finally:
            await close_all(clients)


async def test_too_many_sockets_from_one_address_are_refused_on_connect(
    monkeypatch: pytest.MonkeyPatch, redis: Any
) -> None:
    clients: list[WebClient] = []
    async with web_server(monkeypatch, connects_per_minute=3) as (url, _):
        try:
            for _ in range(3):
                clients.append(await WebClient(url).connect())
            refused = WebClient(url)
            with pytest.raises(socketio.exceptions.ConnectionError):
                await refused.connect()
            error = refused.since(0, "connect_error")[0]
            assert error["data"]["code"] == "rate_limited"
            assert 1 <= error["data"]["retry_after"] <= 20  # one more every 20 s
            assert "too many connections" in error["message"]
            # The sockets already open still work.
            client = clients[0]
            await client.session()
            await client.emit("user_uttered", {"message": "还在吗"})
            assert await client.wait("bot_uttered") == {"text": "ok"}
        finally:
            await close_all(clients)


async def test_messages_spread_over_fresh_visitors_still_meet_the_address_limit(
    monkeypatch: pytest.MonkeyPatch, redis: Any
) -> None:
    """Each visitor stays under its own limit (a burst of 5); together they are
    one address, allowed 4 a minute here: the rest get the too_fast notice and
    reach nobody."""
    clients: list[WebClient] = []
    async with web_server(monkeypatch, messages_per_minute=4) as (url, heard):
        try:
            answers = []
            for number in range(3):
                client, token = await new_visitor(url)
                clients.append(client)
                for turn in range(2):
                    await client.emit("user_uttered", {"message": f"访客{number} 第{turn}条"})
                    answers.append(await client.wait("bot_uttered"))
            assert answers[:4] == [{"text": "ok"}] * 4
            assert [a.get("notice") for a in answers[4:]] == ["too_fast"] * 2
            assert "太快" in answers[4]["text"]
            assert heard == ["访客0 第0条", "访客0 第1条", "访客1 第0条", "访客1 第1条"]
        finally:
            await close_all(clients)
