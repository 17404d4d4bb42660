#!/usr/bin/env python
"""Reply latency and throughput of the running service on what customers really
send, beside stock Rasa serving the same data in the same run.

    bench/latency.py [--conversations 40] [--load 16,64] [--no-stock] [--stock-epochs 5]

Starts the service with `bot run` (embedded Redis, SQLite; a fresh var dir) on
our model, measures, stops it; then does the same with a model trained from
the same data and domain with Rasa's stock default pipeline and policies
(bench/stock_config.yml, trained once and cached by fingerprint under models/).
Both run behind the same stores, channels and action server, one after the
other in one run, so the difference is the model and its serving.

The conversations are bench/mix.py's seeded mix (both languages: greetings,
order questions opening a form, cancel with confirmation, refunds, address
changes, FAQ, an FAQ question inside a form, thanks and goodbye), each played
by a fresh shop customer with an order in every state, through the REST
channel as a trusted caller (the API token) vouching for the customer's
identity in the message metadata, as a backend integration does. Every turn
is checked afterwards against the conversation's tracker (the expected
response, no fallback), and turns that didn't go as scripted are counted.

- one customer at a time: p50/p95/p99 by turn kind;
- `--load` concurrent customers (each its own conversation, answering as soon
  as the reply arrives): turns/s and p50/p95/p99; under the first load, WeChat
  customers alongside (`--wechat-customers`, paced like people typing) with the
  share of their turns answered passively (in the webhook's answer, within the
  4 s window) rather than through the 客服消息 API;
- the burst: one customer sends 4 messages 30 ms apart; time to the last reply;
- server start (until /status names the model) and the Rasa server's RSS;
- per channel (ours only, `--channel-turns`): bench/channels.py's table;
- the machine's busy CPU per phase and other heavy processes (bench/machine.py).

Figures go to stdout and bench/results/latency.json + latency.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import channels  # noqa: E402  (bench/channels.py)
import machine  # noqa: E402  (bench/machine.py)
import mix  # noqa: E402  (bench/mix.py)
from stats import free_port, summary  # noqa: E402  (bench/stats.py)

from bot.training import fingerprint  # noqa: E402
from tests.shop_customers import fresh_customer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BOT = str(Path(sys.executable).with_name("bot"))
TOKEN = "bench-token"  # the admin API's (status, trackers)
# The REST channel's own token, sent in a header (the channel refuses one in the URL).
REST_TOKEN = "bench-rest-token"
REST_HEADERS = {"Authorization": f"Bearer {REST_TOKEN}"}

# Simple turns for the per-channel table and bench/handoff.py's reference turns
# (no account needed: the customer channels' identities aren't bound to one).
MESSAGES = [
    "你好", "我的快递到哪了", "JM202411230456", "运费怎么算", "谢谢", "拜拜",
    "hello", "where is my parcel", "it's JM202411170001", "how much is shipping", "thanks", "bye",
    "亲 退款啥时候到账", "我要投诉你们快递员", "what is your return policy", "能开发票吗",
    "can I pay with alipay", "我钱包还有多少钱", "i forgot my password", "收货地址填错了",
]

# Issue 14's targets: (label, key, comparison, bound).
TARGETS_MS = {"one_customer_p50": 60.0, "load16_p99": 500.0, "burst_last_reply": 250.0}
TARGET_TURNS_PER_S = 35.0
TARGET_START_S = 10.0
TARGET_RSS_MB = 600.0
BURST_MESSAGES = 4
BURST_GAP_S = 0.03
WECHAT_WINDOW_S = 4.0

class Server:
    """`bot run` on a given model, in a fresh var dir, on free ports."""

    def __init__(self, model: Path, name: str, extra_env: dict[str, str] | None = None) -> None:
        self.extra_env = extra_env or {}
        self.model = model
        self.name = name
        self.var = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.start_s = 0.0

    def start(self) -> None:
        env = {
            k: v for k, v in os.environ.items()
            if k not in {"REDIS_URL", "DATABASE_URL", "TRACKER_DATABASE_URL"}
        }
        env.update(
            BOT_VAR_DIR=str(self.var), BOT_RASA_PORT=str(self.port),
            BOT_ACTION_PORT=str(free_port()), BOT_API_TOKEN=TOKEN, BOT_REST_TOKEN=REST_TOKEN,
            RASA_TELEMETRY_ENABLED="false", TF_CPP_MIN_LOG_LEVEL="2",
        )
        env.update(self.extra_env)
        began = time.monotonic()
        self.process = subprocess.Popen(
            [BOT, "run", "--model", str(self.model)], cwd=ROOT, env=env,
            stdout=(self.var / "bot.out").open("w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        import urllib.request

        while time.monotonic() - began < 600:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name}: bot run exited; see {self.var / 'bot.out'}")
            try:
                with urllib.request.urlopen(f"{self.url}/status?token={TOKEN}", timeout=5) as r:
                    if json.loads(r.read()).get("model_file"):
                        self.start_s = round(time.monotonic() - began, 1)
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"{self.name}: not ready after 600 s")

    def rss_mb(self) -> float:
        """Resident memory of the Rasa server process (the one serving the model)."""
        out = subprocess.run(["ps", "-eo", "rss=,args="], capture_output=True, text=True).stdout
        for line in out.splitlines():
            rss, _, args = line.strip().partition(" ")
            if " run " in args and f"-p {self.port}" in args or f"--port {self.port}" in args:
                return round(int(rss) / 1024, 1)
        return float("nan")

    def rasa_pid(self) -> int | None:
        """The Rasa server process (the one serving the model) among `bot run`'s children."""
        if not self.process:
            return None
        for child in psutil.Process(self.process.pid).children(recursive=True):
            line = " ".join(child.cmdline())
            if " run " in line and (f"-p {self.port}" in line or f"--port {self.port}" in line):
                return child.pid
        return None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        shutil.rmtree(self.var, ignore_errors=True)


