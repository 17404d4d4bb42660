"""The WeChat channel's own blueprint on a real Sanic server in this process,
with the machine's Redis, WeChat's API servers faked on loopback and a
stand-in for the bot that records what reaches it: what an attacker can do
with a request seen in a proxy's access log, per encryption mode, and what
becomes of a message whose instance dies mid-turn (claims with a lease).
(tests/test_wechat.py and test_wechat_scaled.py do the same against `bot run`.)"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

import pytest
import redis
from redis import asyncio as aioredis

from connectors import refusals as refusal_log
from connectors.wechat.channel import WeChatInput
from tests.channel_server import serve_channel
from tests.conftest import SYSTEM_REDIS_URL
from tests.fake_wechat import (
    APP_ID,
    APP_SECRET,
    Answer,
    FakeWeChatAPI,
    WeChatCaller,
    message_xml,
    new_openid,
)

pytestmark = pytest.mark.timeout(120)

TOKEN = "hardening-wechat-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
WEBHOOK = "/webhooks/wechat/webhook"


@pytest.fixture(autouse=True)
def machine_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", SYSTEM_REDIS_URL)


@pytest.fixture(scope="module")
def fake_api() -> Any:
    fake = FakeWeChatAPI().start()
    # A token cached by another fake server's run would be refused here.
    redis.Redis.from_url(SYSTEM_REDIS_URL).delete(f"wechat:{APP_ID}_access_token")
    yield fake
    fake.stop()


class Bot:
    """Stands in for Rasa: records each message that reaches it and answers
    after `seconds`."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.heard: list[tuple[str, str]] = []

    async def __call__(self, message: Any) -> None:
        self.heard.append((message.sender_id, message.text))
        await asyncio.sleep(self.seconds)
        await message.output_channel.send_text_message(message.sender_id, f"答：{message.text}")

    def heard_from(self, openid: str) -> list[str]:
        return [text for sender, text in self.heard if sender == f"wechat:{openid}"]


def channel(fake: FakeWeChatAPI, **settings: Any) -> WeChatInput:
    return WeChatInput.from_credentials({
        "token": TOKEN, "app_id": APP_ID, "app_secret": APP_SECRET,
        "encoding_aes_key": AES_KEY, "api_base_url": fake.base_url, **settings,
    })


class Server:
    def __init__(self, base: str, bot: Bot) -> None:
        self.caller = WeChatCaller(f"{base}{WEBHOOK}", TOKEN, AES_KEY)
        self.bot = bot

    async def call(self, fn: Callable[..., Answer], *args: Any, **kw: Any) -> Answer:
        # The caller is blocking (urllib); the server runs on this loop.
        return await asyncio.to_thread(fn, *args, **kw)


@asynccontextmanager
async def serve(wechat: WeChatInput, bot: Bot) -> AsyncIterator[Server]:
    async with serve_channel(wechat, bot) as base:
        yield Server(base, bot)


def run(wechat: WeChatInput, bot: Bot, scenario: Callable[[Server], Any]) -> Any:
    async def main() -> Any:
        async with serve(wechat, bot) as server:
            return await scenario(server)

    return asyncio.run(main())


def stripped(params: dict[str, str]) -> dict[str, str]:
    """An encrypted request's query as an attacker keeps it: the query signature,
    timestamp and nonce, without the parts that say the body is encrypted."""
    return {k: v for k, v in params.items() if k in ("signature", "timestamp", "nonce")}


# --- the encryption mode: a request seen in an access log can't be turned plain --------


def test_safe_mode_refuses_a_plain_body_under_a_real_requests_signature(
    fake_api: FakeWeChatAPI, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refusal_log, "_shared", refusal_log.RefusalLog())  # fresh windows
    victim, intruder = new_openid(), new_openid()
    bot = Bot()

    async def scenario(server: Server) -> tuple[Answer, list[Answer]]:
        caller = server.caller
        params, body = caller.request(message_xml(victim, "text", Content="运费怎么算"), True)
        real = await server.call(caller.send, params, body, True)
        plain = message_xml(intruder, "text", Content="我的订单到哪了").encode()
        attacks = [
            # Stripped to a plain body, with the signature not used up yet…
            await server.call(caller.send, stripped(caller.query()), plain),
            # …and with the one the real request carried.
            await server.call(caller.send, stripped(params), plain),
            # Still saying "aes" and keeping msg_signature, but the body plain.
            await server.call(caller.send, params, plain),
            # encrypt_type spelled otherwise.
            await server.call(caller.send, {**params, "encrypt_type": "AES"}, plain),
        ]
        return real, attacks

    with caplog.at_level(logging.WARNING, logger="connectors.wechat"):
        real, attacks = run(channel(fake_api), bot, scenario)  # no mode given: safe, as keyed
    assert real.reply == "答：运费怎么算"
    assert [a.status for a in attacks] == [403] * 4, [a.body for a in attacks]
    for attack in (attacks[0], attacks[1], attacks[3]):
        assert "safe mode" in attack.body
    assert "bad msg_signature" in attacks[2].body  # it covers the <Encrypt> there isn't
    assert bot.heard_from(intruder) == []  # nothing reached the bot
    assert not [m for m in fake_api.sent_messages() if m.get("touser") == intruder]
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    # Three refusals of one kind: one line (connectors.refusals), no request text in it.
    assert sum("plain message, but the channel is in safe mode" in r for r in refusals) == 1


