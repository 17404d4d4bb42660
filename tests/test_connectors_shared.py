"""What every channel shares: conversation ids, limits, text rendering, push routing.

Redis-backed parts run against the machine's Redis server (a real one), under
keys of their own.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from redis import asyncio as aioredis

from connectors.identity import BadConversationId, Identity, split_conversation_id
from connectors.limits import Limits, RateLimiter
from connectors.push import Push, PushError, UnknownChannel, read_credentials
from connectors.rich import as_text, option_number, options_of
from tests.conftest import ROOT

REDIS_URL = "redis://127.0.0.1:6379/9"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _redis() -> aioredis.Redis:
    return aioredis.Redis.from_url(REDIS_URL, decode_responses=True)


def test_identity_makes_prefixed_conversation_ids_and_metadata() -> None:
    who = Identity("web", "u-42", "host_hmac", customer=True)
    assert who.conversation_id == "web:u-42"
    meta = who.metadata(page="/cart")
    assert meta["channel"] == "web" and meta["page"] == "/cart"
    assert meta["identity"] == {
        "channel": "web",
        "subject": "u-42",
        "verified_by": "host_hmac",
        "customer": True,
    }
    assert split_conversation_id("wechat:oAbc:def") == ("wechat", "oAbc:def")
    for bad in ("nochannel", ":x", "web:"):
        with pytest.raises(BadConversationId):
            split_conversation_id(bad)
    with pytest.raises(BadConversationId):
        Identity("we:b", "x", "jwt").conversation_id  # noqa: B018


def test_limits_from_credentials_and_validation() -> None:
    assert Limits.from_credentials(None) == Limits()
    limits = Limits.from_credentials({"max_message_chars": "10", "rate_burst": 2})
    assert limits.too_long("x" * 11) and not limits.too_long("x" * 10)
    with pytest.raises(ValueError):
        Limits.from_credentials({"rate_per_second": -1})


def test_token_bucket_allows_a_burst_then_the_rate_and_is_per_sender() -> None:
    async def scenario() -> tuple[list[bool], bool, bool, float]:
        redis = await _redis()
        limiter = RateLimiter(Limits(rate_per_second=5, rate_burst=3), prefix=uuid.uuid4().hex)
        burst = [(await limiter.hit(redis, "alice")).allowed for _ in range(4)]
        other = (await limiter.hit(redis, "bob")).allowed
        refused = await limiter.hit(redis, "alice")
        await asyncio.sleep(0.25)  # 5/s refills one token in 0.2 s
        later = (await limiter.hit(redis, "alice")).allowed
        await redis.close()
        return burst, other, later, refused.retry_after

    burst, other, later, retry_after = run(scenario())
    assert burst == [True, True, True, False]
    assert other and later
    assert 0 < retry_after <= 0.2


def test_buttons_become_numbered_options_in_the_message_language() -> None:
    message = {
        "text": "您好，请问有什么可以帮您？",
        "buttons": [
            {"title": "我的订单到哪了", "payload": "/order_status"},
            {"title": "转人工", "payload": "/human_handoff"},
        ],
    }
    text = as_text(message)
    assert "1. 我的订单到哪了\n2. 转人工" in text
    assert "回复数字" in text
    english = as_text({"text": "Hi!", "quick_replies": [{"title": "Yes", "payload": "/affirm"}]})
    assert "1. Yes" in english and "Reply with a number" in english
    assert as_text({"image": "https://shop.example/a.png"}) == "https://shop.example/a.png"


def test_custom_payloads_render_as_sentences() -> None:
    assert "小李" in as_text({"custom": {"type": "agent_joined", "agent": "小李"}})
    queue = as_text({"custom": {"type": "queue_position", "position": 3, "wait_minutes": 2}})
    assert "3" in queue and "2 分钟" in queue
    english = as_text({"custom": {"type": "queue_position", "position": 1, "language": "en"}})
    assert english == "You are number 1 in the queue."
    survey = {"custom": {"type": "satisfaction", "language": "en"}}
    # Numbered by score: "5" is five points, as the question says.
    assert "1. Very dissatisfied" in as_text(survey) and "5. Very satisfied" in as_text(survey)
    assert as_text(survey).count("Very satisfied") == 1
    assert [o["payload"] for o in options_of(survey)] == [
        f'/rate{{"score": {n}}}' for n in range(1, 6)
    ]


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("2", 2), (" 1. ", 1), ("２", 2), ("3、", 3), ("12", 12),
        ("12a", None), ("123", None), ("", None),
    ],
)
def test_a_bare_number_is_an_option_number(text: str, number: int | None) -> None:
    # Which option it picks, and when, is the dialogue's business (tests/test_payloads.py).
    assert option_number(text) == number


def test_push_reads_credentials_with_unset_variables_as_empty(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("UNSET_FOR_THIS_TEST", raising=False)
    creds = tmp_path / "credentials.yml"
    creds.write_text("connectors.rest.TokenRestInput:\n  token: ${UNSET_FOR_THIS_TEST}\n")
    assert read_credentials(creds) == {"connectors.rest.TokenRestInput": {"token": ""}}
    import os

    assert "UNSET_FOR_THIS_TEST" not in os.environ


def test_push_routes_by_prefix_and_refuses_what_it_cannot_send() -> None:
    push = Push.from_credentials_file(ROOT / "credentials.yml")
    assert {"wechat", "web", "app"} <= set(push.channel_names)
    with pytest.raises(UnknownChannel, match="sms"):
        run(push.send("sms:123", {"text": "hi"}))
    with pytest.raises(PushError, match="nothing to send"):
        run(push.send("web:v-1", {"txt": "typo"}))
    with pytest.raises(PushError, match="cannot push"):
        run(push.send("rest:someone", {"text": "hi"}))


def test_each_event_loop_gets_its_own_working_redis_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from connectors.clients import get_redis

    monkeypatch.setenv("REDIS_URL", REDIS_URL)

    async def use() -> tuple[int, bool]:
        client = get_redis()
        assert get_redis() is client  # shared within a loop
        return id(client), await client.ping()

    # Repeated asyncio.run: a new loop may reuse a dead loop's id(); each must
    # still get a client that works on it.
    results = [run(use()) for _ in range(5)]
    assert all(ok for _, ok in results)


def test_channels_import_nothing_from_the_service() -> None:
    """connectors/ is imported by the service (bot/), never the other way round
    (DESIGN.md): a channel must run wherever Rasa loads it."""
    import ast

    root = Path(__file__).resolve().parent.parent / "connectors"
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n == "bot" or n.startswith("bot.")]
    assert found == []
