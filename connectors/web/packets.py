"""socket.io packets from strangers, narrowed to what the widget's protocol needs.

python-socketio hands a client's packets on with few questions asked: a packet
it can't decode (bad JSON, nesting deep enough to overflow the parser, an
unknown type, a stray binary attachment) raised inside engine.io, which logged
a traceback for each one, unlimited; an event named "connect" ran the connect
handler again with the client's own data as its environ (resetting the
socket's session and the address its limits count); an event with extra
arguments or a list for a name failed in a background task.

Below socket.io, engine.io failed the same way on frames and polling bodies
that are no engine.io packets (a traceback each; on a WebSocket, Sanic's too).

`CheckedServer` refuses all of these: a packet that is not a socket.io event
of this protocol (or for a namespace the socket did not join) gets `error`
{code: "bad_packet"} (when the socket is connected) and the socket is closed;
an event with more than one argument gets `error` {code: "bad_request"}. A
WebSocket frame that is no engine.io packet, or larger than MAX_PACKET_BYTES,
closes the socket (the latter unread: 1009); a polling body that is none is a
400 (`check_polling_body`). `guarded` keeps a handler's own failure from going
unanswered: the client gets `error` {code: "server_error"} and the log a line
(with its traceback) at most once a minute per event. Refusals are logged at
most once a minute per kind (connectors.refusals).
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

import socketio
from engineio.async_drivers.sanic import WebSocket as _EngineWebSocket
from engineio.packet import Packet as EnginePacket
from engineio.packet import packet_names as ENGINE_PACKET_TYPES
from engineio.payload import Payload as EnginePayload
from sanic import response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors.refusals import log_refusal

logger = logging.getLogger(__name__)

# Incoming socket.io packets, WebSocket frames and polling bodies; a message is
# at most max_message_chars anyway.
MAX_PACKET_BYTES = 64 * 1024
SOCKETIO_PATH = "/socket.io"

NAMESPACE = "/"
# Names only the server may trigger, and the catch-all handler's own name.
_NOT_CLIENT_EVENTS = frozenset({"connect", "disconnect", "connect_error", "*"})
# What decoding a crafted packet raises in python-socketio (ValueError, also
# json's; TypeError and the lookups on data of the wrong shape; deep nesting).
_MALFORMED = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError)


class _NotAnEvent(ValueError):
    pass


def is_engine_packet(data: Any) -> bool:
    """Whether engine.io can decode `data` (one WebSocket frame) without failing."""
    try:
        # Types 7–9 decode, then fail engine.io's receive (an IndexError, a traceback).
        return 0 <= EnginePacket(encoded_packet=data).packet_type < len(ENGINE_PACKET_TYPES)
    except _MALFORMED:
        return False


# What a client may POST: close, pong, message, upgrade. engine.io answers any
# other type by closing the session and waiting for the client's next poll to
# drain it: the POST hung for the ping timeout (25 s).
_CLIENT_POLLING_TYPES = frozenset({1, 3, 4, 5})


def is_engine_payload(body: bytes) -> bool:
    """Whether `body` (a long-polling POST) is engine.io packets a client may send."""
    try:
        packets = EnginePayload(encoded_payload=body.decode("utf-8")).packets
    except (*_MALFORMED, UnicodeDecodeError):
        return False
    return all(p.packet_type in _CLIENT_POLLING_TYPES for p in packets)


class CheckedWebSocket(_EngineWebSocket):
    """engine.io's Sanic WebSocket with a frame cap and frames checked before use."""

    async def wait(self) -> Any:
        # Sanic's default is 16 MB for every WebSocket; engine.io checked its own
        # limit only once a frame was whole. websockets reads max_size per frame.
        connection = getattr(self._sock, "connection", None)
        if connection is not None and hasattr(connection, "max_size"):
            connection.max_size = MAX_PACKET_BYTES
        data = await super().wait()
        if not is_engine_packet(data):
            log_refusal(logger, "web_bad_frame", "web socket closed: not an engine.io packet")
            # engine.io ends the socket on OSError, as on a client gone away.
            raise OSError("not an engine.io packet")
        return data


