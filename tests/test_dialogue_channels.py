"""The dialogue's behaviour through the running service, as customers get it.

tests/test_dialogue.py plays these conversations in process (Rasa's Agent);
here they go through `bot run` (the session `service`: embedded Redis and
SQLite, every channel configured, WeChat's API servers faked) on the channels
customers use: the REST channel (a trusted caller: payloads allowed), the web
widget's socket, WeChat (signed requests; passive replies, or the
customer-service API when a turn is slow) and the app. The assertions are on
what the customer receives, and on the tracker read back through Rasa's HTTP API.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import re
import time
import uuid
from typing import Any, Awaitable, Protocol

import pytest
import yaml

from bot.nlu.language import detect_language
from connectors.notices import NOTICES
from tests.app_client import app_token, new_customer, poll
from tests.app_client import say as app_say
from tests.conftest import (
    ROOT,
    WECHAT_AES_KEY,
    WECHAT_TOKEN,
    Service,
    push_from_outside,
)
from tests.fake_wechat import FakeWeChatAPI, WeChatCaller, message_xml, new_openid
from tests.http_recorder import Recorder
from tests.web_client import WebClient, tracker

pytestmark = pytest.mark.slow

ORDER = "JM202411230456"
WECHAT_WEBHOOK = "/webhooks/wechat/webhook"
# What a channel says instead of the bot (limits, trouble): never a bot reply.
CHANNEL_NOTICES = {text for key in ("too_fast", "trouble") for text in NOTICES[key].values()}


# --- what the bot says, from domain.yml ------------------------------------------------


@functools.cache
def _responses() -> dict[str, list[dict[str, Any]]]:
    return yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))["responses"]


def response(name: str, language: str, **slots: str) -> str:
    """The text of response `name` in `language` (zh: the variation with that
    condition; en: the unconditional default), with its slots filled."""
    for variation in _responses()[name]:
        conditions = variation.get("condition") or []
        zh = any(c.get("name") == "language" and c.get("value") == "zh" for c in conditions)
        if zh == (language == "zh"):
            return str(variation["text"]).format(**slots)
    raise KeyError(f"{name} has no {language} variation")


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m.get("text") or "" for m in messages]


# --- customers on each channel ---------------------------------------------------------


class Customer(Protocol):
    conversation_id: str

    async def say(self, text: str) -> list[dict[str, Any]]:
        """The bot's messages for one customer message."""
        ...

    async def close(self) -> None: ...


class RestCustomer:
    """A trusted caller (tests, the shop's backend) on Rasa's REST channel."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.conversation_id = f"e2e-{uuid.uuid4().hex[:12]}"

    def messages(self, text: str) -> list[dict[str, Any]]:
        return self.service.say(self.conversation_id, text)

    def texts(self, text: str) -> list[str]:
        """The texts of the bot's messages for `text` (the REST tests are synchronous)."""
        return texts(self.messages(text))

    async def say(self, text: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.messages, text)

    async def close(self) -> None:
        pass


class WebCustomer:
    """A visitor in the web widget (socket.io, as widget.js sends)."""

    def __init__(self, client: WebClient) -> None:
        self.client = client
        self.conversation_id = client.conversation_id

    @classmethod
    async def start(cls, service: Service) -> WebCustomer:
        client = await WebClient(service.url).connect()
        await client.session()
        return cls(client)

    async def say(self, text: str, shown: str | None = None) -> list[dict[str, Any]]:
        # A click sends the button's payload, with its title to show (widget.js).
        extra = {"display_text": shown} if shown else {}
        return await self.client.say(text, **extra)

    async def close(self) -> None:
        await self.client.close()


class WeChatCustomer:
    """A follower of the Official Account: WeChat's signed requests to the webhook;
    the reply is the passive answer, or comes through the customer-service API."""

    def __init__(self, service: Service, api: FakeWeChatAPI, wait: float = 60.0) -> None:
        self.caller = WeChatCaller(f"{service.url}{WECHAT_WEBHOOK}", WECHAT_TOKEN, WECHAT_AES_KEY)
        self.api = api
        self.openid = new_openid()
        self.conversation_id = f"wechat:{self.openid}"
        self.wait = wait  # for a reply through the API; a silent turn costs this long

    async def say(self, text: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._say, text)

    def _say(self, text: str) -> list[dict[str, Any]]:
        seen = len(self.api.texts_to(self.openid))
        answer = self.caller.post(message_xml(self.openid, "text", Content=text))
        assert answer.status == 200, answer.body
        if answer.reply is not None:
            return [{"text": answer.reply}]
        delivered = self.api.wait_for_texts(self.openid, seen + 1, timeout=self.wait)
        return [{"text": t} for t in delivered[seen:]]

    async def close(self) -> None:
        pass


