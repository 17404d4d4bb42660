"""A stopping Rasa server drains: turns under way are answered, no new turn starts
on a kept-alive connection, and the server exits promptly (connectors.draining).

Before: on SIGTERM Sanic kept serving new requests on open keep-alive
connections (a load balancer's), so under load it never drained; `bot run`
killed it after 10 s in the middle of turns (bench/soak.py: replies lost, and
messages answered twice when the balancer sent them again elsewhere).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from tests.conftest import ROOT, free_port
from tests.draining_server import TOKEN

CUSTOMERS = 6


async def _until_up(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert process.poll() is None, "the server exited while starting"
            try:
                async with session.get(f"{url}/webhooks/rest/") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("the server did not start")


async def _customers_while_stopping(url: str, process: subprocess.Popen) -> dict:
    """Customers on kept-alive connections, each sending its next message as soon as
    the previous was answered (a balancer's pooled connections), until the server
    is gone; SIGTERM after a second of that."""
    answered: set[str] = set()
    unanswered: list[tuple[str, str]] = []  # sent, and the connection failed under it
    closing_answers = 0
    gone = asyncio.Event()
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def customer(session: aiohttp.ClientSession, index: int) -> None:
        nonlocal closing_answers
        n = 0
        while not gone.is_set():
            n += 1
            mid = f"c{index}-m{n}"
            try:
                async with session.post(f"{url}/webhooks/rest/webhook", headers=headers,
                                        json={"sender": f"c{index}", "message": mid}) as answer:
                    assert answer.status == 200, await answer.text()
                    assert await answer.json() == [{"recipient_id": f"c{index}",
                                                    "text": f"ok {mid}"}]
                    answered.add(mid)
                    closing_answers += answer.headers.get("Connection") == "close"
            except aiohttp.ClientConnectorError:
                return  # the port is closed: a balancer sends it elsewhere (nothing happened)
            except aiohttp.ClientError as error:
                unanswered.append((mid, type(error).__name__))
                return

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.create_task(customer(session, i)) for i in range(CUSTOMERS)]
        await asyncio.sleep(1.0)
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        while process.poll() is None and time.monotonic() - stopped_at < 30:
            await asyncio.sleep(0.05)
        exit_s = time.monotonic() - stopped_at
        gone.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    return {"answered": answered, "unanswered": unanswered, "exit_s": exit_s,
            "closing_answers": closing_answers}


def test_a_stopping_server_answers_what_it_started_and_takes_nothing_new(
    tmp_path: Path,
) -> None:
    port, handled = free_port(), tmp_path / "handled.txt"
    handled.touch()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.draining_server", str(port), str(handled)], cwd=ROOT,
        stdout=(tmp_path / "server.out").open("w"), stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        asyncio.run(_until_up(url, process))
        result = asyncio.run(_customers_while_stopping(url, process))
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    log = (tmp_path / "server.out").read_text()[-3000:]
    started = set(handled.read_text().split())
    assert len(result["answered"]) > CUSTOMERS * 2, log  # the load really ran
    # Every turn the server started was answered: no reply lost, nothing a balancer
    # would send again to another instance and have answered twice.
    assert not result["unanswered"], (result["unanswered"], log)
    assert started == result["answered"], (started - result["answered"], log)
    # Each kept-alive connection carried at most the turn it was in, then closed.
    assert 1 <= result["closing_answers"] <= CUSTOMERS
    # Drained at once, not after Sanic's 15 s grace (nor `bot run`'s 10 s kill).
    assert result["exit_s"] < 5, result["exit_s"]
    assert process.returncode == 0, log
