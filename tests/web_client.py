"""A socket.io client as the web widget (or rasa-webchat) is, for the web channel tests.

It records every event the server sends, and waits for conditions rather than
for time: `await client.next("session_confirm")`, `await client.say("…")`
(sends, then waits until the bot stops typing).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.parse
import urllib.request
from typing import Any, Callable

import aiohttp
import jwt
import socketio

from connectors.web.identity import user_hash
from tests.conftest import TOKEN, WEB_IDENTITY_SECRET, WEB_VISITOR_SECRET, Service

if not hasattr(aiohttp, "ClientWSTimeout"):
    # engine.io 4.15's websocket client names aiohttp 3.10's ClientWSTimeout; Rasa pins
    # aiohttp 3.9, whose ws_connect takes that close timeout as a plain number.
    # (Its long-polling client works, but waits out a 25 s poll on every disconnect.)
    aiohttp.ClientWSTimeout = lambda ws_close=10.0, **_: ws_close  # type: ignore[attr-defined]

TIMEOUT = 90.0  # one bot turn on a loaded 2-core machine, with room to spare


class WebClient:
    def __init__(self, url: str) -> None:
        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self._seen = 0  # events before this index are consumed by next()
        self._changed = asyncio.Event()
        self.token: str | None = None
        self.history: list[dict[str, Any]] | None = None

        @self.sio.on("*")
        async def record(event: str, data: Any = None) -> None:
            self._record(event, data)

        @self.sio.on("connect_error")
        async def refused(data: Any = None) -> None:
            self._record("connect_error", data)

    def _record(self, event: str, data: Any) -> None:
        self.events.append((event, data))
        self._changed.set()

    async def connect(
        self, auth: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> WebClient:
        await self.sio.connect(
            self.url,
            auth=auth,
            headers=headers or {},
            transports=["websocket"],
            socketio_path="socket.io",
            wait_timeout=TIMEOUT,
        )
        return self

    async def close(self) -> None:
        await self.sio.disconnect()

    async def emit(self, event: str, data: Any = None) -> None:
        await self.sio.emit(event, data)

    async def wait(
        self, event: str, where: Callable[[Any], bool] = lambda _: True, timeout: float = TIMEOUT
    ) -> Any:
        """The first not yet consumed `event` (matching `where`); consumes up to it."""

        async def find() -> Any:
            while True:
                for index in range(self._seen, len(self.events)):
                    name, data = self.events[index]
                    if name == event and where(data):
                        self._seen = index + 1
                        return data
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)

    def since(self, start: int, event: str) -> list[Any]:
        return [data for name, data in self.events[start:] if name == event]

    async def session(self, token: str | None = None, **extra: Any) -> str:
        """session_request → the confirmed session id (history is kept in .history)."""
        await self.emit("session_request", {"session_id": token, **extra})
        self.token = await self.wait("session_confirm")
        history = await self.wait("history")
        assert history["session_id"] == self.token
        self.history = history["messages"]
        return self.token

    async def say(self, text: str, **extra: Any) -> list[dict[str, Any]]:
        """Send like the widget does; the bot's messages once it stopped typing."""
        start = len(self.events)
        await self.emit(
            "user_uttered",
            {"message": text, "session_id": self.token, "customData": {}, **extra},
        )
        await self.wait("typing", lambda d: d == {"typing": True})
        await self.wait("typing", lambda d: d == {"typing": False})
        return self.since(start, "bot_uttered")

    @property
    def conversation_id(self) -> str:
        return conversation_of(self.token or "")


def eventually(check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """check()'s first truthy result, polling (for state outside the socket: the tracker)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"not true within {timeout}s: {check}"
            return result
        time.sleep(0.2)


def conversation_of(token: str) -> str:
    """The conversation a session token stands for (the tests know the secret)."""
    claims = jwt.decode(
        token, WEB_VISITOR_SECRET, algorithms=["HS256"], audience="jade-web-session"
    )
    return f"web:{claims['sub']}"


def texts(messages: list[dict[str, Any]]) -> str:
    return "\n".join(m.get("text", "") for m in messages)


def tracker(service: Service, conversation_id: str) -> dict[str, Any]:
    return service.get(f"/conversations/{urllib.parse.quote(conversation_id, safe=':')}/tracker")


def user_texts(service: Service, conversation_id: str) -> list[str]:
    return [e["text"] for e in tracker(service, conversation_id)["events"] if e["event"] == "user"]


def append_bot_events(service: Service, conversation_id: str, events: list[dict[str, Any]]) -> None:
    """What the desk does for an agent's message: bot events in the tracker,
    delivered through the customer's channel (Rasa's own HTTP API, in-process
    WebInput.get_output_channel())."""
    path = urllib.parse.quote(conversation_id, safe=":")
    url = (
        f"{service.url}/conversations/{path}/tracker/events"
        f"?token={TOKEN}&output_channel=web&execute_side_effects=true"
    )
    request = urllib.request.Request(
        url, json.dumps(events).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200


def host_auth(
    user_id: str, secret: str = WEB_IDENTITY_SECRET, expires: int | None = None
) -> dict[str, Any]:
    """What a host site's backend gives its page for a logged-in user: the id, an
    expiry (an hour from now unless given) and the HMAC of both."""
    expires = int(time.time()) + 3600 if expires is None else expires
    return {
        "user_id": user_id,
        "user_expires": expires,
        "user_hash": user_hash(secret, user_id, expires),
    }


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, WEB_VISITOR_SECRET, algorithms=["HS256"], audience="jade-web-session")


def forge(token: str, subject: str) -> str:
    """The token with another subject and the old signature."""
    head, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["sub"] = subject
    new_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{new_body}.{signature}"