def test_compatible_mode_takes_both_but_each_signature_once(fake_api: FakeWeChatAPI) -> None:
    victim, intruder = new_openid(), new_openid()
    bot = Bot()

    async def scenario(server: Server) -> list[Answer]:
        caller = server.caller
        xml = message_xml(victim, "text", Content="运费怎么算")
        params, body = caller.request(xml, True)
        answers = [
            await server.call(caller.send, params, body, True),  # encrypted
            await server.call(caller.post, message_xml(victim, "text", Content="谢谢")),  # plain
        ]
        plain = message_xml(intruder, "text", Content="我的订单到哪了").encode()
        # At another instance: the used signatures are in the shared Redis.
        async with serve(channel(fake_api, encryption_mode="compatible"), bot) as other:
            answers.append(await other.call(other.caller.send, stripped(params), plain))
        # The victim's own OpenID and MsgId are in the encrypted body: the attacker
        # can't see them; even so, a message with them is the same message (de-dup),
        # not a new one.
        answers.append(await server.call(caller.send, params, body, True))  # exact replay
        return answers

    answers = run(channel(fake_api, encryption_mode="compatible"), bot, scenario)
    assert [a.reply for a in answers[:2]] == ["答：运费怎么算", "答：谢谢"]
    assert answers[2].status == 403 and "signature was already used" in answers[2].body
    assert answers[3].reply == "答：运费怎么算"  # the same answer; not processed again
    assert bot.heard_from(victim) == ["运费怎么算", "谢谢"]
    assert bot.heard_from(intruder) == []


def test_plain_mode_refuses_encrypted_bodies_and_reused_signatures(
    fake_api: FakeWeChatAPI,
) -> None:
    customer, intruder = new_openid(), new_openid()
    bot = Bot()

    async def scenario(server: Server) -> list[Answer]:
        caller = server.caller
        query = caller.query()
        first = await server.call(
            caller.post, message_xml(customer, "text", Content="你好"), query=query
        )
        reused = await server.call(
            caller.post, message_xml(intruder, "text", Content="你好"), query=query
        )
        encrypted = await server.call(
            caller.post, message_xml(customer, "text", Content="hi"), safe=True
        )
        return [first, reused, encrypted]

    first, reused, encrypted = run(channel(fake_api, encryption_mode="明文模式"), bot, scenario)
    assert first.reply == "答：你好"
    assert reused.status == 403 and "already used" in reused.body
    assert encrypted.status == 403 and "plain mode" in encrypted.body
    assert bot.heard_from(customer) == ["你好"] and bot.heard_from(intruder) == []


# --- a claim left by an instance that died mid-turn ---------------------------------------


def leave_dead_claim(msg_id: int, lapsed: bool = True) -> None:
    """What an instance that died mid-turn leaves in Redis: the message's claim
    "processing" under its owner id, and a lease it no longer renews."""
    client = redis.Redis.from_url(SYSTEM_REDIS_URL)
    client.set(f"wechat:{APP_ID}:seen:{msg_id}", "processing:dead-instance", ex=3600)
    client.set(f"wechat:{APP_ID}:lease:{msg_id}", "dead-instance", px=1 if lapsed else 2500)
    time.sleep(0.01)


def test_a_retry_takes_over_a_message_whose_instance_died(fake_api: FakeWeChatAPI) -> None:
    openid = new_openid()
    bot = Bot()
    msg_id = time.time_ns()
    xml = message_xml(openid, "text", msg_id=msg_id, Content="运费怎么算")
    leave_dead_claim(msg_id)

    async def scenario(server: Server) -> list[Answer]:
        retry = await server.call(server.caller.post, xml, safe=True)
        late = await server.call(server.caller.post, xml, safe=True)  # and once more
        return [retry, late]

    retry, late = run(channel(fake_api), bot, scenario)
    assert retry.reply == "答：运费怎么算"
    assert late.reply == "答：运费怎么算"  # the same answer, not a second turn
    assert bot.heard_from(openid) == ["运费怎么算"]
    assert fake_api.texts_to(openid) == []


