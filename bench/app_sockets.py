"""Idle app WebSockets on one `bot run`: memory, Redis connections, push latency.

    .venv/bin/python bench/app_sockets.py --counts 1000 5000 --label after
    .venv/bin/python bench/app_sockets.py --counts 5000 --web-share 0.5 --label mixed

Starts `bot run --no-train` (its own embedded Redis on a free port, so
connected_clients counts only this server's clients plus this script's two),
opens N app WebSockets (one customer each, JWT as the app's backend signs it),
lets them sit idle, then reports:

- rss_mb: RSS of the Rasa server process (the child of `bot run` serving the port);
- redis_connected_clients: INFO clients of the embedded Redis (this script holds 2);
- push latency for a sample of the sockets: `Outbox.append` in this process (the
  path `bot push` and the desk take) → the frame arriving on that socket, one
  at a time, p50 / p99 / max.

With `--web-share F`, that share of the N sockets are the web widget's
socket.io connections instead (each with its visitor session, as the widget
opens it; the per-address limits raised for the one address they all come
from), pushed to through the web channel's output from this process (the
write-only socket.io Redis manager the desk uses) → their `bot_uttered`.

To measure other code, run with PYTHONPATH pointing at another checkout (e.g.
`git worktree add /tmp/app-before <commit>`, with models/ symlinked) and
`--tree` naming it: the server and this script's Outbox then both come from it.

Open files: N sockets need N descriptors in the server and N here; the script
raises its soft RLIMIT_NOFILE to the hard limit, which the server inherits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import psutil
import socketio
import websockets
from redis import asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
JWT_KEY = "bench-app-jwt-secret-0123456789abcdef"
API_TOKEN = "bench-api-token"
START_TIMEOUT = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if not hasattr(aiohttp, "ClientWSTimeout"):
    # python-engineio 4.15's websocket client names aiohttp 3.10's ClientWSTimeout;
    # Rasa pins aiohttp 3.9, whose ws_connect takes the close timeout as a number.
    aiohttp.ClientWSTimeout = lambda ws_close=10.0, **_: ws_close  # type: ignore[attr-defined]


def raise_open_files(needed: int) -> dict[str, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by `bot run`
    if hard < needed:
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} < {needed} needed: raise it (ulimit -Hn)")
    return {"before": soft, "now": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}


def start_server(tree: Path, var_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    ports = {"rasa": free_port(), "redis": free_port()}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"REDIS_URL", "DATABASE_URL", "TRACKER_DATABASE_URL"}
        and not k.startswith(("WECHAT_", "WEB_", "APP_"))
    }
    env.update(
        RASA_TELEMETRY_ENABLED="false",
        TF_CPP_MIN_LOG_LEVEL="2",
        BOT_VAR_DIR=str(var_dir),
        BOT_RASA_PORT=str(ports["rasa"]),
        BOT_ACTION_PORT=str(free_port()),
        BOT_DESK_PORT=str(free_port()),
        BOT_REDIS_PORT=str(ports["redis"]),
        BOT_API_TOKEN=API_TOKEN,
        APP_JWT_ALGORITHM="HS256",
        APP_JWT_KEY=JWT_KEY,
        # Every web socket here comes from 127.0.0.1: one address's limits would refuse them.
        WEB_CONNECTS_PER_MINUTE="1000000",
        WEB_NEW_VISITORS_PER_HOUR="1000000",
    )
    bot = str(Path(sys.executable).with_name("bot"))
    log = (var_dir / "bot-run.out").open("w")
    process = subprocess.Popen(
        [bot, "run", "--no-train"], cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + START_TIMEOUT
    url = f"http://127.0.0.1:{ports['rasa']}/status?token={API_TOKEN}"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"bot run exited: {(var_dir / 'bot-run.out').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if json.loads(answer.read()).get("model_file"):
                    return process, ports
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            pass
        time.sleep(1)
    stop_server(process)
    sys.exit("bot run not ready in time")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def embedded_redis_url(var_dir: Path, port: int) -> str:
    """The embedded Redis asks for the password `bot run` wrote into its config."""
    config = (var_dir / "redis" / "redis.conf").read_text()
    password = next(line.split(None, 1)[1] for line in config.splitlines()
                    if line.startswith("requirepass "))
    return f"redis://:{password}@127.0.0.1:{port}/0"


def rasa_process(process: subprocess.Popen[bytes], port: int) -> psutil.Process:
    for child in psutil.Process(process.pid).children(recursive=True):
        try:
            if any(c.laddr.port == port and c.status == "LISTEN" for c in child.net_connections()):
                return child
        except psutil.Error:
            continue
    raise RuntimeError(f"no child of bot run listens on {port}")


class Socket:
    def __init__(self, customer: str, ws: Any) -> None:
        self.customer = customer
        self.ws = ws
        self.arrived: dict[str, float] = {}  # message text → monotonic arrival
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            if frame.get("type") == "message":
                self.arrived[frame["message"].get("text", "")] = time.monotonic()


async def open_socket(base: str, semaphore: asyncio.Semaphore) -> Socket:
    customer = f"bench-{uuid.uuid4().hex[:12]}"
    now = int(time.time())
    claims = {"sub": customer, "aud": "customer-service", "iat": now, "exp": now + 3600}
    token = jwt.encode(claims, JWT_KEY, "HS256")
    url = base.replace("http://", "ws://") + "/webhooks/app/ws"
    async with semaphore:
        ws = await websockets.connect(
            url, extra_headers={"Authorization": f"Bearer {token}"}, open_timeout=60,
            max_queue=4,
        )
        ready = json.loads(await asyncio.wait_for(ws.recv(), 60))
        assert ready["type"] == "ready", ready
    return Socket(customer, ws)


class WebSocket:
    """One widget connection with its visitor session; records bot_uttered arrivals."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.conversation = ""
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("bot_uttered", self._heard)
        self._confirmed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.sio.on("session_confirm", self._confirm)

    async def _heard(self, data: Any = None) -> None:
        if isinstance(data, dict):
            self.arrived[data.get("text", "")] = time.monotonic()

    async def _confirm(self, data: Any = None) -> None:
        if not self._confirmed.done():
            self._confirmed.set_result(data)

    async def open(self, base: str, semaphore: asyncio.Semaphore) -> WebSocket:
        async with semaphore:
            await self.sio.connect(base, socketio_path="/socket.io", transports=["websocket"],
                                   wait_timeout=60)
            await self.sio.emit("session_request", {"session_id": None})
            token = await asyncio.wait_for(self._confirmed, 60)
        subject = jwt.decode(token, options={"verify_signature": False})["sub"]
        self.conversation = f"web:{subject}"
        return self

    async def close(self) -> None:
        await self.sio.disconnect()


