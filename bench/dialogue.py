#!/usr/bin/env python
"""Silent and wrong-language turns over a seeded random conversation set, beside stock Rasa.

    bench/dialogue.py [--conversations 400] [--seed 7] [--stock-epochs 20] [--no-stock]

Plays the same seeded random customers (tests/conversations.py: training
examples of every intent in both languages, order numbers, wrong numbers,
emoji, typed payloads, button clicks and numbers picking them, long text,
gibberish, two requests in one message, language switches) against each
model in process (Rasa's `Agent`, in-memory stores, our action server), every
conversation played to its end, and counts the turns that broke the dialogue's
invariant, by kind:

- silent: the bot said nothing;
- language: a bot message in another language than the customer's message
  (than the conversation's, for messages without words);
- template / error_text / empty_message: an unfilled "{slot}" or "None", a
  stack trace or response name, an empty bot message;
- asks: a form asked the same question a third time in a row.

Models: ours (the latest under models/, as `bot train` leaves it) and stock:
the same data and domain trained with Rasa's default pipeline and policies
(bench/stock_config.yml, as bench/latency.py uses; cached under models/bench/)
with 20 epochs for DIET, ResponseSelector, TED and UnexpecTED by default: the
configured 100 take over an hour on 2 cores (`--stock-epochs 0` keeps them).
Target for ours: 0 silent and 0 wrong-language turns.

Figures go to stdout and bench/results/dialogue.json + dialogue.md (`--out`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

RESULTS = ROOT / "bench" / "results"
KINDS = ["silent", "language", "template", "error_text", "empty_message", "asks"]
TARGET_ZERO = {"silent", "language"}


def shares(tally: Dict[str, int]) -> Dict[str, Any]:
    """Per kind of violation: turns that had one, and their share of all turns."""
    turns = tally.get("turns", 0)
    figures: Dict[str, Any] = {"turns": turns}
    for kind in KINDS:
        count = tally.get(kind, 0)
        figures[kind] = {"turns": count, "share": round(count / turns, 4) if turns else 0.0}
    return figures


def table(results: Dict[str, Dict[str, Any]]) -> str:
    names = list(results)
    lines = [
        "| turns with … | " + " | ".join(names) + " | target (ours) |",
        "|---|" + "---|" * len(names) + "---|",
    ]
    for kind in KINDS:
        cells = [
            f"{results[n][kind]['turns']} ({results[n][kind]['share']:.1%})" for n in names
        ]
        target = "0" if kind in TARGET_ZERO else "–"
        lines.append(f"| {kind} | " + " | ".join(cells) + f" | {target} |")
    lines.append("| turns played | " + " | ".join(str(results[n]["turns"]) for n in names) + " | |")
    lines.append(
        "| seconds | " + " | ".join(str(results[n]["seconds"]) for n in names) + " | |"
    )
    return "\n".join(lines)


def start_action_server() -> tuple[subprocess.Popen, str]:
    """Our action server as `bot run` starts it, on a free port."""
    import socket

    from bot.cli import action_server_spec
    from bot.settings import get_settings

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    from bot.shop import database, demo
    from tests.conversations import bind_fuzz_customers

    work = Path(tempfile.mkdtemp(prefix="bench-dialogue-"))
    # A shop database of its own with the demo data (logged-in customers' look-ups).
    shop_url = f"sqlite:///{work / 'shop.db'}"
    database.upgrade(shop_url)
    with database.session(shop_url) as session:
        demo.seed(session)
    bind_fuzz_customers(shop_url)
    settings = dataclasses.replace(get_settings(), action_port=port)
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "DATABASE_URL": shop_url}
    spec = action_server_spec(settings, env)
    log = work / "actions.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            spec.argv, cwd=ROOT, env={**env, **spec.env}, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while spec.ready is not None and not spec.ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"action server did not start; see {log}")
        time.sleep(0.5)
    return process, f"http://127.0.0.1:{port}/webhook"


def measure(model: Path, actions_url: str, seed: int, conversations: int) -> Dict[str, Any]:
    from rasa.core.agent import Agent
    from rasa.utils.endpoints import EndpointConfig

    from tests.conversations import survey

    agent = Agent.load(str(model), action_endpoint=EndpointConfig(actions_url))
    started = time.monotonic()
    tally = asyncio.run(survey(agent, seed, conversations))
    figures = shares(tally)
    figures["seconds"] = round(time.monotonic() - started, 1)
    figures["model"] = model.name
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-stock", action="store_true", help="skip the stock baseline")
    parser.add_argument(
        "--stock-epochs", type=int, default=20,
        help="epochs for the stock baseline (0: as configured, 100); dialogue quality "
        "depends on them, unlike latency",
    )
    parser.add_argument("--model", type=Path, help="our model (default: the latest)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the figures go")
    args = parser.parse_args()

    import logging

    import structlog

    # Rasa's per-turn debug records would dominate the run time.
    logging.getLogger("rasa").setLevel(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from latency import stock_model  # bench/latency.py: the same cached stock model

    from bot.training import latest_model

    ours = args.model or latest_model(ROOT / "models")
    if ours is None:
        raise SystemExit("no model: run `bot train` first")
    models = {"ours": ours}
    if not args.no_stock:
        models["stock"] = stock_model(args.stock_epochs or None)
    process, actions_url = start_action_server()
    try:
        results = {}
        for name, model in models.items():
            print(f"{name}: {args.conversations} conversations with {model.name} ...", flush=True)
            results[name] = measure(model, actions_url, args.seed, args.conversations)
    finally:
        process.terminate()
        process.wait(timeout=30)
    text = table(results)
    print(text)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "commit": commit,
        "seed": args.seed,
        "conversations": args.conversations,
        "stock_epochs": args.stock_epochs or "as configured (100)",
        "command": "bench/dialogue.py " + " ".join(sys.argv[1:]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dialogue.json").write_text(json.dumps({**meta, "results": results}, indent=1))
    columns = "; ".join(f"{name}: {figures['model']}" for name, figures in results.items())
    (args.out / "dialogue.md").write_text(
        "# Dialogue: silent and wrong-language turns\n\n"
        + (f"**Runs: ours and stock from the same run** ({meta['date'][:16]}, commit "
           f"{commit}). **The stock baseline is weakened**: bench/stock_config.yml trained "
           f"{meta['stock_epochs']} epochs instead of the default 100 (its answers, not its "
           "cost, depend on it).\n\n" if "stock" in results and args.stock_epochs else "")
        + f"{meta['date']}, {meta['machine']}, commit {commit}; command `{meta['command']}`. "
        f"Seed {args.seed}, {args.conversations} random conversations (1–12 turns each, "
        "tests/conversations.py), both models in the same run, in process with the same "
        f"action server. Models: {columns}. Stock: bench/stock_config.yml (Rasa's default "
        f"pipeline and policies) trained on the same data and domain, epochs "
        f"{meta['stock_epochs']}. A turn counts once per kind however many of its bot "
        f"messages broke the rule.\n\n{text}\n"
    )


if __name__ == "__main__":
    main()