async def turn(session: aiohttp.ClientSession, url: str, sender: str, text: str) -> float:
    began = time.perf_counter()
    async with session.post(
        f"{url}/webhooks/rest/webhook", json={"sender": sender, "message": text},
        headers=REST_HEADERS,
    ) as response:
        response.raise_for_status()
        await response.json()
    return (time.perf_counter() - began) * 1000


# --- customers -------------------------------------------------------------------------


@dataclass
class Customer:
    """One conversation of the mix, played by a fresh shop customer."""

    sender: str
    lang: str
    turns: list[mix.Turn]
    texts: list[str]
    metadata: dict[str, Any] | None = None
    openid: str = ""  # WeChat customers
    times: list[float] = field(default_factory=list)


def new_customers(
    shop_url: str, scripts: list[tuple[str, list[mix.Turn]]], channel: str = "app"
) -> list[Customer]:
    """A fresh account per conversation (its orders change: cancelled, refunded), bound
    to an identity: for REST, one our trusted caller vouches for in the metadata (the
    REST channel takes `metadata` only with the API token); for WeChat, an OpenID."""
    made = []
    for lang, turns in scripts:
        if channel == "wechat":
            subject = f"oBench{uuid.uuid4().hex[:22]}"
            sender, metadata = f"wechat:{subject}", None
        else:
            subject = f"bench-{uuid.uuid4().hex[:12]}"
            sender = f"{channel}:{subject}"
            metadata = {"identity": {"channel": channel, "subject": subject,
                                     "verified_by": "api_token", "customer": True}}
        orders = fresh_customer(shop_url, channel, subject, lang)["orders"]
        made.append(Customer(sender, lang, turns, [t.filled(orders) for t in turns], metadata,
                             openid=subject if channel == "wechat" else ""))
    return made


async def say(
    session: aiohttp.ClientSession, url: str, customer: Customer, text: str
) -> float:
    began = time.perf_counter()
    body: dict[str, Any] = {"sender": customer.sender, "message": text}
    if customer.metadata:
        body["metadata"] = customer.metadata
    async with session.post(f"{url}/webhooks/rest/webhook", json=body,
                            headers=REST_HEADERS) as answer:
        answer.raise_for_status()
        await answer.json()
    return (time.perf_counter() - began) * 1000


async def play(session: aiohttp.ClientSession, url: str, customer: Customer) -> None:
    """The conversation, each message sent as soon as the previous reply arrived."""
    for text in customer.texts:
        customer.times.append(await say(session, url, customer, text))


async def check(
    session: aiohttp.ClientSession, url: str, customers: list[Customer]
) -> dict[str, Any]:
    """Each turn against the script, from the trackers (after timing, so not timed):
    off-script turns per kind, and a few examples."""
    off: dict[str, int] = {}
    examples: list[str] = []
    for customer in customers:
        async with session.get(
            f"{url}/conversations/{customer.sender}/tracker?token={TOKEN}"
        ) as answer:
            answer.raise_for_status()
            events = (await answer.json())["events"]
        said = mix.replies_by_turn(events, customer.texts)
        for turn, text, replies in zip(customer.turns, customer.texts, said, strict=True):
            if not mix.as_scripted(turn.expect, replies):
                off[turn.kind] = off.get(turn.kind, 0) + 1
                if len(examples) < 12:
                    examples.append(f"{turn.kind}: {text!r} → {replies} (expected {turn.expect})")
    turns = sum(len(c.texts) for c in customers)
    return {"turns": turns, "off_script": sum(off.values()), "off_script_by_kind": off,
            "examples": examples}


