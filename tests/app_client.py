"""A mobile app as the tests play it: tokens from "the app's backend", REST to
send (httpx), a real WebSocket client (websockets) to receive."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import urllib.request
import uuid
from typing import Any

import httpx
import jwt
import websockets
from websockets.legacy.client import WebSocketClientProtocol

from tests.channel_server import serve_channel  # noqa: F401  (the app tests' server)
from tests.conftest import APP_JWT_SECRET, APP_PUSH_WEBHOOK_SECRET, TOKEN
from tests.http_recorder import Recorded, Recorder

# The app channel's default audience (connectors.app.auth.DEFAULT_AUDIENCE).
APP_JWT_AUDIENCE = "customer-service"
TURN_TIMEOUT = 90.0  # a turn under load on 2 shared cores, with lock-store waits


def new_customer() -> str:
    return f"cust-{uuid.uuid4().hex[:12]}"


def app_token(
    customer: str,
    secret: str = APP_JWT_SECRET,
    algorithm: str = "HS256",
    lifetime: float = 600,
    **claims: Any,
) -> str:
    """What the app's backend hands its logged-in customer (a claim given as None is left out)."""
    now = int(time.time())
    payload = {
        "sub": customer,
        "aud": APP_JWT_AUDIENCE,
        "iat": now if lifetime > 0 else int(now + lifetime - 60),
        "exp": int(now + lifetime),
        **claims,
    }
    return jwt.encode(
        {k: v for k, v in payload.items() if v is not None}, secret, algorithm=algorithm
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post(
    base_url: str, token: str | None, body: Any = None, raw: bytes | None = None
) -> httpx.Response:
    headers = {"Content-Type": "application/json", **(bearer(token) if token else {})}
    content = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
    async with httpx.AsyncClient(timeout=TURN_TIMEOUT) as client:
        return await client.post(
            f"{base_url}/webhooks/app/messages", content=content, headers=headers
        )


async def say(base_url: str, customer: str, text: str, **fields: Any) -> dict[str, Any]:
    """Send a message; the 200 answer ({message_id, replies, reply_ids})."""
    answer = await post(base_url, app_token(customer), {"text": text, **fields})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def poll(base_url: str, token: str | None, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(
            f"{base_url}/webhooks/app/messages",
            params=params,
            headers=bearer(token) if token else None,
        )


def ws_url(base_url: str, since: str | None = None) -> str:
    url = base_url.replace("http://", "ws://", 1) + "/webhooks/app/ws"
    return url + (f"?since={since}" if since is not None else "")


class AppSocket:
    """One open app WebSocket; `next()` skips keepalive pings."""

    def __init__(self, ws: WebSocketClientProtocol) -> None:
        self.ws = ws
        self.seen: list[str] = []  # message ids, in the order received

    @classmethod
    async def open(
        cls,
        base_url: str,
        token: str,
        since: str | None = None,
        auth_frame: bool = False,
    ) -> AppSocket:
        """Connected and past "ready"; token in the header, or in a first frame."""
        if auth_frame:
            ws = await websockets.connect(ws_url(base_url), open_timeout=30)
            frame: dict[str, Any] = {"type": "auth", "token": token}
            if since is not None:
                frame["since"] = since
            await ws.send(json.dumps(frame))
        else:
            ws = await websockets.connect(
                ws_url(base_url, since), extra_headers=bearer(token), open_timeout=30
            )
        socket = cls(ws)
        ready = await socket.next_frame()
        assert ready["type"] == "ready", ready
        return socket

    async def next_frame(self, timeout: float = TURN_TIMEOUT) -> dict[str, Any]:
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if frame.get("type") != "ping":
                return frame

    async def messages(self, count: int, timeout: float = TURN_TIMEOUT) -> list[dict[str, Any]]:
        """The next `count` message frames."""
        found = []
        for _ in range(count):
            frame = await self.next_frame(timeout)
            assert frame["type"] == "message", frame
            self.seen.append(frame["id"])
            found.append(frame)
        return found

    async def close(self) -> None:
        await self.ws.close()


async def refused_socket(
    base_url: str, token: str | None = None, first_frame: Any = None, since: str | None = None
) -> tuple[dict[str, Any], int | None]:
    """(the error frame, the close code) of a socket the server refuses."""
    headers = bearer(token) if token else None
    async with websockets.connect(
        ws_url(base_url, since), extra_headers=headers, open_timeout=30
    ) as ws:
        if first_frame is not None:
            await ws.send(first_frame if isinstance(first_frame, str) else json.dumps(first_frame))
        error = json.loads(await asyncio.wait_for(ws.recv(), 30))
        try:
            extra = await asyncio.wait_for(ws.recv(), 30)
            raise AssertionError(f"the server kept talking: {extra}")
        except websockets.ConnectionClosed:
            pass
        return error, ws.close_code


def user_events(base_url: str, customer: str) -> list[dict[str, Any]]:
    """The customer's messages in the tracker (Rasa's HTTP API)."""
    url = f"{base_url}/conversations/app:{customer}/tracker?token={TOKEN}"
    with urllib.request.urlopen(url, timeout=60) as answer:
        tracker = json.loads(answer.read())
    return [e for e in tracker.get("events") or [] if e.get("event") == "user"]


def expected_signature(body: bytes) -> str:
    mac = hmac.new(APP_PUSH_WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def pushes_for(customer: str, recorder: Recorder) -> list[Recorded]:
    return [r for r in recorder.matching("/push") if r.json().get("customer_id") == customer]


async def wait_for_pushes(
    customer: str, recorder: Recorder, count: int, timeout: float = 30
) -> list[Recorded]:
    deadline = time.monotonic() + timeout
    while True:
        found = pushes_for(customer, recorder)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)
