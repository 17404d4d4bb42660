"""A channel's real Sanic server and the fuzzers' clients on one event loop in a
background thread, for hypothesis' examples (plain functions that block).

    with served(channel, bot) as (loop, url):
        loop.run(client_coroutine(url))

Also a stand-in bot that records every message it is handed, and a log watch
that fails a test for any error (or traceback) a channel, Sanic, socket.io or
asyncio logged while strangers' input was being refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Awaitable, Iterator

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from tests.channel_server import serve_channel

# Examples are network round trips: no deadline (a loaded 2-core machine), fixed
# draws so a red run is reproducible, nothing stored between runs.
# FUZZ_EXPLICIT=1: only the @example cases (the bugs found so far), in seconds.
FUZZ = settings(
    phases=[Phase.explicit] if os.environ.get("FUZZ_EXPLICIT") else list(Phase),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Awaitable[Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)


@dataclass
class Heard:
    """What reached the bot: (conversation id, text) of every message."""

    messages: list[tuple[str, str]] = field(default_factory=list)

    async def bot(self, message: Any) -> None:
        self.messages.append((message.sender_id, message.text))
        await message.output_channel.send_text_message(message.sender_id, "ok")


@contextmanager
def served(channel: Any, heard: Heard) -> Iterator[tuple[LoopThread, str]]:
    loop = LoopThread()
    server = serve_channel(channel, heard.bot)
    url = loop.run(server.__aenter__())
    try:
        yield loop, url
    finally:
        loop.run(server.__aexit__(None, None, None))
        loop.close()


class LogWatch(logging.Handler):
    """Records warnings and errors of any logger (every thread)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def troubles(self) -> list[str]:
        """Errors, and anything logged with a traceback."""
        return [
            f"{r.name}: {r.getMessage()[:300]}"
            for r in self.records
            if (r.levelno >= logging.ERROR or r.exc_info) and not _logged_once(r)
        ]


def _logged_once(record: logging.LogRecord) -> bool:
    """Lines that are not the channel's: engine.io's own refusals (an error the first
    time, then INFO: a limit of its own), and Sanic 21.12's WebSocket recv, which
    leaves its inner task pending when a client drops the connection mid-wait
    (asyncio's note when that task is collected; one line, no traceback)."""
    message = record.getMessage()
    return (
        record.name == "engineio.server" and "further occurrences of this error" in message
    ) or (record.name == "asyncio" and "WebsocketFrameAssembler.get" in message)


@contextmanager
def watched_logs() -> Iterator[LogWatch]:
    watch = LogWatch()
    root = logging.getLogger()
    root.addHandler(watch)
    try:
        yield watch
    finally:
        root.removeHandler(watch)


# --- strategies the app and web fuzz tests share ----------------------------------------

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=50)
)
# Any JSON value a client may send, a few levels deep.
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                  max_size=4),
    max_leaves=12,
)
# Text a stranger may type: any code point (control characters, lone surrogates)…
wild_text = st.text(st.characters(codec=None), max_size=60)
# …and some that are long.
long_text = st.integers(1990, 3000).map(lambda n: "长" * n)
