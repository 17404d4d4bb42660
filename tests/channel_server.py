"""A channel's own blueprint on a real Sanic server in the test process.

For what the running service can't show quickly: seconds-long timers, other
settings, a dead Redis. Mounted where Rasa mounts it: /webhooks/<name>.
"""

from __future__ import annotations

import socket
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable

from rasa.core.channels.channel import InputChannel
from sanic import Sanic


@asynccontextmanager
async def serve_channel(
    channel: InputChannel, on_new_message: Callable[[Any], Awaitable[Any]]
) -> AsyncIterator[str]:
    """Yields the server's base URL (http://127.0.0.1:<port>)."""
    # As sanic-testing does: lets Sanic set up a second app in one process.
    Sanic.test_mode = True
    app = Sanic(f"{channel.name()}_test_{uuid.uuid4().hex[:12]}")
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
