"""The WeChat channel against the running service (`bot run`, embedded Redis
and SQLite), with requests signed and encrypted as WeChat's servers make
them (wechatpy's crypto) and WeChat's API servers faked on loopback.

This instance answers passively (passive_reply_seconds 4.0); the scaled
instances in test_wechat_scaled.py answer through the customer-service API.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit

import pytest

from tests.conftest import WECHAT_AES_KEY, WECHAT_TOKEN, Service
from tests.fake_wechat import (
    APP_ID,
    Answer,
    FakeWeChatAPI,
    WeChatCaller,
    message_xml,
    new_openid,
    sign,
)

pytestmark = pytest.mark.slow

WEBHOOK = "/webhooks/wechat/webhook"


@pytest.fixture(scope="module")
def wechat(service: Service) -> WeChatCaller:
    return WeChatCaller(f"{service.url}{WEBHOOK}", WECHAT_TOKEN, WECHAT_AES_KEY)


def events(service: Service, openid: str, kind: str = "user") -> list[dict[str, Any]]:
    tracker = service.get(f"/conversations/wechat:{openid}/tracker")
    return [e for e in tracker["events"] if e["event"] == kind]


def wait_until(condition: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def ask(wechat: WeChatCaller, api: FakeWeChatAPI, openid: str, xml: str, safe: bool = False) -> str:
    """The bot's answer, passive or (if the turn was slow) through the API."""
    seen = len(api.texts_to(openid))
    answer = wechat.post(xml, safe=safe)
    assert answer.status == 200, answer.body
    if answer.reply is not None:
        return answer.reply
    assert answer.is_success, answer.body
    texts = api.wait_for_texts(openid, seen + 1)
    assert len(texts) > seen, "no answer, neither passive nor through the API"
    return "\n".join(texts[seen:])


def say(wechat: WeChatCaller, api: FakeWeChatAPI, openid: str, text: str, **kw: Any) -> str:
    return ask(wechat, api, openid, message_xml(openid, "text", Content=text), **kw)


def concurrently(calls: list[Callable[[], Answer]]) -> list[Answer]:
    results: list[Answer | None] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


# --- verification and modes ---------------------------------------------------------------


def test_url_verification(wechat: WeChatCaller) -> None:
    assert wechat.verify("echo-4213467") == (200, "echo-4213467")
    status, body = wechat.verify("echo-1", signature="0" * 40)
    assert status == 403 and "bad signature" in body
    stale = wechat.query(timestamp=int(time.time()) - 301)
    status, body = wechat.verify("echo-2", **stale)
    assert status == 403 and "stale" in body


def test_plain_mode_chinese_question_gets_a_passive_chinese_answer(
    service: Service, wechat: WeChatCaller, wechat_api: FakeWeChatAPI
) -> None:
    openid = new_openid()
    answer = wechat.post(message_xml(openid, "text", msg_id=81234567, Content="运费怎么算"))
    assert answer.status == 200
    assert answer.reply is not None and "包邮" in answer.reply
    assert wechat_api.texts_to(openid) == []  # passive: nothing through the API
    [said] = events(service, openid)
    assert said["text"] == "运费怎么算"
    metadata = said["metadata"]
    assert metadata["channel"] == "wechat"
    assert metadata["identity"] == {
        "channel": "wechat", "subject": openid, "verified_by": "wechat_signature",
        "customer": False,
    }
    assert (metadata["app_id"], metadata["msg_id"], metadata["msg_type"]) == (
        APP_ID, "81234567", "text")


def test_safe_mode_questions_get_encrypted_answers_in_their_language(
    wechat: WeChatCaller, wechat_api: FakeWeChatAPI
) -> None:
    openid = new_openid()
    assert "包邮" in say(wechat, wechat_api, openid, "运费怎么算", safe=True)
    assert "within 7 days" in say(wechat, wechat_api, openid, "what is your return policy?",
                                  safe=True)


# --- retries ------------------------------------------------------------------------------


def test_three_copies_of_a_message_get_one_reply(
    service: Service, wechat: WeChatCaller, wechat_api: FakeWeChatAPI
) -> None:
    openid = new_openid()
    xml = message_xml(openid, "text", Content="运费怎么算")
    answers = concurrently([lambda: wechat.post(xml)] * 3)
    assert all(a.status == 200 for a in answers)
    replies = {a.reply for a in answers if not a.is_success}
    # Either passive (every copy WeChat may still be waiting on carries the same
    # reply; WeChat shows the one it gets) or through the API, once.
    passive = bool(replies)
    if passive:
        assert len(replies) == 1 and "包邮" in replies.pop()
    # A retry after the fact finds what became of the message.
    late = wechat.post(xml)
    assert late.status == 200 and (late.is_success or "包邮" in (late.reply or ""))
    # A next message's reply comes after any duplicate's would have.
    assert "不客气" in say(wechat, wechat_api, openid, "谢谢")
    texts = wechat_api.texts_to(openid)
    through_api = [t for t in texts if "包邮" in t]
    assert len(through_api) == (0 if passive else 1)
    assert [e["text"] for e in events(service, openid)] == ["运费怎么算", "谢谢"]


