"""The WeChat channel's parts that need no Rasa server: request checks, reply
rendering, text splitting, config, the menu file, and the access-token
client against the fake WeChat API and the machine's Redis."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode

import httpx
import pytest
import redis
import xmltodict
from redis import asyncio as aioredis
from wechatpy.crypto import WeChatCrypto

from connectors.push import DELIVERY_FAILURES_STREAM, DeliveryFailed, PushError, read_credentials
from connectors.wechat.api import SharedTokenClient
from connectors.wechat.channel import WeChatConfig, WeChatInput, media_details, media_text
from connectors.wechat.claims import RETRY_WAIT_SECONDS, Claims
from connectors.wechat.inbound import (
    MAX_BODY_BYTES,
    Refused,
    read_message,
    render_reply,
    sign,
    signature_ok,
    verify_url,
)
from connectors.wechat.menu import CREDENTIALS_KEY, MenuError, check_menu, load_menu, publish_menu
from connectors.wechat.modes import check_mode
from connectors.wechat.output import WeChatOutput, render_turn, split_text
from tests.channel_server import serve_channel
from tests.conftest import ROOT, SYSTEM_REDIS_URL
from tests.fake_wechat import (
    APP_ID,
    APP_SECRET,
    FakeWeChatAPI,
    WeChatCaller,
    message_xml,
    new_openid,
)

pytestmark = pytest.mark.timeout(120)

TOKEN = "unit-wechat-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
NOW = 1_700_000_000
CRYPTO = WeChatCrypto(TOKEN, AES_KEY, APP_ID)

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE xml [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<xml><ToUserName>gh_x</ToUserName><FromUserName>oAbc</FromUserName>
<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&lol3;</Content><MsgId>1</MsgId></xml>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>gh_x</ToUserName><FromUserName>oAbc</FromUserName>
<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&x;</Content><MsgId>1</MsgId></xml>"""


def plain_args(timestamp: int = NOW, nonce: str = "n0nce") -> dict[str, str]:
    return {"signature": sign(TOKEN, str(timestamp), nonce), "timestamp": str(timestamp),
            "nonce": nonce}


def safe_request(xml: str, timestamp: int = NOW, nonce: str = "n0nce") -> tuple[bytes, dict]:
    envelope = xmltodict.parse(CRYPTO.encrypt_message(xml, nonce, str(timestamp)))["xml"]
    args = {**plain_args(timestamp, nonce), "encrypt_type": "aes",
            "msg_signature": envelope["MsgSignature"]}
    body = f"<xml><ToUserName>gh_x</ToUserName><Encrypt>{envelope['Encrypt']}</Encrypt></xml>"
    return body.encode(), args


def refused(body: bytes, args: dict, crypto: WeChatCrypto | None = CRYPTO) -> Refused:
    with pytest.raises(Refused) as error:
        read_message(body, args, TOKEN, crypto, now=NOW)
    return error.value


# --- signatures and freshness ---------------------------------------------------------


def test_signature_is_wechats_and_compared_whole() -> None:
    good = sign(TOKEN, "123", "abc")
    assert signature_ok(good, TOKEN, "123", "abc")
    assert signature_ok(good, "abc", "123", TOKEN)  # WeChat sorts the parts
    assert not signature_ok(good[:-1], TOKEN, "123", "abc")
    assert not signature_ok(good.upper(), TOKEN, "123", "abc")
    assert not signature_ok(None, TOKEN, "123", "abc")
    assert not signature_ok("签名", TOKEN, "123", "abc")  # non-ASCII: refused, no TypeError


def test_url_verification() -> None:
    args = {**plain_args(), "echostr": "4213467"}
    assert verify_url(args, TOKEN, now=NOW) == "4213467"
    for bad, status in [
        ({**args, "signature": "0" * 40}, 403),
        ({**args, "timestamp": str(NOW - 301)}, 403),
        ({k: v for k, v in args.items() if k != "nonce"}, 403),
        ({k: v for k, v in args.items() if k != "echostr"}, 400),
    ]:
        with pytest.raises(Refused) as error:
            verify_url(bad, TOKEN, now=NOW)
        assert error.value.status == status


