"""Fuzzing what a stranger can send the WeChat webhook (hypothesis).

Every parser on the way in: the query string of a POST (signature, timestamp,
nonce, msg_signature, encrypt_type: random, missing, duplicated, very long),
the GET URL verification, plain XML bodies (garbage, truncated, huge, nested,
DTDs and entities, other encodings, odd fields and unicode, wrong MsgType)
and AES-encrypted ones (random, truncated and tampered ciphertext, garbage
inside a valid envelope, envelopes without or with two <Encrypt>).

Each input gets a clear refusal (4xx with the reason) or, when it is a
genuine signed message, the channel's answer; never a 500, an exception in
the logs, or a message reaching the bot unverified. After each batch a
legitimate signed request still gets its normal reply.

The high-volume part runs the real channel blueprint on in-process Sanic
servers (the machine's Redis, WeChat's API faked on loopback, a stand-in bot
that records every message); a smaller part fuzzes the session's real
`bot run` service end to end and then reads its tracker store and logs.
Examples are derandomized (the same every run); their counts are printed.
"""

from __future__ import annotations

import base64
import itertools
import os
import re
import struct
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator
from xml.sax.saxutils import escape

import httpx
import pytest
import redis
from hypothesis import example, given
from hypothesis import strategies as st
from rasa.shared.core.events import UserUttered
from wechatpy.crypto import WeChatCrypto
from wechatpy.crypto.base import WeChatCipher
from wechatpy.crypto.pkcs7 import PKCS7Encoder

from connectors.wechat.channel import WeChatInput
from tests.channel_server import ThreadedChannel
from tests.conftest import (
    SYSTEM_REDIS_URL,
    WECHAT_AES_KEY,
    WECHAT_TOKEN,
    Service,
)
from tests.conftest import (
    TOKEN as ADMIN_TOKEN,
)
from tests.fake_wechat import (
    ACCOUNT,
    APP_SECRET,
    FakeWeChatAPI,
    new_openid,
    sign,
)
from tests.fake_wechat import (
    APP_ID as SERVICE_APP_ID,
)
from tests.fuzzing import (  # noqa: F401
    ErrorLog,
    Examples,
    error_log,
    fuzz_settings,
    report,
    request_errors,
)

pytestmark = pytest.mark.timeout(900)

TOKEN = "fuzz-wechat-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
# Claims and used signatures are kept per app id: this run's alone, so the same
# (derandomized) MsgIds in the next run are new messages again.
APP_ID = f"wxfuzz{uuid.uuid4().hex[:12]}"
WEBHOOK = "/webhooks/wechat/webhook"
MAX_BODY = 64 * 1024
MENU = {"HOT_QUESTIONS": "/greet", "HUMAN": "/human_handoff"}
OPENID = re.compile(r"[A-Za-z0-9_-]{1,64}")

EXAMPLES = Examples()
_nonces = itertools.count(1)


# --- servers ------------------------------------------------------------------------------