def by_kind(customers: list[Customer]) -> dict[str, dict[str, float]]:
    times: dict[str, list[float]] = {}
    for customer in customers:
        for turn, ms in zip(customer.turns, customer.times, strict=False):
            times.setdefault(turn.kind, []).append(ms)
    return {kind: summary(times[kind]) for kind in mix.KINDS if kind in times}


# --- WeChat customers alongside the load ------------------------------------------------


async def wechat_play(
    session: aiohttp.ClientSession, url: str, fake: channels.FakeWeChatAPI,
    customer: Customer, pace_s: float, paths: list[tuple[str, float]], stop: asyncio.Event,
) -> None:
    """A WeChat customer's conversation through the signed webhook; each turn's path
    (passive / api) and time to the reply. Paced: WeChat customers type like people,
    and the channel's per-customer rate limit (1/s, burst 5) would refuse faster ones."""
    arrivals = fake.waiting.setdefault(customer.openid, asyncio.Queue())
    for text in customer.texts:
        if stop.is_set():
            break  # only turns sent under the load count
        turn_began = time.perf_counter()
        timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
        signature = hashlib.sha1(
            "".join(sorted([channels.WECHAT_TOKEN, timestamp, nonce])).encode()
        ).hexdigest()
        xml = (
            f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
            f"<FromUserName><![CDATA[{customer.openid}]]></FromUserName>"
            f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{text}]]></Content>"
            f"<MsgId>{secrets.randbelow(10**18)}</MsgId></xml>"
        )
        query = {"signature": signature, "timestamp": timestamp, "nonce": nonce}
        async with session.post(
            f"{url}/webhooks/wechat/webhook", params=query, data=xml.encode()
        ) as answer:
            answer.raise_for_status()
            body = (await answer.read()).strip()
        if body not in (b"success", b""):
            paths.append(("passive", (time.perf_counter() - turn_began) * 1000))
        else:
            try:
                arrived = await asyncio.wait_for(arrivals.get(), 60)
                paths.append(("api", (arrived - turn_began) * 1000))
            except asyncio.TimeoutError:
                paths.append(("none", 60_000.0))
        await asyncio.sleep(max(0.0, pace_s - (time.perf_counter() - turn_began)))
    fake.waiting.pop(customer.openid, None)


def wechat_figures(paths: list[tuple[str, float]]) -> dict[str, Any]:
    if not paths:
        return {}
    n = len(paths)
    window = WECHAT_WINDOW_S * 1000
    api_in_time = sum(1 for p, ms in paths if p == "api" and ms <= window)
    return {
        "turns": n,
        "passive_share": round(sum(1 for p, _ in paths if p == "passive") / n, 3),
        # Long replies (> 2,048 bytes) go by API even when in time.
        "api_within_4s_share": round(api_in_time / n, 3),
        "api_after_4s_share": round(sum(1 for p, ms in paths if p == "api" and ms > window) / n, 3),
        "no_reply": sum(1 for p, _ in paths if p == "none"),
        **summary([ms for _, ms in paths]),
    }


# --- phases ------------------------------------------------------------------------------


class RssPeak:
    """Peak resident memory of the Rasa server process, sampled every 0.5 s."""

    def __init__(self, pid: int | None) -> None:
        self.proc = psutil.Process(pid) if pid else None
        self.peak = 0.0
        self.task: asyncio.Task[None] | None = None

    def sample(self) -> float:
        try:
            rss = self.proc.memory_info().rss / 2**20 if self.proc else float("nan")
        except psutil.Error:
            return float("nan")
        self.peak = max(self.peak, rss)
        return rss

    async def _loop(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.5)

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop())