class AppCustomer:
    """A logged-in customer of the mobile app: POST to send, the outbox to read."""

    def __init__(self, service: Service) -> None:
        self.url = service.url
        self.customer = new_customer()
        self.conversation_id = f"app:{self.customer}"

    async def say(self, text: str) -> list[dict[str, Any]]:
        answer = await app_say(self.url, self.customer, text)
        listing = await poll(self.url, app_token(self.customer), since="0", limit=500)
        by_id = {m["id"]: m["message"] for m in listing.json()["messages"]}
        return [by_id[i] for i in answer["reply_ids"]]

    async def close(self) -> None:
        pass


async def new_customer_on(channel: str, service: Service, wechat_api: FakeWeChatAPI) -> Customer:
    if channel == "rest":
        return RestCustomer(service)
    if channel == "web":
        return await WebCustomer.start(service)
    if channel == "wechat":
        return WeChatCustomer(service, wechat_api)
    return AppCustomer(service)


def events(service: Service, conversation_id: str, kind: str | None = None) -> list[dict[str, Any]]:
    found = tracker(service, conversation_id)["events"]
    return [e for e in found if kind is None or e["event"] == kind]


# --- REST: task switching, fallback recovery, language, limits inside forms -------------


@pytest.mark.parametrize(
    ("status", "refund", "bye", "language"),
    [
        ("where is my order", "I want a refund", "bye", "en"),
        ("我的订单到哪了", "算了 我要退款", "再见", "zh"),
    ],
    ids=["en", "zh"],
)
def test_a_refund_inside_the_order_form_is_asked_at_once_and_answered(
    service: Service, status: str, refund: str, bye: str, language: str
) -> None:
    said = RestCustomer(service).texts
    assert said(status) == [response("utter_ask_order_id", language)]
    # Not silence, not "I still couldn't understand": the refund's own question.
    assert said(refund) == [response("utter_ask_order_id_refund", language)]
    # REST callers carry no identity of their own: told to log in, the number echoed.
    assert said(ORDER) == [response("utter_order_not_verified", language, order_id=ORDER)]
    # The form has let go: the goodbye alone, no "your order number?" after it.
    assert said(bye) == [response("utter_goodbye", language)]
    # A new order question starts the order flow again. (The number given for the
    # refund is remembered, so the bot may answer for it rather than ask.)
    again = said(status)
    assert again in (
        [response("utter_ask_order_id", language)],
        [response("utter_order_not_verified", language, order_id=ORDER)],
    ), again


@pytest.mark.parametrize(
    ("unclear", "clear", "expected", "language"),
    [
        ("blorp zzkx qwv", "where is my order", "utter_ask_order_id", "en"),
        ("嗯 那个 zzkx qwv", "运费怎么算", "utter_faq/shipping_fee", "zh"),
    ],
    ids=["en", "zh"],
)
def test_a_clear_request_after_did_you_mean_is_handled_as_that_request(
    service: Service, unclear: str, clear: str, expected: str, language: str
) -> None:
    customer = RestCustomer(service)
    asked = customer.messages(unclear)
    assert texts(asked) == [response("utter_did_you_mean", language)]
    assert asked[0].get("buttons"), "the likely topics, as buttons"
    assert customer.texts(clear) == [response(expected, language)]


def test_english_inside_a_chinese_form_is_answered_in_english(service: Service) -> None:
    said = RestCustomer(service).texts
    assert said("我的订单到哪了") == [response("utter_ask_order_id", "zh")]
    switched = said("sorry, English please. where is my parcel")
    assert switched and {detect_language(t) for t in switched} == {"en"}, switched
    assert said(ORDER) == [response("utter_order_not_verified", "en", order_id=ORDER)]