class Bot:
    """Stands in for Rasa: records each message that reaches it and answers
    briefly (a passive reply, so nothing goes through WeChat's API). As the
    agent (app.ctx.agent) it records what media and unsubscribe events would
    have put in a transcript."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, str]] = []
        self.transcribed: list[tuple[str, str]] = []  # media, unsubscribe
        self.processor = self
        self.lock_store = self

    def count(self) -> tuple[int, int]:
        return len(self.heard), len(self.transcribed)

    @asynccontextmanager
    async def lock(self, conversation: str) -> AsyncIterator[None]:
        yield

    async def fetch_tracker_and_update_session(self, conversation: str, *_: Any) -> Any:
        return Transcript(conversation)

    async def save_tracker(self, tracker: Transcript) -> None:
        self.transcribed += [(tracker.sender_id, e.text) for e in tracker.events
                             if isinstance(e, UserUttered)]

    async def __call__(self, message: Any) -> None:
        self.heard.append((message.sender_id, message.text))
        await message.output_channel.send_text_message(
            message.sender_id, f"答：{message.text[:40]}"
        )


@dataclass
class Transcript:
    """What the media path reads and writes of a tracker."""

    sender_id: str
    events: list[Any] = field(default_factory=list)

    def is_paused(self) -> bool:
        return False

    def get_slot(self, _: str) -> None:
        return None

    def update(self, event: Any) -> None:
        self.events.append(event)


@dataclass
class Answer:
    status: int
    body: str


class Webhook:
    """One channel's webhook as a blocking HTTP client sees it."""

    def __init__(self, base: str, token: str, aes_key: str, app_id: str) -> None:
        self.url = f"{base}{WEBHOOK}"
        self.token = token
        self.crypto = WeChatCrypto(token, aes_key, app_id)
        self.key = base64.b64decode(aes_key + "=")
        self.app_id = app_id
        self.client = httpx.Client(timeout=30)

    def signed(self, **extra: str) -> dict[str, str]:
        ts, nonce = str(int(time.time())), f"{next(_nonces)}{uuid.uuid4().int % 10**9}"
        return {"signature": sign(self.token, ts, nonce), "timestamp": ts, "nonce": nonce,
                **extra}

    def send(
        self, method: str, query: list[tuple[str, str]] | dict[str, str] | str,
        body: bytes | None = None,
    ) -> Answer:
        if isinstance(query, str):  # raw, as given
            url = f"{self.url}?{query}"
        else:
            pairs = list(query.items()) if isinstance(query, dict) else query
            url = f"{self.url}?{urllib.parse.urlencode(pairs)}"
        answer = self.client.request(method, url, content=body,
                                     headers={"Content-Type": "text/xml"})
        return Answer(answer.status_code, answer.text)

    def post_plain(self, body: bytes) -> Answer:
        return self.send("POST", self.signed(), body)

    def envelope_query(self, envelope: bytes) -> dict[str, str]:
        """A correct msg_signature for whatever <Encrypt> the server will find."""
        query = self.signed(encrypt_type="aes")
        try:
            encrypt = ET.fromstring(envelope).findtext("Encrypt") or ""
        except ET.ParseError:
            encrypt = ""
        query["msg_signature"] = sign(self.token, query["timestamp"], query["nonce"], encrypt)
        return query

    def post_envelope(self, envelope: bytes) -> Answer:
        return self.send("POST", self.envelope_query(envelope), envelope)

    def encrypt(self, plaintext: bytes, app_id: str | None = None) -> str:
        """WeChat's framing (16 random bytes, length, message, app id), padded, AES-CBC."""
        framed = (os.urandom(16) + struct.pack(">I", len(plaintext)) + plaintext
                  + (self.app_id if app_id is None else app_id).encode())
        return self.raw_encrypt(PKCS7Encoder.encode(framed))

    def raw_encrypt(self, data: bytes) -> str:
        """AES-CBC of `data` (whole blocks) as it is: no framing, no padding."""
        data += b"\0" * (-len(data) % 16)
        return base64.b64encode(WeChatCipher(self.key).encrypt(data)).decode()

    def reply_text(self, answer: Answer) -> str | None:
        if answer.status != 200 or answer.body == "success":
            return None
        root = ET.fromstring(answer.body)
        if root.find("Encrypt") is not None:
            xml = self.crypto.decrypt_message(
                answer.body, root.findtext("MsgSignature"), root.findtext("TimeStamp"),
                root.findtext("Nonce"),
            )
            root = ET.fromstring(xml)
        return root.findtext("Content")


def envelope(encrypt: str, cdata: bool = False) -> bytes:
    inner = f"<![CDATA[{encrypt}]]>" if cdata else escape(encrypt)
    return f"<xml><ToUserName>{ACCOUNT}</ToUserName><Encrypt>{inner}</Encrypt></xml>".encode()


def text_message(openid: str, content: str, msg_id: int | None = None) -> bytes:
    msg_id = msg_id if msg_id is not None else uuid.uuid4().int % 10**18
    return (
        f"<xml><ToUserName>{ACCOUNT}</ToUserName><FromUserName>{openid}</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>text</MsgType>"
        f"<Content>{escape(content)}</Content><MsgId>{msg_id}</MsgId></xml>"
    ).encode()


