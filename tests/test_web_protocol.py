"""The web channel's checks of what clients send, and its plumbing; no server needed."""

from __future__ import annotations

import asyncio
import random

import pytest

from connectors.web.addresses import address_key
from connectors.web.channel import (
    RequestRefused,
    _InOrder,
    origin_checker,
    parse_origins,
    parse_utterance,
    pubsub_channel,
)


def test_parse_utterance() -> None:
    parsed = parse_utterance(
        {"message": "运费怎么算", "session_id": "tok", "customData": {"language": "zh"}}
    )
    assert parsed.text == "运费怎么算" and parsed.session_id == "tok"
    assert parsed.custom_data == {"language": "zh"}
    for bad in [
        None,
        "运费怎么算",
        ["运费怎么算"],
        {},
        {"message": ""},
        {"message": "   "},
        {"message": 3},
        {"message": "hi", "session_id": 5},
        {"message": "hi", "customData": "x"},
        {"message": "hi", "customData": {"k": "v" * 5000}},
        {"message": "hi", "display_text": ["x"]},
    ]:
        with pytest.raises(RequestRefused) as refused:
            parse_utterance(bad)
        assert refused.value.code == "bad_request"


def test_origins() -> None:
    assert parse_origins("https://shop.example, https://m.shop.example/ ,") == [
        "https://shop.example",
        "https://m.shop.example",
    ]
    check = origin_checker(["https://shop.example"])
    assert callable(check)
    env = {"HTTP_HOST": "bot.example:5005"}
    assert check("https://shop.example", env)
    assert check("http://bot.example:5005", env)  # the demo page on the service itself
    assert not check("https://evil.example", env)
    assert check(None, env)
    # Nothing configured: the service's own origin only (it was any origin).
    own_only = origin_checker([])
    assert callable(own_only)
    assert own_only("http://bot.example:5005", env)
    for other in ("https://shop.example", "https://evil.example", "http://bot.example:5006",
                  "http://bot.example:5005.evil.example", "null"):
        assert not own_only(other, env), other
    # Any origin only when asked for.
    assert origin_checker(["*"]) == "*"
    assert origin_checker(parse_origins("https://shop.example, *")) == "*"


def test_address_keys() -> None:
    assert address_key("203.0.113.7") == "203.0.113.7"
    assert address_key(" 203.0.113.7 ") == "203.0.113.7"
    # An IPv6 client has its provider's whole /64: one address for limits.
    assert address_key("2001:db8:1:2::1") == address_key("[2001:db8:1:2:ffff::9]")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:203.0.113.7") == "203.0.113.7"
    for junk in ("", "unknown", "evil.example", "203.0.113.7:80", "1.2.3.4, 5.6.7.8", "x" * 600):
        assert address_key(junk) is None, junk


def test_pubsub_channel_follows_the_database() -> None:
    assert pubsub_channel("redis://127.0.0.1:6379/12") == "socketio:web:12"
    assert pubsub_channel("redis://127.0.0.1:6379") == "socketio:web:0"
    assert pubsub_channel("redis://127.0.0.1:6379/12") != pubsub_channel("redis://h:1/13")


def test_messages_are_processed_in_arrival_order_even_when_some_are_refused() -> None:
    async def scenario() -> list[int]:
        in_order = _InOrder()
        processed: list[int] = []

        async def message(number: int, refused: bool) -> None:
            before, mine = in_order.ticket("sid")
            try:
                # Checks take different times (a Redis round trip), so finish out of order.
                await asyncio.sleep(random.uniform(0, 0.02))
                if refused:
                    return
                if before is not None:
                    await before
                await asyncio.sleep(random.uniform(0, 0.01))
                processed.append(number)
            finally:
                in_order.release("sid", before, mine)

        refused = {2, 3, 6}
        await asyncio.gather(*(message(n, n in refused) for n in range(10)))
        assert not in_order._tails, "nothing left behind for a quiet socket"
        return processed

    for _ in range(20):
        assert asyncio.run(scenario()) == [0, 1, 4, 5, 7, 8, 9]


def test_bot_run_summary_says_when_any_origin_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.cli import any_origin_note

    for quiet in ("", "https://shop.example", "https://shop.example,https://m.shop.example"):
        monkeypatch.setenv("WEB_ALLOWED_ORIGINS", quiet)
        assert any_origin_note() == ""
    for loud in ("*", " * ", "https://shop.example, *"):
        monkeypatch.setenv("WEB_ALLOWED_ORIGINS", loud)
        assert "ANY origin" in any_origin_note()