@pytest.mark.parametrize(
    ("start", "first", "second", "language"),
    [
        ("我的订单到哪了", ("运费多少", "shipping_fee"), ("发票怎么开", "invoice"), "zh"),
        ("where is my order", ("how much is shipping", "shipping_fee"),
         ("can I get an invoice", "invoice"), "en"),
    ],
    ids=["zh", "en"],
)
def test_two_questions_inside_a_form_are_answered_then_the_form_lets_go(
    service: Service,
    start: str,
    first: tuple[str, str],
    second: tuple[str, str],
    language: str,
) -> None:
    said = RestCustomer(service).texts
    assert said(start) == [response("utter_ask_order_id", language)]
    assert said(first[0]) == [
        response(f"utter_faq/{first[1]}", language),
        response("utter_ask_order_id_again", language),
    ]
    # Asked twice already: answered, and no third question.
    assert said(second[0]) == [
        response(f"utter_faq/{second[1]}", language),
        response("utter_task_let_go", language),
    ]


# --- every everyday message gets a reply in its language, on every channel ---------------

EVERYDAY: dict[str, dict[str, list[str]]] = {
    "zh": {
        "greet": ["你好", "在吗", "您好，请问在吗", "哈喽", "早上好"],
        "order": ["我的订单到哪了", "快递怎么还没到", "帮我查下物流", "我买的东西发货了吗",
                  "我的order到哪了"],
        "faq": ["运费怎么算", "怎么开发票", "可以用支付宝吗", "几天能到", "你们是正品吗",
                "退货政策是什么", "会员等级怎么算"],
        "refund": ["我要退款", "申请退款", "这个我不想要了 要退款", "退款到账了吗"],
        "thank": ["谢谢", "好的 谢谢", "多谢了"],
        "ack": ["好的", "嗯嗯", "👍"],
        "bye": ["再见", "拜拜", "没事了 再见"],
    },
    "en": {
        "greet": ["hi", "hello there", "good morning", "hey, anyone there?"],
        "order": ["where is my order", "my parcel hasn't arrived yet", "can you track my package",
                  "has my order shipped", "where is my 订单"],
        "faq": ["how much is shipping", "can I get an invoice", "do you accept alipay",
                "how long does delivery take", "is this genuine", "what is your return policy"],
        "refund": ["I want a refund", "can I get my money back", "refund please",
                   "where is my refund"],
        "thank": ["thanks", "thank you so much", "cheers"],
        "ack": ["ok", "great", "👍"],
        "bye": ["bye", "goodbye", "that's all, bye"],
    },
}
# How often each kind of message comes up (orders and questions most).
KINDS = ["greet", "order", "order", "faq", "faq", "faq", "refund", "thank", "ack", "bye"]
ORDER_NUMBERS = ["JM202411230456", "JM202410150088", "JM202412010301"]
TURNS = 16
CUSTOMERS_PER_CHANNEL = 3


def everyday_messages(seed: str, turns: int = TURNS) -> list[str]:
    """A customer's messages: a greeting or question first, then any order; order
    and refund questions mostly followed by the number; now and then the other language."""
    rng = random.Random(seed)
    language = rng.choice(["zh", "en"])
    messages = [rng.choice(EVERYDAY[language][rng.choice(["greet", "order", "faq"])])]
    while len(messages) < turns:
        if rng.random() < 0.15:
            language = "en" if language == "zh" else "zh"
        kind = rng.choice(KINDS)
        messages.append(rng.choice(EVERYDAY[language][kind]))
        if kind in ("order", "refund") and rng.random() < 0.7:
            messages.append(rng.choice(ORDER_NUMBERS))
    return messages[:turns]


def problems_of(text: str, language: str, replies: list[dict[str, Any]]) -> list[str]:
    """What is wrong with the bot's answer to `text` in a `language` conversation."""
    if not replies:
        return [f"{text!r}: no reply"]
    found = []
    for reply in replies:
        said = reply.get("text") or ""
        if not said.strip() and not reply.get("custom") and not reply.get("image"):
            found.append(f"{text!r}: an empty message {reply}")
        elif said in CHANNEL_NOTICES:
            found.append(f"{text!r}: the channel's notice {said!r}, not the bot")
        elif detect_language(said) not in (None, language):
            found.append(f"{text!r}: answered in {detect_language(said)}: {said[:60]!r}")
    return found


