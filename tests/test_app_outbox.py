"""The app channel's timers and outbox on a real Sanic server in this process,
with the machine's Redis and no Rasa: keepalive, a token running out on an open
socket, presence, a push webhook that hangs. (The service runs with settings
that would make these take minutes; tests/test_app.py covers the rest.)"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any, Iterator

import httpx
import pytest
import websockets

from connectors.app.channel import AppInput
from connectors.app.outbox import AppOutput
from tests.app_client import (
    app_token,
    bearer,
    expected_signature,
    new_customer,
    serve_channel,
    ws_url,
)
from tests.conftest import APP_JWT_SECRET, APP_PUSH_WEBHOOK_SECRET, SYSTEM_REDIS_URL
from tests.http_recorder import Recorder

pytestmark = pytest.mark.asyncio


@pytest.fixture(autouse=True)
def machine_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", SYSTEM_REDIS_URL)


@pytest.fixture
def hanging_push() -> Iterator[tuple[Recorder, threading.Event]]:
    """A push service that doesn't answer until released."""
    release = threading.Event()

    def route(request: Any) -> tuple[int, Any]:
        release.wait(30)
        return 200, {"ok": True}

    recorder = Recorder(route).start()
    yield recorder, release
    release.set()
    recorder.stop()


def channel(**settings: Any) -> AppInput:
    return AppInput.from_credentials(
        {
            "jwt_algorithm": "HS256",
            "jwt_key": APP_JWT_SECRET,
            "jwt_leeway_seconds": 0,
            "keepalive_seconds": 1,
            "presence_ttl_seconds": 3,
            **settings,
        }
    )


async def no_turns(message: Any) -> None:
    raise AssertionError("these tests send no customer messages")


async def wait_until(condition: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_keepalive_then_the_token_runs_out_on_an_open_socket() -> None:
    app = channel()
    customer = new_customer()
    async with serve_channel(app, no_turns) as url:
        token = app_token(customer, lifetime=3)
        async with websockets.connect(ws_url(url), extra_headers=bearer(token)) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            assert await app.outbox.is_online(customer)

            await AppOutput(app.outbox).send_response(f"app:{customer}", {"text": "hi"})
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert frame["type"] == "message" and frame["message"] == {"text": "hi"}
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "ping"}

            while (frame := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] == "ping":
                pass
            assert frame == {"type": "error", "error": "unauthorized", "detail": "token expired"}
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 4401

        async def offline() -> bool:
            return not await app.outbox.is_online(customer)

        assert await wait_until(offline)


async def test_presence_of_a_vanished_server_expires() -> None:
    app = channel()
    customer = new_customer()
    await app.outbox.mark_online(customer, "socket-of-a-crashed-server")
    assert await app.outbox.is_online(customer)

    async def offline() -> bool:
        return not await app.outbox.is_online(customer)

    assert await wait_until(offline, timeout=6)


async def test_a_hanging_push_webhook_neither_blocks_nor_loses_messages(
    hanging_push: tuple[Recorder, threading.Event],
) -> None:
    recorder, release = hanging_push
    app = channel(
        push_webhook_url=f"{recorder.url}/push",
        push_webhook_secret=APP_PUSH_WEBHOOK_SECRET,
        push_timeout_seconds=0.5,
    )
    customer = new_customer()
    conversation = f"app:{customer}"

    # Inside a turn: the webhook call runs beside it.
    start = time.monotonic()
    await AppOutput(app.outbox).send_response(conversation, {"text": "第一条"})
    assert time.monotonic() - start < 0.4
    (call,) = await asyncio.to_thread(recorder.wait_for, "/push", 1)
    assert call.headers["x-signature"] == expected_signature(call.body)

    # A process that pushes and exits waits, but only as long as the timeout.
    start = time.monotonic()
    await app.get_output_channel().send_response(conversation, {"text": "第二条"})
    assert 0.4 < time.monotonic() - start < 3

    kept = await app.outbox.after(customer, "0")
    assert [m for _, m in kept] == [{"text": "第一条"}, {"text": "第二条"}]


