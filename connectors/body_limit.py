"""Cap a channel's request bodies before Sanic reads them.

Sanic reads a whole body into memory before a (non-streaming) handler or any
middleware runs, up to the app's REQUEST_MAX_SIZE (`bot run` sets it from
BOT_MAX_REQUEST_BYTES; Sanic's own default is 100 MB). A channel whose bodies
are smaller caps its routes lower: the cap is set on the request's stream right
after routing, before the first byte of the body is read, so a body announced
larger (Content-Length) is a 413 at once and a chunked one is a 413 as soon as
it grows past the cap. Either way the connection is closed and nothing reaches
the handler.

    blueprint = Blueprint(...)
    cap_bodies(blueprint, 64 * 1024)                       # the blueprint's routes
    cap_bodies(blueprint, 64 * 1024, path_prefix="/socket.io")  # a route of the app's

Streaming routes (`stream=True`) are not affected: Sanic lifts the limit for
them and the handler sets its own (see the WeChat channel).
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint
from sanic.request import Request


def cap_bodies(blueprint: Blueprint, max_bytes: int, path_prefix: str | None = None) -> None:
    """Every route of `blueprint` refuses bodies larger than `max_bytes` with 413;
    with `path_prefix`, every request whose path starts with it instead (for
    routes added to the app itself, like socket.io's)."""
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")

    def applies(request: Request, route: Any) -> bool:
        if path_prefix is not None:
            return request.path.startswith(path_prefix)
        # Blueprint route names are "<app>.<blueprint>.<handler>".
        return getattr(route, "name", "").split(".")[1:2] == [blueprint.name]

    # A blueprint's signal handler runs for every request of the app, hence `applies`.
    @blueprint.signal("http.routing.after")
    async def cap(request: Request, route: Any, **_: Any) -> None:
        stream = request.stream
        if stream is not None and applies(request, route):
            stream.request_max_size = min(stream.request_max_size, max_bytes)
