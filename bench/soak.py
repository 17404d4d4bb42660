#!/usr/bin/env python
"""Soak: many long conversations over two instances sharing PostgreSQL and Redis,
one instance restarted in the middle; lost, duplicated and out-of-order replies.

    bench/soak.py [--conversations 500] [--messages 20] [--concurrency 32] [--kill]

Starts two `bot run` instances (each its own var dir and ports) on one
PostgreSQL database (shop and tracker store: DATABASE_URL, TRACKER_DATABASE_URL)
and one database of the machine's Redis (lock store, event pipe, channel state:
REDIS_URL), both emptied first. Customers talk through the REST channel (its
token in an Authorization header, each customer's identity vouched for in the
metadata, as bench/latency.py does), half of them homed on each instance; each
sends its messages one after another, the next as soon as the reply arrived,
`--concurrency` customers at once. The conversations are bench/mix.py's,
strung together to `--messages` turns per customer (greetings, order questions
and forms, cancel, refund, address change, FAQ, an FAQ inside a form, thanks).

When half the turns are answered, the second instance is stopped as a service
manager stops it (SIGTERM to `bot run`, `--signal int` for Ctrl-C; `--kill`:
SIGKILL to every process of the instance at once, a crash) and started again.
A request that failed without an answer (refused, reset, 5xx, time-out) is sent
again to the other instance, as a load balancer would, with the same
`message_id` (the REST channel's retry key: a message whose turn is already
stored is answered from it, not run again) and the attempt number in the
message's metadata, so the trackers tell a retried message from a second answer.

Afterwards every conversation's tracker is read and checked:

- lost: a message the customer never got an answer to (every attempt failed,
  or an empty answer), or one without a user event or without a bot reply in
  the tracker;
- duplicated: a message id with more than one user event in the tracker (it
  was answered twice);
- out of order: the tracker's user events not in the order they were sent, or
  the answer a customer got is not the bot messages that follow that message's
  user event in the tracker (a reply that belongs to another message).

Also turns/s, reply time p50/p95/p99 (from the first attempt to the answer),
the restart (stop and start time, exit code), retries, turns that didn't go
as scripted (bench/mix.py's check), and the machine's CPU, to stdout and
bench/results/soak.json + soak.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import machine  # noqa: E402  (bench/machine.py)
import mix  # noqa: E402  (bench/mix.py)
from stats import free_port, summary  # noqa: E402  (bench/stats.py)

from tests.shop_customers import fresh_customer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BOT = str(Path(sys.executable).with_name("bot"))
ADMIN_TOKEN = "soak-admin-token"  # Rasa's HTTP API: readiness and trackers
REST_TOKEN = "soak-rest-token"
REST_HEADERS = {"Authorization": f"Bearer {REST_TOKEN}"}
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Tasks that change an order: a customer does each at most once (its one order
# in that state is used up), so the strung-together script stays on script.
ONCE = {"utter_ask_order_id_cancel", "utter_ask_order_id_refund", "utter_ask_order_id_address"}
# A turn waits at most this long for one attempt: longer than Rasa's 60 s
# conversation lock lifetime, which a crashed instance's turn holds until it lapses.
ATTEMPT_TIMEOUT_S = 150.0
GIVE_UP_S = 400.0  # a message still unanswered after this is lost


# --- the instances ---------------------------------------------------------------------


class Instance:
    """One `bot run` with its own var dir and ports on the shared stores; it can be
    stopped and started again on the same ports, as a restarted server would be."""

    def __init__(self, name: str, model: Path, shared: dict[str, str], base: Path) -> None:
        self.name = name
        self.model = model
        self.var = base / name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            k: v for k, v in os.environ.items()
            if k not in {"REDIS_URL", "DATABASE_URL", "TRACKER_DATABASE_URL", "BOT_API_TOKEN",
                         "BOT_REST_TOKEN", "BOT_ADMIN_API", "DEMO_LOGINS"}
            and not k.startswith(("WECHAT_", "WEB_", "APP_"))
        }
        self.env.update(
            BOT_VAR_DIR=str(self.var), BOT_RASA_PORT=str(self.port),
            BOT_ACTION_PORT=str(free_port()), BOT_DESK_PORT=str(free_port()),
            BOT_API_TOKEN=ADMIN_TOKEN, BOT_REST_TOKEN=REST_TOKEN, DEMO_LOGINS="0",
            BUSINESS_HOURS_FILE=str(ROOT / "tests" / "data" / "hours_always_open.yml"),
            RASA_TELEMETRY_ENABLED="false", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
            **shared,
        )
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> float:
        """Start and wait until /status names the model; seconds it took."""
        self.starts += 1
        self.var.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        self.process = subprocess.Popen(
            [BOT, "run", "--model", str(self.model)], cwd=ROOT, env=self.env,
            stdout=(self.var / f"bot-{self.starts}.out").open("w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while time.monotonic() - began < 600:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name}: bot run exited {self.process.returncode}; "
                                 f"see {self.var / f'bot-{self.starts}.out'}")
            request = urllib.request.Request(f"{self.url}/status", headers=ADMIN_HEADERS)
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    if json.loads(answer.read()).get("model_file"):
                        return time.monotonic() - began
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.name}: not ready after 600 s")

    def pids(self) -> list[int]:
        if not self.process or self.process.poll() is not None:
            return []
        try:
            root = psutil.Process(self.process.pid)
            return [root.pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.Error:
            return []

    def stop(self, how: str, timeout: float = 120) -> dict[str, Any]:
        """Stop the instance: "term"/"int" to `bot run` (graceful), "kill": SIGKILL to
        every process of it at once. How long until the last of them was gone."""
        assert self.process is not None
        pids = self.pids()
        began = time.monotonic()
        if how == "kill":
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        else:
            self.process.send_signal(signal.SIGTERM if how == "term" else signal.SIGINT)
        forced = False
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            forced = True
            for pid in self.pids():
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait()
        # The children too (graceful: the supervisor waits for them; kill: the kernel).
        gone, alive = psutil.wait_procs(
            [p for p in (self._proc(pid) for pid in pids) if p], timeout=30)
        return {
            "signal": {"term": "SIGTERM", "int": "SIGINT", "kill": "SIGKILL"}[how],
            "exit_code": self.process.returncode,
            "stop_s": round(time.monotonic() - began, 2),
            "processes": len(pids),
            "left_running": len(alive),
            "forced_after_s": timeout if forced else None,
        }

    @staticmethod
    def _proc(pid: int) -> psutil.Process | None:
        try:
            return psutil.Process(pid)
        except psutil.Error:
            return None

    def close(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                for pid in self.pids():
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


def reset_stores(args: argparse.Namespace) -> tuple[str, str]:
    """An empty PostgreSQL database and an empty Redis database of the soak's own."""
    import redis

    admin = f"{args.postgres}/postgres"
    name = args.database
    for sql in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
        subprocess.run(["psql", admin, "-q", "-c", sql], check=True)
    redis_url = f"{args.redis.rstrip('/')}/{args.redis_db}"
    redis.Redis.from_url(redis_url).flushdb()
    return f"{args.postgres}/{name}", redis_url


