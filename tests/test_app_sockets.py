"""How many app WebSockets one customer or one address can hold, against a real
Sanic server in this process with the machine's Redis (no Rasa): the attacker
opens sockets with one good token, or many sockets with none."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from websockets.legacy.client import WebSocketClientProtocol

from connectors.app.channel import AppInput
from connectors.app.outbox import AppOutput
from tests.app_client import app_token, bearer, new_customer, serve_channel, ws_url
from tests.conftest import APP_JWT_SECRET, SYSTEM_REDIS_URL

pytestmark = pytest.mark.asyncio


@pytest.fixture(autouse=True)
def machine_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", SYSTEM_REDIS_URL)


def channel(**settings: Any) -> AppInput:
    return AppInput.from_credentials(
        {"jwt_algorithm": "HS256", "jwt_key": APP_JWT_SECRET, "keepalive_seconds": 25, **settings}
    )


async def no_turns(message: Any) -> None:
    raise AssertionError("these tests send no customer messages")


async def next_frame(ws: WebSocketClientProtocol, timeout: float = 30) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame.get("type") != "ping":
            return frame


async def closed_with(ws: WebSocketClientProtocol, timeout: float = 30) -> dict[str, Any]:
    """The error frame a socket got before the server closed it."""
    frame = await next_frame(ws, timeout)
    assert frame["type"] == "error", frame
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), timeout)
    return frame


async def connect(url: str, token: str | None = None, **headers: str) -> WebSocketClientProtocol:
    extra = {**(bearer(token) if token else {}), **headers}
    return await websockets.connect(ws_url(url), extra_headers=extra, open_timeout=10)


async def test_a_sixth_socket_closes_the_first() -> None:
    app = channel(max_sockets_per_customer=5)
    customer, other = new_customer(), new_customer()
    async with serve_channel(app, no_turns) as url:
        token = app_token(customer)
        bystander = await connect(url, app_token(other))
        sockets = [await connect(url, token) for _ in range(6)]
        try:
            assert (await next_frame(bystander))["type"] == "ready"
            for ws in sockets:
                assert (await next_frame(ws))["type"] == "ready"
            frame = await closed_with(sockets[0])
            assert frame["error"] == "replaced"
            assert "more than 5 sockets" in frame["detail"]
            assert sockets[0].close_code == 4409
            assert app.sockets.open_for(customer) == 5

            # The five newest, and the other customer's, still get their messages.
            output = AppOutput(app.outbox)
            await output.send_response(f"app:{customer}", {"text": "到货了"})
            await output.send_response(f"app:{other}", {"text": "hello"})
            for ws in sockets[1:]:
                assert (await next_frame(ws))["message"] == {"text": "到货了"}
            assert (await next_frame(bystander))["message"] == {"text": "hello"}

            # A seventh closes the oldest left, the second.
            sockets.append(await connect(url, token))
            assert (await next_frame(sockets[-1]))["type"] == "ready"
            assert (await closed_with(sockets[1]))["error"] == "replaced"
            assert sockets[1].close_code == 4409
            assert all(ws.open for ws in sockets[2:])
        finally:
            await asyncio.gather(*(ws.close() for ws in [*sockets, bystander]))
        # Closed sockets give their places back.
        await asyncio.sleep(0.2)
        assert app.sockets.open_for(customer) == 0


async def test_a_flood_of_sockets_without_a_token_is_cut_short() -> None:
    app = channel(max_unauthenticated_sockets_per_address=3, auth_timeout_seconds=2)
    customer = new_customer()
    async with serve_channel(app, no_turns) as url:
        idle = [await connect(url) for _ in range(3)]
        # The fourth from the same address is closed at once.
        fourth = await connect(url)
        frame = await closed_with(fourth, timeout=5)
        assert frame["error"] == "too_many" and fourth.close_code == 4429
        # A socket with a token in its header has nothing to wait for: it opens.
        with_token = await connect(url, app_token(customer))
        assert (await next_frame(with_token))["type"] == "ready"
        await with_token.close()

        # The idle ones are closed when the auth time is up, and free their places.
        for ws in idle:
            frame = await closed_with(ws, timeout=5)
            assert frame["error"] == "unauthorized"
            assert frame["detail"].startswith("no token within 2 s")
            assert ws.close_code == 4401
        assert app.sockets.unauthenticated("127.0.0.1") == 0
        late = await connect(url)
        await late.send(json.dumps({"type": "auth", "token": app_token(customer)}))
        assert (await next_frame(late))["type"] == "ready"
        await late.close()


async def test_the_real_ip_header_counts_only_when_configured() -> None:
    spoofed = [{"X-Real-IP": f"198.51.100.{i}"} for i in range(3)]
    # Not configured: anyone can send the header, so it is ignored (one peer here).
    async with serve_channel(channel(max_unauthenticated_sockets_per_address=1), no_turns) as url:
        first = await connect(url, **spoofed[0])
        second = await connect(url, **spoofed[1])
        assert (await closed_with(second, timeout=5))["error"] == "too_many"
        await first.close()
    # Behind a proxy that sets it: each client address has its own count.
    app = channel(max_unauthenticated_sockets_per_address=1, real_ip_header="X-Real-IP")
    async with serve_channel(app, no_turns) as url:
        first = await connect(url, **spoofed[0])
        second = await connect(url, **spoofed[1])
        again = await connect(url, **spoofed[0])
        assert (await closed_with(again, timeout=5))["error"] == "too_many"
        # X-Forwarded-For: only the last entry, the one our proxy added, counts.
        forwarded = await connect(url, **{"X-Real-IP": "203.0.113.9, 198.51.100.0"})
        assert (await closed_with(forwarded, timeout=5))["error"] == "too_many"
        for ws in (first, second):
            await ws.send(json.dumps({"type": "auth", "token": app_token(new_customer())}))
            assert (await next_frame(ws))["type"] == "ready"
            await ws.close()
