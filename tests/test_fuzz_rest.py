"""Fuzzing the REST channel's request bodies and Authorization headers (hypothesis).

Bodies: random JSON, not JSON at all, invalid UTF-8, lone surrogates, NaN,
wrong types for sender, message and metadata, huge strings, deeply nested
metadata, another input_channel. Headers: Authorization in every spelling.

A body that is not a message gets a 400 naming what is wrong (a missing or
wrong token a 401, a body over the cap a 413) and nothing reaches the bot; a
valid one reaches it exactly as sent. Never a 500 or an exception in the logs;
after each batch a legitimate request still gets its reply.

The channel's real blueprint on an in-process Sanic server with a stand-in bot
for the volume; the session's `bot run` service for a smaller end-to-end run,
checked afterwards in its tracker store and log. Examples are derandomized.
"""

from __future__ import annotations

import json
import math
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import httpx
import pytest
from hypothesis import example, given, reject
from hypothesis import strategies as st

from connectors.rest import MAX_METADATA_DEPTH, MAX_SENDER_CHARS, TokenRestInput
from tests.channel_server import ThreadedChannel
from tests.conftest import REST_TOKEN, Service
from tests.fuzzing import (  # noqa: F401
    ErrorLog,
    Examples,
    error_log,
    fuzz_settings,
    report,
    request_errors,
)

pytestmark = pytest.mark.timeout(900)

TOKEN = "fuzz-rest-token-0123456789"
WEBHOOK = "/webhooks/rest/webhook"
MAX_BODY = 64 * 1024
EXAMPLES = Examples()


class Bot:
    """Stands in for Rasa: records what reaches it, answers one line."""

    def __init__(self) -> None:
        self.heard: list[tuple[Any, Any, Any, Any]] = []

    async def __call__(self, message: Any) -> None:
        self.heard.append((message.sender_id, message.text, message.metadata,
                           message.input_channel))
        await message.output_channel.send_text_message(message.sender_id, "ok")


@dataclass
class Answer:
    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


class Rest:
    def __init__(self, base: str, token: str) -> None:
        self.url = f"{base}{WEBHOOK}"
        self.token = token
        self.client = httpx.Client(timeout=60)

    def post(self, body: bytes, headers: list[tuple[str, Any]] | None = None,
             query: str = "") -> Answer:
        if headers is None:
            headers = [("Authorization", f"Bearer {self.token}")]
        headers = [*headers, ("Content-Type", "application/json")]
        answer = self.client.post(f"{self.url}{query}", content=body, headers=headers)
        return Answer(answer.status_code, answer.text)


@dataclass
class Server:
    rest: Rest
    bot: Bot
    errors: ErrorLog


@pytest.fixture(scope="module")
def server(error_log: ErrorLog, request: pytest.FixtureRequest) -> Iterator[Server]:  # noqa: F811
    bot = Bot()
    try:
        with ThreadedChannel(TokenRestInput(TOKEN), bot) as base:
            yield Server(Rest(base, TOKEN), bot, error_log)
    finally:
        report(request, ["", *EXAMPLES.report("REST fuzz")])


def check_still_answers(server: Server) -> None:
    who = f"fuzz-{uuid.uuid4().hex[:8]}"
    answer = server.rest.post(json.dumps({"sender": who, "message": "你好"}).encode())
    assert answer.status == 200 and answer.json() == [{"recipient_id": who, "text": "ok"}]
    assert server.bot.heard[-1] == (who, "你好", None, "rest")
    assert server.errors.lines() == []


# --- strategies ---------------------------------------------------------------------------

INT64 = st.integers(-(2**63), 2**63 - 1)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), INT64,
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)
not_strings = st.one_of(st.none(), st.booleans(), INT64, st.floats(allow_nan=False),
                        st.lists(json_values, max_size=3),
                        st.dictionaries(st.text(max_size=5), json_values, max_size=3))