# --- customers -------------------------------------------------------------------------


def long_script(rng: random.Random, messages: int) -> tuple[str, list[mix.Turn], int]:
    """bench/mix.py's conversations of one language strung together to `messages`
    turns, each order-changing task at most once (the customer has one order per
    state); and how many turns the first of them has."""
    lang, turns = mix.conversation(rng)
    first = len(turns)
    used = {t.expect for t in turns if t.expect in ONCE}
    while len(turns) < messages:
        other, more = mix.conversation(rng)
        changes = {t.expect for t in more if t.expect in ONCE}
        if other != lang or changes & used:
            continue
        used |= changes
        turns += more
    return lang, turns[:messages], first


@dataclass
class Sent:
    """One message and what became of it."""

    mid: str
    text: str
    turn: mix.Turn
    began: float = 0.0
    ms: float | None = None  # first attempt → the answer
    answer: list[dict[str, Any]] | None = None
    answered_by: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    refused: str = ""  # a 4xx: not retried
    later: bool = False  # from a strung-on conversation, not the customer's first


@dataclass
class Customer:
    index: int
    sender: str
    lang: str
    home: int  # the instance a load balancer sends them to while it's up
    identity: dict[str, Any]
    messages: list[Sent]


def new_customers(shop_url: str, count: int, messages: int, seed: int) -> list[Customer]:
    rng = random.Random(seed)
    made = []
    for index in range(count):
        lang, turns, first = long_script(rng, messages)
        subject = f"soak-{uuid.uuid4().hex[:12]}"
        orders = fresh_customer(shop_url, "app", subject, lang)["orders"]
        identity = {"channel": "app", "subject": subject, "verified_by": "api_token",
                    "customer": True}
        sent = [Sent(f"{index:04d}-{i:02d}", t.filled(orders), t, later=i >= first)
                for i, t in enumerate(turns)]
        made.append(Customer(index, f"app:{subject}", lang, index % 2, identity, sent))
    return made


