"""Reply latency per customer channel, beside Rasa's REST channel, one server.

Used by bench/latency.py (`--channels`, on by default). Every channel plays
the same scripted conversations (5 turns each, a new customer per
conversation, so the per-customer rate limit's burst of 5 is never hit), and
each turn is timed from the customer's message leaving to the last reply of
the turn arriving:

- rest: POST /webhooks/rest/webhook → the JSON answer (stock Rasa's channel;
  ours only adds the token check);
- wechat: a signed webhook POST (plain mode) → the customer-service message
  API call arriving at a stand-in WeChat API server in this process, or the
  passive reply in the POST's answer when the server keeps its 4 s passive
  window (bench/latency.py runs it so; with WECHAT_PASSIVE_REPLY_SECONDS=0
  every reply takes the 客服消息 path);
- web: socket.io `user_uttered` → the turn's `bot_uttered` events
  (python-socketio client, websocket transport, as rasa-webchat uses it);
- app: POST /webhooks/app/messages with the customer's JWT → the replies
  arriving on the customer's open WebSocket.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import aiohttp
import jwt
from aiohttp import web

WECHAT_TOKEN = "bench-wechat-token"
WECHAT_APP_ID = "wxbench0000000001"
WECHAT_APP_SECRET = "bench-wechat-secret"
APP_JWT_SECRET = "bench-app-jwt-secret-0123456789abcdef"
TURNS_PER_CONVERSATION = 5

if not hasattr(aiohttp, "ClientWSTimeout"):
    # python-engineio 4.15's websocket client names aiohttp 3.10's ClientWSTimeout;
    # Rasa pins aiohttp 3.9, whose ws_connect takes the close timeout as a number.
    aiohttp.ClientWSTimeout = lambda ws_close=10.0, **_: ws_close  # type: ignore[attr-defined]


def server_env(wechat_api_base: str, passive_reply_seconds: str = "0") -> dict[str, str]:
    """What `bot run` needs to serve every channel in the benchmark ("0": every
    WeChat reply by 客服消息; "" keeps the service's default 4 s passive window)."""
    return {
        "WECHAT_TOKEN": WECHAT_TOKEN,
        "WECHAT_APP_ID": WECHAT_APP_ID,
        "WECHAT_APP_SECRET": WECHAT_APP_SECRET,
        "WECHAT_API_BASE_URL": wechat_api_base,
        "WECHAT_PASSIVE_REPLY_SECONDS": passive_reply_seconds,
        "APP_JWT_ALGORITHM": "HS256",
        "APP_JWT_KEY": APP_JWT_SECRET,
        # Every simulated visitor comes from 127.0.0.1: no per-address web limits.
        **{name: "1000000" for name in ("WEB_CONNECTS_PER_MINUTE", "WEB_NEW_VISITORS_PER_HOUR",
                                        "WEB_MESSAGES_PER_MINUTE")},
    }


@dataclass
class FakeWeChatAPI:
    """WeChat's API servers, as far as replies go: tokens and 客服消息."""

    port: int
    waiting: dict[str, asyncio.Queue[float]] = field(default_factory=dict)
    runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cgi-bin/"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_post("/cgi-bin/message/custom/send", self._send)
        app.router.add_post("/cgi-bin/message/custom/typing", self._ok)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    async def _token(self, request: web.Request) -> web.Response:
        return web.json_response({"access_token": "BENCH_TOKEN", "expires_in": 7200})

    async def _ok(self, request: web.Request) -> web.Response:
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _send(self, request: web.Request) -> web.Response:
        arrived = time.perf_counter()
        body = json.loads(await request.read())
        queue = self.waiting.setdefault(body["touser"], asyncio.Queue())
        queue.put_nowait(arrived)
        return web.json_response({"errcode": 0, "errmsg": "ok"})


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"n": len(ordered), "p50_ms": at(0.5), "p95_ms": at(0.95), "p99_ms": at(0.99)}


# A conversation: (open a customer) → turn(text) x 5 → close.
Turn = Callable[[str], Awaitable[float]]


async def rest_conversation(
    session: aiohttp.ClientSession, url: str, token: str
) -> tuple[Turn, Callable[[], Awaitable[None]], list[int]]:
    sender = f"bench-rest-{uuid.uuid4().hex[:10]}"
    counts: list[int] = []

    async def turn(text: str) -> float:
        began = time.perf_counter()
        # The REST channel's token (BOT_REST_TOKEN), in a header: it refuses one in the URL.
        async with session.post(
            f"{url}/webhooks/rest/webhook", json={"sender": sender, "message": text},
            headers={"Authorization": f"Bearer {token}"},
        ) as answer:
            answer.raise_for_status()
            counts.append(len(await answer.json()))
        return (time.perf_counter() - began) * 1000

    async def close() -> None:
        pass

    return turn, close, counts


