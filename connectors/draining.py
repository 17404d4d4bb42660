"""Let a stopping Rasa server drain: every answer after the stop began closes
its connection.

On SIGTERM or Ctrl-C Sanic (21.12, Rasa 3.6's) stops accepting connections but
keeps serving requests on the ones already open until they go idle, for up to
GRACEFUL_SHUTDOWN_TIMEOUT (15 s). A load balancer or a reverse proxy with
kept-alive upstream connections (nginx `keepalive`, aiohttp, any HTTP/1.1
client) never lets them go idle under load, so the server keeps starting new
turns until `bot run` kills it after its stop timeout (10 s), in the middle of
turns: replies lost, and a turn already stored but not answered is answered a
second time when the balancer sends the message again elsewhere (measured by
bench/soak.py). With `Connection: close` on every answer from the moment the
stop began, each connection carries at most the turn it is in, the server
exits when those are answered, and the balancer's next request finds the port
closed and goes to another instance before anything was done with it.
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint
from sanic.request import Request


def check_stopping(request: Request) -> bool:
    """Whether the server this request reached has been told to stop."""
    return bool(getattr(request.app, "is_stopping", False))


def do_close_when_stopping(blueprint: Blueprint) -> None:
    """Every answer of the app (not only the blueprint's) closes its connection
    once the server is stopping; a blueprint's signal handler sees every request."""

    @blueprint.signal("http.lifecycle.response")
    async def close_connection(request: Request, response: Any, **_: Any) -> None:
        # Before the response's head is written: Sanic then sends `connection: close`
        # and ends the connection after this answer instead of waiting for another.
        if check_stopping(request) and request.stream is not None:
            request.stream.keep_alive = False