@dataclass
class Servers:
    compatible: Webhook  # plain and encrypted bodies
    safe: Webhook  # encrypted only
    bot: Bot
    fake_api: FakeWeChatAPI
    errors: ErrorLog


@pytest.fixture(scope="module")
def servers(error_log: ErrorLog, request: pytest.FixtureRequest) -> Iterator[Servers]:  # noqa: F811
    saved = os.environ.get("REDIS_URL")
    os.environ["REDIS_URL"] = SYSTEM_REDIS_URL
    fake = FakeWeChatAPI().start()
    redis.Redis.from_url(SYSTEM_REDIS_URL).delete(f"wechat:{APP_ID}_access_token")
    bot = Bot()

    def channel(mode: str) -> WeChatInput:
        return WeChatInput.from_credentials({
            "token": TOKEN, "app_id": APP_ID, "app_secret": APP_SECRET,
            "encoding_aes_key": AES_KEY, "encryption_mode": mode,
            "api_base_url": fake.base_url, "menu_intents": MENU,
        })

    try:
        with ThreadedChannel(channel("compatible"), bot, agent=bot) as compatible, \
                ThreadedChannel(channel("safe"), bot, agent=bot) as safe:
            yield Servers(Webhook(compatible, TOKEN, AES_KEY, APP_ID),
                          Webhook(safe, TOKEN, AES_KEY, APP_ID), bot, fake, error_log)
    finally:
        fake.stop()
        if saved is None:
            os.environ.pop("REDIS_URL", None)
        else:
            os.environ["REDIS_URL"] = saved
        report(request, ["", *EXAMPLES.report("WeChat fuzz")])


@pytest.fixture(autouse=True)
def fresh_error_log(error_log: ErrorLog) -> None:  # noqa: F811
    error_log.clear()  # each test answers for its own examples


def check_still_answers(servers: Servers) -> None:
    """A legitimate signed request, plain and encrypted, gets its normal reply."""
    for webhook, encrypted in ((servers.compatible, False), (servers.safe, True)):
        openid = new_openid()
        body = text_message(openid, "运费怎么算")
        if encrypted:
            answer = webhook.post_envelope(envelope(webhook.encrypt(body)))
        else:
            answer = webhook.post_plain(body)
        assert webhook.reply_text(answer) == "答：运费怎么算", answer
        assert (f"wechat:{openid}", "运费怎么算") in servers.bot.heard
    assert servers.errors.lines() == []


def check_answer(
    servers: Servers, answer: Answer, before: tuple[int, int], inner: bytes | None
) -> None:
    """A refusal (4xx, with the reason) reaches nothing; an accepted request is a
    genuine message (`inner`, the XML the server should have read) and only
    what it says reaches the bot."""
    heard = servers.bot.heard[before[0]:]
    transcribed = servers.bot.transcribed[before[1]:]
    assert answer.status < 500, answer
    assert servers.errors.lines() == [], answer
    if answer.status >= 400:
        assert heard == [] and transcribed == [], (answer, heard, transcribed)
        assert answer.status in (400, 403, 413, 414), answer
        return
    assert answer.status == 200, answer
    assert inner is not None, answer  # nothing unsigned or undecryptable is accepted
    assert len(heard) + len(transcribed) <= 1, (heard, transcribed)
    for sender, _ in transcribed:  # media or unsubscribe: the sender is all that counts
        assert sender == f"wechat:{ET.fromstring(inner).findtext('FromUserName').strip()}"
    if heard:
        root = ET.fromstring(inner)  # the server's parse must have succeeded too
        openids = [e.text or "" for e in root.findall("FromUserName")]
        assert len(openids) == 1, inner  # never an ambiguous sender
        sender, text = heard[0]
        assert sender == f"wechat:{openids[0].strip()}" and OPENID.fullmatch(openids[0].strip())
        said = {(root.findtext(name) or "").strip() for name in ("Content", "Recognition")}
        assert text in said | set(MENU.values()), (text, inner)


