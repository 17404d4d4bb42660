#!/usr/bin/env python
"""Reply latency and throughput of the running service, beside stock Rasa.

    bench/latency.py [--messages 300] [--concurrency 16] [--per-client 20] [--no-stock]

Starts the service with `bot run` (embedded Redis, SQLite; a fresh var dir)
on our model, measures, stops it; then does the same with a model trained from
the same data and domain with Rasa's stock default pipeline and policies
(bench/stock_config.yml, trained once and cached by fingerprint under models/).
Both run behind the same stores and action server, so the difference is the
model. Measured through Rasa's REST channel (a full turn: NLU, policies,
actions, tracker and lock stores) and /model/parse (NLU only):

- sequential: `--messages` messages one after another, in conversations of 6
  turns, zh and en mixed: p50/p95/p99 ms;
- concurrent: `--concurrency` clients, each its own conversation sending
  `--per-client` messages as fast as answers come: turns/s and p50/p95 ms.

Figures go to stdout and bench/results/latency.json + latency.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import channels  # noqa: E402  (bench/channels.py)

from bot.training import fingerprint  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BOT = str(Path(sys.executable).with_name("bot"))
TOKEN = "bench-token"

# Realistic turns, both languages, mixed; a conversation walks through them.
MESSAGES = [
    "你好", "我的快递到哪了", "JM202411230456", "运费怎么算", "谢谢", "拜拜",
    "hello", "where is my parcel", "it's JM202411170001", "how much is shipping", "thanks", "bye",
    "亲 退款啥时候到账", "我要投诉你们快递员", "what is your return policy", "能开发票吗",
    "can I pay with alipay", "我钱包还有多少钱", "i forgot my password", "收货地址填错了",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "n": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
    }


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
            BOT_ACTION_PORT=str(free_port()), BOT_API_TOKEN=TOKEN,
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
        f"{url}/webhooks/rest/webhook?token={TOKEN}", json={"sender": sender, "message": text}
    ) as response:
        response.raise_for_status()
        await response.json()
    return (time.perf_counter() - began) * 1000


async def parse(session: aiohttp.ClientSession, url: str, text: str) -> float:
    began = time.perf_counter()
    async with session.post(f"{url}/model/parse?token={TOKEN}", json={"text": text}) as response:
        response.raise_for_status()
        await response.json()
    return (time.perf_counter() - began) * 1000


async def measure(url: str, messages: int, concurrency: int, per_client: int) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for text in MESSAGES[:4]:  # warm-up: first requests build caches
            await turn(session, url, "warm-up", text)
        sequential = []
        sender = ""
        for i in range(messages):
            if i % 6 == 0:
                sender = f"seq-{uuid.uuid4().hex[:8]}"
            sequential.append(await turn(session, url, sender, MESSAGES[i % len(MESSAGES)]))
        nlu = [await parse(session, url, MESSAGES[i % len(MESSAGES)]) for i in range(messages)]

        async def client(index: int) -> list[float]:
            who = f"conc-{index}-{uuid.uuid4().hex[:6]}"
            return [
                await turn(session, url, who, MESSAGES[(index + j) % len(MESSAGES)])
                for j in range(per_client)
            ]

        began = time.perf_counter()
        results = await asyncio.gather(*(client(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - began
    concurrent = [x for r in results for x in r]
    return {
        "full_turn": summary(sequential),
        "nlu_only": summary(nlu),
        "concurrent": {
            "clients": concurrency,
            "turns": len(concurrent),
            "turns_per_s": round(len(concurrent) / elapsed, 1),
            **summary(concurrent),
        },
    }


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
    with_channels = name == "ours" and args.channel_turns > 0
    fake_port = free_port()
    fake_api = f"http://127.0.0.1:{fake_port}/cgi-bin/"
    extra_env = channels.server_env(fake_api) if with_channels else {}
    server = Server(model, name, extra_env)
    print(f"[{name}] starting the service on {model.name} ...", flush=True)
    server.start()
    try:
        print(f"[{name}] ready in {server.start_s} s; measuring ...", flush=True)
        figures = asyncio.run(measure(server.url, args.messages, args.concurrency, args.per_client))
        if with_channels:
            print(f"[{name}] per-channel reply latency ...", flush=True)
            figures["channels"] = asyncio.run(
                channels.run_channels(server.url, TOKEN, fake_port, MESSAGES, args.channel_turns)
            )
        figures["start_s"] = server.start_s
        figures["rasa_rss_mb"] = server.rss_mb()
        figures["model"] = model.name
        return figures
    finally:
        server.stop()


def table(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    clients = results[names[0]]["concurrent"]["clients"]
    rows = [
        ("full turn p50 ms", lambda r: r["full_turn"]["p50_ms"]),
        ("full turn p95 ms", lambda r: r["full_turn"]["p95_ms"]),
        ("full turn p99 ms", lambda r: r["full_turn"]["p99_ms"]),
        ("NLU only p50 ms", lambda r: r["nlu_only"]["p50_ms"]),
        ("NLU only p95 ms", lambda r: r["nlu_only"]["p95_ms"]),
        (f"{clients} clients turns/s", lambda r: r["concurrent"]["turns_per_s"]),
        (f"{clients} clients p95 ms", lambda r: r["concurrent"]["p95_ms"]),
        ("server start s", lambda r: r["start_s"]),
        ("Rasa server RSS MB", lambda r: r["rasa_rss_mb"]),
    ]
    head = "| figure | " + " | ".join(names) + (" | ours / stock |" if len(names) == 2 else " |")
    lines = [head, "|" + "---|" * (len(names) + 1 + (len(names) == 2))]
    for label, get in rows:
        values = [get(results[n]) for n in names]
        ratio = f" | {values[0] / values[1]:.2f}" if len(names) == 2 and values[1] else ""
        lines.append(f"| {label} | " + " | ".join(str(v) for v in values) + ratio + " |")
    return "\n".join(lines)


def channel_table(figures: dict[str, Any]) -> str:
    lines = [
        "Reply latency per channel, our service, same model and run "
        f"({figures['rest']['n']} turns each, conversations of "
        f"{channels.TURNS_PER_CONVERSATION}; message sent → last reply of the turn received):",
        "",
        "| channel | p50 ms | p95 ms | p99 ms | p50 / REST | p95 / REST |",
        "|---|---|---|---|---|---|",
    ]
    labels = {
        "rest": "REST (Rasa's channel)",
        "wechat": "WeChat webhook → 客服消息 API call",
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=20)
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

    from bot.training import latest_model

    ours = args.model or latest_model(ROOT / "models")
    if ours is None:
        raise SystemExit("no model: run `bot train` first")
    results = {"ours": run(ours, "ours", args)}
    if not args.no_stock:
        results["stock"] = run(stock_model(args.stock_epochs or None), "stock", args)
    text = table(results)
    if "channels" in results["ours"]:
        text += "\n\n" + channel_table(results["ours"]["channels"])
    print(text)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "messages": args.messages,
        "concurrency": args.concurrency,
        "per_client": args.per_client,
        "stock_epochs": args.stock_epochs or "as configured (100)",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latency.json").write_text(json.dumps({**meta, "results": results}, indent=1))
    (RESULTS / "latency.md").write_text(
        f"# Reply latency and throughput\n\n{meta['date']}, {meta['machine']}; "
        f"{args.messages} sequential messages, {args.concurrency} concurrent clients x "
        f"{args.per_client} messages; REST channel, embedded Redis + SQLite. Stock baseline: "
        f"bench/stock_config.yml trained with {meta['stock_epochs']} epochs (serving cost "
        f"does not depend on epochs).\n\n{text}\n"
    )


if __name__ == "__main__":
    main()