def test_stale_and_future_timestamps_are_refused_even_when_signed() -> None:
    xml = message_xml("oAbc", "text", Content="hi").encode()
    for skew in (-301, 301, -10_000):
        assert refused(xml, plain_args(NOW + skew)).status == 403
    assert read_message(xml, plain_args(NOW + 299), TOKEN, CRYPTO, now=NOW).openid == "oAbc"


def test_plain_message_is_read() -> None:
    xml = message_xml("oUser_1-x", "text", msg_id=42, Content="运费怎么算")
    inbound = read_message(xml.encode(), plain_args(), TOKEN, CRYPTO, now=NOW)
    assert (inbound.openid, inbound.msg_type, inbound.dedup_id) == ("oUser_1-x", "text", "42")
    assert inbound.message.content == "运费怎么算"
    assert not inbound.encrypted


def test_bad_plain_signature_is_refused_before_the_body_is_read() -> None:
    args = {**plain_args(), "signature": sign("another-token", str(NOW), "n0nce")}
    assert refused(b"<not xml", args).status == 403


def test_safe_mode_message_is_decrypted_and_checked() -> None:
    xml = message_xml("oSafe", "text", msg_id=7, Content="how much is shipping")
    body, args = safe_request(xml)
    inbound = read_message(body, args, TOKEN, CRYPTO, now=NOW)
    assert inbound.encrypted and inbound.fields["Content"] == "how much is shipping"
    # A plain signature alone does not pass for the encrypted body.
    assert refused(body, {**args, "msg_signature": args["signature"]}).status == 403
    # Encrypted for another app id: refused by wechatpy's check.
    other = WeChatCrypto(TOKEN, AES_KEY, "wx0000000000000000")
    envelope = xmltodict.parse(other.encrypt_message(xml, "n0nce", str(NOW)))["xml"]
    body2 = f"<xml><Encrypt>{envelope['Encrypt']}</Encrypt></xml>".encode()
    args2 = {**args, "msg_signature": envelope["MsgSignature"]}
    assert refused(body2, args2).status == 403
    # Safe mode asked for but not configured.
    assert refused(body, args, crypto=None).status == 403


def test_undecryptable_envelope_is_a_400() -> None:
    encrypt = "bm90IGNpcGhlcnRleHQ="
    args = {**plain_args(), "encrypt_type": "aes",
            "msg_signature": sign(TOKEN, str(NOW), "n0nce", encrypt)}
    error = refused(f"<xml><Encrypt>{encrypt}</Encrypt></xml>".encode(), args)
    assert error.status == 400 and "decrypt" in error.reason


@pytest.mark.parametrize(
    "body, words",
    [
        (b"<xml><MsgType>text</MsgType>", "malformed"),
        (b"", "malformed"),
        (b"\xff\xfe<xml/>", "malformed"),
        (BILLION_LAUGHS, "DTD"),
        (EXTERNAL_ENTITY, "DTD"),
        (b"<root><MsgType>text</MsgType></root>", "root"),
        (b"<xml>" + b"a" * MAX_BODY_BYTES + b"</xml>", "larger"),
        (b"<xml><FromUserName>oA</FromUserName><ToUserName>g</ToUserName></xml>", "MsgType"),
    ],
)
def test_bad_bodies_are_400s(body: bytes, words: str) -> None:
    error = refused(body, plain_args())
    assert error.status == 400 and words in error.reason


def test_billion_laughs_inside_an_encrypted_message_is_refused_too() -> None:
    body, args = safe_request(BILLION_LAUGHS.decode())
    error = refused(body, args)
    assert error.status == 400 and "DTD" in error.reason


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"FromUserName": "../../etc"}, "OpenID"),
        ({"FromUserName": "o" * 65}, "OpenID"),
        ({"MsgId": "12ab"}, "MsgId"),
        ({"CreateTime": "yesterday"}, "CreateTime"),
    ],
)
def test_fields_that_become_ids_are_checked(fields: dict[str, str], reason: str) -> None:
    base = {"ToUserName": "gh_x", "FromUserName": "oAbc", "CreateTime": "1",
            "MsgType": "text", "Content": "hi", "MsgId": "1", **fields}
    body = xmltodict.unparse({"xml": base}, full_document=False).encode()
    assert reason in refused(body, plain_args()).reason