async def measure(server: Server, args: argparse.Namespace, fake_port: int) -> dict[str, Any]:
    shop_url = f"sqlite:///{server.var / 'shop.db'}"
    url = server.url
    seed = args.seed
    cpu = machine.MachineCPU(server.process.pid if server.process else None)
    rss = RssPeak(server.rasa_pid())
    rss.start()
    figures: dict[str, Any] = {"rss_after_start_mb": round(rss.sample(), 1)}
    fake = channels.FakeWeChatAPI(fake_port)
    await fake.start()
    timeout = aiohttp.ClientTimeout(total=180)
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            # Warm-up: first requests build caches (not counted).
            for customer in new_customers(shop_url, mix.conversations(4, seed + 1000)):
                await play(session, url, customer)

            # One customer at a time.
            print(f"[{server.name}] one customer at a time ...", flush=True)
            single = new_customers(shop_url, mix.conversations(args.conversations, seed))
            cpu.start()
            for customer in single:
                await play(session, url, customer)
            figures["one_customer"] = {
                "conversations": len(single),
                "all": summary([ms for c in single for ms in c.times]),
                "by_kind": by_kind(single),
                "check": await check(session, url, single),
                "machine": cpu.stop(),
            }

            # Concurrent customers, each its own conversation(s).
            figures["load"] = {}
            for index, clients in enumerate(args.load):
                print(f"[{server.name}] {clients} customers at once ...", flush=True)
                per = args.load_conversations
                scripts = mix.conversations(clients * per, seed + 1 + index)
                customers = new_customers(shop_url, scripts)
                wechat: list[Customer] = []
                paths: list[tuple[str, float]] = []
                if index == 0 and args.wechat_customers:
                    wechat = new_customers(
                        shop_url, mix.conversations(args.wechat_customers * 3, seed + 99),
                        channel="wechat",
                    )
                done = asyncio.Event()

                async def client(mine: list[Customer]) -> None:
                    for customer in mine:
                        await play(session, url, customer)

                async def wechat_client(
                    mine: list[Customer], done: asyncio.Event = done,
                    paths: list[tuple[str, float]] = paths,
                ) -> None:
                    for customer in mine:
                        if done.is_set():
                            break  # only turns under the load count
                        await wechat_play(
                            session, url, fake, customer, args.wechat_pace, paths, done
                        )

                wechat_tasks = [
                    asyncio.create_task(wechat_client(wechat[i::args.wechat_customers]))
                    for i in range(args.wechat_customers if wechat else 0)
                ]
                cpu.start()
                began = time.perf_counter()
                await asyncio.gather(*(client(customers[i::clients]) for i in range(clients)))
                elapsed = time.perf_counter() - began
                done.set()
                used = cpu.stop()
                await asyncio.gather(*wechat_tasks)
                times = [ms for c in customers for ms in c.times]
                figures["load"][str(clients)] = {
                    "customers": clients,
                    "conversations": len(customers),
                    "turns": len(times),
                    "seconds": round(elapsed, 1),
                    "turns_per_s": round(len(times) / elapsed, 1),
                    **summary(times),
                    "by_kind": by_kind(customers),
                    "check": await check(session, url, customers),
                    "wechat": wechat_figures(paths),
                    "machine": used,
                }

            # The same-customer burst.
            print(f"[{server.name}] bursts ...", flush=True)
            burst_from_first, burst_from_last = [], []
            bursters = new_customers(shop_url, [
                (lang, turns[:BURST_MESSAGES])
                for lang, turns in mix.conversations(args.bursts * 3, seed + 77)
                if len(turns) >= BURST_MESSAGES
            ][: args.bursts])
            cpu.start()
            for customer in bursters:
                began = time.perf_counter()

                async def send(i: int, text: str, who: Customer = customer) -> float:
                    await asyncio.sleep(i * BURST_GAP_S)
                    await say(session, url, who, text)
                    return time.perf_counter()

                ends = await asyncio.gather(*(send(i, t) for i, t in enumerate(customer.texts)))
                burst_from_first.append((max(ends) - began) * 1000)
                burst_from_last.append(
                    (max(ends) - began - (BURST_MESSAGES - 1) * BURST_GAP_S) * 1000
                )
                await asyncio.sleep(0.3)
            figures["burst"] = {
                "bursts": len(bursters),
                "messages": BURST_MESSAGES,
                "gap_ms": BURST_GAP_S * 1000,
                "from_first_message": summary(burst_from_first),
                "from_last_message": summary(burst_from_last),
                # Order under the conversation lock isn't promised: counted, not timed.
                "check": await check(session, url, bursters),
                "machine": cpu.stop(),
            }
    finally:
        await fake.stop()
        if rss.task:
            rss.task.cancel()
    figures["rasa_rss_mb"] = round(rss.sample(), 1)
    figures["rasa_rss_peak_mb"] = round(rss.peak, 1)
    return figures


def stock_config(epochs: int | None) -> str:
    """bench/stock_config.yml, with every `epochs` replaced when asked.

    Epochs change how well a model is fitted, not what it costs to serve (same
    layers, same sizes), so a latency baseline may be trained briefly.
    """
    import yaml

    config = yaml.safe_load((ROOT / "bench" / "stock_config.yml").read_text())
    if epochs:
        for part in config["pipeline"] + config["policies"]:
            if "epochs" in part:
                part["epochs"] = epochs
    return yaml.safe_dump(config, allow_unicode=True)