async def push_latencies(
    targets: list[Any], send: Any, conversation: Any
) -> tuple[list[float], int]:
    """One push at a time to each target; (latencies in ms, how many never came in 5 s)."""
    latencies, lost = [], 0
    for i, target in enumerate(targets):
        text = f"push {i}"
        sent = time.monotonic()
        await send(conversation(target), text)
        deadline = sent + 5
        while text not in target.arrived and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        if text in target.arrived:
            latencies.append((target.arrived[text] - sent) * 1000)
        else:
            lost += 1
    return latencies, lost


def push_figures(prefix: str, latencies: list[float], lost: int) -> dict[str, Any]:
    return {
        f"{prefix}push_sample": len(latencies),
        f"{prefix}push_not_received_in_5s": lost,
        f"{prefix}push_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
        f"{prefix}push_ms_p99": round(percentile(latencies, 0.99), 1) if latencies else None,
        f"{prefix}push_ms_max": round(max(latencies), 1) if latencies else None,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(
    count: int, tree: Path, sample: int, idle_seconds: float, web_share: float = 0.0
) -> dict[str, Any]:
    from connectors.app.outbox import Outbox, OutboxConfig  # from the measured tree
    from connectors.web.channel import WebOutput, _RedisEmitter

    web_count = round(count * web_share)
    app_count = count - web_count
    with tempfile.TemporaryDirectory(prefix="app-sockets-") as tmp:
        var_dir = Path(tmp) / "var"
        var_dir.mkdir()
        process, ports = start_server(tree, var_dir)
        redis_url = embedded_redis_url(var_dir, ports["redis"])
        redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        sockets: list[Socket] = []
        web_sockets: list[WebSocket] = []
        try:
            server = rasa_process(process, ports["rasa"])
            rss_idle_server = server.memory_info().rss
            base = f"http://127.0.0.1:{ports['rasa']}"
            semaphore = asyncio.Semaphore(50)
            started = time.monotonic()
            sockets = list(
                await asyncio.gather(*(open_socket(base, semaphore) for _ in range(app_count)))
            )
            web_sockets = list(await asyncio.gather(
                *(WebSocket().open(base, semaphore) for _ in range(web_count))
            ))
            opened_in = time.monotonic() - started
            await asyncio.sleep(idle_seconds)
            rss = server.memory_info().rss
            clients = (await redis.info("clients"))["connected_clients"]

            figures: dict[str, Any] = {}
            if sockets:
                outbox = Outbox(OutboxConfig(), redis_url=redis_url)

                async def to_app(customer: str, text: str) -> None:
                    await outbox.append(customer, {"text": text})

                targets = sockets[:: max(1, len(sockets) // sample)][:sample]
                figures.update(push_figures(
                    "", *await push_latencies(targets, to_app, lambda s: s.customer)
                ))
            if web_sockets:
                output = WebOutput(_RedisEmitter(redis_url))
                web_targets = web_sockets[:: max(1, len(web_sockets) // sample)][:sample]
                figures.update(push_figures("web_", *await push_latencies(
                    web_targets, output.send_text_message, lambda s: s.conversation
                )))
            clients_after = (await redis.info("clients"))["connected_clients"]
            return {
                "sockets": count,
                "app_sockets": app_count,
                "web_sockets": web_count,
                "opened_in_s": round(opened_in, 1),
                "rss_mb_before_sockets": round(rss_idle_server / 2**20),
                "rss_mb": round(rss / 2**20),
                "redis_connected_clients": clients,
                "redis_connected_clients_after_pushes": clients_after,
                **figures,
            }
        finally:
            for s in sockets:
                s.reader.cancel()
            await asyncio.gather(*(s.ws.close() for s in sockets), return_exceptions=True)
            await asyncio.gather(*(w.close() for w in web_sockets), return_exceptions=True)
            await redis.close()
            stop_server(process)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--sample", type=int, default=200, help="sockets pushed to")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before measuring")
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout `bot run` runs in")
    parser.add_argument("--web-share", type=float, default=0.0,
                        help="share of the sockets that are the web widget's (socket.io)")
    parser.add_argument("--label", default="after")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/app-sockets.json")
    args = parser.parse_args()
    limits = raise_open_files(2 * max(args.counts) + 500)
    runs = []
    for count in args.counts:
        result = await measure(count, args.tree.resolve(), args.sample, args.idle,
                               args.web_share)
        print(json.dumps(result), flush=True)
        runs.append(result)
    stored = json.loads(args.out.read_text()) if args.out.exists() else {}
    stored[args.label] = {
        "tree": str(args.tree),
        "commit": subprocess.run(
            ["git", "-C", str(args.tree), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True,
        ).stdout.strip(),
        "nofile_limit": limits,
        "cpus": os.cpu_count(),
        "runs": runs,
    }
    args.out.write_text(json.dumps(stored, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