def test_events_are_deduplicated_by_sender_time_and_event() -> None:
    xml = message_xml("oEvt", "event", Event="subscribe", EventKey="qrscene_spring")
    inbound = read_message(xml.encode(), plain_args(), TOKEN, CRYPTO, now=NOW)
    created = inbound.fields["CreateTime"]
    assert inbound.dedup_id == f"oEvt:{created}:subscribe:qrscene_spring"
    assert inbound.message.event == "subscribe_scan"  # wechatpy's reading of qrscene_


# --- replies ----------------------------------------------------------------------------


def test_passive_reply_plain_and_encrypted() -> None:
    xml = message_xml("oReply", "text", Content="hi")
    inbound = read_message(xml.encode(), plain_args(), TOKEN, CRYPTO, now=NOW)
    reply = xmltodict.parse(render_reply(inbound, "您好 ]]> <b>", CRYPTO))["xml"]
    assert reply["ToUserName"] == "oReply" and reply["FromUserName"] != "oReply"
    assert reply["Content"] == "您好 ]]> <b>"  # CDATA survives a "]]>" in the text

    body, args = safe_request(xml)
    inbound = read_message(body, args, TOKEN, CRYPTO, now=NOW)
    envelope = render_reply(inbound, "运费满99包邮", CRYPTO)
    outer = xmltodict.parse(envelope)["xml"]
    inner = CRYPTO.decrypt_message(envelope, outer["MsgSignature"], outer["TimeStamp"],
                                   outer["Nonce"])
    assert xmltodict.parse(inner)["xml"]["Content"] == "运费满99包邮"


def test_a_turn_renders_as_one_text_with_numbered_options() -> None:
    text = render_turn([
        {"text": "您好"},
        {"text": "请选择", "buttons": [{"title": "查订单", "payload": "/order_status"},
                                     {"title": "转人工", "payload": "/human_handoff"}]},
        {"image": "https://img.example.com/a.png"},
    ])
    assert text == ("您好\n\n请选择\n\n1. 查订单\n2. 转人工\n\n回复数字即可选择。\n\n"
                    "https://img.example.com/a.png")
    assert render_turn([{"text": "  "}, {}]) == ""


def test_the_satisfaction_survey_is_asked_once_with_scores_as_numbers() -> None:
    # utter_ask_rating: a question and the typed custom payload. Rasa's output
    # channels send the two as separate messages; WeChat showed the scores twice.
    question = "请为本次服务打个分吧（5 分最满意）："
    survey = {"type": "satisfaction", "language": "zh"}
    expected = (f"{question}\n\n1. 非常不满意\n2. 不满意\n3. 一般\n4. 满意\n5. 非常满意"
                "\n\n回复数字即可选择。")
    assert render_turn([{"text": question}, {"custom": survey}]) == expected
    # As one message (Rasa's trigger_intent hands the output channel whole responses).
    assert render_turn([{"text": question, "custom": survey}]) == expected
    # Pushed alone, without a question of its own: a default one, once.
    bare = render_turn([{"custom": {"type": "satisfaction", "language": "en"}}])
    assert bare.startswith("How did we do? 5 is best.\n\n1. Very dissatisfied\n")
    assert bare.count("Very satisfied") == 1 and bare.endswith("Reply with a number to choose.")


def test_long_texts_are_split_within_wechats_byte_limit() -> None:
    paragraph = "退货政策：" + "商品签收后七天内可无理由退货。" * 20  # ~900 bytes
    text = "\n\n".join([paragraph] * 5)
    chunks = split_text(text)
    assert len(chunks) > 1
    assert all(len(c.encode()) <= 2048 for c in chunks)
    assert all(c.startswith("退货政策") for c in chunks)  # cut between paragraphs
    assert "".join(chunks).replace("\n", "") == text.replace("\n", "")
    # No separator at all: cut anywhere, never inside a character.
    solid = "字" * 1500
    assert [len(c) for c in split_text(solid)] == [682, 682, 136]
    assert split_text("short") == ["short"]
    assert split_text("") == []


