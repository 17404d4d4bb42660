"""The WeChat channel on two service instances sharing PostgreSQL and the
machine's Redis, as behind a load balancer. These instances answer through
the customer-service API (passive_reply_seconds 0), faked on loopback, and
run in safe mode (the default with an EncodingAESKey): encrypted messages only."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from redis import asyncio as aioredis

from connectors.identity import Identity
from connectors.push import DELIVERY_FAILURES_STREAM, DeliveryFailed
from connectors.retry_keys import REPEAT_KEY
from connectors.wechat.deliveries import MAX_TAKEOVERS, SWEEP_SECONDS, Deliveries, OwedReply
from tests.conftest import (
    SYSTEM_REDIS_URL,
    WECHAT_AES_KEY,
    WECHAT_TOKEN,
    Service,
    push_from_outside,
)
from tests.fake_wechat import APP_ID, FakeWeChatAPI, WeChatCaller, message_xml, new_openid
from tests.http_recorder import Recorder
from tests.test_wechat import WEBHOOK, concurrently, events, wait_until

pytestmark = pytest.mark.slow

SEND = "/cgi-bin/message/custom/send"


@pytest.fixture(scope="module")
def callers(scaled: list[Service]) -> list[WeChatCaller]:
    return [WeChatCaller(f"{s.url}{WEBHOOK}", WECHAT_TOKEN, WECHAT_AES_KEY, safe=True)
            for s in scaled]


@pytest.fixture(scope="module")
def shared_redis() -> redis.Redis:
    return redis.Redis.from_url(SYSTEM_REDIS_URL, decode_responses=True)


def text(openid: str, content: str, **fields: Any) -> str:
    return message_xml(openid, "text", Content=content, **fields)


def test_replies_go_through_the_customer_service_api(
    callers: list[WeChatCaller], wechat_api: FakeWeChatAPI
) -> None:
    openid = new_openid()
    answer = callers[0].post(text(openid, "运费怎么算"))
    assert answer.is_success  # at once; the reply follows through the API
    [reply] = wechat_api.wait_for_texts(openid)
    assert "包邮" in reply
    safe = callers[1].post(text(openid, "what is your return policy?"), safe=True)
    assert safe.is_success
    assert "within 7 days" in wechat_api.wait_for_texts(openid, 2)[1]


def test_retries_reaching_both_instances_get_one_reply(
    scaled: list[Service], callers: list[WeChatCaller], wechat_api: FakeWeChatAPI
) -> None:
    openid = new_openid()
    xml = text(openid, "运费怎么算")
    first, second = callers
    answers = concurrently([lambda: first.post(xml), lambda: second.post(xml),
                            lambda: first.post(xml)])
    assert all(a.is_success for a in answers)
    assert second.post(xml).is_success  # a late retry too
    # The next message's reply comes after any duplicate's would have.
    assert second.post(text(openid, "谢谢")).is_success
    texts = wechat_api.wait_for_texts(openid, 2)
    assert len(texts) == 2 and "包邮" in texts[0] and "不客气" in texts[1]
    assert [e["text"] for e in events(scaled[0], openid)] == ["运费怎么算", "谢谢"]


def test_safe_mode_refuses_plain_bodies_even_under_a_real_requests_signature(
    scaled: list[Service], callers: list[WeChatCaller], wechat_api: FakeWeChatAPI
) -> None:
    # An attacker who saw an encrypted request's URL (a proxy's access log) keeps
    # its signature, timestamp and nonce and posts a plain body as any OpenID.
    victim, intruder = new_openid(), new_openid()
    params, body = callers[0].request(text(victim, "运费怎么算"), safe=True)
    assert callers[0].send(params, body, safe=True).is_success
    assert "包邮" in wechat_api.wait_for_texts(victim)[0]
    kept = {k: params[k] for k in ("signature", "timestamp", "nonce")}
    for caller in callers:
        for openid in (intruder, victim):
            attack = caller.send(kept, text(openid, "我的订单到哪了").encode())
            assert attack.status == 403 and "safe mode" in attack.body, attack
    fresh = callers[1].query()  # a signature not used yet: plain is refused all the same
    assert callers[1].send(fresh, text(intruder, "你好").encode()).status == 403
    assert events(scaled[0], intruder) == []
    assert [e["text"] for e in events(scaled[0], victim)] == ["运费怎么算"]
    time.sleep(1.0)  # room for a reply, were anything processed
    assert wechat_api.texts_to(intruder) == []
    assert len(wechat_api.texts_to(victim)) == 1


def left_in_work_by_a_dead_instance(shared_redis: redis.Redis, msg_id: int) -> None:
    """A claim as a dead instance leaves it: in work, its lease no longer renewed."""
    shared_redis.set(f"wechat:{APP_ID}:seen:{msg_id}", "processing:dead-instance", ex=3600)
    shared_redis.set(f"wechat:{APP_ID}:lease:{msg_id}", "dead-instance", px=1)


def test_a_message_left_in_work_by_a_dead_instance_is_answered_on_retry(
    scaled: list[Service],
    callers: list[WeChatCaller],
    wechat_api: FakeWeChatAPI,
    shared_redis: redis.Redis,
) -> None:
    # An instance claimed the message and died mid-turn: its claim says
    # "processing" and its lease is no longer renewed. WeChat retries (same MsgId).
    openid = new_openid()
    msg_id = time.time_ns() % 10**18
    left_in_work_by_a_dead_instance(shared_redis, msg_id)
    xml = text(openid, "运费怎么算", msg_id=msg_id)
    assert callers[1].post(xml).is_success
    [reply] = wechat_api.wait_for_texts(openid, timeout=20)
    assert "包邮" in reply
    assert callers[0].post(xml).is_success  # a later retry: not processed again
    assert [e["text"] for e in events(scaled[0], openid)] == ["运费怎么算"]
    time.sleep(1.0)
    assert len(wechat_api.texts_to(openid)) == 1


def test_a_turn_stored_by_a_dead_instance_is_answered_from_the_store(
    scaled: list[Service],
    callers: list[WeChatCaller],
    wechat_api: FakeWeChatAPI,
    shared_redis: redis.Redis,
) -> None:
    # The owner stored the turn and died before its reply left: the copy that
    # takes over sends that turn's replies and runs no second turn.
    openid = new_openid()
    msg_id = time.time_ns() % 10**18
    xml = text(openid, "运费怎么算", msg_id=msg_id)
    assert callers[0].post(xml).is_success
    [first] = wechat_api.wait_for_texts(openid, timeout=20)
    stored = events(scaled[0], openid)
    # As the dead owner left it: in work, its lease no longer renewed.
    left_in_work_by_a_dead_instance(shared_redis, msg_id)
    time.sleep(0.05)
    assert callers[1].post(xml).is_success
    texts = wechat_api.wait_for_texts(openid, 2, timeout=20)
    assert texts == [first, first]  # the stored reply again, not a new turn's
    assert events(scaled[0], openid) == stored


def owe(openid: str, msg_id: int, text: str, *, lease_seconds: float, owner: str,
        takeovers: int = 0) -> OwedReply:
    """Write down a reply as an instance owing it does (connectors.wechat.deliveries)."""
    metadata = Identity("wechat", openid, "wechat_signature").metadata(
        app_id=APP_ID, msg_id=str(msg_id), msg_type="text"
    )
    metadata[REPEAT_KEY] = str(msg_id)
    owed = OwedReply(str(msg_id), f"wechat:{openid}", text, metadata, "zh")

    async def write() -> None:
        client = aioredis.Redis.from_url(SYSTEM_REDIS_URL, decode_responses=True)
        try:
            deliveries = Deliveries(client, APP_ID, lease_seconds)
            await deliveries.owe(owed, owner)
            if takeovers:
                await client.hset(deliveries.keys[3], owed.message_id, takeovers)
        finally:
            await client.close()

    asyncio.run(write())
    return owed


def still_owed(shared_redis: redis.Redis, message_id: str) -> bool:
    return shared_redis.zscore(f"wechat:{APP_ID}:owed", message_id) is not None


def test_a_reply_owed_by_a_dead_instance_is_delivered_by_another(
    scaled: list[Service], wechat_api: FakeWeChatAPI, shared_redis: redis.Redis
) -> None:
    # An instance told WeChat "success" (so WeChat won't resend) and died before
    # the reply left: a live instance finds the lapsed debt and answers.
    openid, msg_id = new_openid(), time.time_ns() % 10**18
    owe(openid, msg_id, "运费怎么算", lease_seconds=0.001, owner="dead-instance")
    [reply] = wechat_api.wait_for_texts(openid, timeout=30)
    assert "包邮" in reply
    assert [e["text"] for e in events(scaled[0], openid)] == ["运费怎么算"]
    wait_until(lambda: not still_owed(shared_redis, str(msg_id)), timeout=10)
    time.sleep(SWEEP_SECONDS * 2)  # settled: no one delivers it again
    assert len(wechat_api.texts_to(openid)) == 1


def test_an_owed_reply_whose_turn_was_stored_is_sent_from_the_store(
    scaled: list[Service], callers: list[WeChatCaller], wechat_api: FakeWeChatAPI,
    shared_redis: redis.Redis,
) -> None:
    # The dead instance had stored the turn: the reply is sent, no turn runs again.
    openid, msg_id = new_openid(), time.time_ns() % 10**18
    assert callers[0].post(text(openid, "运费怎么算", msg_id=msg_id)).is_success
    [first] = wechat_api.wait_for_texts(openid, timeout=20)
    wait_until(lambda: not still_owed(shared_redis, str(msg_id)), timeout=10)  # settled
    stored = events(scaled[0], openid)
    owe(openid, msg_id, "运费怎么算", lease_seconds=0.001, owner="dead-instance")
    assert wechat_api.wait_for_texts(openid, 2, timeout=30) == [first, first]
    assert events(scaled[0], openid) == stored


def test_a_live_owners_debt_is_left_alone_and_a_cursed_one_gets_the_notice(
    scaled: list[Service], wechat_api: FakeWeChatAPI, shared_redis: redis.Redis
) -> None:
    alive, alive_id = new_openid(), time.time_ns() % 10**18
    owe(alive, alive_id, "运费怎么算", lease_seconds=60, owner="a-live-instance")
    # Taken over three times already (its turn kills every server that runs it):
    # the fourth gives the trouble notice instead of running it again.
    cursed, cursed_id = new_openid(), alive_id + 1
    owe(cursed, cursed_id, "运费怎么算", lease_seconds=0.001, owner="dead-instance",
        takeovers=MAX_TAKEOVERS)
    [notice_text] = wechat_api.wait_for_texts(cursed, timeout=30)
    assert "系统繁忙" in notice_text
    assert events(scaled[0], cursed) == []
    assert wechat_api.texts_to(alive) == [] and still_owed(shared_redis, str(alive_id))
    shared_redis.zrem(f"wechat:{APP_ID}:owed", str(alive_id))


def test_instances_fetch_one_access_token_between_them(
    callers: list[WeChatCaller], wechat_api: FakeWeChatAPI, shared_redis: redis.Redis
) -> None:
    shared_redis.delete(f"wechat:{APP_ID}_access_token")  # as if it had expired
    issued = len(wechat_api.issued)
    customers = [new_openid() for _ in range(4)]
    answers = concurrently([
        lambda c=c, i=i: callers[i % 2].post(text(c, "你好"))  # type: ignore[misc]
        for i, c in enumerate(customers)
    ])
    assert all(a.is_success for a in answers)
    for customer in customers:
        assert wechat_api.wait_for_texts(customer), customer
    assert len(wechat_api.issued) == issued + 1
    token_calls = wechat_api.recorder.matching("/cgi-bin/token")
    assert token_calls[-1].query["appid"] == APP_ID

    # WeChat expires the token: one instance fetches the next, the other uses it.
    wechat_api.expire_tokens()
    answers = concurrently([
        lambda c=c, i=i: callers[i % 2].post(text(c, "谢谢"))  # type: ignore[misc]
        for i, c in enumerate(customers)
    ])
    for customer in customers:
        assert len(wechat_api.wait_for_texts(customer, 2)) == 2, customer
    assert len(wechat_api.issued) == issued + 2


def failures_for(shared_redis: redis.Redis, conversation: str) -> list[dict[str, str]]:
    return [e for _, e in shared_redis.xrange(DELIVERY_FAILURES_STREAM)
            if e["conversation_id"] == conversation]


def test_outside_the_48_hour_window_is_recorded_for_the_desk_and_nothing_crashes(
    scaled: list[Service],
    callers: list[WeChatCaller],
    wechat_api: FakeWeChatAPI,
    shared_redis: redis.Redis,
) -> None:
    openid = new_openid()
    wechat_api.fail_next(SEND, 45015, "response out of time limit or subscription is canceled")
    assert callers[0].post(text(openid, "运费怎么算")).is_success
    failures = wait_until(lambda: failures_for(shared_redis, f"wechat:{openid}"))
    assert [(f["channel"], f["code"]) for f in failures] == [("wechat", "45015")]
    assert "subscription is canceled" in failures[0]["detail"]
    assert wechat_api.texts_to(openid) == []
    # The quota too; and then both instances still answer.
    wechat_api.fail_next(SEND, 45047, "out of response count limit")
    assert callers[1].post(text(openid, "谢谢")).is_success
    failures = wait_until(lambda: len(failures_for(shared_redis, f"wechat:{openid}")) == 2)
    assert failures
    for i, caller in enumerate(callers):
        assert caller.post(text(openid, "你好")).is_success
        assert len(wechat_api.wait_for_texts(openid, i + 1)) == i + 1
    for service in scaled:
        assert service.get("/status")["model_file"]


def test_push_through_wechat_while_two_instances_run(
    scaled: list[Service],
    callers: list[WeChatCaller],
    wechat_api: FakeWeChatAPI,
    app_push: Recorder,
) -> None:
    openid = new_openid()
    conversation = f"wechat:{openid}"
    callers[0].post(text(openid, "你好"))  # the customer wrote: inside the 48 hours
    wechat_api.wait_for_texts(openid)
    long_text = "您的退款进度如下：" + "。".join(f"第{i}步已完成" for i in range(400))

    async def push_all() -> None:
        with push_from_outside(SYSTEM_REDIS_URL, wechat_api, app_push, scaled[1]) as push:
            await push.send(conversation, {
                "text": "您好，我是客服小青，请问您想了解哪方面？",
                "buttons": [{"title": "运费", "payload": "运费怎么算"},
                            {"title": "转人工", "payload": "/human_handoff"}],
            })
            await push.send(conversation, {"custom": {"type": "queue_position", "position": 2}})
            await push.send(conversation, {"text": long_text})
            wechat_api.fail_next(SEND, 45015, "response out of time limit")
            with pytest.raises(DeliveryFailed) as failed:
                await push.send(conversation, {"text": "这条送不到"})
            assert failed.value.code == "45015"

    started = len(wechat_api.texts_to(openid))
    asyncio.run(push_all())
    pushed = wechat_api.texts_to(openid)[started:]
    assert pushed[0] == (
        "您好，我是客服小青，请问您想了解哪方面？\n\n1. 运费\n2. 转人工\n\n回复数字即可选择。"
    )
    assert pushed[1] == "您前面还有 2 位。"
    long_parts = pushed[2:]
    assert len(long_parts) >= 2 and all(len(p.encode()) <= 2048 for p in long_parts)
    assert "".join(long_parts).replace("\n", "") == long_text
    # What was pushed is in the shared transcript…
    bot_lines = [e["text"] for e in events(scaled[0], openid, "bot")]
    assert "您好，我是客服小青，请问您想了解哪方面？" in bot_lines
    # …so the customer answers the pushed options by number, on the other instance.
    assert callers[1].post(text(openid, "1")).is_success
    reply = wechat_api.wait_for_texts(openid, started + len(pushed) + 1)[-1]
    assert "包邮" in reply
    said = events(scaled[0], openid)[-1]
    assert said["text"] == "1"  # what the customer typed stays in the transcript
    assert said["parse_data"]["text"] == "运费怎么算"
    assert said["metadata"]["option"] == {"number": 1, "payload": "运费怎么算"}


def test_unsubscribe_on_one_instance_is_in_the_shared_transcript(
    scaled: list[Service], callers: list[WeChatCaller]
) -> None:
    openid = new_openid()
    started = time.time()
    assert callers[1].post(message_xml(openid, "event", Event="unsubscribe")).is_success
    recorded = wait_until(lambda: events(scaled[0], openid))
    assert recorded and recorded[0]["metadata"]["event"] == "unsubscribe"
    assert recorded[0]["timestamp"] >= started - 1