# --- strategies ---------------------------------------------------------------------------

NOW = int(time.time())
QUERY_KEYS = ["signature", "timestamp", "nonce", "msg_signature", "encrypt_type", "echostr",
              "openid"]
odd_text = st.text(max_size=40)
query_values = st.one_of(
    odd_text,
    st.sampled_from(["", "aes", "AES", "raw", "0", "-1", "1e9", " 1", str(NOW), "true"]),
    st.integers(-10**6, 10**6).map(lambda d: str(NOW + d)),
    st.from_regex(r"[0-9a-f]{40}", fullmatch=True),
    st.integers(1, 9000).map(lambda n: "9" * n),  # very long
)
random_queries = st.lists(
    st.tuples(st.one_of(st.sampled_from(QUERY_KEYS), st.text(max_size=12)), query_values),
    max_size=10,
)
raw_queries = st.one_of(  # what urlencode would never write
    # (no "#" or control characters: the client won't send them in a URL)
    st.text(st.characters(exclude_categories=["Cc"], exclude_characters="#"), max_size=200),
    st.sampled_from(["%", "%zz", "signature=%ff%fe", "timestamp=%00", "&&&", "=", "a=b=c",
                     "signature&timestamp&nonce", "timestamp=1%0a2"]),
)

MUTATIONS = ("drop", "replace", "duplicate_wrong_first", "upper", "space", "other_token")


def mutated(query: dict[str, str], mutation: str, key: str, value: str) -> list[tuple[str, str]]:
    """A signed query made wrong in one way (never still valid)."""
    pairs = list(query.items())
    if mutation == "drop":
        return [(k, v) for k, v in pairs if k != key]
    if mutation == "replace":
        return [(k, (value if value != v else v + "0") if k == key else v) for k, v in pairs]
    if mutation == "duplicate_wrong_first":  # the first of a repeated key is what counts
        return [(key, value if value != query[key] else value + "0"), *pairs]
    if mutation == "upper":
        return [(k, v.upper() if k == "signature" else v) for k, v in pairs]
    if mutation == "space":
        return [(k, f" {v}" if k == key else v) for k, v in pairs]
    return [(k, sign("another-token", query["timestamp"], query["nonce"]) if k == "signature"
             else v) for k, v in pairs]


openids = st.one_of(
    st.from_regex(r"o[A-Za-z0-9_-]{27}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_-]{1,70}", fullmatch=True),
    odd_text,
    st.sampled_from(["", " ", "oABC\n", "o" * 65, "../../etc", "wechat:oX", "oX y"]),
)
MSG_TYPES = ["text", "event", "image", "voice", "video", "shortvideo", "location", "link",
             "file", "TEXT", "Event", "miniprogrampage", "transfer_customer_service", ""]
EVENTS = ["subscribe", "unsubscribe", "SCAN", "CLICK", "VIEW", "LOCATION", "TEMPLATESENDJOBFINISH"]
numbers = st.one_of(st.integers(0, 2**64).map(str), st.sampled_from(["", "-1", "1.5", "１２"]),
                    odd_text)
tag_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,12}", fullmatch=True)


@st.composite
def element(draw: st.DrawFn, tag: str, value: str) -> str:
    """One element, its value written in one of XML's ways (or not quite)."""
    style = draw(st.sampled_from(["text", "cdata", "raw", "child", "attr", "empty", "spaces"]))
    if style == "cdata":
        return f"<{tag}><![CDATA[{value.replace(']]>', ']]]]><![CDATA[>')}]]></{tag}>"
    if style == "raw":  # unescaped: may not be XML at all
        return f"<{tag}>{value}</{tag}>"
    if style == "child":
        return f"<{tag}><{tag}>{escape(value)}</{tag}></{tag}>"
    if style == "attr":
        return f'<{tag} a="{escape(value, {chr(34): "&quot;"})}">{escape(value)}</{tag}>'
    if style == "empty":
        return f"<{tag}/>"
    if style == "spaces":
        return f"<{tag}>\n  {escape(value)}  \n</{tag}>"
    return f"<{tag}>{escape(value)}</{tag}>"