# --- refused requests ----------------------------------------------------------------------


def test_bad_signatures_and_stale_timestamps_are_refused_and_nothing_is_processed(
    service: Service, wechat: WeChatCaller, wechat_api: FakeWeChatAPI
) -> None:
    openid = new_openid()
    xml = message_xml(openid, "text", Content="运费怎么算")
    forged = wechat.query()
    forged["signature"] = sign("not-the-token", forged["timestamp"], forged["nonce"])
    stale_time = int(time.time()) - 301
    attempts = [
        wechat.post(xml, query=forged),
        wechat.post(xml, timestamp=stale_time),  # correctly signed, but old
        wechat.post(xml, safe=True, timestamp=stale_time),
        wechat.post(xml, safe=True, query={"msg_signature": "0" * 40}),
        wechat.post(xml, timestamp=int(time.time()) + 400),
    ]
    assert [a.status for a in attempts] == [403] * 5
    assert "bad signature" in attempts[0].body and "stale" in attempts[1].body
    assert "msg_signature" in attempts[3].body
    assert events(service, openid) == []
    assert not [m for m in wechat_api.sent_messages() if m.get("touser") == openid]


def test_a_signature_stands_for_one_message_only(
    service: Service, wechat: WeChatCaller, wechat_api: FakeWeChatAPI
) -> None:
    # Plain mode signs timestamp+nonce, not the body: a captured signature
    # must not carry someone else's message.
    victim, intruder = new_openid(), new_openid()
    query = wechat.query()
    first = wechat.post(message_xml(victim, "text", Content="你好"), query=query)
    assert first.status == 200
    replayed = wechat.post(message_xml(intruder, "text", Content="你好"), query=query)
    assert replayed.status == 403 and "already used" in replayed.body
    assert events(service, intruder) == []


def test_an_encrypted_requests_signature_cannot_carry_a_plain_body(
    service: Service, wechat: WeChatCaller, wechat_api: FakeWeChatAPI
) -> None:
    # This instance is in compatible mode (plain and encrypted both). The query's
    # `signature` of an encrypted request covers only timestamp+nonce and shows in
    # any proxy's access log: it must not let someone post a plain body as anyone.
    victim, intruder = new_openid(), new_openid()
    params, body = wechat.request(message_xml(victim, "text", Content="运费怎么算"), safe=True)
    real = wechat.send(params, body, safe=True)
    assert real.reply is not None and "包邮" in real.reply
    kept = {k: params[k] for k in ("signature", "timestamp", "nonce")}
    attack = wechat.send(kept, message_xml(intruder, "text", Content="我的订单到哪了").encode())
    assert attack.status == 403 and "signature was already used" in attack.body
    assert events(service, intruder) == []
    assert not [m for m in wechat_api.sent_messages() if m.get("touser") == intruder]


def post_raw(service: Service, body: bytes, params: dict[str, str]) -> tuple[int, str]:
    parts = urlsplit(service.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("POST", f"{WEBHOOK}?{urlencode(params)}", body,
                           {"Content-Type": "text/xml"})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def bad_bodies(openid: str) -> dict[str, bytes]:
    head = f"<ToUserName>gh_x</ToUserName><FromUserName>{openid}</FromUserName>"
    head += "<CreateTime>1</CreateTime><MsgType>text</MsgType><MsgId>9</MsgId>"
    laughs = "".join(
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)
    )
    return {
        "malformed": f"<xml>{head}<Content>运费怎么算</Content>".encode(),
        "billion laughs": (
            f'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY l0 "lol">{laughs}]>'
            f"<xml>{head}<Content>&l9;</Content></xml>"
        ).encode(),
        "external entity": (
            '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            f"<xml>{head}<Content>&x;</Content></xml>"
        ).encode(),
        "oversized": f"<xml>{head}<Content>{'运' * 25_000}</Content></xml>".encode(),
    }