async def play(customer: Customer, messages: list[str], pace: float) -> tuple[int, list[str]]:
    """(turns played, problems). At most one message per `pace` seconds: the
    channels allow a customer 1 a second after a burst of 5."""
    language = "zh"  # the conversation's language before anything is said
    found: list[str] = []
    last = 0.0
    try:
        for text in messages:
            await asyncio.sleep(max(0.0, last + pace - time.monotonic()))
            last = time.monotonic()
            language = detect_language(text) or language  # no words: the conversation's
            replies = await customer.say(text)
            found += [f"{customer.conversation_id} {p}"
                      for p in problems_of(text, language, replies)]
    finally:
        await customer.close()
    return len(messages), found


@pytest.mark.asyncio
async def test_every_everyday_message_gets_a_reply_in_its_language_on_every_channel(
    service: Service, wechat_api: FakeWeChatAPI
) -> None:
    # channel -> pace: customer channels allow 1 message a second (REST: no limits).
    channels = {"rest": 0.0, "web": 1.05, "wechat": 1.05, "app": 1.05}
    plays: list[tuple[str, Awaitable[tuple[int, list[str]]]]] = []
    for channel, pace in channels.items():
        for number in range(CUSTOMERS_PER_CHANNEL):
            customer = await new_customer_on(channel, service, wechat_api)
            messages = everyday_messages(f"{channel}-{number}")
            plays.append((channel, play(customer, messages, pace)))
    started = time.monotonic()
    results = await asyncio.gather(*(game for _, game in plays))
    turns: dict[str, int] = {}
    problems: list[str] = []
    for (channel, _), (played, found) in zip(plays, results, strict=True):
        turns[channel] = turns.get(channel, 0) + played
        problems += [f"{channel} {p}" for p in found]
    print(
        f"\neveryday run: {sum(turns.values())} turns checked ({turns}) in "
        f"{time.monotonic() - started:.0f} s, {len(problems)} with a problem"
    )
    assert not problems, "\n".join(problems)


# --- typed payloads are words; offered buttons still work --------------------------------

TYPED = ["/restart", "\u3000/restart", "／restart", f'/inform{{"order_id": "{ORDER}"}}']


@pytest.mark.asyncio
@pytest.mark.parametrize("typed", TYPED, ids=["slash", "ideographic-space", "fullwidth", "inform"])
@pytest.mark.parametrize("channel", ["web", "app", "wechat"])
async def test_a_typed_payload_gets_a_reply_and_restarts_nothing(
    service: Service, wechat_api: FakeWeChatAPI, channel: str, typed: str
) -> None:
    customer = await new_customer_on(channel, service, wechat_api)
    try:
        assert await customer.say("你好")
        assert await customer.say("我的订单到哪了")
        before = events(service, customer.conversation_id)
        replies = await customer.say(typed)
    finally:
        await customer.close()
    after = events(service, customer.conversation_id)
    assert not [e for e in after if e["event"] == "restart"], "the conversation was restarted"
    # Everything said before is still there, unchanged.
    assert [(e["event"], e["timestamp"]) for e in after[: len(before)]] == [
        (e["event"], e["timestamp"]) for e in before
    ]
    assert [t for t in texts(replies) if t.strip()], "silence"
    [user] = [e for e in after[len(before) :] if e["event"] == "user"]
    assert user["text"] == typed.strip()  # what they typed (Rasa trims white space)
    words = user["parse_data"]["text"]
    assert words and words[0] not in "/／" and words in typed
    assert user["metadata"]["typed_payload"] is True


@pytest.mark.asyncio
async def test_a_button_the_bot_offered_still_works_from_the_widget(service: Service) -> None:
    customer = await WebCustomer.start(service)
    try:
        greeting = await customer.say("你好")
        offered = [q["payload"] for m in greeting for q in m.get("quick_replies") or []]
        assert "/human_handoff" in offered
        # A turn later (the form's question has no buttons) the greeting's button
        # is still one the bot offered in this conversation: a click.
        assert await customer.say("我的订单到哪了")
        clicked = await customer.say("/human_handoff", shown="转人工")
    finally:
        await customer.close()
    # Nobody at the desk of the test service: a message is offered.
    assert texts(clicked) == [response("utter_handoff_no_agent", "zh")]
    user = events(service, customer.conversation_id, "user")[-1]
    assert user["parse_data"]["intent"]["name"] == "human_handoff"
    assert "typed_payload" not in user["metadata"]