def test_media_is_described_for_the_transcript() -> None:
    xml = message_xml("oM", "location", Location_X="23.13", Location_Y="113.26", Scale="15",
                      Label="广州市天河区")
    inbound = read_message(xml.encode(), plain_args(), TOKEN, CRYPTO, now=NOW)
    details = media_details(inbound)
    assert details == {"type": "location", "Location_X": "23.13", "Location_Y": "113.26",
                       "Scale": "15", "Label": "广州市天河区"}
    assert media_text(details) == "[location] 广州市天河区 (23.13, 113.26)"


# --- config ------------------------------------------------------------------------------


def test_config_from_credentials() -> None:
    block = read_credentials(ROOT / "credentials.yml")[CREDENTIALS_KEY]
    config = WeChatConfig.from_credentials({**block, "token": "t", "app_id": APP_ID,
                                            "app_secret": "s"})
    assert config.passive_reply_seconds == 4.0  # ${WECHAT_PASSIVE_REPLY_SECONDS} unset
    assert config.claim_lease_seconds == 3.0  # ${WECHAT_CLAIM_LEASE_SECONDS} unset
    assert config.encryption_mode == "plain"  # ${WECHAT_ENCRYPTION_MODE} unset, no key
    assert config.api_base_url == "https://api.weixin.qq.com/cgi-bin/"
    assert config.menu_intents["HUMAN"] == "/human_handoff"
    assert not config.missing
    assert WeChatConfig.from_credentials({"passive_reply_seconds": "0"}).passive_reply_seconds == 0
    off = WeChatConfig.from_credentials({"token": "t"})
    assert off.missing == ["WECHAT_APP_ID", "WECHAT_APP_SECRET"]
    assert "WECHAT_APP_SECRET" in off.off_reason