def stock_model(epochs: int | None) -> Path:
    """The same data trained with the stock config, cached by fingerprint."""
    config = stock_config(epochs)
    key = fingerprint(ROOT, salt=config)[:16]
    model = ROOT / "models" / "bench" / f"stock-{key}.tar.gz"
    if not model.exists():
        print(f"training the stock baseline (epochs: {epochs or 'as configured'}) ...", flush=True)
        with tempfile.NamedTemporaryFile("w", suffix=".yml", dir=ROOT / "bench") as file:
            file.write(config)
            file.flush()
            subprocess.run(
                [sys.executable, "-m", "rasa", "train", "--config", file.name,
                 "--out", str(model.parent), "--fixed-model-name", model.name[: -len(".tar.gz")]],
                cwd=ROOT, check=True, env={**os.environ, "RASA_TELEMETRY_ENABLED": "false"},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
    return model


def run(model: Path, name: str, args: argparse.Namespace) -> dict[str, Any]:
    fake_port = free_port()
    fake_api = f"http://127.0.0.1:{fake_port}/cgi-bin/"
    # Every channel on, WeChat with the service's own 4 s passive window.
    server = Server(model, name, channels.server_env(fake_api, passive_reply_seconds=""))
    print(f"[{name}] starting the service on {model.name} ...", flush=True)
    server.start()
    try:
        print(f"[{name}] ready in {server.start_s} s; measuring ...", flush=True)
        figures = asyncio.run(measure(server, args, fake_port))
        if name == "ours" and args.channel_turns > 0:
            print(f"[{name}] per-channel reply latency ...", flush=True)
            figures["channels"] = asyncio.run(
                channels.run_channels(server.url, REST_TOKEN, fake_port, MESSAGES,
                                      args.channel_turns)
            )
        figures["start_s"] = server.start_s
        figures["model"] = model.name
        return figures
    finally:
        server.stop()


def ratio(a: Any, b: Any) -> str:
    try:
        return f"{a / b:.2f}" if b else "–"
    except TypeError:
        return "–"


def verdict(value: float, bound: float, higher_is_better: bool = False, unit: str = "",
            strict: bool = False) -> str:
    """`strict`: the target is "< bound" (at the bound is a miss), else "≤ bound"."""
    if higher_is_better:
        if value >= bound:
            return "met"
        return f"missed by {bound - value:.1f}{unit} ({value / bound:.2f} of target)"
    if value < bound or (value == bound and not strict):
        return "met"
    if value == bound:
        return f"missed: at the bound ({value:g}{unit})"
    return f"missed by {value - bound:.1f}{unit} ({value / bound:.1f}× target)"


def get(result: dict[str, Any] | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(result, dict) or key not in result:
            return "–"
        result = result[key]
    return result


def targets_table(ours: dict[str, Any], stock: dict[str, Any] | None, load: str) -> str:
    lines = [
        "| figure | ours | stock, same run | ours / stock | target | ours: met? |",
        "|---|---|---|---|---|---|",
    ]

    def row(label: str, path: tuple[str, ...], target: str, check: str) -> None:
        a, b = get(ours, *path), get(stock, *path)
        lines.append(f"| {label} | {a} | {b} | {ratio(a, b)} | {target} | {check} |")

    for kind in mix.KINDS:
        p50 = get(ours, "one_customer", "by_kind", kind, "p50_ms")
        if p50 == "–":
            continue
        row(f"one customer, p50 ms: {kind}", ("one_customer", "by_kind", kind, "p50_ms"),
            "≤ 60", verdict(p50, TARGETS_MS["one_customer_p50"], unit=" ms"))
    tps = get(ours, "load", load, "turns_per_s")
    row(f"{load} customers: turns/s", ("load", load, "turns_per_s"), f"≥ {TARGET_TURNS_PER_S:g}",
        verdict(tps, TARGET_TURNS_PER_S, higher_is_better=True, unit=" turns/s")
        if tps != "–" else "–")
    p99 = get(ours, "load", load, "p99_ms")
    row(f"{load} customers: p99 ms", ("load", load, "p99_ms"), "< 500",
        verdict(p99, TARGETS_MS["load16_p99"], unit=" ms", strict=True) if p99 != "–" else "–")
    burst = get(ours, "burst", "from_first_message", "p50_ms")
    row(f"burst of {BURST_MESSAGES} messages {BURST_GAP_S * 1000:g} ms apart: last reply, p50 ms "
        "(from the first message)", ("burst", "from_first_message", "p50_ms"), "< 250",
        verdict(burst, TARGETS_MS["burst_last_reply"], unit=" ms", strict=True))
    row("`bot run` start to ready, s", ("start_s",), "< 10",
        verdict(ours["start_s"], TARGET_START_S, unit=" s", strict=True))
    row("RSS of the Rasa server after the run, MB", ("rasa_rss_mb",), "< 600",
        verdict(ours["rasa_rss_mb"], TARGET_RSS_MB, unit=" MB", strict=True))
    row("RSS of the Rasa server, peak during the run, MB", ("rasa_rss_peak_mb",), "< 600",
        verdict(ours["rasa_rss_peak_mb"], TARGET_RSS_MB, unit=" MB", strict=True))
    return "\n".join(lines)


def kind_table(ours: dict[str, Any], stock: dict[str, Any] | None, where: tuple[str, ...]) -> str:
    lines = [
        "| turn kind | n | ours p50 | p95 | p99 | stock p50 | p95 | p99 | p50 ours / stock |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in [*mix.KINDS, "all"]:
        path = (*where, "by_kind", kind) if kind != "all" else (*where, "all")
        a = get(ours, *path)
        if a == "–":
            continue
        b = get(stock, *path)
        lines.append(
            f"| {kind} | {a['n']} | {a['p50_ms']} | {a['p95_ms']} | {a['p99_ms']} | "
            f"{get(b, 'p50_ms')} | {get(b, 'p95_ms')} | {get(b, 'p99_ms')} | "
            f"{ratio(a['p50_ms'], get(b, 'p50_ms'))} |"
        )
    return "\n".join(lines)


def load_table(ours: dict[str, Any], stock: dict[str, Any] | None) -> str:
    lines = [
        "| customers at once | figure | ours | stock, same run | ours / stock |",
        "|---|---|---|---|---|",
    ]
    for load in ours["load"]:
        for label, key in (("turns/s", "turns_per_s"), ("p50 ms", "p50_ms"),
                           ("p95 ms", "p95_ms"), ("p99 ms", "p99_ms"), ("turns", "turns")):
            a, b = get(ours, "load", load, key), get(stock, "load", load, key)
            lines.append(f"| {load} | {label} | {a} | {b} | {ratio(a, b)} |")
    return "\n".join(lines)


def check_table(ours: dict[str, Any], stock: dict[str, Any] | None) -> str:
    lines = ["| phase | turns | ours: not as scripted | stock: not as scripted |",
             "|---|---|---|---|"]
    phases = [("one customer", ("one_customer", "check"))]
    phases += [(f"{n} customers", ("load", n, "check")) for n in ours["load"]]
    phases += [("bursts (order under the lock not promised)", ("burst", "check"))]
    for label, path in phases:
        a, b = get(ours, *path), get(stock, *path)

        def cell(c: Any) -> str:
            if c == "–":
                return "–"
            kinds = ", ".join(f"{k} {v}" for k, v in c["off_script_by_kind"].items())
            return f"{c['off_script']}" + (f" ({kinds})" if kinds else "")

        lines.append(f"| {label} | {get(a, 'turns')} | {cell(a)} | {cell(b)} |")
    return "\n".join(lines)


def machine_table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| server | phase | seconds | machine busy % (200 = both cores) | ours (service + "
        "load generator) % | other processes % | load avg 1 min | heavy other processes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        phases = [("one customer", r["one_customer"]["machine"])]
        phases += [(f"{n} customers", f["machine"]) for n, f in r["load"].items()]
        phases += [("bursts", r["burst"]["machine"])]
        for label, m in phases:
            heavy = "; ".join(f"{h['cpu_pct']} %: `{h['process'][:70]}`"
                              for h in m["heavy_others"]) or "none"
            lines.append(
                f"| {name} | {label} | {m['seconds']} | {m['busy_cpu_pct']} | "
                f"{m['ours_cpu_pct']} | {m['others_cpu_pct']} | {m['loadavg_1m']} | {heavy} |"
            )
    return "\n".join(lines)


def noise(results: dict[str, dict[str, Any]]) -> str:
    """A plain sentence on other people's work sharing the 2 cores during the run."""
    phases = [
        m for r in results.values()
        for m in [r["one_customer"]["machine"], r["burst"]["machine"],
                  *(f["machine"] for f in r["load"].values())]
    ]
    worst = max(m["others_cpu_pct"] for m in phases)
    heavy = sorted({h["process"][:60] for m in phases for h in m["heavy_others"]})
    text = (
        f"Other processes used up to {worst} % of a core (of 200 %) during a phase"
        " (\"other processes\" also counts processes that ended within the phase)."
    )
    if worst >= 30:
        text += (
            " **The machine was shared with other heavy work during this run**, so the "
            "figures are slower than on an idle machine; ours and stock ran one after the "
            "other and did not see the same noise. Heavy other processes seen: "
            + "; ".join(f"`{h}`" for h in heavy) + "."
        )
    return text


def wechat_table(ours: dict[str, Any], stock: dict[str, Any] | None, load: str) -> str:
    lines = ["| WeChat turns under the load | ours | stock, same run |", "|---|---|---|"]
    for label, key in (("turns", "turns"), ("answered passively (in the webhook's answer)",
                                            "passive_share"),
                       ("by 客服消息 API within 4 s (reply too long for a passive one)",
                        "api_within_4s_share"),
                       ("by 客服消息 API after the 4 s window", "api_after_4s_share"),
                       ("no reply within 60 s", "no_reply"),
                       ("reply p50 ms", "p50_ms"), ("reply p99 ms", "p99_ms")):
        lines.append(f"| {label} | {get(ours, 'load', load, 'wechat', key)} | "
                     f"{get(stock, 'load', load, 'wechat', key)} |")
    return "\n".join(lines)


def channel_table(figures: dict[str, Any]) -> str:
    lines = [
        "Reply latency per channel, our service, same model and run, one customer at a "
        f"time ({figures['rest']['n']} turns each, bench/channels.py's simple scripted "
        f"conversations of {channels.TURNS_PER_CONVERSATION} turns, no account; message "
        "sent → last reply of the turn received):",
        "",
        "| channel | p50 ms | p95 ms | p99 ms | p50 / REST | p95 / REST |",
        "|---|---|---|---|---|---|",
    ]
    labels = {
        "rest": "REST (Rasa's channel)",
        "wechat": "WeChat webhook → passive reply (4 s window), else 客服消息 API call",
        "web": "web socket.io round trip",
        "app": "app POST → WebSocket",
    }
    for name, label in labels.items():
        f = figures[name]
        lines.append(
            f"| {label} | {f['p50_ms']} | {f['p95_ms']} | {f['p99_ms']} | "
            f"{f.get('p50_vs_rest', 1.0)} | {f.get('p95_vs_rest', 1.0)} |"
        )
    return "\n".join(lines)


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "bot", "connectors",
                            "actions", "config.yml", "domain.yml", "data"], cwd=ROOT,
                           capture_output=True, text=True).stdout.split("\n")
    # `bot run` serves the working tree: name what differs from the commit.
    files = [line[3:] for line in dirty if line.strip()]
    return out + (f" with uncommitted service files: {', '.join(files)}" if files else "")


def report(meta: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    ours, stock = results["ours"], results.get("stock")
    load = str(meta["load"][0])
    same_run = (
        f"Both columns come from this one run ({meta['run_id']}): ours, then stock, one "
        "after the other on the same machine, each on a fresh `bot run` behind the same "
        "stores, channels and action server."
        if stock else "Ours only (run with --no-stock): no stock column."
    )
    weakened = (
        f"**The stock baseline is weakened**: its DIET, ResponseSelector, TED and UnexpecTED "
        f"were trained {meta['stock_epochs']} epochs instead of the default 100 (serving cost "
        "depends on the layers, not on training length; its answers are worse, see the "
        "off-script counts)." if meta["stock_epochs"] != "as configured (100)" else
        "The stock baseline was trained with its default 100 epochs."
    )
    parts = [
        "# Reply latency and throughput on a realistic mix of conversations",
        "",
        f"{meta['date']}, {meta['machine']} (a fixed pure-Python workload took "
        f"{meta.get('python_speed_ms', '–')} ms here: bench/machine.py's speed_ms), "
        f"commit {meta['commit']}; our model "
        f"`{ours['model']}`, stock `{get(stock, 'model')}`. {same_run} {weakened}",
        "",
        f"Conversations: bench/mix.py, seed {meta['seed']}, zh and en; each a fresh shop "
        "customer (an order in every state) through the REST channel as a trusted caller "
        "(API token, the customer's identity in the message metadata). "
        f"One customer at a time: {meta['conversations']} conversations; at once: "
        f"{', '.join(str(n) for n in meta['load'])} customers x {meta['load_conversations']} "
        f"conversations each, every message sent as soon as the previous reply arrived; "
        f"{meta['wechat_customers']} WeChat customers alongside the {load}-customer load "
        f"(one message per {meta['wechat_pace']} s). Embedded Redis + SQLite.",
        "",
        "## Issue 14's targets",
        "",
        targets_table(ours, stock, load),
        "",
        "## One customer at a time, by turn kind (ms)",
        "",
        kind_table(ours, stock, ("one_customer",)),
        "",
        "## Customers at once",
        "",
        load_table(ours, stock),
        "",
        f"By turn kind under the {load}-customer load:",
        "",
        kind_table(ours, stock, ("load", load)),
        "",
        f"## WeChat under the {load}-customer load",
        "",
        wechat_table(ours, stock, load),
        "",
        f"## Burst: one customer sends {BURST_MESSAGES} messages {BURST_GAP_S * 1000:g} ms "
        f"apart ({get(ours, 'burst', 'bursts')} bursts)",
        "",
        "| time to the last reply | ours p50 | ours max | stock p50 | stock max |",
        "|---|---|---|---|---|",
    ]
    for label, key in (("from the first message", "from_first_message"),
                       ("from the last message", "from_last_message")):
        parts.append(
            f"| {label} | {get(ours, 'burst', key, 'p50_ms')} | "
            f"{get(ours, 'burst', key, 'max_ms')} | {get(stock, 'burst', key, 'p50_ms')} | "
            f"{get(stock, 'burst', key, 'max_ms')} |"
        )
    parts += [
        "",
        "## Turns that didn't go as scripted",
        "",
        "Checked after timing against each conversation's tracker: the expected response "
        "among the turn's replies and no fallback. Their times are in the figures above.",
        "",
        check_table(ours, stock),
        "",
    ]
    for name, r in results.items():
        examples = r["one_customer"]["check"]["examples"]
        if examples:
            parts += [f"Examples ({name}, one customer at a time):", ""]
            parts += [f"- {e}" for e in examples[:6]] + [""]
    parts += [
        "## The machine during each phase",
        "",
        noise(results),
        "",
        machine_table(results),
        "",
    ]
    if "channels" in ours:
        parts += ["## Per channel", "", channel_table(ours["channels"]), ""]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=40,
                        help="conversations one customer at a time")
    parser.add_argument("--load", default="16,64", help="customers at once, comma-separated")
    parser.add_argument("--load-conversations", type=int, default=2,
                        help="conversations each concurrent customer plays, one after another")
    parser.add_argument("--wechat-customers", type=int, default=4,
                        help="WeChat customers alongside the first load (0: none)")
    parser.add_argument("--wechat-pace", type=float, default=1.5,
                        help="seconds between a WeChat customer's messages")
    parser.add_argument("--bursts", type=int, default=10)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--no-stock", action="store_true", help="skip the stock baseline")
    parser.add_argument(
        "--stock-epochs", type=int, default=5,
        help="epochs for the stock baseline's models (serving cost doesn't depend on it); "
        "0 keeps the configured 100",
    )
    parser.add_argument("--model", type=Path, help="our model (default: the latest)")
    parser.add_argument(
        "--channel-turns", type=int, default=100,
        help="turns per channel for the per-channel latency (0: skip)",
    )
    args = parser.parse_args()
    args.load = [int(n) for n in args.load.split(",") if n.strip()]

    from bot.training import latest_model

    ours = args.model or latest_model(ROOT / "models")
    if ours is None:
        raise SystemExit("no model: run `bot train` first")
    began = datetime.datetime.now(datetime.timezone.utc)
    meta = {
        "date": began.isoformat(timespec="seconds"),
        "run_id": f"{began:%Y-%m-%dT%H:%M}Z-{uuid.uuid4().hex[:6]}",
        "commit": git_commit(),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "python_speed_ms": machine.speed_ms(),
        "seed": args.seed,
        "conversations": args.conversations,
        "load": args.load,
        "load_conversations": args.load_conversations,
        "wechat_customers": args.wechat_customers,
        "wechat_pace": args.wechat_pace,
        "bursts": args.bursts,
        "stock_epochs": args.stock_epochs or "as configured (100)",
    }
    results = {"ours": run(ours, "ours", args)}
    if not args.no_stock:
        results["stock"] = run(stock_model(args.stock_epochs or None), "stock", args)
    for r in results.values():
        r["run_id"] = meta["run_id"]  # every column says which run it came from
    text = report(meta, results)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latency.json").write_text(
        json.dumps({**meta, "same_run": "stock" in results, "results": results},
                   indent=1, ensure_ascii=False)
    )
    (RESULTS / "latency.md").write_text(text)


if __name__ == "__main__":
    main()