class Balancer:
    """What a load balancer does for the soak: the customer's home instance, the
    other one when a request to it failed without an answer."""

    def __init__(self, session: aiohttp.ClientSession, instances: list[Instance]) -> None:
        self.session = session
        self.instances = instances
        self.answered = 0
        self.answered_event = asyncio.Event()
        self.restart_after = 0

    async def send(self, customer: Customer, message: Sent) -> None:
        message.began = time.perf_counter()
        attempt = 0
        while True:
            target = self.instances[(customer.home + attempt) % 2]
            attempt += 1
            body = {"sender": customer.sender, "message": message.text,
                    "message_id": message.mid,
                    "metadata": {"identity": customer.identity,
                                 "soak": {"id": message.mid, "attempt": attempt}}}
            began = time.perf_counter()
            failure = ""
            try:
                async with self.session.post(
                    f"{target.url}/webhooks/rest/webhook", json=body, headers=REST_HEADERS,
                    timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT_S),
                ) as answer:
                    if answer.status == 200:
                        message.answer = await answer.json()
                        message.answered_by = target.name
                        message.ms = (time.perf_counter() - message.began) * 1000
                        message.attempts.append({"to": target.name, "result": "200"})
                        self.answered += 1
                        if self.answered >= self.restart_after:
                            self.answered_event.set()
                        return
                    failure = f"HTTP {answer.status}"
                    if answer.status < 500:
                        message.refused = f"{failure}: {(await answer.text())[:200]}"
                        message.attempts.append({"to": target.name, "result": failure})
                        return
            except asyncio.TimeoutError:
                failure = "time-out"
            except aiohttp.ClientError as error:
                failure = type(error).__name__
            message.attempts.append({
                "to": target.name, "result": failure,
                "ms": round((time.perf_counter() - began) * 1000, 1),
            })
            if time.perf_counter() - message.began > GIVE_UP_S:
                return
            # The other instance at once; after both failed, a short pause.
            await asyncio.sleep(0.0 if attempt % 2 else 0.5)

    async def play(self, customer: Customer) -> None:
        for message in customer.messages:
            await self.send(customer, message)
            if message.answer is None:
                return  # lost: a customer whose message wasn't answered gives up


# --- the check -------------------------------------------------------------------------


def texts(messages: list[dict[str, Any]]) -> list[str]:
    """What a customer sees of the bot's messages, comparable between the REST
    answer and the tracker's bot events."""
    return [m.get("text") or "" for m in messages]