async def test_redis_down_is_a_clear_503_and_nothing_is_processed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import httpx

    from tests.conftest import free_port

    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nobody there
    token = app_token(new_customer())
    async with serve_channel(channel(), no_turns) as url:
        async with httpx.AsyncClient(timeout=30) as client:
            sent = await client.post(
                f"{url}/webhooks/app/messages", json={"text": "hi"}, headers=bearer(token)
            )
            polled = await client.get(f"{url}/webhooks/app/messages", headers=bearer(token))
        for answer in (sent, polled):
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"] == "unavailable" and answer.headers["Retry-After"]
        async with websockets.connect(ws_url(url), extra_headers=bearer(token)) as ws:
            assert json.loads(await ws.recv())["error"] == "unavailable"
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1011


def redis_connections_of_this_process() -> int:
    """Connections Redis lists (CLIENT LIST) whose far end is a socket of this process."""
    import psutil

    ports = {c.laddr.port for c in psutil.Process().connections("tcp") if c.raddr}
    import redis

    client = redis.Redis.from_url(SYSTEM_REDIS_URL)
    try:
        listed = client.client_list()
    finally:
        client.close()
    # The probe's own connection is one of ours: leave it out.
    return sum(1 for c in listed if int(c["addr"].rsplit(":", 1)[1]) in ports) - 1


async def test_many_sockets_share_a_few_redis_connections_and_each_gets_its_push() -> None:
    sockets_count, pool = 200, 8
    app = channel(keepalive_seconds=25, presence_ttl_seconds=60, redis_max_connections=pool)
    customers = [new_customer() for _ in range(sockets_count)]
    async with serve_channel(app, no_turns) as url:
        before = await asyncio.to_thread(redis_connections_of_this_process)
        sockets = [
            await websockets.connect(ws_url(url), extra_headers=bearer(app_token(c)))
            for c in customers
        ]
        try:
            for ws in sockets:
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"
            await asyncio.wait_for(app.outbox.wakeups().subscribed.wait(), 10)
            await asyncio.sleep(0.5)  # every pump past its first read, idle
            idle = await asyncio.to_thread(redis_connections_of_this_process)
            # One per socket before (a blocking XREAD each); now the pool's, at most.
            assert idle - before <= pool, (before, idle)

            output = AppOutput(app.outbox)
            for customer in customers:
                await output.send_response(f"app:{customer}", {"text": f"hi {customer}"})
            for customer, ws in zip(customers, sockets, strict=True):
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert frame["type"] == "message", frame
                assert frame["message"] == {"text": f"hi {customer}"}
            busy = await asyncio.to_thread(redis_connections_of_this_process)
            assert busy - before <= pool, (before, busy)
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))


# --- what the outbox no longer keeps --------------------------------------------