async def wechat_conversation(
    session: aiohttp.ClientSession, url: str, fake: FakeWeChatAPI, expected: list[int]
) -> tuple[Turn, Callable[[], Awaitable[None]]]:
    openid = f"oBench{uuid.uuid4().hex[:22]}"
    arrivals = fake.waiting.setdefault(openid, asyncio.Queue())
    turns = iter(expected)

    async def turn(text: str) -> float:
        timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
        signature = hashlib.sha1("".join(sorted([WECHAT_TOKEN, timestamp, nonce])).encode())
        xml = (
            f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{text}]]></Content>"
            f"<MsgId>{secrets.randbelow(10**18)}</MsgId></xml>"
        )
        query = {"signature": signature.hexdigest(), "timestamp": timestamp, "nonce": nonce}
        began = time.perf_counter()
        async with session.post(
            f"{url}/webhooks/wechat/webhook", params=query, data=xml.encode()
        ) as answer:
            answer.raise_for_status()
            body = await answer.read()
        # A passive reply is the answer to the POST itself (anything but "success").
        if not next(turns) or body.strip() not in (b"success", b""):
            return (time.perf_counter() - began) * 1000
        # One 客服消息 per turn: the connector joins a turn's messages (WeChat's quota).
        arrived = await asyncio.wait_for(arrivals.get(), 60)
        return (arrived - began) * 1000

    async def close() -> None:
        fake.waiting.pop(openid, None)

    return turn, close


async def web_conversation(
    url: str, expected: list[int]
) -> tuple[Turn, Callable[[], Awaitable[None]]]:
    import socketio

    sio = socketio.AsyncClient(reconnection=False)
    uttered: asyncio.Queue[float] = asyncio.Queue()
    confirmed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    @sio.on("bot_uttered")
    async def on_bot(data: Any) -> None:
        uttered.put_nowait(time.perf_counter())

    @sio.on("session_confirm")
    async def on_confirm(data: Any) -> None:
        if not confirmed.done():
            confirmed.set_result(data if isinstance(data, str) else data["session_id"])

    await sio.connect(url, transports=["websocket"], socketio_path="socket.io")
    await sio.emit("session_request", {"session_id": None})
    session_id = await asyncio.wait_for(confirmed, 30)
    turns = iter(expected)

    async def turn(text: str) -> float:
        began = time.perf_counter()
        await sio.emit("user_uttered", {"message": text, "session_id": session_id})
        last = began
        for _ in range(next(turns)):
            last = await asyncio.wait_for(uttered.get(), 60)
        return (last - began) * 1000

    async def close() -> None:
        await sio.disconnect()

    return turn, close


async def app_conversation(
    session: aiohttp.ClientSession, url: str
) -> tuple[Turn, Callable[[], Awaitable[None]]]:
    customer = f"bench-{uuid.uuid4().hex[:10]}"
    now = int(time.time())
    claims = {"sub": customer, "aud": "customer-service", "iat": now, "exp": now + 3600}
    token = jwt.encode(claims, APP_JWT_SECRET, "HS256")
    headers = {"Authorization": f"Bearer {token}"}
    socket = await session.ws_connect(
        url.replace("http://", "ws://") + "/webhooks/app/ws", headers=headers
    )
    ready = json.loads((await socket.receive(timeout=30)).data)
    assert ready["type"] == "ready", ready
    arrived: dict[str, float] = {}
    got = asyncio.Event()

    async def read() -> None:
        async for frame in socket:
            data = json.loads(frame.data)
            if data.get("type") == "message":
                arrived[data["id"]] = time.perf_counter()
                got.set()

    reader = asyncio.create_task(read())

    async def turn(text: str) -> float:
        began = time.perf_counter()
        async with session.post(
            f"{url}/webhooks/app/messages", json={"text": text}, headers=headers
        ) as answer:
            answer.raise_for_status()
            reply_ids = (await answer.json())["reply_ids"]
        deadline = began + 60
        while not all(i in arrived for i in reply_ids):
            got.clear()
            await asyncio.wait_for(got.wait(), max(0.1, deadline - time.perf_counter()))
        return (max([arrived[i] for i in reply_ids], default=time.perf_counter()) - began) * 1000

    async def close() -> None:
        reader.cancel()
        await socket.close()

    return turn, close


async def measure_channels(
    url: str, api_token: str, fake: FakeWeChatAPI, messages: list[str], turns: int
) -> dict[str, Any]:
    """Each channel: `turns` turns in conversations of TURNS_PER_CONVERSATION."""
    scripts = [
        [messages[(c * TURNS_PER_CONVERSATION + t) % len(messages)]
         for t in range(TURNS_PER_CONVERSATION)]
        for c in range(max(1, turns // TURNS_PER_CONVERSATION))
    ]
    timings: dict[str, list[float]] = {"rest": [], "wechat": [], "web": [], "app": []}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for script in scripts:
            # REST first: its answers also say how many messages each turn has,
            # which the socket.io client waits for (the bot is deterministic).
            turn, close, counts = await rest_conversation(session, url, api_token)
            timings["rest"] += [await turn(text) for text in script]
            for name, opened in (
                ("wechat", wechat_conversation(session, url, fake, counts)),
                ("web", web_conversation(url, counts)),
                ("app", app_conversation(session, url)),
            ):
                turn, close = await opened
                try:
                    timings[name] += [await turn(text) for text in script]
                finally:
                    await close()
    figures = {name: percentiles(values) for name, values in timings.items()}
    for name in ("wechat", "web", "app"):
        figures[name]["p50_vs_rest"] = round(figures[name]["p50_ms"] / figures["rest"]["p50_ms"], 2)
        figures[name]["p95_vs_rest"] = round(figures[name]["p95_ms"] / figures["rest"]["p95_ms"], 2)
    return figures


async def run_channels(
    url: str, api_token: str, fake_port: int, messages: list[str], turns: int
) -> dict[str, Any]:
    fake = FakeWeChatAPI(fake_port)
    await fake.start()
    try:
        return await measure_channels(url, api_token, fake, messages, turns)
    finally:
        await fake.stop()