def check_conversation(customer: Customer, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Each sent message against the tracker: lost, duplicated, out of order."""
    turns: list[dict[str, Any]] = []  # one per user event carrying a soak id
    stray_user_events = 0
    rewound = False
    for event in events:
        if event.get("event") == "rewind":
            # The policy re-routes a message: its user event is taken back and the
            # same one logged again (one turn, not a second answer).
            rewound = bool(turns)
        elif event.get("event") == "user":
            soak = (event.get("metadata") or {}).get("soak")
            again = rewound and soak and (soak["id"], soak["attempt"]) == (
                turns[-1]["id"], turns[-1]["attempt"])
            rewound = False
            if again:
                continue
            if soak:
                turns.append({"id": soak["id"], "attempt": soak["attempt"], "bot": []})
            else:
                stray_user_events += 1
        elif event.get("event") == "bot" and turns:
            turns[-1]["bot"].append({"text": event.get("text"),
                                     "utter_action": (event.get("metadata") or {})
                                     .get("utter_action") or "?"})
    by_id: dict[str, list[dict[str, Any]]] = {}
    for turn in turns:
        by_id.setdefault(turn["id"], []).append(turn)

    lost, duplicated, out_of_order, off_script = [], [], [], []
    retried_first_in_tracker = 0
    for message in customer.messages:
        seen = by_id.get(message.mid, [])
        if message.answer is None or not message.answer:
            why = message.refused or ("empty answer" if message.answer == [] else "no answer: "
                                      + ", ".join(a["result"] for a in message.attempts))
            if message.answer is None and not message.attempts:
                continue  # never sent: an earlier message of the customer was lost
            lost.append({"id": message.mid, "why": why, "tracker_user_events": len(seen)})
            continue
        if not seen or not any(t["bot"] for t in seen):
            lost.append({"id": message.mid, "why": "answered, but no user event with a bot "
                         "reply in the tracker", "tracker_user_events": len(seen)})
            continue
        if len(seen) > 1:
            duplicated.append({"id": message.mid, "user_events": len(seen),
                               "attempts": [t["attempt"] for t in seen],
                               "answered_by": message.answered_by})
        if len(message.attempts) > 1 and any(t["attempt"] < len(message.attempts) for t in seen):
            retried_first_in_tracker += 1
        # A retry whose first attempt's turn was stored is answered from that turn.
        answered_turn = next((t for t in seen if t["attempt"] == len(message.attempts)),
                             seen[0] if len(seen) == 1 else None)
        if answered_turn is None or texts(answered_turn["bot"]) != texts(message.answer):
            out_of_order.append({
                "id": message.mid, "why": "the answer is not the bot messages after this "
                "message's user event", "answer": texts(message.answer)[:3],
                "tracker": [texts(t["bot"])[:3] for t in seen]})
        said = [b["utter_action"] for t in seen[:1] for b in t["bot"]]
        if not mix.as_scripted(message.turn.expect, said):
            off_script.append(f"{'later' if message.later else 'first'} conversation, "
                              f"{message.turn.kind}: {message.text!r} → {said} "
                              f"(expected {message.turn.expect})")
    # The order of the user events: each first occurrence after the previous one.
    firsts: list[str] = []
    for turn in turns:
        if turn["id"] not in firsts:
            firsts.append(turn["id"])
    for position, mid in enumerate(firsts):
        if mid != sorted(firsts)[position]:
            out_of_order.append({"id": mid, "why": "user event out of the order sent",
                                 "position": position})
    return {"lost": lost, "duplicated": duplicated, "out_of_order": out_of_order,
            "off_script": off_script, "stray_user_events": stray_user_events,
            "retried_first_in_tracker": retried_first_in_tracker}


async def fetch_tracker(session: aiohttp.ClientSession, url: str, sender: str) -> list[dict]:
    quoted = urllib.parse.quote(sender, safe="")
    async with session.get(f"{url}/conversations/{quoted}/tracker", headers=ADMIN_HEADERS,
                           timeout=aiohttp.ClientTimeout(total=120)) as answer:
        answer.raise_for_status()
        return (await answer.json())["events"]


# --- the machine -----------------------------------------------------------------------


class OurCPU:
    """CPU time of the instances' processes, sampled each second, so a process that
    ended (the stopped instance's) still counts as ours."""

    def __init__(self, instances: list[Instance]) -> None:
        self.instances = instances
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.task: asyncio.Task[None] | None = None

    def sample(self, initial: bool = False) -> None:
        for instance in self.instances:
            for pid in instance.pids():
                try:
                    t = psutil.Process(pid).cpu_times()
                except psutil.Error:
                    continue
                spent = t.user + t.system
                self.first.setdefault(pid, spent if initial else 0.0)
                self.last[pid] = spent

    async def _loop(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(1.0)

    def start(self) -> None:
        self.sample(initial=True)
        self.task = asyncio.create_task(self._loop())

    def stop(self) -> float:
        """CPU seconds the instances spent since start()."""
        if self.task:
            self.task.cancel()
        self.sample()
        return sum(self.last[p] - self.first[p] for p in self.last)


# --- the run ---------------------------------------------------------------------------


async def soak(args: argparse.Namespace, instances: list[Instance],
               customers: list[Customer]) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        balancer = Balancer(session, instances)
        # Warm-up on each instance (not counted): first turns build caches.
        for instance in instances:
            for text in ("你好", "hello", "运费怎么算"):
                async with session.post(
                    f"{instance.url}/webhooks/rest/webhook", headers=REST_HEADERS,
                    json={"sender": f"soak-warmup-{instance.name}", "message": text},
                ) as answer:
                    answer.raise_for_status()
        total = sum(len(c.messages) for c in customers)
        balancer.restart_after = int(total * args.restart_at)
        restart: dict[str, Any] = {}
        stopped = instances[1]

        async def restarter() -> None:
            await balancer.answered_event.wait()
            restart["at_answered_turns"] = balancer.answered
            restart["at_s"] = round(time.perf_counter() - began, 1)
            print(f"restarting {stopped.name} ({args.how}) after {balancer.answered} turns ...",
                  flush=True)
            t0 = time.perf_counter()
            restart.update(await asyncio.to_thread(stopped.stop, args.how))
            restart["start_s"] = round(await asyncio.to_thread(stopped.start), 2)
            restart["down_s"] = round(time.perf_counter() - t0, 2)
            restart["back_at_answered_turns"] = balancer.answered
            print(f"{stopped.name} back after {restart['down_s']} s", flush=True)

        queue: asyncio.Queue[Customer] = asyncio.Queue()
        for customer in customers:
            queue.put_nowait(customer)

        async def worker() -> None:
            while not queue.empty():
                await balancer.play(queue.get_nowait())

        async def progress() -> None:
            while True:
                await asyncio.sleep(30)
                print(f"  {balancer.answered}/{total} turns, "
                      f"{balancer.answered / (time.perf_counter() - began):.1f}/s", flush=True)

        ours = OurCPU(instances)
        cpu = machine.MachineCPU(None)
        # Heavy "other" processes: not the instances' (the stopped one's included).
        cpu._ours = lambda: {os.getpid(), *ours.last}  # type: ignore[method-assign]
        ours.start()
        cpu.start()
        generator_began = time.process_time()
        began = time.perf_counter()
        restart_task = asyncio.create_task(restarter())
        progress_task = asyncio.create_task(progress())
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - began
        progress_task.cancel()
        if balancer.answered_event.is_set():
            await restart_task  # b may still be starting: the trackers are read after
        else:
            restart_task.cancel()  # (fewer turns answered than the restart point)
        used = cpu.stop()
        spent = ours.stop() + time.process_time() - generator_began
        ours_pct = round(100 * spent / max(elapsed, 1e-6), 1)
        used.update(ours_cpu_pct=ours_pct,
                    others_cpu_pct=round(max(0.0, used["busy_cpu_pct"] - ours_pct), 1))

        print("checking the trackers ...", flush=True)
        checks = []
        for customer in customers:
            events = await fetch_tracker(session, instances[0].url, customer.sender)
            checks.append(check_conversation(customer, events))
    return figures(args, customers, checks, elapsed, restart, used, began)


def figures(args: argparse.Namespace, customers: list[Customer], checks: list[dict[str, Any]],
            elapsed: float, restart: dict[str, Any], used: dict[str, Any],
            began: float) -> dict[str, Any]:
    messages = [m for c in customers for m in c.messages]
    answered = [m for m in messages if m.answer is not None]
    times = [m.ms for m in answered if m.ms is not None]
    retried = [m for m in answered if len(m.attempts) > 1]

    def gather(key: str) -> list[Any]:
        return [dict(item, sender=c.sender) if isinstance(item, dict) else item
                for c, check in zip(customers, checks, strict=True) for item in check[key]]

    lost, duplicated = gather("lost"), gather("duplicated")
    out_of_order, off_script = gather("out_of_order"), gather("off_script")
    # Reply times of turns during the restart (from the stop to the instance back).
    window = [m.ms for m in answered if m.ms is not None and restart.get("at_s") is not None
              and restart["at_s"] <= m.began - began <= restart["at_s"] + restart.get("down_s", 0)]
    failures: dict[str, int] = {}
    for m in messages:
        for a in m.attempts:
            if a["result"] != "200":
                failures[a["result"]] = failures.get(a["result"], 0) + 1
    return {
        "conversations": len(customers),
        "messages_per_conversation": args.messages,
        "concurrency": args.concurrency,
        "messages": len(messages),
        "answered": len(answered),
        "never_sent": sum(1 for m in messages if m.answer is None and not m.attempts),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "out_of_order": len(out_of_order),
        "seconds": round(elapsed, 1),
        "turns_per_s": round(len(answered) / elapsed, 1),
        **summary(times),
        "during_restart": summary(window),
        "answered_by": {name: sum(1 for m in answered if m.answered_by == name)
                        for name in ("a", "b")},
        "retried_messages": len(retried),
        "retried_first_attempt_in_tracker": sum(c["retried_first_in_tracker"] for c in checks),
        "failed_attempts": failures,
        "stray_user_events": sum(c["stray_user_events"] for c in checks),
        "off_script": len(off_script),
        "off_script_first_conversation": sum(1 for o in off_script if o.startswith("first")),
        "turns_first_conversation": sum(1 for m in messages if not m.later),
        "restart": restart,
        "machine": used,
        "examples": {"lost": lost[:20], "duplicated": duplicated[:20],
                     "out_of_order": out_of_order[:20], "off_script": off_script[:12]},
    }


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "bot", "connectors",
                            "actions", "config.yml", "domain.yml", "data", "endpoints.yml",
                            "credentials.yml"], cwd=ROOT, capture_output=True, text=True)
    # `bot run` serves the working tree: name what differs from the commit.
    files = [line[3:] for line in dirty.stdout.split("\n") if line.strip()]
    return out + (f" with uncommitted service files: {', '.join(files)}" if files else "")


def report(meta: dict[str, Any], f: dict[str, Any]) -> str:
    r, m = f["restart"], f["machine"]

    def met(value: int) -> str:
        return "met" if value == 0 else "**missed**"

    restart_line = (
        f"{r['signal']} to instance b after {r['at_answered_turns']} answered turns "
        f"({r['at_s']} s into the run): all its {r['processes']} processes gone after "
        f"{r['stop_s']} s (exit code {r['exit_code']}"
        + (f", forced with SIGKILL after {r['forced_after_s']} s" if r.get("forced_after_s")
           else "") + f"), ready again {r['start_s']} s after it was started; down "
        f"{r['down_s']} s in all" if r.get("down_s") is not None else "no restart happened"
    )
    lines = [
        "# Soak: two instances, one restarted in the middle",
        "",
        f"{meta['date']}, run {meta['run_id']}, {meta['machine']}, commit {meta['commit']}, "
        f"model `{meta['model']}`.",
        "",
        f"{f['conversations']} conversations × {f['messages_per_conversation']} messages "
        f"through the REST channel, {f['concurrency']} customers at once, each message sent "
        "when the previous reply arrived; bench/mix.py's conversations strung together "
        f"(seed {meta['seed']}). Two `bot run` instances (a, b) on one PostgreSQL database "
        "(shop and tracker store) and one database of the machine's Redis (lock store, event "
        "pipe), both emptied first; half the customers homed on each. A request that failed "
        "without an answer went to the other instance (same `message_id`, the REST "
        "channel's retry key, and the next attempt number in the metadata).",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| messages sent / answered | {f['messages']} / {f['answered']} | – |",
        f"| lost replies | {f['lost']} | 0 ({met(f['lost'])}) |",
        f"| duplicated replies | {f['duplicated']} | 0 ({met(f['duplicated'])}) |",
        f"| out-of-order replies | {f['out_of_order']} | 0 ({met(f['out_of_order'])}) |",
        f"| turns/s | {f['turns_per_s']} ({f['seconds']} s) | – |",
        f"| reply p50 / p95 / p99 / max, ms | {f.get('p50_ms')} / {f.get('p95_ms')} / "
        f"{f.get('p99_ms')} / {f.get('max_ms')} | – |",
        f"| … of messages sent while b was down or starting | "
        f"{f['during_restart'].get('p50_ms')} / {f['during_restart'].get('p95_ms')} / "
        f"{f['during_restart'].get('p99_ms')} / {f['during_restart'].get('max_ms')} "
        f"(n {f['during_restart']['n']}) | – |",
        f"| restart of b | {restart_line} | – |",
        f"| answered by a / b | {f['answered_by']['a']} / {f['answered_by']['b']} | – |",
        f"| messages retried on the other instance | {f['retried_messages']} (failed "
        f"attempts: {', '.join(f'{k} {v}' for k, v in f['failed_attempts'].items()) or 'none'})"
        " | – |",
        f"| … whose failed attempt had reached the tracker (answered from it, not run "
        f"again) | {f['retried_first_attempt_in_tracker']} | – |",
        f"| turns not as scripted (bench/mix.py's check) | {f['off_script']}: "
        f"{f['off_script_first_conversation']} of the {f['turns_first_conversation']} turns of "
        f"each customer's first conversation, "
        f"{f['off_script'] - f['off_script_first_conversation']} of the "
        f"{f['messages'] - f['turns_first_conversation']} of the strung-on ones | – |",
        "",
        "How each is counted, from every conversation's tracker after the run: **lost** — "
        "no answer after every attempt, an empty answer, or no user event with a bot reply "
        "in the tracker; **duplicated** — more than one user event with the message's id "
        "(answered twice); **out of order** — user events not in the order sent, or the "
        "answer the customer got differs from the bot messages following that message's "
        "user event.",
        "",
        "Turns not as scripted are not faults of the soak's kind: bench/mix.py's expected "
        "responses are written for a fresh conversation, and in a strung-on one the bot "
        "still has the earlier conversation's order and form (an address change is "
        "refused for the order in transit asked about before, an order number goes to the "
        "refund asked for earlier). Its first conversation is each customer's control.",
        "",
        f"The machine: busy {m['busy_cpu_pct']} % of one core (200 = both), the two "
        f"instances and the load generator {m['ours_cpu_pct']} %, other processes "
        f"{m['others_cpu_pct']} % (load average {m['loadavg_1m']})"
        + ("; heavy other processes: " + "; ".join(
            f"{h['cpu_pct']} %: `{h['process'][:70]}`" for h in m["heavy_others"])
           if m["heavy_others"] else "") + ".",
        "",
    ]
    for key, label in (("lost", "Lost"), ("duplicated", "Duplicated"),
                       ("out_of_order", "Out of order"), ("off_script", "Not as scripted")):
        examples = f["examples"][key]
        if examples:
            lines += [f"{label} (first {len(examples)}):", ""]
            lines += [f"- {json.dumps(e, ensure_ascii=False) if isinstance(e, dict) else e}"
                      for e in examples] + [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=500)
    parser.add_argument("--messages", type=int, default=20, help="messages per conversation")
    parser.add_argument("--concurrency", type=int, default=32, help="customers at once")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--restart-at", type=float, default=0.5,
                        help="restart instance b when this share of the turns is answered")
    parser.add_argument("--signal", choices=("term", "int"), default="term",
                        help="how b is stopped gracefully (SIGTERM or Ctrl-C's SIGINT)")
    parser.add_argument("--kill", action="store_true",
                        help="kill -9 every process of b at once instead (a crash)")
    parser.add_argument("--model", type=Path, help="the model (default: the latest)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL server (no database name)")
    parser.add_argument("--database", default="soak",
                        help="the soak's database on it (dropped and created)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379",
                        help="Redis server (no database number)")
    parser.add_argument("--redis-db", type=int, default=9,
                        help="the soak's Redis database (flushed)")
    parser.add_argument("--out", default="soak", help="results file name (without suffix)")
    args = parser.parse_args()
    args.how = "kill" if args.kill else args.signal

    from bot.training import latest_model

    model = args.model or latest_model(ROOT / "models")
    if model is None:
        raise SystemExit("no model: run `bot train` first")
    started = datetime.datetime.now(datetime.timezone.utc)
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "run_id": f"{started:%Y-%m-%dT%H:%M}Z-{uuid.uuid4().hex[:6]}",
        "commit": git_commit(),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "model": model.name,
        "seed": args.seed,
        "stop": args.how,
    }
    database_url, redis_url = reset_stores(args)
    shared = {"DATABASE_URL": database_url, "TRACKER_DATABASE_URL": database_url,
              "REDIS_URL": redis_url}
    base = Path(tempfile.mkdtemp(prefix="soak-"))
    instances = [Instance(name, model, shared, base) for name in ("a", "b")]
    try:
        for instance in instances:  # one after the other: the first prepares the database
            print(f"starting instance {instance.name} ...", flush=True)
            print(f"  ready in {instance.start():.1f} s", flush=True)
        print(f"making {args.conversations} shop customers ...", flush=True)
        customers = new_customers(database_url, args.conversations, args.messages, args.seed)
        print(f"{args.conversations} conversations × {args.messages} messages, "
              f"{args.concurrency} at once ...", flush=True)
        result = asyncio.run(soak(args, instances, customers))
    finally:
        for instance in instances:
            instance.close()
    text = report(meta, result)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(
        json.dumps({**meta, "results": result}, indent=1, ensure_ascii=False))
    (RESULTS / f"{args.out}.md").write_text(text)
    if not (result["lost"] or result["duplicated"] or result["out_of_order"]):
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"logs kept in {base}", flush=True)


if __name__ == "__main__":
    main()
