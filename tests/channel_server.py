"""A channel's own blueprint on a real Sanic server in the test process.

For what the running service can't show quickly: seconds-long timers, other
settings, a dead Redis. Mounted where Rasa mounts it: /webhooks/<name>.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable

from rasa.core.channels.channel import InputChannel
from sanic import Sanic


@asynccontextmanager
async def serve_channel(
    channel: InputChannel, on_new_message: Callable[[Any], Awaitable[Any]], **ctx: Any
) -> AsyncIterator[str]:
    """Yields the server's base URL (http://127.0.0.1:<port>); `ctx` is set on
    app.ctx (e.g. agent=, what Rasa puts there)."""
    # As sanic-testing does: lets Sanic set up a second app in one process.
    Sanic.test_mode = True
    app = Sanic(f"{channel.name()}_test_{uuid.uuid4().hex[:12]}")
    for name, value in ctx.items():
        setattr(app.ctx, name, value)
    app.blueprint(channel.blueprint(on_new_message), url_prefix=f"/webhooks/{channel.name()}")
    # A socket of our own on a free port: Sanic takes port=0 for its default, 8000,
    # where two such servers (or two test sessions) would collide.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = await app.create_server(sock=sock, return_asyncio_server=True, access_log=False)
    assert server is not None
    await server.startup()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


class ThreadedChannel:
    """`serve_channel` on an event loop of its own in a background thread, for
    blocking callers (hypothesis' examples, urllib): `with ThreadedChannel(...)
    as base_url:`. `on_new_message` runs on the server's loop."""

    def __init__(
        self, channel: InputChannel, on_new_message: Callable[[Any], Awaitable[Any]],
        **ctx: Any,
    ) -> None:
        self.channel, self.on_new_message, self.ctx = channel, on_new_message, ctx
        self._ready = threading.Event()
        self._base = ""
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            async with serve_channel(self.channel, self.on_new_message, **self.ctx) as base:
                self._base = base
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(main())
        except BaseException as error:  # surfaced to the test by __enter__
            self._error = error
            self._ready.set()

    def __enter__(self) -> str:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError(f"the channel's server did not start: {self._error!r}")
        return self._base

    def __exit__(self, *_: Any) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
