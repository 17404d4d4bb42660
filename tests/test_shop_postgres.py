"""The shop actions on PostgreSQL, and what the customer sees when the database or
the action server goes away in the middle of a conversation.

One action server of this module's own runs on a PostgreSQL schema of its own,
reached through a TCP relay that the tests can cut (the database "goes away":
open connections break, new ones are refused) and restore. The PostgreSQL
server itself is the machine's (127.0.0.1:5432), shared with other tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import create_engine, select, text

from bot.nlu.language import message_language
from bot.shop import database, demo
from bot.shop.schema import Refund, Ticket
from tests.conftest import ROOT, base_env, free_port
from tests.conversations import Chat
from tests.shop_customers import fresh_customer
from tests.test_accounts import DEMO_EN, DEMO_ZH, texts
from tests.test_binding import code_in, follower, sms_to
from tests.test_refunds import said

pytestmark = pytest.mark.slow

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


class Relay:
    """A TCP relay to PostgreSQL that can be cut (every connection closed, new ones
    refused) and restored, on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            # shutdown wakes the thread blocked in accept(); close alone wouldn't.
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@dataclasses.dataclass
class Setup:
    url: str  # through the relay, as the action server sees it
    direct: str  # straight to PostgreSQL, for the tests' own reads
    relay: Relay
    var_dir: Path
    port: int
    agent: Any
    process: subprocess.Popen | None = None

    def start_actions(self) -> None:
        from bot.cli import action_server_spec
        from bot.settings import get_settings

        settings = dataclasses.replace(get_settings(), action_port=self.port)
        spec = action_server_spec(
            settings, base_env(DATABASE_URL=self.url, BOT_VAR_DIR=str(self.var_dir))
        )
        log = self.var_dir / "actions.out"
        self.process = subprocess.Popen(
            spec.argv, cwd=ROOT, env={**os.environ, **spec.env}, stdout=log.open("a"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while not (spec.ready and spec.ready()):
            assert self.process.poll() is None and time.monotonic() < deadline, \
                log.read_text()[-2000:]
            time.sleep(0.3)

    def stop_actions(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # dies, as a crash would
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def pg(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    from rasa.core.agent import Agent
    from rasa.utils.endpoints import EndpointConfig

    schema = f"shop_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES, future=True)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    direct = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    database.upgrade(direct)
    with database.session(direct) as session:
        demo.seed(session, extra_customers=5)
    relay = Relay(("127.0.0.1", 5432))
    relay.start()
    port = free_port()
    setup = Setup(
        url=f"postgresql://postgres@127.0.0.1:{relay.port}/test?options=-csearch_path%3D{schema}",
        direct=direct, relay=relay, var_dir=tmp_path_factory.mktemp("pg-actions"), port=port,
        agent=Agent.load(str(model),
                         action_endpoint=EndpointConfig(f"http://127.0.0.1:{port}/webhook")),
    )
    setup.start_actions()
    try:
        yield setup
    finally:
        setup.stop_actions()
        relay.cut()
        database.engine_for(direct).dispose()
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def app_customer(pg: Setup, language: str) -> tuple[Chat, dict[str, Any]]:
    me = {"channel": "app", "subject": f"pg-{uuid.uuid4().hex[:10]}", "verified_by": "jwt",
          "customer": True}
    made = fresh_customer(pg.direct, me["channel"], me["subject"], language)
    return Chat(pg.agent, identity=me), made


def test_the_shop_actions_on_postgresql(pg: Setup) -> None:
    assert said(Chat(pg.agent, identity=DEMO_ZH).say("我的余额")) == ["utter_balance"]
    assert said(Chat(pg.agent, identity=DEMO_EN).say("how many points")) == ["utter_points"]
    assert said(Chat(pg.agent, identity=DEMO_EN).say("show me my account details")) == [
        "utter_account_info"]
    assert said(Chat(pg.agent, identity=DEMO_ZH).say("忘记密码了怎么办")) == [
        "utter_reset_code_sent"]
    chat, me = app_customer(pg, "en")
    assert said(chat.say(f"where is my order {me['orders']['in_transit']}")) == [
        "utter_order_status_in_transit"]
    assert said(chat.say(f"where is my refund for {me['orders']['refunded']}")) == [
        "utter_refund_status_none"]
    # A refund.
    chat.say(f"refund {me['orders']['delivered']}")
    chat.say('/inform{"refund_reason": "quality"}')
    done = chat.say("25")
    assert said(done) == ["utter_refund_submitted"]
    # An address, a cancellation, a message.
    chat.say(f"change the address of {me['orders']['paid']}")
    assert said(chat.say("Flat 5, 12 Nanjing Road, Shanghai 200001")) == [
        "utter_address_updated"]
    chat.say(f"cancel {me['orders']['pending_payment']}")
    assert said(chat.say("yes")) == ["utter_order_cancelled"]
    chat.say("leave a message")
    chat.say("please call me about a bulk order")
    left = chat.say('/inform{"ticket_contact": "account"}')
    assert said(left) == ["utter_ticket_created"]
    with database.session(pg.direct) as session:
        (refund,) = session.scalars(
            select(Refund).where(Refund.order_id == me["orders"]["delivered"])).all()
        assert refund.amount_cents == 2500 and refund.id in texts(done)
        number = re.search(r"TK\d{12}", texts(left)).group(0)  # type: ignore[union-attr]
        assert session.get(Ticket, number).contact == me["phone"]
    # Binding a follower with a code.
    follower_chat = Chat(pg.agent, identity=follower())
    other = fresh_customer(pg.direct, None, None, "zh")
    follower_chat.say("绑定账号")
    follower_chat.say(other["phone"])
    code = code_in(sms_to(pg.var_dir, other["phone"])[-1])
    assert said(follower_chat.say(code)) == ["utter_bind_done"]


def test_the_database_going_away_gets_an_apology_and_then_it_works_again(pg: Setup) -> None:
    chat, me = app_customer(pg, "zh")
    assert said(chat.say("我的余额还有多少")) == ["utter_balance"]
    pg.relay.cut()
    try:
        for message in ("我有多少积分", f"我要退款 {me['orders']['delivered']}"):
            reply = chat.say(message)
            assert said(reply) == ["utter_account_lookup_failed"], message
            assert message_language(texts(reply)) == "zh"
            assert [b["payload"] for b in reply[0]["buttons"]] == [
                "/human_handoff", "/leave_message"]
            assert "Traceback" not in texts(reply) and "postgres" not in texts(reply)
        # A message left while the database is away: an apology, the message kept.
        chat.say("留言")
        chat.say("麻烦给我回电话")
        reply = chat.say("13912345678")
        assert said(reply) == ["utter_technical_trouble"]
        assert chat.tracker.get_slot("ticket_message") == "麻烦给我回电话"
    finally:
        pg.relay.start()
    # Back: the next question is answered from the database again.
    assert said(chat.say("我的余额还有多少")) == ["utter_balance"]


def test_the_action_server_going_away_mid_form_gets_an_apology(pg: Setup) -> None:
    chat, me = app_customer(pg, "en")
    assert said(chat.say("I want a refund")) == ["utter_ask_order_id_refund"]
    pg.stop_actions()
    try:
        reply = chat.say(me["orders"]["delivered"])
        assert said(reply) == ["utter_technical_trouble"]
        assert message_language(texts(reply)) == "en"
        assert "/human_handoff" in [b["payload"] for b in reply[0]["buttons"]]
        # Never silent while it is away, whatever comes next.
        assert said(chat.say("what's my balance")) == ["utter_technical_trouble"]
    finally:
        pg.start_actions()
    assert said(chat.say("what's my balance")) == ["utter_balance"]


def test_a_conversation_that_starts_while_the_action_server_is_away_still_starts(
    pg: Setup,
) -> None:
    # action_session_start is ours (it looks up the member level): with the action
    # server gone, Rasa's own session start runs instead, and the bot answers.
    chat, _ = app_customer(pg, "en")
    pg.stop_actions()
    try:
        reply = chat.say("hello")
        assert said(reply) == ["utter_greet"]
        kinds = [event.type_name for event in chat.tracker.events]
        assert kinds[:2] == ["action", "session_started"], kinds
        assert kinds.index("user") > kinds.index("session_started"), kinds
        assert chat.tracker.get_slot("member_level") is None
    finally:
        pg.start_actions()


def test_a_hung_action_server_gets_an_apology_in_time(
    pg: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rasa.core.actions.action as rasa_actions

    from bot.settings import get_settings

    # What bot run's Rasa server gets (ACTION_TIMEOUT_SECONDS), shortened for the test.
    assert get_settings().action_timeout_seconds == rasa_actions.DEFAULT_REQUEST_TIMEOUT
    monkeypatch.setattr(rasa_actions, "DEFAULT_REQUEST_TIMEOUT", 2)
    chat, _ = app_customer(pg, "zh")
    assert pg.process is not None
    os.killpg(pg.process.pid, signal.SIGSTOP)  # takes connections, answers nothing
    try:
        started = time.monotonic()
        reply = chat.say("我的余额还有多少")
        waited = time.monotonic() - started
    finally:
        os.killpg(pg.process.pid, signal.SIGCONT)
    assert said(reply) == ["utter_technical_trouble"] and waited < 10
    assert message_language(texts(reply)) == "zh"
    assert said(chat.say("我的余额还有多少")) == ["utter_balance"]