# --- numbered options on WeChat ----------------------------------------------------------


def embedded_redis_url(service: Service) -> str:
    """The embedded Redis of `bot run` (it writes its URL under var/run/)."""
    return (service.var_dir / "run" / "redis_url").read_text().strip()


@pytest.mark.asyncio
async def test_a_number_picks_from_the_last_option_list_on_wechat_then_expires(
    service: Service, wechat_api: FakeWeChatAPI, app_push: Recorder
) -> None:
    customer = WeChatCustomer(service, wechat_api)
    greeting = (await customer.say("你好"))[0]["text"]
    assert "1. 我的订单到哪了" in greeting
    # Two more lists after the greeting's in the same bot turn, from the desk
    # (pushes go into the transcript): the last one is what "2" answers.
    pushes = [
        {"text": "您好，我是客服小青，请问您想了解哪方面？",
         "buttons": [{"title": "运费", "payload": "运费怎么算"},
                     {"title": "发票", "payload": "怎么开发票"}]},
        {"text": "也可以看看这些：",
         "buttons": [{"title": "退货", "payload": "你们的退货政策是什么"},
                     {"title": "正品保证", "payload": "你们是正品吗"}]},
    ]
    with push_from_outside(embedded_redis_url(service), wechat_api, app_push, service) as push:
        for message in pushes:
            await push.send(customer.conversation_id, message)
    # Delivered (send() waits for WeChat's API) and in the transcript.
    shown = wechat_api.texts_to(customer.openid)[-1]
    assert shown.startswith("也可以看看这些：\n\n1. 退货\n2. 正品保证"), shown
    transcript = events(service, customer.conversation_id, "bot")
    pushed = [e["text"] for e in transcript if (e.get("metadata") or {}).get("pushed")]
    assert pushed == [m["text"] for m in pushes]

    picked = await customer.say("2")
    assert texts(picked) == [response("utter_faq/authenticity", "zh")]
    said = events(service, customer.conversation_id, "user")[-1]
    assert said["text"] == "2"
    assert said["metadata"]["option"] == {"number": 2, "payload": "你们是正品吗"}

    # The authenticity answer has no options: "1" is just text now, and still answered.
    after = await customer.say("1")
    assert [t for t in texts(after) if t.strip()]
    assert response("utter_faq/return_policy", "zh") not in texts(after)
    said = events(service, customer.conversation_id, "user")[-1]
    assert said["text"] == "1" and said["parse_data"]["text"] == "1"
    assert "option" not in said["metadata"]


# --- the fallback's last offer: a person or a message -------------------------------------
# Rasa's action_default_fallback sends the offer and then reverts the turn it
# answered: the offer's buttons must still count as what the customer saw.


def last_options(rendered: str) -> list[str]:
    """The titles of the last numbered list in a WeChat text ("1. 转人工" lines)."""
    lists: list[list[str]] = [[]]
    for line in rendered.splitlines():
        number, dot, title = line.partition(". ")
        if dot and number.isdigit():
            if number == "1":
                lists.append([])
            lists[-1].append(title)
    return lists[-1]


@pytest.mark.asyncio
async def test_a_number_answers_the_give_up_offer_on_wechat(
    service: Service, wechat_api: FakeWeChatAPI
) -> None:
    customer = WeChatCustomer(service, wechat_api)
    for _ in range(2):  # two misses: "did you mean…?", "none of these"
        asked = (await customer.say("blorp zzkx qwv"))[0]["text"]
        assert asked.startswith(response("utter_did_you_mean", "en")), asked
        none_of_these = len(last_options(asked))  # always the last option
        reply = (await customer.say(str(none_of_these)))[0]["text"]
    # Two misses hand over to a person; nobody is at the desk: a message is offered.
    assert reply.startswith(response("utter_handoff_no_agent", "en")), reply
    assert last_options(reply) == ["Leave a message", "No thanks"]
    picked = await customer.say("1")
    said = events(service, customer.conversation_id, "user")[-1]
    assert said["metadata"].get("option") == {"number": 1, "payload": "/leave_message"}
    assert texts(picked) == [response("utter_ask_ticket_message", "en")]