@st.composite
def message_xml(draw: st.DrawFn) -> bytes:
    """Message-like XML: the fields WeChat sends, each odd or not, in any order,
    sometimes repeated, with extra elements."""
    msg_type = draw(st.one_of(st.sampled_from(MSG_TYPES), odd_text))
    fields: list[tuple[str, str]] = [
        ("ToUserName", draw(st.one_of(st.just(ACCOUNT), odd_text))),
        ("FromUserName", draw(openids)),
        ("CreateTime", draw(st.one_of(st.just(str(NOW)), numbers))),
        ("MsgType", msg_type),
    ]
    optional = {
        "Content": st.one_of(odd_text, st.text(min_size=1500, max_size=2500),
                             st.sampled_from(["]]>", "/restart", "/greet", "1", " ", "&amp;",
                                              "\u202e\u200b", "😀" * 10])),
        "MsgId": numbers,
        "Event": st.one_of(st.sampled_from(EVENTS), odd_text),
        "EventKey": st.one_of(st.sampled_from([*MENU, "qrscene_1", "NOPE"]), odd_text),
        "Recognition": odd_text,
        "MediaId": odd_text, "PicUrl": odd_text, "Format": odd_text,
        "Location_X": numbers, "Location_Y": numbers, "Label": odd_text,
        "Title": odd_text, "Url": odd_text, "Encrypt": odd_text,
    }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), max_size=6, unique=True)):
        fields.append((name, draw(optional[name])))
    fields += draw(st.lists(st.tuples(tag_names, odd_text), max_size=3))
    if draw(st.booleans()) and draw(st.booleans()):  # a field twice, with another value
        name, _ = draw(st.sampled_from(fields))
        fields.append((name, draw(st.one_of(openids, odd_text))))
    fields = draw(st.permutations(fields))
    parts = [draw(element(tag, value)) for tag, value in fields]
    root = draw(st.sampled_from(["xml", "xml", "xml", "XML", "message", "w:xml"]))
    attrs = ' xmlns:w="urn:w"' if root.startswith("w:") else ""
    return f"<{root}{attrs}>{''.join(parts)}</{root}>".encode()


def nested(depth: int, tag: str = "a") -> bytes:
    return b"<xml>" + f"<{tag}>".encode() * depth + f"</{tag}>".encode() * depth + b"</xml>"


PROLOGUE = [
    b'<?xml version="1.0"?>',
    b'<?xml version="1.0" encoding="UTF-8"?>',
    b"<!DOCTYPE xml>",
    b'<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">]>',
    b'<!DOCTYPE xml [<!ENTITY a "aa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>',  # the start of a billion laughs
    b'<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    b'<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/evil.dtd">',
    b"<!-- a comment -->",
    b"<?pi data?>",
    b"\xef\xbb\xbf",  # a BOM
]