def polling_checks(server: socketio.AsyncServer) -> Callable[[Request], Awaitable[Any]]:
    """App request middleware for socket.io's long-polling requests: a 400 for a
    body engine.io can't take, and for a session engine.io has closed but not yet
    forgotten (its KeyError was a 500 with a traceback)."""

    async def check(request: Request) -> HTTPResponse | None:
        if not request.path.startswith(SOCKETIO_PATH) or request.method not in ("GET", "POST"):
            return None
        engine_socket = server.eio.sockets.get(request.args.get("sid") or "")
        if engine_socket is not None and engine_socket.closed:
            log_refusal(logger, "web_closed_session", "web polling request refused: closed",
                        level=logging.INFO)
            return response.text("Bad Request: the session is closed", status=400)
        if request.method == "GET" or is_engine_payload(request.body or b""):
            return None
        log_refusal(logger, "web_bad_polling_body", "web polling request refused: not engine.io",
                    level=logging.INFO)
        return response.text("Bad Request: not an engine.io payload", status=400)

    return check


class CheckedServer(socketio.AsyncServer):
    """python-socketio's AsyncServer that refuses malformed packets (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # engine.io picks its WebSocket class from its driver's table, per server.
        self.eio._async = {**self.eio._async, "websocket": CheckedWebSocket}

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            await super()._handle_eio_message(eio_sid, data)
        except _MALFORMED:
            log_refusal(logger, "web_bad_packet", "web socket closed: a malformed socket.io packet",
                        level=logging.INFO)
            await self._close_for_bad_packet(eio_sid)

    async def _handle_event(self, eio_sid: str, namespace: Any, id: Any, data: Any) -> None:
        if not (
            isinstance(data, list)
            and data
            and isinstance(data[0], str)
            and data[0] not in _NOT_CLIENT_EVENTS
        ):
            raise _NotAnEvent("not an event of this protocol")
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace or NAMESPACE)
        if sid is None:
            raise _NotAnEvent("an event for a namespace the socket did not join")
        if len(data) > 2:
            # Every event of the protocol has at most one argument.
            log_refusal(logger, "web_bad_request", "web socket request refused: bad_request",
                        level=logging.INFO)
            await self.emit(
                "error",
                {"code": "bad_request", "message": "an event takes at most one argument"},
                to=sid,
            )
            return
        await super()._handle_event(eio_sid, namespace, id, data)

    async def _close_for_bad_packet(self, eio_sid: str) -> None:
        sid = self.manager.sid_from_eio_sid(eio_sid, NAMESPACE)
        try:
            if sid is not None and self.manager.is_connected(sid, NAMESPACE):
                await self.emit(
                    "error",
                    {"code": "bad_packet", "message": "not a socket.io event; closing"},
                    to=sid,
                )
                await self.disconnect(sid)
            else:
                await self.eio.disconnect(eio_sid)
        except Exception:  # already gone
            logger.debug("web socket %s was closed before its bad packet was refused", eio_sid)


Handler = Callable[..., Awaitable[Any]]


def guarded(server: socketio.AsyncServer, event: str, handler: Handler) -> Handler:
    """`handler`, answering the client with `error` server_error if it fails."""

    async def run(sid: str, *args: Any) -> Any:
        try:
            return await handler(sid, *args)
        except Exception as error:
            if log_refusal(
                logger, f"web_failed_{event}", "web socket: the %s handler failed (%s)",
                event, type(error).__name__, level=logging.ERROR,
            ):
                logger.error("the %s handler's failure", event, exc_info=error)
            try:
                await server.emit(
                    "error",
                    {"code": "server_error", "message": "the request failed; please try again"},
                    to=sid,
                )
            except Exception:
                logger.debug("web socket %s: could not report a failure", sid)
            return None

    return run