@pytest.mark.asyncio
async def test_a_click_on_the_give_up_offer_in_the_widget(service: Service) -> None:
    customer = await WebCustomer.start(service)
    try:
        for _ in range(2):
            asked = await customer.say("嗯 那个 zzkx qwv")
            assert texts(asked) == [response("utter_did_you_mean", "zh")]
            given_up = await customer.say("/out_of_scope", shown="都不是")
        assert texts(given_up) == [response("utter_handoff_no_agent", "zh")]
        offered = [q["payload"] for q in given_up[0].get("quick_replies") or []]
        assert offered == ["/leave_message", "/deny"]
        clicked = await customer.say("/leave_message", shown="给客服留言")
    finally:
        await customer.close()
    said = events(service, customer.conversation_id, "user")[-1]
    assert "typed_payload" not in said["metadata"], "the click was read as typed words"
    # Read as the words "leave_message", it would also have turned the conversation English.
    assert texts(clicked) == [response("utter_ask_ticket_message", "zh")]


# --- the app: a task switch inside the form -----------------------------------------------


@pytest.mark.asyncio
async def test_a_refund_inside_the_order_form_on_the_app(service: Service) -> None:
    customer = AppCustomer(service)
    assert texts(await customer.say("我的订单到哪了")) == [response("utter_ask_order_id", "zh")]
    assert texts(await customer.say("算了 我要退款")) == [
        response("utter_ask_order_id_refund", "zh")
    ]
    # An app login that no account knows (this test's customer): a person can help.
    assert texts(await customer.say(ORDER)) == [response("utter_account_not_bound", "zh")]
    assert texts(await customer.say("谢谢")) == [response("utter_thank", "zh")]



# --- two requests in one message ----------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("channel", ["rest", "web", "wechat", "app"])
async def test_two_requests_in_one_message_are_answered_in_order(
    service: Service, wechat_api: FakeWeChatAPI, channel: str
) -> None:
    customer = await new_customer_on(channel, service, wechat_api)
    try:
        reply = "\n".join(texts(await customer.say("查下订单 顺便问下运费")))
    finally:
        await customer.close()
    # WeChat joins a turn's messages into one; the others send them one by one.
    expected = [
        response("utter_ask_order_id", "zh"),
        response("utter_faq/shipping_fee", "zh"),
        response("utter_ask_order_id_again", "zh"),
    ]
    places = [reply.find(text) for text in expected]
    assert -1 not in places and places == sorted(places), reply


# --- WeChat: an unverified follower binds with a code, then sees their account ------------


@pytest.mark.asyncio
async def test_a_wechat_follower_binds_with_a_code_and_gets_their_points(
    service: Service, wechat_api: FakeWeChatAPI
) -> None:
    from actions.shop import mask_phone
    from bot.shop.demo import DEMO_CUSTOMERS

    (unbound,) = [d for d in DEMO_CUSTOMERS if d.key == "unbound"]
    customer = WeChatCustomer(service, wechat_api)
    offer = (await customer.say("我有多少积分"))[0]["text"]
    assert offer.startswith(response("utter_account_not_verified_bind", "zh")), offer
    assert last_options(offer) == ["验证手机号", "转人工"]
    assert (await customer.say("1"))[0]["text"] == response("utter_ask_bind_phone", "zh")
    sent = [m["text"] for m in await customer.say(unbound.phone)]
    masked = mask_phone(unbound.phone)
    # One passive reply holds both messages: "sent, if it's an account's" and the question.
    assert sent[0].startswith(response("utter_bind_code_sent", "zh", phone=masked, minutes="5"))
    assert sent[0].endswith(response("utter_ask_bind_code", "zh"))
    assert unbound.phone not in "".join(sent)
    log = service.var_dir / "log" / "sms.log"
    (line,) = [json.loads(x) for x in log.read_text().splitlines() if masked in x]
    code = re.search(r"\b(\d{6})\b", line["text"]).group(1)  # type: ignore[union-attr]
    done = (await customer.say(code))[0]["text"]
    assert done.startswith("验证成功"), done
    points = (await customer.say("我有多少积分"))[0]["text"]
    assert "120" in points and "普通会员" in points, points