@st.composite
def plain_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(
        ["message", "message", "message", "truncated", "prologue", "encoded", "garbage",
         "text", "nested", "huge", "entity_use"]
    ))
    if kind == "garbage":
        return draw(st.binary(max_size=3000))
    if kind == "text":
        return draw(st.text(max_size=2000)).encode("utf-8", "surrogatepass")
    if kind == "nested":
        return nested(draw(st.integers(1, MAX_BODY // 8)), draw(st.sampled_from(["a", "xml"])))
    if kind == "huge":
        return text_message(new_openid(), "x" * draw(st.integers(MAX_BODY - 400, MAX_BODY + 64)))
    xml = draw(message_xml())
    if kind == "truncated":
        return xml[: draw(st.integers(0, len(xml) - 1))]
    if kind == "prologue":
        return draw(st.sampled_from(PROLOGUE)) + xml
    if kind == "entity_use":
        return draw(st.sampled_from(PROLOGUE[3:5])) + xml.replace(b"</xml>", b"<C>&c;&a;</C></xml>")
    if kind == "encoded":
        encoding = draw(st.sampled_from(["utf-16", "gbk", "latin-1", "utf-32"]))
        text = xml.decode()
        declared = f'<?xml version="1.0" encoding="{encoding}"?>' if draw(st.booleans()) else ""
        return (declared + text).encode(encoding, "replace")
    return xml


@st.composite
def ciphertexts(draw: st.DrawFn, webhook: Webhook) -> tuple[bytes, bytes | None]:
    """An envelope for the safe channel and the XML inside it, if it has any to read."""
    kind = draw(st.sampled_from(
        ["random_text", "random_base64", "truncated", "flipped", "other_app", "garbage_inside",
         "bad_framing", "message_inside", "message_inside", "no_encrypt", "two_encrypts",
         "encrypt_child", "garbage_envelope"]
    ))
    cdata = draw(st.booleans())
    if kind == "random_text":
        return envelope(draw(odd_text), cdata), None
    if kind == "random_base64":
        return envelope(base64.b64encode(draw(st.binary(max_size=600))).decode(), cdata), None
    real = webhook.encrypt(text_message(new_openid(), "hi"))
    if kind == "truncated":
        return envelope(real[: draw(st.integers(0, len(real) - 1))], cdata), None
    if kind == "flipped":
        raw = bytearray(base64.b64decode(real))
        at = draw(st.integers(0, len(raw) - 1))
        raw[at] ^= draw(st.integers(1, 255))
        return envelope(base64.b64encode(bytes(raw)).decode(), cdata), None
    if kind == "other_app":
        other = draw(st.sampled_from(["", "wx0000000000000000", APP_ID + "x", APP_ID[:-1]]))
        return envelope(webhook.encrypt(draw(message_xml()), other), cdata), None
    if kind == "garbage_inside":  # WeChat's framing around garbage
        return envelope(webhook.encrypt(draw(st.binary(max_size=2000))), cdata), None
    if kind == "bad_framing":  # AES of anything: length and padding are garbage
        return envelope(webhook.raw_encrypt(draw(st.binary(min_size=1, max_size=600))), cdata), None
    if kind == "message_inside":
        inner = draw(plain_bodies())
        if len(inner) > MAX_BODY // 2:
            inner = inner[: MAX_BODY // 2]
        return envelope(webhook.encrypt(inner), cdata), inner
    if kind == "no_encrypt":
        return f"<xml><ToUserName>{ACCOUNT}</ToUserName></xml>".encode(), None
    if kind == "two_encrypts":
        first = webhook.encrypt(draw(message_xml()))
        return (f"<xml><Encrypt>{first}</Encrypt><Encrypt>{real}</Encrypt></xml>".encode(),
                None)
    if kind == "encrypt_child":
        return f"<xml><Encrypt><Encrypt>{real}</Encrypt></Encrypt></xml>".encode(), None
    return draw(plain_bodies()), None


# --- the in-process servers: hundreds of examples ----------------------------------------


def test_post_query_strings(servers: Servers) -> None:
    """Unsigned, mis-signed, duplicated, missing and very long query parameters on
    a POST whose body is a genuine message: never processed."""

    @fuzz_settings(200)
    @given(
        webhook=st.sampled_from(["compatible", "safe"]),
        query=st.one_of(
            random_queries,
            raw_queries,
            st.tuples(st.sampled_from(MUTATIONS), st.sampled_from(["signature", "timestamp",
                                                                    "nonce"]), query_values),
        ),
    )
    @example(webhook="compatible", query=[("signature", "a" * 9000)])
    def fuzz(webhook: str, query: Any) -> None:
        EXAMPLES["POST query string"] += 1
        hook: Webhook = getattr(servers, webhook)
        if isinstance(query, tuple):
            query = mutated(hook.signed(), *query)
            if webhook == "safe":
                query.append(("encrypt_type", "aes"))
        before = servers.bot.count()
        answer = hook.send("POST", query, text_message(new_openid(), "我的订单到哪了"))
        check_answer(servers, answer, before, None)

    fuzz()
    check_still_answers(servers)


def test_get_url_verification(servers: Servers) -> None:
    """GET with random queries is refused; a signed one answers its echostr as given."""

    @fuzz_settings(150)
    @given(
        query=st.one_of(random_queries, raw_queries,
                        st.tuples(st.sampled_from(MUTATIONS),
                                  st.sampled_from(["signature", "timestamp", "nonce"]),
                                  query_values)),
        echostr=st.one_of(st.none(), st.text(max_size=60), st.integers(1, 5000).map("7".__mul__)),
    )
    def fuzz(query: Any, echostr: str | None) -> None:
        EXAMPLES["GET verification"] += 1
        hook = servers.compatible
        if isinstance(query, tuple):
            pairs = mutated(hook.signed(), *query)
            answer = hook.send("GET", [*pairs, ("echostr", echostr or "e")])
            assert answer.status in (400, 403, 413, 414), answer
            return
        answer = hook.send("GET", query)
        assert answer.status in (400, 403, 413, 414), answer
        signed = hook.signed()
        if echostr is not None:
            signed["echostr"] = echostr
        answer = hook.send("GET", signed)
        if echostr:
            assert (answer.status, answer.body) == (200, echostr)
        else:
            assert answer.status in (400, 414), answer
        assert servers.errors.lines() == []

    fuzz()
    check_still_answers(servers)


def test_plain_xml_bodies(servers: Servers) -> None:
    """Validly signed plain bodies of every odd shape: refused unless they are a
    message, and then only what the message says reaches the bot."""

    @fuzz_settings(350)
    @given(body=plain_bodies())
    @example(body=b"<xml><ToUserName>gh_x</ToUserName><FromUserName>oAAA</FromUserName>"
                  b"<FromUserName>oBBB</FromUserName><CreateTime>1</CreateTime>"
                  b"<MsgType>text</MsgType><Content>hi</Content><MsgId>7</MsgId></xml>")
    def fuzz(body: bytes) -> None:
        EXAMPLES["plain XML body (signed)"] += 1
        before = servers.bot.count()
        answer = servers.compatible.post_plain(body)
        check_answer(servers, answer, before, body)
        if answer.status == 200 and answer.body != "success":
            assert servers.compatible.reply_text(answer) is not None  # a real XML reply

    fuzz()
    check_still_answers(servers)


def test_encrypted_bodies(servers: Servers) -> None:
    """Safe mode: random, truncated and tampered ciphertext, garbage inside valid
    framing, other app ids, odd envelopes; each under a correct msg_signature."""
    hook = servers.safe

    @fuzz_settings(350)
    @given(case=ciphertexts(hook))
    # Two <Encrypt>s: the first, signed, was read and the second ignored (200).
    @example(case=(b"<xml><Encrypt>" + hook.encrypt(text_message(new_openid(), "a")).encode()
                   + b"</Encrypt><Encrypt>x</Encrypt></xml>", None))
    def fuzz(case: tuple[bytes, bytes | None]) -> None:
        EXAMPLES["encrypted body (AES, signed envelope)"] += 1
        body, inner = case
        before = servers.bot.count()
        answer = hook.post_envelope(body)
        check_answer(servers, answer, before, inner)
        if answer.status == 200 and answer.body != "success":
            assert hook.reply_text(answer) is not None  # encrypted back, decryptable

    fuzz()
    check_still_answers(servers)


def test_plain_bodies_to_safe_mode_and_unsigned_envelopes(servers: Servers) -> None:
    """Safe mode refuses every plain body however well signed; an envelope without a
    correct msg_signature is refused whatever it holds."""

    @fuzz_settings(120)
    @given(body=plain_bodies(), signature=st.one_of(st.none(), query_values))
    def fuzz(body: bytes, signature: str | None) -> None:
        EXAMPLES["safe mode: plain bodies, unsigned envelopes"] += 1
        before = servers.bot.count()
        answer = servers.safe.post_plain(body)
        assert answer.status == 403 and "safe mode" in answer.body, answer
        real = envelope(servers.safe.encrypt(text_message(new_openid(), "hi")))
        query = servers.safe.signed(encrypt_type="aes")
        if signature is not None:
            query["msg_signature"] = signature
        check_answer(servers, servers.safe.send("POST", query, real), before, None)

    fuzz()
    check_still_answers(servers)


# --- the real service, end to end ---------------------------------------------------------


def tracker_user_events(service: Service, conversation: str) -> list[dict[str, Any]]:
    quoted = urllib.parse.quote(conversation, safe=":")  # as Rasa reads its path
    events = service.get(f"/conversations/{quoted}/tracker", token=ADMIN_TOKEN)["events"]
    return [e for e in events if e["event"] == "user"]


def test_the_running_service_refuses_fuzzed_requests(
    service: Service, wechat_api: FakeWeChatAPI
) -> None:
    """`bot run` (compatible mode): fuzzed requests that must be refused, each
    naming one of a few fresh OpenIDs; afterwards none of them has a word in the
    tracker store or a message through WeChat's API, the log shows no error,
    and a genuine message still gets the bot's reply."""
    hook = Webhook(service.url, WECHAT_TOKEN, WECHAT_AES_KEY, SERVICE_APP_ID)
    victims = [new_openid() for _ in range(4)]
    log = service.var_dir / "log" / "rasa.log"
    log_before = log.read_text(errors="replace")

    def victim_xml(draw_index: int, content: str) -> bytes:
        return text_message(victims[draw_index % len(victims)], content)

    @fuzz_settings(40)
    @given(
        index=st.integers(0, 3),
        content=st.text(min_size=1, max_size=80).filter(str.strip),
        kind=st.sampled_from(["unsigned", "mutated", "truncated", "dtd", "garbage_cipher",
                              "other_app", "bad_msg_signature"]),
        noise=st.one_of(random_queries, st.binary(max_size=200)),
        mutation=st.sampled_from(MUTATIONS),
    )
    def fuzz(index: int, content: str, kind: str, noise: Any, mutation: str) -> None:
        EXAMPLES["bot run: refused requests"] += 1
        xml = victim_xml(index, content)
        if kind == "unsigned":
            query = noise if isinstance(noise, list) else []
            answer = hook.send("POST", query, xml)
        elif kind == "mutated":
            answer = hook.send("POST", mutated(hook.signed(), mutation, "signature", "0"), xml)
        elif kind == "truncated":
            answer = hook.post_plain(xml[: len(xml) // 2])
        elif kind == "dtd":
            answer = hook.post_plain(PROLOGUE[4] + xml.replace(b"</xml>", b"<C>&c;</C></xml>"))
        elif kind == "garbage_cipher":
            garbage = noise if isinstance(noise, bytes) else b"x"
            answer = hook.post_envelope(envelope(hook.encrypt(garbage)))
        elif kind == "other_app":
            answer = hook.post_envelope(envelope(hook.encrypt(xml, "wx0000000000000000")))
        else:
            query = hook.signed(encrypt_type="aes", msg_signature="0" * 40)
            answer = hook.send("POST", query, envelope(hook.encrypt(xml)))
        assert answer.status in (400, 403, 413, 414), answer
        assert answer.body.startswith("{") or answer.status in (413, 414), answer

    fuzz()
    for openid in victims:
        assert tracker_user_events(service, f"wechat:{openid}") == []
        assert wechat_api.texts_to(openid) == []
    openid = new_openid()
    answer = hook.post_plain(text_message(openid, "运费怎么算"))
    assert answer.status == 200, answer
    # The bot's own answer: passive, or (a slow turn) through WeChat's API.
    assert hook.reply_text(answer) or wechat_api.wait_for_texts(openid, 1, 60), answer
    deadline = time.monotonic() + 30  # the tracker store is written as the turn ends
    while not (said := tracker_user_events(service, f"wechat:{openid}")):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert [e["text"] for e in said] == ["运费怎么算"]
    added = log.read_text(errors="replace")[len(log_before):]
    assert request_errors(added) == [], added[-3000:]
