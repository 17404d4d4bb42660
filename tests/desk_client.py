"""An agent at the desk, as the console is to the desk's API: log in, call the
JSON API with the session cookie and CSRF token, and hold the live WebSocket,
recording every event (`await agent.wait("assigned")`)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable
from urllib.parse import quote

import aiohttp

from bot.desk import agents as people
from bot.shop import database

TIMEOUT = 90.0
PASSWORD = "a-long-test-password"


def add_agent(database_url: str, username: str, name: str, groups: list[str],
              role: str = "agent", capacity: int = 5) -> None:
    """An agent in the service's database (as `bot agents add` makes one)."""
    with database.session(database_url) as session:
        try:
            people.find(session, username)
            return
        except people.AgentError:
            pass
        people.do_add(session, username, PASSWORD, name, role=role, groups=groups,
                      capacity=capacity)


class DeskClient:
    def __init__(self, desk_url: str) -> None:
        self.url = desk_url.rstrip("/")
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""
        self.agent: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self._seen = 0
        self._changed = asyncio.Event()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def login(self, username: str, password: str = PASSWORD) -> dict[str, Any]:
        status, answer = await self.call("POST", "/desk/api/login",
                                         {"username": username, "password": password})
        assert status == 200, answer
        self.csrf, self.agent = answer["csrf"], answer["agent"]
        return answer

    async def call(self, method: str, path: str, body: Any = None,
                   csrf: bool = True) -> tuple[int, Any]:
        headers = {"X-CSRF-Token": self.csrf} if csrf and self.csrf and method != "GET" else {}
        async with self.http.request(method, self.url + path, json=body,
                                     headers=headers) as answer:
            text = await answer.text()
            try:
                return answer.status, json.loads(text)
            except ValueError:
                return answer.status, text

    async def get(self, path: str) -> Any:
        status, answer = await self.call("GET", path)
        assert status == 200, (path, status, answer)
        return answer

    async def post(self, path: str, body: Any = None) -> Any:
        status, answer = await self.call("POST", path, body or {})
        assert status == 200, (path, status, answer)
        return answer

    @staticmethod
    def conv(conversation_id: str, tail: str = "") -> str:
        return f"/desk/api/conversations/{quote(conversation_id, safe='')}{tail}"

    async def connect(self, last_event_id: str | None = None) -> None:
        query = f"?last_event_id={last_event_id}" if last_event_id else ""
        ws_url = self.url.replace("http", "ws", 1) + "/desk/ws" + query
        self.ws = await self.http.ws_connect(ws_url, origin=self.url, heartbeat=20)
        self._reader = asyncio.create_task(self._read(self.ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(message.data))
                self._changed.set()

    async def disconnect(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def close(self) -> None:
        await self.disconnect()
        await self.http.close()

    @property
    def last_event_id(self) -> str | None:
        ids = [e["id"] for e in self.events if "id" in e]
        return ids[-1] if ids else None

    async def wait(self, kind: str, where: Callable[[dict[str, Any]], bool] = lambda _: True,
                   timeout: float = TIMEOUT) -> dict[str, Any]:
        """The first not yet consumed event of `kind` (matching `where`)."""

        async def find() -> dict[str, Any]:
            while True:
                for index in range(self._seen, len(self.events)):
                    event = self.events[index]
                    if event.get("type") == kind and where(event):
                        self._seen = index + 1
                        return event
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)

    def lines(self, conversation_id: str) -> list[dict[str, Any]]:
        return [e["line"] for e in self.events
                if e.get("type") == "line" and e.get("conversation_id") == conversation_id]