def announce_huge_body(service: Service, params: dict[str, str]) -> str:
    """Send only the headers of a 50 MB POST: the refusal must come without
    the server waiting for (or buffering) the body."""
    parts = urlsplit(service.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(
            f"POST {WEBHOOK}?{urlencode(params)} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Type: text/xml\r\nContent-Length: 50000000\r\n\r\n".encode()
        )
        head = sock.recv(4096).decode()
    return head.split("\r\n", 1)[0]


def test_bad_bodies_are_400s_nothing_is_processed_and_the_server_carries_on(
    service: Service, wechat: WeChatCaller, wechat_api: FakeWeChatAPI
) -> None:
    openid = new_openid()
    for name, body in bad_bodies(openid).items():
        status, text = post_raw(service, body, wechat.query())
        assert status == 400, (name, status, text)
    assert announce_huge_body(service, wechat.query()) == "HTTP/1.1 400 Bad Request"
    assert events(service, openid) == []
    assert not [m for m in wechat_api.sent_messages() if m.get("touser") == openid]
    assert "包邮" in say(wechat, wechat_api, openid, "运费怎么算")


# --- message types, options, events --------------------------------------------------------


def test_a_number_answers_the_numbered_options(
    service: Service, wechat: WeChatCaller, wechat_api: FakeWeChatAPI
) -> None:
    openid = new_openid()
    welcome = ask(wechat, wechat_api, openid, message_xml(openid, "event", Event="subscribe"))
    assert "青玉商城" in welcome
    assert "1. 我的订单到哪了\n2. 运费怎么算" in welcome and "回复数字即可选择" in welcome
    assert "包邮" in say(wechat, wechat_api, openid, "2")
    said = events(service, openid)[-1]
    assert said["text"] == "2" and said["parse_data"]["text"] == "运费怎么算"
    assert said["metadata"]["option"]["number"] == 2
    # The conversation moved on (the shipping answer has no options): "1" is now text.
    say(wechat, wechat_api, openid, "1")
    said = events(service, openid)[-1]
    assert "option" not in said["metadata"]


def test_typed_intent_payloads_are_read_as_text(
    service: Service, wechat: WeChatCaller, wechat_api: FakeWeChatAPI
) -> None:
    # Only our own options may send "/intent" payloads: a customer typing one
    # could set slots or, with /restart, end a hand-off.
    openid = new_openid()
    say(wechat, wechat_api, openid, "你好")
    assert say(wechat, wechat_api, openid, "/restart")  # answered, as words
    said = events(service, openid)[-1]
    assert said["text"] == "/restart" and said["parse_data"]["text"] == "restart"
    assert said["metadata"]["typed_payload"] is True
    tracker = service.get(f"/conversations/wechat:{openid}/tracker")
    assert [e for e in tracker["events"] if e["event"] in ("restart", "session_started")] == [
        e for e in tracker["events"][:3] if e["event"] == "session_started"
    ]


def test_voice_with_recognition_is_answered_and_without_it_acknowledged(
    wechat: WeChatCaller, wechat_api: FakeWeChatAPI
) -> None:
    openid = new_openid()
    voice = message_xml(openid, "voice", MediaId="m-voice-1", Format="amr",
                        Recognition="运费怎么算")
    assert "包邮" in ask(wechat, wechat_api, openid, voice)
    unrecognized = message_xml(openid, "voice", MediaId="m-voice-2", Format="amr")
    reply = ask(wechat, wechat_api, openid, unrecognized)
    assert "语音" in reply and "1. 转人工" in reply


def test_an_image_is_acknowledged_kept_in_the_transcript_and_a_person_offered(
    service: Service, wechat: WeChatCaller, wechat_api: FakeWeChatAPI
) -> None:
    openid = new_openid()
    picture = "https://mmbiz.qpic.cn/mmbiz_jpg/test/0"
    image = message_xml(openid, "image", msg_id=5550001, PicUrl=picture, MediaId="m-img-1")
    reply = ask(wechat, wechat_api, openid, image)
    assert "已收到您发送的图片" in reply and "1. 转人工" in reply

    said = events(service, openid)[-1]
    assert said["text"] == f"[image] {picture}"
    assert said["metadata"]["media"] == {"type": "image", "PicUrl": picture, "MediaId": "m-img-1"}
    assert said["metadata"]["identity"]["subject"] == openid
    notice = events(service, openid, "bot")[-1]
    assert "图片" in notice["text"]
    assert notice["data"]["buttons"] == [{"title": "转人工", "payload": "/human_handoff"}]

    # "1" is the offered person; then the conversation goes on as before.
    assert "人工客服" in say(wechat, wechat_api, openid, "1")
    said = events(service, openid)[-1]
    assert said["text"] == "1" and said["parse_data"]["text"] == "/human_handoff"
    assert "包邮" in say(wechat, wechat_api, openid, "运费怎么算")


def test_while_paused_for_a_person_messages_are_kept_without_a_bot_reply(
    service: Service, wechat: WeChatCaller, wechat_api: FakeWeChatAPI
) -> None:
    openid = new_openid()
    say(wechat, wechat_api, openid, "你好")
    service.post(f"/conversations/wechat:{openid}/tracker/events", {"event": "pause"})
    bot_said, api_said = len(events(service, openid, "bot")), len(wechat_api.texts_to(openid))
    image = message_xml(openid, "image", PicUrl="https://mmbiz.qpic.cn/p/1", MediaId="m1")
    assert wechat.post(image).is_success
    assert wechat.post(message_xml(openid, "text", Content="运费怎么算")).is_success
    kept = [e["text"] for e in events(service, openid)]
    assert kept[-2:] == ["[image] https://mmbiz.qpic.cn/p/1", "运费怎么算"]
    assert len(events(service, openid, "bot")) == bot_said
    assert len(wechat_api.texts_to(openid)) == api_said


def test_other_media_are_acknowledged_by_kind(
    service: Service, wechat: WeChatCaller, wechat_api: FakeWeChatAPI
) -> None:
    openid = new_openid()
    say(wechat, wechat_api, openid, "how much is shipping")  # an English customer
    cases = {
        "location": ({"Location_X": "23.13", "Location_Y": "113.26", "Scale": "15",
                      "Label": "Guangzhou"}, "location"),
        "link": ({"Title": "My order", "Description": "see", "Url": "https://x.example/o"},
                 "link"),
        "video": ({"MediaId": "m-v", "ThumbMediaId": "m-t"}, "video"),
        "file": ({"Title": "invoice.pdf", "FileKey": "k1", "FileTotalLen": "1024"}, "file"),
    }
    for kind, (fields, name) in cases.items():
        reply = ask(wechat, wechat_api, openid, message_xml(openid, kind, **fields))
        assert f"Got your {name}" in reply and "1. Talk to a person" in reply, reply
    kept = [e["metadata"]["media"]["type"] for e in events(service, openid)[1:]]
    assert kept == ["location", "link", "video", "file"]


def test_subscribe_scan_menu_clicks_and_unsubscribe(
    service: Service, wechat: WeChatCaller, wechat_api: FakeWeChatAPI
) -> None:
    openid = new_openid()
    welcome = ask(wechat, wechat_api, openid,
                  message_xml(openid, "event", Event="subscribe", EventKey="qrscene_store42"))
    assert "青玉商城" in welcome and "转人工" in welcome
    first = events(service, openid)[0]
    assert first["text"] == "/greet"
    assert (first["metadata"]["event"], first["metadata"]["scene"]) == ("subscribe", "store42")

    scan = ask(wechat, wechat_api, openid,
               message_xml(openid, "event", Event="SCAN", EventKey="store42"))
    assert "青玉商城" in scan

    click = message_xml(openid, "event", Event="CLICK", EventKey="ORDER_STATUS")
    assert "订单号" in ask(wechat, wechat_api, openid, click)
    assert events(service, openid)[-1]["metadata"]["menu_key"] == "ORDER_STATUS"

    count = len(events(service, openid))
    for quiet in (
        message_xml(openid, "event", Event="CLICK", EventKey="NOT_IN_MENU_INTENTS"),
        message_xml(openid, "event", Event="VIEW", EventKey="https://shop.example.com/"),
    ):
        assert wechat.post(quiet).is_success
    assert len(events(service, openid)) == count

    said = len(events(service, openid, "bot"))
    assert wechat.post(message_xml(openid, "event", Event="unsubscribe")).is_success
    gone = wait_until(lambda: [e for e in events(service, openid)
                               if e["metadata"].get("event") == "unsubscribe"])
    assert gone and gone[0]["text"] == "[unsubscribe]"
    assert len(events(service, openid, "bot")) == said  # no reply to the unsubscribe


# --- limits --------------------------------------------------------------------------------


def test_a_message_too_long_gets_a_notice_and_is_not_processed(
    service: Service, wechat: WeChatCaller
) -> None:
    openid = new_openid()
    answer = wechat.post(message_xml(openid, "text", Content="运" * 2001))
    assert answer.reply == "消息太长了（最多 2000 个字），请分几条发送。"
    english = wechat.post(message_xml(openid, "text", Content="word " * 500))
    assert english.reply is not None and english.reply.startswith("That message is too long")
    assert events(service, openid) == []


def test_too_many_messages_too_fast_get_a_notice_and_are_not_processed(
    service: Service, wechat: WeChatCaller, wechat_api: FakeWeChatAPI
) -> None:
    openid = new_openid()
    xmls = [message_xml(openid, "text", Content=f"谢谢{i}") for i in range(8)]
    answers = concurrently([lambda x=x: wechat.post(x) for x in xmls])  # type: ignore[misc]
    too_fast = [a for a in answers if a.reply == "您发送得太快了，请稍等几秒再发。"]
    assert 1 <= len(too_fast) <= 3  # a burst of 5, then 1/s (a slow machine refills some)
    processed = len(xmls) - len(too_fast)
    assert wait_until(lambda: len(events(service, openid)) == processed)
    # Every processed message was answered, passively or through the API.
    replies = [a for a in answers if a.reply and a not in too_fast]
    assert wait_until(lambda: len(replies) + len(wechat_api.texts_to(openid)) == processed)
