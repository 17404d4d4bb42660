"""The running service, as `bot run` starts it on the embedded defaults.

Real HTTP against the real Rasa server, action server, embedded Redis and SQLite.
"""

from __future__ import annotations

import sqlite3
import urllib.error
import urllib.request
import uuid

import pytest

from tests.conftest import REST_TOKEN, Service

pytestmark = pytest.mark.slow


def sender() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def test_chinese_greeting_with_hot_questions(service: Service) -> None:
    messages = service.say(sender(), "你好")
    assert "青玉商城" in messages[0]["text"]
    titles = [b["title"] for b in messages[0]["buttons"]]
    assert "转人工" in titles


def test_english_greeting(service: Service) -> None:
    messages = service.say(sender(), "hello there")
    assert messages[0]["text"].startswith("Hi, I'm Jade")


def test_customer_who_switches_language_gets_answers_in_the_new_one(service: Service) -> None:
    who = sender()
    assert "包邮" in service.texts(who, "运费怎么算")
    english = service.texts(who, "and what is your return policy?")
    assert "within 7 days" in english
    assert "保修" in service.texts(who, "那保修呢 保修多久")


def test_mixed_message_is_answered_in_its_dominant_language(service: Service) -> None:
    text = service.texts(sender(), "我的order到哪了")
    assert "订单号" in text


def test_faq_answers_in_both_languages(service: Service) -> None:
    assert "09:00" in service.texts(sender(), "你们人工客服几点上班")
    assert "09:00" in service.texts(sender(), "what are your opening hours")
    assert "发票" in service.texts(sender(), "怎么开发票")


def test_order_status_asks_for_the_number_then_continues(service: Service) -> None:
    who = sender()
    assert "订单号" in service.texts(who, "我的快递到哪了")
    answer = service.texts(who, "JM202411230456")
    assert "JM202411230456" in answer
    # The REST caller's messages name no customer: no status, how to verify instead.
    assert "确认您的身份" in answer and "运输中" not in answer


def test_order_number_in_the_first_message_is_not_asked_again(service: Service) -> None:
    answer = service.texts(sender(), "where is my order 202411170001")
    assert "JM202411170001" in answer
    assert "once I know it's you" in answer


def test_refund_flow_in_english(service: Service) -> None:
    who = sender()
    assert "order number" in service.texts(who, "I want a refund for my jacket")
    # A REST caller has no identity of its own: asked to log in, the number echoed.
    said = service.texts(who, "it's JM202410310077")
    assert "JM202410310077" in said and "log in" in said


def test_faq_while_asked_for_the_order_number_then_the_form_resumes(service: Service) -> None:
    who = sender()
    service.texts(who, "cancel my order")
    detour = service.texts(who, "how much is shipping")
    assert "99" in detour and "order number" in detour
    assert "JM202411230456" in service.texts(who, "JM202411230456")


def test_out_of_scope_answer_says_what_the_bot_can_do(service: Service) -> None:
    messages = service.say(sender(), "今天天气怎么样")
    assert "帮不上忙" in messages[0]["text"]
    assert messages[0]["buttons"]


def test_account_look_ups_need_a_verified_customer_and_placeholders_are_honest(
    service: Service,
) -> None:
    # The REST caller's messages carry no channel identity: no account is named.
    answer = service.texts(sender(), "我钱包里还有多少钱")
    assert "确认您的身份" in answer and "¥" not in answer
    # Nobody at the desk of the test service: a message is offered.
    answer = service.texts(sender(), "I want to talk to a real person")
    assert "no agent is online right now" in answer


def test_two_stage_fallback_then_offers_a_person(service: Service) -> None:
    who = sender()
    ask = service.say(who, "/nlu_fallback")
    assert ask[0]["buttons"][-1]["payload"] == "/out_of_scope"
    assert "换个说法" in service.texts(who, "/out_of_scope")
    service.say(who, "/nlu_fallback")
    give_up = service.say(who, "/out_of_scope")
    # Two misses hand over to a person; nobody is at the desk: a message is offered.
    assert "没有人工客服在线" in give_up[0]["text"]
    assert [b["payload"] for b in give_up[0]["buttons"]] == ["/leave_message", "/deny"]


