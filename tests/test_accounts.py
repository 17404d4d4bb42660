"""Account look-ups (actions/accounts.py) through the dialogue, in process, with
the real action server on a seeded shop database: the verified customer's own
figures in their language, nothing for anyone else, an audit record for every
access, and an apology with a way forward when the database fails."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import select

from actions.shop import mask_email, mask_phone, money
from bot.nlu.language import message_language
from bot.shop import database
from bot.shop.schema import AuditRecord, Customer, Identity
from tests.conftest import ROOT, base_env, free_port
from tests.conversations import Chat

DEMO_ZH = {"channel": "web", "subject": "demo-zh", "verified_by": "host_hmac", "customer": True}
DEMO_EN = {"channel": "app", "subject": "app-demo-en", "verified_by": "jwt", "customer": True}
STRANGER = {"channel": "wechat", "subject": "oSTRANGER0000000000000000001",
            "verified_by": "wechat_signature", "customer": False}


def customer_for(shop_url: str, channel: str, subject: str) -> Customer:
    with database.session(shop_url) as session:
        bound = session.scalars(
            select(Identity).where(Identity.channel == channel, Identity.subject == subject)
        ).one()
        return bound.customer


def audit_trail(shop_url: str, subject: str) -> list[tuple[str, int | None]]:
    with database.session(shop_url) as session:
        return [
            (r.action, r.customer_id)
            for r in session.scalars(
                select(AuditRecord).where(AuditRecord.subject == subject).order_by(AuditRecord.id)
            )
        ]


def texts(messages: list[dict[str, Any]]) -> str:
    return "\n".join(m.get("text") or "" for m in messages)


def test_a_verified_customer_gets_their_balance_points_and_details_in_chinese(
    dialogue_agent: Any, shop_url: str
) -> None:
    me = customer_for(shop_url, "web", "demo-zh")
    chat = Chat(dialogue_agent, identity=DEMO_ZH)
    balance = chat.say("我钱包里还有多少钱")
    assert [m["utter_action"] for m in balance] == ["utter_balance"]
    assert money(me.wallet_cents) in texts(balance) and message_language(texts(balance)) == "zh"
    points = chat.say("我现在有多少积分")
    assert f"{me.points:,}" in texts(points) and "黄金会员" in texts(points)
    details = texts(chat.say("看下我的账户信息"))
    assert me.name in details and mask_phone(me.phone) in details
    assert mask_email(me.email) in details
    # Personal data is masked: the full phone number and e-mail never appear.
    assert me.phone not in details and (me.email or "") not in details
    assert audit_trail(shop_url, "demo-zh")[-3:] == [
        ("check_balance", me.id), ("check_points", me.id), ("account_info", me.id),
    ]


def test_a_verified_app_customer_gets_answers_in_english(
    dialogue_agent: Any, shop_url: str
) -> None:
    me = customer_for(shop_url, "app", "app-demo-en")
    chat = Chat(dialogue_agent, identity=DEMO_EN)
    balance = texts(chat.say("what's my wallet balance"))
    assert f"Your Jade Wallet balance is {money(me.wallet_cents)}." == balance
    points = texts(chat.say("how many points have i got"))
    assert f"{me.points:,} points" in points and "Silver" in points


@pytest.mark.parametrize(
    ("identity", "text", "language", "told"),
    [
        # A WeChat follower or web visitor may verify with a code sent to the phone.
        (STRANGER, "我的余额是多少", "zh", "utter_account_not_verified_bind"),
        (None, "how many points do I have", "en", "utter_account_not_verified_bind"),
        # A host-site login no account knows: a person can sort it out.
        ({**DEMO_ZH, "subject": "demo-zh-not-bound"}, "show me my account details", "en",
         "utter_account_not_bound"),
    ],
)
def test_nobody_else_learns_anything_about_an_account(
    dialogue_agent: Any, shop_url: str, identity: dict | None, text: str, language: str,
    told: str,
) -> None:
    chat = Chat(dialogue_agent, identity=identity)
    reply = chat.say(text)
    assert [m["utter_action"] for m in reply] == [told]
    assert message_language(texts(reply)) == language
    assert not re.search(r"¥|\d{3}\*+\d{4}", texts(reply))
    if identity is not None:
        refused = audit_trail(shop_url, identity["subject"])
        assert refused and refused[-1][0].endswith("_refused_unverified")
        assert refused[-1][1] is None


def test_without_an_identity_of_their_own_a_caller_is_told_to_log_in(
    dialogue_agent: Any,
) -> None:
    reply = Chat(dialogue_agent, customer=False).say("我的积分有多少")
    assert [m["utter_action"] for m in reply] == ["utter_account_not_verified"]
    assert "登录" in texts(reply)


def test_a_typed_identity_is_not_an_identity(dialogue_agent: Any) -> None:
    """What a customer types (an entity, a slot payload) never names an account."""
    chat = Chat(dialogue_agent, identity=STRANGER)
    reply = chat.say('/check_balance{"subject": "demo-zh"}')
    assert "utter_balance" not in [m["utter_action"] for m in reply]
    assert "¥" not in texts(reply)


@pytest.fixture(scope="module")
def broken_database_agent(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The dialogue with an action server whose shop database can't be reached."""
    from rasa.core.agent import Agent
    from rasa.utils.endpoints import EndpointConfig

    from bot.cli import action_server_spec
    from bot.settings import get_settings

    port = free_port()
    settings = dataclasses.replace(get_settings(), action_port=port)
    spec = action_server_spec(
        settings, base_env(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    )
    log = tmp_path_factory.mktemp("broken") / "actions.out"
    process = subprocess.Popen(
        spec.argv, cwd=ROOT, env={**os.environ, **spec.env}, stdout=log.open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (spec.ready and spec.ready()):
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.5)
    yield Agent.load(str(model), action_endpoint=EndpointConfig(f"http://127.0.0.1:{port}/webhook"))
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


@pytest.mark.parametrize(
    ("text", "language"), [("我的积分有多少", "zh"), ("what's my wallet balance", "en")]
)
def test_a_failing_database_gets_an_apology_and_a_way_forward(
    broken_database_agent: Any, text: str, language: str
) -> None:
    reply = Chat(broken_database_agent, identity=DEMO_ZH).say(text)
    assert [m["utter_action"] for m in reply] == ["utter_account_lookup_failed"]
    assert message_language(texts(reply)) == language
    assert [b["payload"] for b in reply[0]["buttons"]] == ["/human_handoff", "/leave_message"]
    assert "Traceback" not in texts(reply) and "postgresql" not in texts(reply)


def test_a_verified_customer_gets_a_reset_code_on_their_phone_never_in_the_chat(
    dialogue_agent: Any, shop_url: str, action_var_dir: Path
) -> None:
    import json

    from bot.shop.notify import code_matches
    from bot.shop.schema import VerificationCode

    me = customer_for(shop_url, "web", "demo-zh")
    reply = Chat(dialogue_agent, identity=DEMO_ZH).say("忘记密码了怎么办")
    assert [m["utter_action"] for m in reply] == ["utter_reset_code_sent"]
    assert mask_phone(me.phone) in texts(reply) and me.phone not in texts(reply)
    sms = json.loads((action_var_dir / "log" / "sms.log").read_text().splitlines()[-1])
    assert sms["to"] == mask_phone(me.phone)  # the development log masks the number
    code = re.search(r"\b(\d{6})\b", sms["text"]).group(1)
    assert code not in texts(reply)  # the code never appears in the chat
    assert oct((action_var_dir / "log" / "sms.log").stat().st_mode & 0o777) == "0o600"
    with database.session(shop_url) as session:
        stored = session.scalars(
            select(VerificationCode).where(VerificationCode.customer_id == me.id)
            .order_by(VerificationCode.id.desc())
        ).first()
        assert stored.code_hash != code  # hashed
        assert stored.purpose == "password_reset" and stored.subject == "demo-zh"
        assert code_matches(code, "password_reset:demo-zh", stored.code_hash)
        assert not code_matches("000000" if code != "000000" else "111111",
                                "password_reset:demo-zh", stored.code_hash)
        minutes = (stored.expires_at - stored.created_at).total_seconds() / 60
        assert minutes == 5
    assert audit_trail(shop_url, "demo-zh")[-1] == ("reset_password", me.id)


def test_anyone_else_gets_the_self_service_steps(dialogue_agent: Any) -> None:
    reply = Chat(dialogue_agent).say("I forgot my password")
    assert [m["utter_action"] for m in reply] == ["utter_reset_password"]