good_senders = st.one_of(
    st.from_regex(r"[A-Za-z0-9:_.@-]{1,64}", fullmatch=True),
    st.text(st.characters(categories=["L", "N", "P", "S"]), min_size=1, max_size=40),
    st.just("x" * MAX_SENDER_CHARS),
)
bad_senders = st.one_of(
    not_strings,
    st.sampled_from(["", " ", "\t", "a\nb", "a\x00b", "\u200b", "x" * (MAX_SENDER_CHARS + 1),
                     "alice\n", "\x1b[31mred"]),
    st.text(min_size=1, max_size=20).map(lambda s: s + "\n"),
)
good_messages = st.one_of(
    st.text(min_size=1, max_size=200).filter(str.strip),
    st.sampled_from(["/restart", "/greet", '/inform{"order":"1"}', "1", "\x00hi", "😀",
                     "a\u202eb"]),
    st.integers(1000, MAX_BODY - 200).map(lambda n: "长" * (n // 3)),  # huge, under the cap
)
bad_messages = st.one_of(not_strings, st.sampled_from(["", " ", "\n\t", "\u3000"]))


def deep(depth: int, kind: str) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"k": value} if kind == "dict" else [value]
    return {"top": value} if kind == "list" else value


good_metadata = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    st.integers(1, MAX_METADATA_DEPTH).map(lambda d: deep(d, "dict")),
)
bad_metadata = st.one_of(
    st.one_of(st.booleans(), INT64, st.text(max_size=5), st.lists(json_values, max_size=3)),
    st.integers(MAX_METADATA_DEPTH + 1, 1000).map(lambda d: deep(d, "dict")),
    st.integers(MAX_METADATA_DEPTH + 1, 1000).map(lambda d: deep(d, "list")),
)

CORRUPTIONS = ("none", "truncate", "invalid_utf8", "lone_surrogate", "nan", "bom",
               "trailing", "huge", "empty")


@dataclass
class Case:
    body: bytes
    must_refuse: bool
    sent: dict[str, Any] | None  # the message as sent, when valid