@pytest.mark.parametrize(
    "credentials, words",
    [
        ({"passive_reply_seconds": 5}, "gives up after 5 s"),
        ({"passive_reply_seconds": "soon"}, "must be a number"),
        ({"menu_intents": {"A": ""}}, "menu_intents"),
        ({"token": "t", "app_id": "a", "app_secret": "s", "encoding_aes_key": "short"},
         "43-character"),
        ({"encryption_mode": "safe"}, "needs the EncodingAESKey"),
        ({"encryption_mode": "compatible"}, "set WECHAT_ENCODING_AES_KEY"),
        ({"encryption_mode": "aes", "encoding_aes_key": AES_KEY}, "plain, compatible or safe"),
        ({"claim_lease_seconds": 30}, "must be 0.5 to 4"),
        ({"claim_lease_seconds": "long"}, "must be a number"),
    ],
)
def test_bad_config_is_a_clear_error(credentials: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        WeChatInput.from_credentials(credentials)


@pytest.mark.parametrize(
    "given, key, mode",
    [
        ("", AES_KEY, "safe"),  # a key, no setting: encrypted messages only
        ("", "", "plain"),
        (" Compatible ", AES_KEY, "compatible"),
        ("兼容模式", AES_KEY, "compatible"),
        ("安全模式", AES_KEY, "safe"),
        ("plain", AES_KEY, "plain"),
    ],
)
def test_encryption_mode_is_explicit_and_defaults_to_the_key(
    given: str, key: str, mode: str
) -> None:
    credentials = {"encryption_mode": given, "encoding_aes_key": key}
    assert WeChatConfig.from_credentials(credentials).encryption_mode == mode


def test_bot_run_stops_at_once_on_a_mode_that_cannot_work(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WECHAT_") and k not in ("REDIS_URL", "DATABASE_URL")}
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run", "--no-train"],
        cwd=ROOT,
        env={**env, "BOT_VAR_DIR": str(tmp_path / "var"), "BOT_MODELS_DIR": str(tmp_path),
             "RASA_TELEMETRY_ENABLED": "false", "WECHAT_TOKEN": "t", "WECHAT_APP_ID": APP_ID,
             "WECHAT_APP_SECRET": "s", "WECHAT_ENCRYPTION_MODE": "safe"},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert "encryption_mode safe needs the EncodingAESKey" in result.stderr
    assert "WECHAT_ENCODING_AES_KEY" in result.stderr and "Traceback" not in result.stderr


def test_each_mode_takes_only_its_bodies() -> None:
    plain, encrypted = plain_args(), {**plain_args(), "encrypt_type": "aes"}
    check_mode("compatible", plain)
    check_mode("compatible", encrypted)
    check_mode("safe", encrypted)
    check_mode("plain", plain)
    for mode, args, words in [
        ("safe", plain, "safe mode"),
        ("safe", {**plain, "encrypt_type": "raw"}, "safe mode"),
        ("plain", encrypted, "plain mode"),
    ]:
        with pytest.raises(Refused) as error:
            check_mode(mode, args)
        assert error.value.status == 403 and words in error.value.reason


def test_an_unconfigured_webhook_answers_503_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The channel's own blueprint on a bare Sanic server (Rasa's does the same).
    async def scenario() -> list[tuple[int, str]]:
        async def on_new_message(message: Any) -> None:
            raise AssertionError("nothing may be processed")

        channel = WeChatInput.from_credentials({"token": "t"})
        async with serve_channel(channel, on_new_message) as base:
            url = f"{base}/webhooks/wechat/webhook"
            async with httpx.AsyncClient() as client:
                answers = [await client.post(f"{url}?{urlencode(plain_args())}", content=b"<x/>"),
                           await client.get(f"{url}?echostr=1")]
        return [(a.status_code, a.json()["error"]) for a in answers]

    with caplog.at_level(logging.INFO, logger="connectors.wechat"):
        answers = asyncio.run(scenario())
    reason = "the WeChat channel is not configured (set WECHAT_APP_ID, WECHAT_APP_SECRET)"
    assert answers == [(503, reason), (503, reason)]
    said = [r.getMessage() for r in caplog.records if r.name == "connectors.wechat.channel"]
    assert said == [f"{reason}; its webhook answers 503"]


def test_with_redis_down_the_customer_is_told_and_nothing_is_processed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{dead}/0")
    processed: list[Any] = []

    async def on_new_message(message: Any) -> None:
        processed.append(message)

    channel = WeChatInput.from_credentials(
        {"token": "t", "app_id": APP_ID, "app_secret": APP_SECRET}
    )

    async def scenario() -> str:
        async with serve_channel(channel, on_new_message) as base:
            caller = WeChatCaller(f"{base}/webhooks/wechat/webhook", "t", AES_KEY)
            xml = message_xml(new_openid(), "text", Content="运费怎么算")
            answer = await asyncio.to_thread(caller.post, xml)
        assert answer.status == 200, answer.body
        return answer.reply or ""

    # Not WeChat's "该公众号暂时无法提供服务": a reply the customer understands.
    assert asyncio.run(scenario()) == "抱歉，系统繁忙，请稍后再试。"
    assert processed == []


def test_an_unconfigured_channel_cannot_push() -> None:
    output = WeChatInput.from_credentials({}).get_output_channel()
    with pytest.raises(PushError, match="WECHAT_TOKEN"):
        asyncio.run(output.send_response("wechat:oAbc", {"text": "hi"}))


# --- one reply per message, whatever the retries -----------------------------------------


def test_claims_first_copy_processes_and_retries_learn_the_outcome() -> None:
    async def scenario() -> None:
        client = aioredis.Redis.from_url(SYSTEM_REDIS_URL, decode_responses=True)
        claims = Claims(client, f"unit-{uuid.uuid4().hex[:8]}")
        try:
            # Answered passively in time: a retry gets the same reply.
            assert await claims.claim("m1", "first")
            assert not await claims.claim("m1", "retry")
            assert await claims.answer_passively("m1", "first", "运费满99包邮")
            assert (await claims.await_outcome("m1", "retry")).reply == "运费满99包邮"
            assert not await claims.answer_passively("m1", "first", "again")
            # A retry while the first copy still works (and renews its lease): the
            # reply goes by the API.
            assert await claims.claim("m2", "first")
            renewing = asyncio.ensure_future(
                claims.keep_lease("m2", "first", asyncio.sleep(RETRY_WAIT_SECONDS + 1))
            )
            outcome = await claims.await_outcome("m2", "retry")
            assert not outcome.take_over and outcome.reply is None
            assert not await claims.answer_passively("m2", "first", "too late")
            assert await claims.go_async("m2", "first")  # the first copy delivers
            renewing.cancel()
            ttl = await client.ttl(claims.prefix + "m2")
            assert 3500 < ttl <= 3600  # the state keeps its expiry
        finally:
            await client.close()

    asyncio.run(scenario())


# --- the access token, shared through Redis ---------------------------------------------


@pytest.fixture()
def fake_api() -> Iterator[FakeWeChatAPI]:
    fake = FakeWeChatAPI().start()
    yield fake
    fake.stop()


@pytest.fixture()
def store() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(SYSTEM_REDIS_URL)
    yield client
    client.close()


def two_instances(fake: FakeWeChatAPI, store: redis.Redis) -> list[SharedTokenClient]:
    prefix = f"wechat-unit-{uuid.uuid4().hex[:8]}"  # keys of this test only
    return [SharedTokenClient(APP_ID, APP_SECRET, fake.base_url, store, prefix) for _ in (1, 2)]


def send_from_threads(clients: list[SharedTokenClient], per_client: int) -> list[object]:
    results: list[object] = []
    start = threading.Barrier(len(clients) * per_client)

    def send(client: SharedTokenClient) -> None:
        start.wait()
        try:
            results.append(client.call(lambda c: c.message.send_text("oTok", "hi")))
        except Exception as error:
            results.append(error)

    threads = [threading.Thread(target=send, args=(c,)) for c in clients for _ in range(per_client)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_instances_fetch_one_token_between_them(
    fake_api: FakeWeChatAPI, store: redis.Redis
) -> None:
    clients = two_instances(fake_api, store)
    results = send_from_threads(clients, per_client=4)
    assert results == [{"errcode": 0, "errmsg": "ok"}] * 8
    assert len(fake_api.issued) == 1
    assert fake_api.recorder.matching("/cgi-bin/token")[0].query["appid"] == APP_ID


def test_an_expired_token_is_refreshed_once_and_instances_never_retire_each_others(
    fake_api: FakeWeChatAPI, store: redis.Redis
) -> None:
    fake_api.one_valid_token = True  # as WeChat: a new token retires the old one
    clients = two_instances(fake_api, store)
    assert send_from_threads(clients, per_client=1) == [{"errcode": 0, "errmsg": "ok"}] * 2
    fake_api.expire_tokens()
    # Both instances hit 42001 at once; one fetches, the other sees the new token.
    results = send_from_threads(clients, per_client=3)
    assert results == [{"errcode": 0, "errmsg": "ok"}] * 6
    assert len(fake_api.issued) == 2
    # A stale failure report (a token already replaced) fetches nothing.
    clients[0].refresh_access_token(failed=fake_api.issued[0])
    assert len(fake_api.issued) == 2


def test_delivery_failures_are_raised_and_recorded_for_the_desk(
    fake_api: FakeWeChatAPI, store: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", SYSTEM_REDIS_URL)
    channel = WeChatInput.from_credentials(
        {"token": "t", "app_id": APP_ID, "app_secret": APP_SECRET,
         "api_base_url": fake_api.base_url}
    )
    output: WeChatOutput = channel.get_output_channel()
    output.api.use_client(two_instances(fake_api, store)[0])  # type: ignore[union-attr]
    openid = new_openid()
    fake_api.fail_next("/cgi-bin/message/custom/send", 45015, "response out of time limit")

    async def push() -> None:
        with pytest.raises(DeliveryFailed) as failed:
            await output.send_response(f"wechat:{openid}", {"text": "您好"})
        assert failed.value.code == "45015"
        await output.send_response(f"wechat:{openid}", {"text": "第二条"})  # works again

    asyncio.run(push())
    entries = store.xrange(DELIVERY_FAILURES_STREAM)
    mine = [e for _, e in entries if e[b"conversation_id"] == f"wechat:{openid}".encode()]
    assert [(e[b"channel"], e[b"code"]) for e in mine] == [(b"wechat", b"45015")]
    assert fake_api.texts_to(openid) == ["第二条"]
    with pytest.raises(PushError, match="not a WeChat conversation"):
        asyncio.run(output.send_response("web:v-1", {"text": "x"}))


def test_an_unreachable_wechat_is_a_delivery_failure_too(
    store: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", SYSTEM_REDIS_URL)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    channel = WeChatInput.from_credentials(
        {"token": "t", "app_id": APP_ID, "app_secret": APP_SECRET,
         "api_base_url": f"http://127.0.0.1:{port}/cgi-bin"}
    )
    output: WeChatOutput = channel.get_output_channel()
    output.api.use_client(SharedTokenClient(  # type: ignore[union-attr]
        APP_ID, APP_SECRET, channel.config.api_base_url, store, f"unit-{uuid.uuid4().hex[:8]}"))
    openid = new_openid()
    with pytest.raises(DeliveryFailed) as failed:
        asyncio.run(output.send_response(f"wechat:{openid}", {"text": "您好"}))
    assert failed.value.code == "ConnectionError"
    recorded = [e for _, e in store.xrange(DELIVERY_FAILURES_STREAM)
                if e[b"conversation_id"] == f"wechat:{openid}".encode()]
    assert [e[b"code"] for e in recorded] == [b"ConnectionError"]


# --- the menu ------------------------------------------------------------------------------


def menu_intents() -> dict[str, str]:
    return read_credentials(ROOT / "credentials.yml")[CREDENTIALS_KEY]["menu_intents"]


def test_the_example_menu_is_valid() -> None:
    menu = load_menu(ROOT / "wechat_menu.yml")
    assert check_menu(menu, menu_intents()) == []


def test_menu_problems_are_all_reported() -> None:
    menu = {"button": [
        {"type": "click", "name": "一个很长很长的名字", "key": "HUMAN"},
        {"type": "click", "name": "未知", "key": "NOT_MAPPED"},
        {"name": "更多", "sub_button": [{"type": "view", "name": "商城", "url": "ftp://x"},
                                        {"type": "teleport", "name": "x"}]},
    ]}
    problems = check_menu(menu, menu_intents())
    assert len(problems) == 4, problems
    assert any("longer than 16 bytes" in p for p in problems)
    assert any("NOT_MAPPED" in p and "menu_intents" in p for p in problems)
    assert any("url must be http(s)" in p for p in problems)
    assert any("teleport" in p for p in problems)
    assert check_menu({"button": []}, {}) == ["`button` must be a list of 1 to 3 buttons"]


def test_menu_command_publishes_the_menu(fake_api: FakeWeChatAPI, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "REDIS_URL"))}
    env.update(WECHAT_TOKEN="t", WECHAT_APP_ID=APP_ID, WECHAT_APP_SECRET=APP_SECRET,
               WECHAT_API_BASE_URL=fake_api.base_url, RASA_TELEMETRY_ENABLED="false")
    bot = str(Path(sys.executable).with_name("bot"))
    done = subprocess.run([bot, "wechat-menu"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "published wechat_menu.yml (3 top-level buttons)" in done.stdout
    sent = fake_api.recorder.matching("/cgi-bin/menu/create")
    assert len(sent) == 1
    assert sent[0].json() == load_menu(ROOT / "wechat_menu.yml")

    bad = tmp_path / "menu.yml"
    bad.write_text("button:\n  - type: click\n    name: 坏\n    key: NOPE\n", encoding="utf-8")
    done = subprocess.run([bot, "wechat-menu", "--file", str(bad)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "NOPE" in done.stderr and "Traceback" not in done.stderr
    assert len(fake_api.recorder.matching("/cgi-bin/menu/create")) == 1  # nothing sent


def test_menu_errors_from_wechat_are_clear(
    fake_api: FakeWeChatAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"WECHAT_TOKEN": "t", "WECHAT_APP_ID": APP_ID,
                        "WECHAT_APP_SECRET": APP_SECRET,
                        "WECHAT_API_BASE_URL": fake_api.base_url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REDIS_URL", raising=False)
    fake_api.fail_next("/cgi-bin/menu/create", 40016, "invalid button size")
    with pytest.raises(MenuError, match="WeChat refused the menu: 40016 invalid button size"):
        publish_menu(ROOT / "wechat_menu.yml", ROOT / "credentials.yml")
    with pytest.raises(MenuError, match="not found"):
        publish_menu(tmp_path / "missing.yml", ROOT / "credentials.yml")
    monkeypatch.setenv("WECHAT_APP_SECRET", "")
    with pytest.raises(MenuError, match="set WECHAT_APP_SECRET"):
        publish_menu(ROOT / "wechat_menu.yml", ROOT / "credentials.yml")
    # --check needs no credentials and sends nothing.
    assert "OK" in publish_menu(ROOT / "wechat_menu.yml", ROOT / "credentials.yml", True)