def test_low_confidence_message_gets_did_you_mean_in_the_customers_language(
    service: Service,
) -> None:
    # Rasa's FallbackClassifier: anything below the threshold becomes nlu_fallback.
    who = sender()
    service.texts(who, "hello")
    parse = service.post("/model/parse", {"text": "blorp zzkx qwv"})
    if parse["intent"]["name"] != "nlu_fallback":
        pytest.skip(f"nonsense was classified confidently as {parse['intent']}")
    messages = service.say(who, "blorp zzkx qwv")
    assert messages[0]["text"].startswith("Sorry, I'm not sure")


def test_parse_api_reports_language_and_entities(service: Service) -> None:
    parsed = service.post("/model/parse", {"text": "订单JM202411230456退款¥59.9到哪了"})
    assert parsed["language"] == "zh"
    assert parsed["intent"]["name"] == "refund_status"
    entities = {e["entity"]: e["value"] for e in parsed["entities"]}
    assert entities == {"order_id": "JM202411230456", "amount": "¥59.9"}


def test_http_api_needs_the_token(service: Service) -> None:
    with pytest.raises(urllib.error.HTTPError) as error:
        service.post("/model/parse", {"text": "hi"}, token=None)
    assert error.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as error:
        service.get("/conversations/someone/tracker", token="wrong")
    assert error.value.code == 401


def test_conversations_are_kept_in_sqlite_and_redis_keeps_an_append_only_file(
    service: Service,
) -> None:
    who = sender()
    service.say(who, "我的积分有多少")
    with sqlite3.connect(service.var_dir / "tracker.db") as db:
        rows = db.execute(
            "select type_name from events where sender_id = ?", (who,)
        ).fetchall()
    types = [r[0] for r in rows]
    assert "user" in types and "bot" in types
    assert any((service.var_dir / "redis").rglob("*.aof*"))


def test_tracker_api_shows_the_language_slot(service: Service) -> None:
    who = sender()
    service.say(who, "where is my refund")
    tracker = service.get(f"/conversations/{who}/tracker")
    assert tracker["slots"]["language"] == "en"
    service.say(who, "算了 转人工吧")
    tracker = service.get(f"/conversations/{who}/tracker")
    assert tracker["slots"]["language"] == "zh"


def test_scale_out_conversation_continues_on_another_instance(scaled: list[Service]) -> None:
    first, second = scaled
    who = sender()
    assert "order number" in first.texts(who, "where is my parcel")
    # The next message lands on the other instance: same tracker (PostgreSQL),
    # same lock store (Redis), so the form goes on where it was.
    answer = second.texts(who, "JM202411230456")
    assert "JM202411230456" in answer
    tracker = first.get(f"/conversations/{who}/tracker")
    assert [e for e in tracker["events"] if e["event"] == "user"][-1]["text"] == "JM202411230456"


def test_malformed_json_gets_a_400_and_the_service_carries_on(service: Service) -> None:
    request = urllib.request.Request(
        f"{service.url}/webhooks/rest/webhook",
        b'{"sender": "x", "message": ',
        {"Content-Type": "application/json", "Authorization": f"Bearer {REST_TOKEN}"},
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=30)
    assert error.value.code == 400
    assert service.say(sender(), "hi")[0]["text"]


def test_rest_channel_refuses_callers_without_the_rest_token(service: Service) -> None:
    who = sender()
    for token in (None, "wrong-token"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            service.post("/webhooks/rest/webhook", {"sender": who, "message": "你好"}, token)
        assert refused.value.code == 401
    # Nothing was processed: the conversation does not exist.
    events = service.get(f"/conversations/{who}/tracker")["events"]
    assert not [e for e in events if e["event"] == "user"]
    assert service.say(who, "你好")  # with the token it answers