@st.composite
def bodies(draw: st.DrawFn, senders: st.SearchStrategy[str] = good_senders) -> Case:
    shape = draw(st.sampled_from(["message", "message", "message", "random_json", "raw"]))
    if shape == "random_json":
        value = draw(json_values)
        valid = (isinstance(value, dict) and isinstance(value.get("sender"), str)
                 and isinstance(value.get("message"), str))
        return Case(json.dumps(value).encode(), not valid, None)  # a valid one: judged later
    if shape == "raw":
        raw = draw(st.one_of(st.binary(max_size=300),
                             st.text(max_size=300).map(lambda s: s.encode("utf-8")),
                             st.sampled_from([b"", b"null", b"[]", b"1", b'"x"', b"{", b"}",
                                              b"true", b"{}{}"])))
        try:  # the odd random bytes that are a valid message are judged below
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return Case(raw, True, None)
        return Case(raw, not isinstance(data, dict), None)
    bad = set(draw(st.sets(st.sampled_from(["sender", "message", "metadata", "channel",
                                             "missing_sender", "missing_message"]),
                           max_size=2)))
    body: dict[str, Any] = {}
    if "missing_sender" not in bad:
        body["sender"] = draw(bad_senders if "sender" in bad else senders)
    if "missing_message" not in bad:
        body["message"] = draw(bad_messages if "message" in bad else good_messages)
    metadata = draw(bad_metadata if "metadata" in bad else good_metadata)
    if metadata is not None or draw(st.booleans()):
        body["metadata"] = metadata
    if "channel" in bad:
        body["input_channel"] = draw(st.one_of(st.sampled_from(["wechat", "web", "app", ""]),
                                               not_strings.filter(lambda v: v is not None)))
    elif draw(st.booleans()):
        body["input_channel"] = draw(st.sampled_from([None, "rest"]))
    body.update(draw(st.dictionaries(st.sampled_from(["extra", "stream", "id"]), json_values,
                                     max_size=2)))
    encoded = json.dumps(body, ensure_ascii=draw(st.booleans())).encode()
    corruption = draw(st.sampled_from(CORRUPTIONS))
    if corruption == "huge" and len(encoded) < MAX_BODY:
        body["pad"] = "x" * (MAX_BODY - len(encoded) + draw(st.integers(0, 1000)))
        return Case(json.dumps(body).encode(), True, None)
    if len(encoded) > MAX_BODY:
        return Case(encoded, True, None)
    if corruption == "none" or corruption == "huge":
        return Case(encoded, bool(bad), None if bad else body)
    if corruption == "truncate":
        return Case(encoded[: draw(st.integers(0, len(encoded) - 1))], True, None)
    if corruption == "invalid_utf8":
        at = draw(st.integers(0, len(encoded)))
        return Case(encoded[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"]))
                    + encoded[at:], True, None)
    if corruption == "lone_surrogate":
        field = "sender" if "sender" in body else "message"
        return Case(json.dumps({**body, field: "a\ud800b"}).encode(), True, None)
    if corruption == "nan":
        return Case(json.dumps({**body, "metadata": {"n": math.nan}}).encode(), True, None)
    if corruption == "bom":
        return Case(b"\xef\xbb\xbf" + encoded, True, None)
    if corruption == "trailing":
        return Case(encoded + draw(st.sampled_from([b"x", b"{}", b",", b"\x00"])), True, None)
    return Case(b"", True, None)


def check_answer(server: Server, case: Case, answer: Answer, before: int) -> None:
    heard = server.bot.heard[before:]
    assert answer.status < 500, answer
    assert server.errors.lines() == [], answer
    if answer.status != 200:
        assert answer.status in (400, 413), answer
        if answer.status == 400:
            assert answer.json()["error"], answer
        assert heard == [], (case, heard)
        assert case.sent is None, (case, answer)  # a valid message was refused
        return
    assert not case.must_refuse, (case, answer)
    # What reached the bot is the message as sent, with the types it must have.
    data = json.loads(case.body)
    assert len(heard) == 1, heard
    sender, text, metadata, channel = heard[0]
    assert (sender, text, metadata, channel) == (
        data["sender"], data["message"], data.get("metadata"), "rest"
    )
    assert isinstance(sender, str) and sender.isprintable() and sender.strip()
    assert isinstance(text, str) and text.strip()
    text.encode("utf-8")
    assert metadata is None or isinstance(metadata, dict)
    assert answer.json() == [{"recipient_id": sender, "text": "ok"}]


# --- the in-process server: hundreds of examples -----------------------------------------


def test_request_bodies(server: Server) -> None:
    @fuzz_settings(400)
    @given(case=bodies(), stream=st.sampled_from(["", "", "?stream=false", "?stream=true"]))
    @example(case=Case(b"", True, None), stream="")  # stock Rasa: 500
    @example(case=Case(b"[]", True, None), stream="")  # stock Rasa: 500
    @example(case=Case(b'{"sender": "a", "message": ["x"]}', True, None), stream="")
    @example(case=Case(b'{"message": "hi"}', True, None), stream="")  # a random conversation
    @example(case=Case(b'{"sender": "a", "message": "hi", "input_channel": "wechat"}', True,
                       None), stream="")
    def fuzz(case: Case, stream: str) -> None:
        EXAMPLES["REST body"] += 1
        before = len(server.bot.heard)
        answer = server.rest.post(case.body, query=stream)
        if stream == "?stream=true" and answer.status == 200:
            # Rasa's streaming answer: one JSON message a line.
            answer = Answer(200, json.dumps([json.loads(line) for line in
                                             answer.body.splitlines() if line]))
        check_answer(server, case, answer, before)

    fuzz()
    check_still_answers(server)


authorizations = st.one_of(
    st.text(st.characters(max_codepoint=255, exclude_categories=["Cc"]), max_size=60),
    st.text(max_size=30).map(lambda s: f"Bearer {s}"),
    st.sampled_from([
        f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Bearer x{TOKEN}", TOKEN, f"Token {TOKEN}",
        f"Basic {TOKEN}", f"Bearer\t{TOKEN}", f"Bearer{TOKEN}", f"Bearer {TOKEN.upper()}",
        f"Bearer {REST_TOKEN}", "Bearer", "Bearer ", "", f"Bearer {TOKEN} {TOKEN}",
        f"Bearer {TOKEN},Bearer x",
    ]),
    st.sampled_from([f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER  {TOKEN} "]),
)


def accepted(value: str) -> bool:
    """The documented rule: `Authorization: Bearer <token>` (scheme in any case)."""
    scheme, _, token = value.partition(" ")
    return scheme.lower() == "bearer" and token.strip() == TOKEN


def test_authorization_headers(server: Server) -> None:
    @fuzz_settings(200)
    @given(
        values=st.lists(authorizations, max_size=3),
        encoding=st.sampled_from(["latin-1", "utf-8"]),
        in_query=st.booleans(),
    )
    # A header that isn't UTF-8: the token check's encode() raised (a 500, a traceback).
    @example(values=["Bearer \x80"], encoding="latin-1", in_query=False)
    def fuzz(values: list[str], encoding: str, in_query: bool) -> None:
        EXAMPLES["REST Authorization header"] += 1
        who = f"auth-{uuid.uuid4().hex[:8]}"
        body = json.dumps({"sender": who, "message": "hi"}).encode()
        # (h11, the client, sends no value with spaces around it: nor would a proxy.)
        values = [v.strip(" \t") for v in values]
        headers = [("Authorization", v.encode(encoding, "replace")) for v in values]
        query = f"?token={urllib.parse.quote(TOKEN)}" if in_query else ""
        before = len(server.bot.heard)
        try:
            answer = server.rest.post(body, headers, query)
        except httpx.LocalProtocolError:  # a value the client itself won't send (CR, LF…)
            reject()
        assert answer.status in (200, 400, 401), answer
        assert server.errors.lines() == []
        if answer.status != 200:
            assert server.bot.heard[before:] == []
            return
        # Only the right token, in the first Authorization header, gets through.
        assert values and accepted(values[0].encode(encoding, "replace").decode("latin-1"))
        assert server.bot.heard[before:] == [(who, "hi", None, "rest")]

    fuzz()
    check_still_answers(server)


# --- the real service, end to end ---------------------------------------------------------


def test_the_running_service_refuses_fuzzed_bodies(service: Service) -> None:
    """`bot run`: bodies that must be refused, each naming one of a few fresh
    senders; afterwards the tracker store has no word of theirs, the log shows no
    error, and a genuine message still gets the bot's reply."""
    senders = [f"fuzz-rest-{uuid.uuid4().hex[:10]}" for _ in range(4)]
    log = service.var_dir / "log" / "rasa.log"
    log_before = log.read_text(errors="replace")
    rest = Rest(service.url, REST_TOKEN)

    @fuzz_settings(40)
    @given(case=bodies(st.sampled_from(senders)).filter(lambda c: c.must_refuse))
    def fuzz(case: Case) -> None:
        EXAMPLES["bot run: refused REST bodies"] += 1
        answer = rest.post(case.body)
        assert answer.status in (400, 413), answer

    fuzz()
    for who in senders:
        events = service.get(f"/conversations/{who}/tracker")["events"]
        assert [e for e in events if e["event"] == "user"] == [], who
    who = f"fuzz-rest-{uuid.uuid4().hex[:10]}"
    assert service.texts(who, "运费怎么算")
    added = log.read_text(errors="replace")[len(log_before):]
    assert request_errors(added) == [], added[-3000:]