def test_a_retry_waits_out_a_dead_instances_lease_and_then_answers(
    fake_api: FakeWeChatAPI,
) -> None:
    # The lease was renewed just before the instance died: the retry sees it
    # live, waits (within WeChat's 5 s) for it to lapse, and takes over.
    openid = new_openid()
    bot = Bot()
    msg_id = time.time_ns()
    xml = message_xml(openid, "text", msg_id=msg_id, Content="运费怎么算")
    leave_dead_claim(msg_id, lapsed=False)

    async def scenario(server: Server) -> tuple[Answer, float]:
        started = time.monotonic()
        answer = await server.call(server.caller.post, xml, safe=True)
        return answer, time.monotonic() - started

    answer, took = run(channel(fake_api), bot, scenario)
    assert took < 5.0  # inside WeChat's window
    assert answer.reply == "答：运费怎么算"
    assert bot.heard_from(openid) == ["运费怎么算"]


def test_retries_during_a_live_turn_get_one_answer(fake_api: FakeWeChatAPI) -> None:
    # The turn takes 6 s, six times the lease: only renewal keeps it from being
    # taken over. WeChat's retries come while it runs, on the same instance or
    # another one (same Redis).
    openid = new_openid()
    bot = Bot(seconds=6.0)
    wechat = channel(fake_api, claim_lease_seconds=1)
    other = channel(fake_api, claim_lease_seconds=1)  # a second instance
    xml = message_xml(openid, "text", Content="运费怎么算")

    async def scenario(server: Server) -> list[Answer]:
        async with serve(other, bot) as second:
            first = asyncio.ensure_future(server.call(server.caller.post, xml, safe=True))
            await asyncio.sleep(1.5)
            retry = asyncio.ensure_future(server.call(second.caller.post, xml, safe=True))
            await asyncio.sleep(2.0)
            again = await server.call(server.caller.post, xml, safe=True)
            answers = [await first, await retry, again]
            await asyncio.to_thread(fake_api.wait_for_texts, openid, 1, 10)
            await asyncio.sleep(1.0)  # room for a second reply, were there one
            return answers

    answers = run(wechat, bot, scenario)
    assert all(a.is_success for a in answers), answers  # the turn outlived every window
    assert bot.heard_from(openid) == ["运费怎么算"]
    assert fake_api.texts_to(openid) == ["答：运费怎么算"]  # once, through the API


def test_a_retry_during_a_short_live_turn_gets_its_passive_answer(
    fake_api: FakeWeChatAPI,
) -> None:
    openid = new_openid()
    bot = Bot(seconds=2.0)
    xml = message_xml(openid, "text", Content="运费怎么算")

    async def scenario(server: Server) -> list[Answer]:
        first = asyncio.ensure_future(server.call(server.caller.post, xml, safe=True))
        await asyncio.sleep(0.5)
        retry = await server.call(server.caller.post, xml, safe=True)
        return [await first, retry]

    first, retry = run(channel(fake_api, claim_lease_seconds=1), bot, scenario)
    # WeChat shows the answer to whichever request it still waits on: the same one.
    assert first.reply == retry.reply == "答：运费怎么算"
    assert bot.heard_from(openid) == ["运费怎么算"]
    assert fake_api.texts_to(openid) == []


def test_claims_scripts_agree_on_one_owner() -> None:
    from connectors.wechat.claims import Claims

    async def scenario() -> None:
        client = aioredis.Redis.from_url(SYSTEM_REDIS_URL, decode_responses=True)
        claims = Claims(client, f"unit-{time.time_ns()}", lease_seconds=0.5)
        try:
            assert await claims.claim("m", "a")
            assert not await claims.claim("m", "b")
            assert await claims.renew("m", "a") and not await claims.renew("m", "b")
            await asyncio.sleep(0.6)  # a stopped renewing: b takes over
            assert (await claims.await_outcome("m", "b")).take_over
            assert not await claims.renew("m", "a")
            assert not await claims.answer_passively("m", "a", "late")  # a hung, then woke
            assert not await claims.go_async("m", "a")  # and sends nothing
            assert await claims.answer_passively("m", "b", "答")
            outcome = await claims.await_outcome("m", "c")
            assert outcome.reply == "答" and not outcome.take_over
            assert 3500 < await client.ttl(claims.prefix + "m") <= 3600
        finally:
            await client.close()

    asyncio.run(scenario())