async def frames(ws: Any, count: int) -> list[dict[str, Any]]:
    """The next `count` frames but pings, then none for a while."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] != "ping":
            found.append(frame)
    with pytest.raises(asyncio.TimeoutError):
        while True:  # only pings may follow
            extra = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            assert extra["type"] == "ping", extra
    return found


async def socket_frames(url: str, customer: str, since: str, count: int) -> list[dict[str, Any]]:
    """What a socket reconnecting with `since` is sent after "ready": `count` frames."""
    async with websockets.connect(
        ws_url(url, since), extra_headers=bearer(app_token(customer))
    ) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"
        return await frames(ws, count)


async def test_a_since_older_than_what_is_kept_gets_a_gap_notice() -> None:
    app = channel(outbox_max_length=5, keepalive_seconds=25, presence_ttl_seconds=60)
    customer = new_customer()
    output = AppOutput(app.outbox)
    for i in range(8):
        await output.send_response(f"app:{customer}", {"text": f"第{i}条"})
    ids = output.message_ids
    kept = ids[3:]  # exactly the latest five
    async with serve_channel(app, no_turns) as url:
        # Offline while eight came: the first three are gone, and the app is told so.
        gap, *messages = await socket_frames(url, customer, ids[1], 6)
        assert gap["type"] == "gap" and gap["since"] == ids[1] and gap["first_kept"] == kept[0]
        assert "GET /webhooks/app/history" in gap["detail"]
        assert [f["id"] for f in messages] == kept

        # From the newest dropped one on, nothing is missing: no notice.
        sent = await socket_frames(url, customer, ids[2], 5)
        assert [(f["type"], f["id"]) for f in sent] == [("message", i) for i in kept]
        sent = await socket_frames(url, customer, ids[5], 2)
        assert [f["id"] for f in sent] == ids[6:]
        # A new device asking for everything hears that there was more.
        assert (await socket_frames(url, customer, "0", 6))[0]["type"] == "gap"

        async with httpx.AsyncClient(timeout=10) as client:

            async def poll(since: str) -> dict[str, Any]:
                answer = await client.get(
                    f"{url}/webhooks/app/messages",
                    params={"since": since},
                    headers=bearer(app_token(customer)),
                )
                assert answer.status_code == 200, answer.text
                return answer.json()

            page = await poll(ids[0])
            assert page["gap"] is True and page["first_kept"] == kept[0]
            assert [m["id"] for m in page["messages"]] == kept
            page = await poll(ids[2])
            assert page["gap"] is False and len(page["messages"]) == 5


async def test_an_expired_outbox_is_a_gap_too_and_is_told_once() -> None:
    app = channel(outbox_ttl_days=1.5 / 86400, keepalive_seconds=25, presence_ttl_seconds=60)
    customer = new_customer()
    output = AppOutput(app.outbox)
    for text in ("一", "二"):
        await output.send_response(f"app:{customer}", {"text": text})
    first, _ = output.message_ids
    await asyncio.sleep(2)  # the stream expires; its record of what it held stays
    assert await app.outbox.after(customer, "0") == []
    async with serve_channel(app, no_turns) as url:
        async with websockets.connect(
            ws_url(url, first), extra_headers=bearer(app_token(customer))
        ) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            (gap,) = await frames(ws, 1)
            assert gap["type"] == "gap" and gap["first_kept"] is None
            # What comes next arrives as usual, without the notice again.
            await output.send_response(f"app:{customer}", {"text": "三"})
            (frame,) = await frames(ws, 1)
            assert frame["type"] == "message" and frame["message"] == {"text": "三"}
        # Later, the new stream knows the expired one's messages are gone.
        sent = await socket_frames(url, customer, first, 2)
        assert [f["type"] for f in sent] == ["gap", "message"]


# --- the push webhook's redirects -------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirecting_push_webhook_does_not_send_the_signature_on(status: int) -> None:
    import http.server

    elsewhere = Recorder(lambda request: (200, {"ok": True})).start()
    calls: list[str] = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            calls.append(self.path)
            self.send_response(status)
            self.send_header("Location", f"{elsewhere.url}/collect")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        app = channel(
            push_webhook_url=f"http://127.0.0.1:{server.server_address[1]}/push",
            push_webhook_secret=APP_PUSH_WEBHOOK_SECRET,
        )
        customer = new_customer()
        # A process that pushes and exits: the webhook call has ended when this returns.
        await app.get_output_channel().send_response(f"app:{customer}", {"text": "退款已到账"})
        assert calls == ["/push"]
        await asyncio.sleep(0.3)
        assert elsewhere.requests == []  # neither the signature nor the preview went on
        assert [m for _, m in await app.outbox.after(customer, "0")] == [{"text": "退款已到账"}]
    finally:
        server.shutdown()
        server.server_close()
        elsewhere.stop()


async def test_a_client_message_id_with_a_trailing_newline_is_refused() -> None:
    customer = new_customer()
    async with serve_channel(channel(), no_turns) as url, httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(
            f"{url}/webhooks/app/messages",
            json={"text": "hi", "client_message_id": "m-0001\n"},
            headers=bearer(app_token(customer)),
        )
    assert answer.status_code == 400 and "client_message_id" in answer.json()["detail"]
