"""Binding a WeChat follower or web visitor to an account with a one-time code
(actions/binding.py), through the dialogue, in process, with the real action
server on the session's shop database and its development SMS log."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select

from actions.binding import CODE_MINUTES, MAX_WRONG
from actions.shop import mask_phone
from bot.nlu.language import message_language
from bot.shop import database
from bot.shop.schema import AuditRecord, Identity, VerificationCode
from tests.conftest import ROOT
from tests.conversations import Chat
from tests.shop_customers import fresh_customer, new_phone
from tests.test_accounts import texts
from tests.test_refunds import said


def follower() -> dict[str, Any]:
    return {"channel": "wechat", "subject": f"o{uuid.uuid4().hex[:27]}",
            "verified_by": "wechat_signature", "customer": False}


def sms_to(var_dir: Path, phone: str) -> list[str]:
    log = var_dir / "log" / "sms.log"
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    # The log masks the number (138****5678); test phones differ in their last digits.
    return [json.loads(line)["text"] for line in lines
            if json.loads(line)["to"] == mask_phone(phone)]


def code_in(text: str) -> str:
    return re.search(r"\b(\d{6})\b", text).group(1)  # type: ignore[union-attr]


def trail(shop_url: str, subject: str) -> list[str]:
    with database.session(shop_url) as session:
        return list(session.scalars(
            select(AuditRecord.action).where(AuditRecord.subject == subject)
            .order_by(AuditRecord.id)
        ).all())


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_a_wechat_follower_binds_with_a_code_and_sees_their_balance(
    dialogue_agent: Any, shop_url: str, action_var_dir: Path
) -> None:
    me = follower()
    customer = fresh_customer(shop_url, None, None, "zh")
    chat = Chat(dialogue_agent, identity=me)
    (offer,) = chat.say("我钱包里还有多少钱")
    assert offer["utter_action"] == "utter_account_not_verified_bind"
    assert offer["buttons"][0]["payload"] == "/bind_account"
    assert said(chat.say("/bind_account")) == ["utter_ask_bind_phone"]
    sent = chat.say(customer["phone"])
    assert said(sent) == ["utter_bind_code_sent", "utter_ask_bind_code"]
    assert mask_phone(customer["phone"]) in texts(sent) and customer["phone"] not in texts(sent)
    (sms,) = sms_to(action_var_dir, customer["phone"])
    code = code_in(sms)
    assert code not in texts(sent)
    assert said(chat.say(wrong(code))) == ["utter_bind_code_wrong", "utter_ask_bind_code"]
    done = chat.say(code)
    assert said(done) == ["utter_bind_done"] and message_language(texts(done)) == "zh"
    assert said(chat.say("我钱包里还有多少钱")) == ["utter_balance"]
    with database.session(shop_url) as session:
        bound = session.scalars(select(Identity).where(Identity.subject == me["subject"])).one()
        assert (bound.customer_id, bound.channel, bound.bound_by) == (
            customer["id"], "wechat", "sms_code")
        stored = session.scalars(
            select(VerificationCode).where(VerificationCode.subject == me["subject"])
        ).one()
        assert stored.used_at is not None and stored.attempts == 1 and code not in stored.code_hash
    assert trail(shop_url, me["subject"])[-4:-1] == [
        "bind_code_sent", "bind_code_wrong", "bind_account"]


def test_a_phone_of_no_account_gets_the_same_answer_and_no_text(
    dialogue_agent: Any, shop_url: str, action_var_dir: Path
) -> None:
    known = fresh_customer(shop_url, None, None, "en")["phone"]
    unknown = new_phone()
    answers = []
    for phone in (known, unknown):
        chat = Chat(dialogue_agent, identity=follower())
        chat.say("verify my phone")
        answers.append(texts(chat.say(phone)).replace(mask_phone(phone), "#"))
        # Any code is wrong for a number without an account, told the same way.
        assert said(chat.say("123456")) == ["utter_bind_code_wrong", "utter_ask_bind_code"]
    assert answers[0] == answers[1] and message_language(answers[0]) == "en"
    assert sms_to(action_var_dir, unknown) == []
    assert len(sms_to(action_var_dir, known)) == 1


def test_five_wrong_codes_lock_binding_for_a_while(
    dialogue_agent: Any, shop_url: str, action_var_dir: Path
) -> None:
    me = follower()
    customer = fresh_customer(shop_url, None, None, "en")
    chat = Chat(dialogue_agent, identity=me)
    chat.say("link my account")
    chat.say(customer["phone"])
    code = code_in(sms_to(action_var_dir, customer["phone"])[-1])
    for left in range(MAX_WRONG - 1, 0, -1):
        reply = chat.say(wrong(code))
        assert said(reply)[0] == "utter_bind_code_wrong" and str(left) in texts(reply)
    locked = chat.say(wrong(code))
    assert said(locked) == ["utter_bind_locked"]
    assert chat.tracker.active_loop_name is None
    # Not even the right code, nor a new start, while it lasts.
    assert said(chat.say("link my account")) == ["utter_bind_locked"]
    assert said(chat.say(code)) != ["utter_bind_done"]
    with database.session(shop_url) as session:
        assert session.scalars(select(Identity).where(Identity.subject == me["subject"])).all() \
            == []
    assert "bind_locked" in trail(shop_url, me["subject"])


def test_an_expired_code_starts_over(
    dialogue_agent: Any, shop_url: str, action_var_dir: Path
) -> None:
    me = follower()
    customer = fresh_customer(shop_url, None, None, "zh")
    chat = Chat(dialogue_agent, identity=me)
    chat.say("绑定账号")
    chat.say(customer["phone"])
    code = code_in(sms_to(action_var_dir, customer["phone"])[-1])
    late = dt.timedelta(minutes=CODE_MINUTES + 1)
    with database.session(shop_url) as session:  # as if sent six minutes ago
        for row in session.scalars(
            select(AuditRecord).where(AuditRecord.subject == me["subject"])
        ):
            row.at = row.at - late
        for code_row in session.scalars(
            select(VerificationCode).where(VerificationCode.subject == me["subject"])
        ):
            code_row.created_at, code_row.expires_at = (
                code_row.created_at - late, code_row.expires_at - late)
    reply = chat.say(code)
    assert said(reply) == ["utter_bind_code_expired", "utter_ask_bind_phone"]


def test_who_cant_or_neednt_bind_is_told_so(dialogue_agent: Any, shop_url: str) -> None:
    # A REST caller without an identity of its own.
    assert said(Chat(dialogue_agent, customer=False).say("verify my phone")) == [
        "utter_bind_unavailable"]
    # An app login that no account knows: a person can sort it out.
    app = {"channel": "app", "subject": f"app-{uuid.uuid4().hex[:8]}", "verified_by": "jwt",
           "customer": True}
    assert said(Chat(dialogue_agent, identity=app).say("what's my balance")) == [
        "utter_account_not_bound"]
    assert said(Chat(dialogue_agent, identity=app).say("verify my phone")) == [
        "utter_account_not_bound"]
    # Someone already bound.
    me = follower()
    fresh_customer(shop_url, me["channel"], me["subject"], "zh")
    assert said(Chat(dialogue_agent, identity=me).say("绑定账号")) == ["utter_bind_already"]


def test_the_readmes_unbound_demo_customer_binds_with_their_phone(
    dialogue_agent: Any, shop_url: str, action_var_dir: Path
) -> None:
    from bot.shop.demo import DEMO_CUSTOMERS

    (unbound,) = [d for d in DEMO_CUSTOMERS if d.key == "unbound"]
    assert unbound.phone in (ROOT / "README.md").read_text(encoding="utf-8")
    chat = Chat(dialogue_agent, identity=follower())
    chat.say("绑定账号")
    chat.say(unbound.phone)
    code = code_in(sms_to(action_var_dir, unbound.phone)[-1])
    assert said(chat.say(code)) == ["utter_bind_done"]
    assert said(chat.say("我有多少积分")) == ["utter_points"]


def test_what_isnt_a_phone_or_a_code_is_asked_again_then_let_go(
    dialogue_agent: Any, shop_url: str, action_var_dir: Path
) -> None:
    customer = fresh_customer(shop_url, None, None, "en")
    chat = Chat(dialogue_agent, identity=follower())
    chat.say("verify my phone")
    assert said(chat.say("12345")) == ["utter_invalid_phone", "utter_ask_bind_phone"]
    chat.say(customer["phone"])
    # Not six digits: asked again (not a wrong code, nothing counted)…
    assert said(chat.say("12 34")) == ["utter_ask_bind_code"]
    # …and after two answers that won't do, the form lets go.
    assert said(chat.say("abc")) == ["utter_task_let_go"]
    assert chat.tracker.active_loop_name is None


def test_at_most_three_codes_go_out_in_a_while(
    dialogue_agent: Any, shop_url: str, action_var_dir: Path
) -> None:
    from actions.binding import MAX_SENDS

    me = follower()
    customer = fresh_customer(shop_url, None, None, "zh")
    for _ in range(MAX_SENDS):
        chat = Chat(dialogue_agent, identity=me)
        chat.say("绑定账号")
        assert said(chat.say(customer["phone"])) == ["utter_bind_code_sent", "utter_ask_bind_code"]
    chat = Chat(dialogue_agent, identity=me)
    chat.say("绑定账号")
    assert said(chat.say(customer["phone"])) == ["utter_bind_locked"]
    assert len(sms_to(action_var_dir, customer["phone"])) == MAX_SENDS
    assert "bind_refused_too_many" in trail(shop_url, me["subject"])
