"""Mobile app channel: REST to send, WebSocket to receive, JWT identity.

The app's backend gives its logged-in customer a JWT (`sub` = customer id,
`exp` required; see connectors.app.auth). The conversation is `app:<sub>`;
the app never names it.

    POST /webhooks/app/messages      Authorization: Bearer <jwt>
         {"text": "运费怎么算", "client_message_id": "optional retry key",
          "display_text": "optional: what a clicked button said"}
      200 {"message_id", "replies": n, "reply_ids": [...]}  after the bot's turn;
          the replies themselves arrive over the WebSocket (or GET below)
      200 {"duplicate": true, ...} the same client_message_id again: not re-processed
      400 bad JSON or fields · 401 bad token · 409 that client_message_id is still
      being processed · 413 too long · 429 too fast (Retry-After) · 503 channel off

    GET /webhooks/app/messages?since=<id>&limit=100      (for clients that poll)
      200 {"messages": [{"id", "message"}], "last_id", "more", "gap", "first_kept"}
          gap: true when messages after `since` are no longer kept (see "gap" below)

    GET /webhooks/app/history?limit=200       the conversation as the customer saw
      it (their messages too), from the transcript, whatever the outbox still keeps
      200 {"conversation_id", "messages": [{"sender": "customer"|"bot"|"agent",
          "text", "timestamp", buttons…}]}

    GET /webhooks/app/ws?since=<id>     WebSocket; token in the Authorization
        header, or in a first frame {"type": "auth", "token": ..., "since": ...}
        within `auth_timeout_seconds` (5)
      server → {"type": "ready", "customer_id", "conversation_id"}
               {"type": "gap", "since", "first_kept", "detail"} before the backlog
                 when messages after `since` were dropped (the outbox keeps the
                 latest `outbox_max_length` for `outbox_ttl_days`): fetch
                 GET /webhooks/app/history, or show "earlier messages not shown"
               {"type": "message", "id": "1700000000000-0", "message": {text, buttons…}}
                 first everything after `since` (absent or 0: all kept), in order,
                 then new messages as they are appended by any server instance
               {"type": "ping"} when idle · {"type": "pong"} for the client's ping
               {"type": "error", "error", "detail"} then close (4401 token or no
                 token in time, 4400 bad request, 4409 replaced: the customer opened
                 more than `max_sockets_per_customer` sockets and this was the oldest
                 (don't reconnect it automatically), 4429 too many sockets without a
                 token from this address, 4503 channel off, 1011 server trouble)
      client → {"type": "ping"}

Every message for the customer (bot replies, agents' messages, pushes) goes to
the outbox (connectors.app.outbox), so nothing depends on which instance holds
the socket, and an offline customer gets a push notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from rasa.core.channels.channel import InputChannel, UserMessage
from redis.exceptions import RedisError
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors.app.auth import BadToken, Claims, JwtVerifier, bearer_token
from connectors.app.outbox import AppOutput, BadCursor, Outbox, OutboxConfig, check_since
from connectors.app.sockets import SocketLimits, client_address
from connectors.body_limit import cap_bodies
from connectors.history import transcript
from connectors.limits import Limits, RateLimiter
from connectors.notices import notice
from connectors.refusals import log_refusal
from connectors.retry_keys import REPEAT_KEY, RETRY_KEY_RULE, is_retry_key
from connectors.text import is_text

logger = logging.getLogger(__name__)

# A retry with the same key within this time is recognised (apps retry within minutes).
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
# A client_message_id being processed is held on a lease, renewed while its turn
# runs: if the server dies mid-turn the lease lapses and the client's retry is
# processed (a 24 h "processing" mark would have answered it 409 all day).
PROCESSING_LEASE_SECONDS = 10
MAX_POLL_LIMIT = 500
MAX_HISTORY_LIMIT = 1000
# The push webhook may be plain http only on this machine (or with push_webhook_allow_http).
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
PUMP_BATCH = 100  # messages per XRANGE of a socket's pump

# WebSocket close codes (4000–4999 are the application's own).
WS_BAD_REQUEST = 4400
WS_UNAUTHORIZED = 4401
WS_REPLACED = 4409
WS_TOO_MANY = 4429
WS_CHANNEL_OFF = 4503
WS_SERVER_ERROR = 1011

_turns: set[asyncio.Task[Any]] = set()  # turns that outlive a dropped request
# What json.loads raises on a stranger's bytes: bad JSON or encoding (ValueError),
# and nesting deeper than the parser's stack ("[[[[…", RecursionError).
_NOT_JSON = (ValueError, RecursionError)


def _error(status: int, error: str, detail: str, **extra: Any) -> HTTPResponse:
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response.json({"error": error, "detail": detail, **extra}, status, headers=headers)


def _number(
    credentials: dict[str, Any], key: str, default: float, allow_zero: bool = False
) -> float:
    raw = credentials.get(key)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"app channel: {key} must be a number, got {raw!r}") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"app channel: {key} must be positive, got {raw!r}")
    return value


def _flag(credentials: dict[str, Any], key: str) -> bool:
    return str(credentials.get(key) or "").strip().lower() in ("1", "true", "yes", "on")


def check_push_webhook_url(url: str, allow_http: bool = False) -> None:
    """https, or http to this machine (tests, a local relay) or when explicitly allowed:
    the calls carry the customer id, a preview of the message and the signature."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"app channel: push_webhook_url must be an https URL, got {url!r}")
    if parts.scheme == "http" and not allow_http and parts.hostname not in _LOOPBACK_HOSTS:
        raise ValueError(
            f"app channel: push_webhook_url must be https, got {url!r} "
            "(plain http only to localhost, or with APP_PUSH_WEBHOOK_ALLOW_HTTP=1)"
        )


class AppInput(InputChannel):
    def __init__(
        self,
        verifier: JwtVerifier | None,
        outbox: Outbox,
        limits: Limits,
        keepalive_seconds: float = 25.0,
        max_body_bytes: int = 64 * 1024,
        sockets: SocketLimits | None = None,
        auth_timeout_seconds: float = 5.0,
        real_ip_header: str | None = None,
    ) -> None:
        self.verifier = verifier  # None: the channel is off
        self.outbox = outbox
        self.limits = limits
        self.rate_limiter = RateLimiter(limits, prefix="ratelimit:app")
        self.keepalive_seconds = keepalive_seconds
        self.max_body_bytes = max_body_bytes
        self.sockets = sockets or SocketLimits()
        self.auth_timeout_seconds = auth_timeout_seconds
        self.real_ip_header = real_ip_header

    @classmethod
    def name(cls) -> str:
        return "app"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> AppInput:
        credentials = credentials or {}
        key = str(credentials.get("jwt_key") or "")
        verifier = None
        if key.strip():
            verifier = JwtVerifier.from_config(
                credentials.get("jwt_algorithm"),
                key,
                issuer=credentials.get("jwt_issuer"),
                audience=credentials.get("jwt_audience"),
                leeway=_number(credentials, "jwt_leeway_seconds", 30.0, allow_zero=True),
                max_lifetime=_number(credentials, "jwt_max_lifetime_seconds", 3600.0),
            )
        url = str(credentials.get("push_webhook_url") or "").strip() or None
        secret = str(credentials.get("push_webhook_secret") or "") or None
        if url and not secret:
            raise ValueError(
                "app channel: push_webhook_url needs push_webhook_secret (calls are signed)"
            )
        if url:
            check_push_webhook_url(url, _flag(credentials, "push_webhook_allow_http"))
        outbox = Outbox(
            OutboxConfig(
                max_length=int(_number(credentials, "outbox_max_length", 1000)),
                ttl_seconds=int(_number(credentials, "outbox_ttl_days", 7) * 24 * 3600),
                presence_ttl_seconds=int(_number(credentials, "presence_ttl_seconds", 60)),
                max_connections=int(_number(credentials, "redis_max_connections", 16)),
                push_webhook_url=url,
                push_webhook_secret=secret,
                push_timeout_seconds=_number(credentials, "push_timeout_seconds", 3.0),
            )
        )
        return cls(
            verifier,
            outbox,
            Limits.from_credentials(credentials),
            keepalive_seconds=_number(credentials, "keepalive_seconds", 25.0),
            max_body_bytes=int(_number(credentials, "max_body_bytes", 64 * 1024)),
            sockets=SocketLimits(
                max_per_customer=int(_number(credentials, "max_sockets_per_customer", 5)),
                max_unauthenticated_per_address=int(
                    _number(credentials, "max_unauthenticated_sockets_per_address", 20)
                ),
            ),
            auth_timeout_seconds=_number(credentials, "auth_timeout_seconds", 5.0),
            real_ip_header=str(credentials.get("real_ip_header") or "").strip() or None,
        )

    def get_output_channel(self) -> AppOutput | None:
        """For pushes from outside a request (the desk, `bot push`, other processes).

        Waits for the push webhook (short timeout) since such a caller may exit
        right after sending."""
        if self.verifier is None:
            return None
        return AppOutput(self.outbox, wait_for_push=True)

    # --- identity -------------------------------------------------------------

    def _claims(self, token: str | None) -> Claims:
        assert self.verifier is not None
        if not token:
            raise BadToken("missing token: send Authorization: Bearer <jwt>", "missing")
        return self.verifier.verify(token)

    def _off(self) -> HTTPResponse:
        return _error(503, "channel_off", "the app channel is off (no jwt_key configured)")

    def _authenticate(self, request: Request) -> Claims | HTTPResponse:
        if self.verifier is None:
            return self._off()
        try:
            return self._claims(bearer_token(request.headers.get("Authorization")))
        except BadToken as error:
            _log_refused("request", error)
            return _error(401, "unauthorized", str(error))

    # --- routes ---------------------------------------------------------------

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        blueprint = Blueprint("app_channel", __name__)
        # Refused (413) before Sanic reads them, not after buffering up to its 100 MB.
        cap_bodies(blueprint, self.max_body_bytes)

        @blueprint.route("/messages", methods=["POST"])
        async def send(request: Request) -> HTTPResponse:
            claims = self._authenticate(request)
            if isinstance(claims, HTTPResponse):
                return claims
            try:
                return await self._receive(request, claims, on_new_message)
            except RedisError:
                # What to show the customer, as for a failed turn: the app has a text.
                return _unavailable(notice("trouble", _text_of(request)))

        @blueprint.route("/messages", methods=["GET"])
        async def poll(request: Request) -> HTTPResponse:
            claims = self._authenticate(request)
            if isinstance(claims, HTTPResponse):
                return claims
            try:
                since = check_since(request.args.get("since"))
                limit = int(request.args.get("limit") or 100)
            except BadCursor as error:
                return _error(400, "bad_request", str(error))
            except ValueError:
                return _error(400, "bad_request", "limit must be a whole number")
            if not 1 <= limit <= MAX_POLL_LIMIT:
                return _error(400, "bad_request", f"limit must be 1–{MAX_POLL_LIMIT}")
            try:
                batch = await self.outbox.read(claims.subject, since, count=limit + 1)
            except RedisError:
                return _unavailable()
            page = batch.messages[:limit]
            return response.json(
                {
                    "messages": [{"id": i, "message": m} for i, m in page],
                    # Past what was dropped, so the next poll isn't told again.
                    "last_id": page[-1][0] if page else (batch.dropped_up_to or since),
                    "more": len(batch.messages) > limit,
                    "gap": batch.gap,
                    "first_kept": batch.first_kept,
                }
            )

        @blueprint.route("/history", methods=["GET"])
        async def history(request: Request) -> HTTPResponse:
            claims = self._authenticate(request)
            if isinstance(claims, HTTPResponse):
                return claims
            try:
                limit = int(request.args.get("limit") or 200)
            except ValueError:
                return _error(400, "bad_request", "limit must be a whole number")
            if not 1 <= limit <= MAX_HISTORY_LIMIT:
                return _error(400, "bad_request", f"limit must be 1–{MAX_HISTORY_LIMIT}")
            agent = getattr(request.app.ctx, "agent", None)
            if agent is None:
                answer = _error(503, "unavailable", "the history is not available here")
                answer.headers["Retry-After"] = "5"
                return answer
            conversation = claims.identity.conversation_id
            try:
                lines = await transcript(agent, conversation, limit)
            except Exception:
                logger.exception("could not read the history of %s", conversation)
                answer = _error(503, "unavailable", "the history is briefly unavailable")
                answer.headers["Retry-After"] = "5"
                return answer
            return response.json({"conversation_id": conversation, "messages": lines})

        @blueprint.websocket("/ws")
        async def socket(request: Request, ws: Any) -> None:
            await self._socket(request, ws)

        return blueprint

    # --- sending --------------------------------------------------------------

    async def _receive(
        self,
        request: Request,
        claims: Claims,
        on_new_message: Callable[[UserMessage], Awaitable[Any]],
    ) -> HTTPResponse:
        if len(request.body or b"") > self.max_body_bytes:
            return _error(413, "too_large", f"the request body exceeds {self.max_body_bytes} bytes")
        try:
            body = json.loads(request.body or b"")
        except _NOT_JSON:
            return _error(400, "bad_request", 'the body must be JSON: {"text": "..."}')
        if not isinstance(body, dict):
            return _error(400, "bad_request", "the body must be a JSON object")
        text = body.get("text")
        if not is_text(text) or not text.strip():
            return _error(400, "bad_request", "text is required (a non-empty string)")
        if self.limits.too_long(text):
            limit = self.limits.max_message_chars
            return _error(
                413,
                "too_long",
                f"text exceeds {limit} characters",
                limit=limit,
                message=notice("too_long", text, limit=limit),
            )
        client_message_id = body.get("client_message_id")
        if client_message_id is not None and not is_retry_key(client_message_id):
            return _error(
                400,
                "bad_request",
                f"client_message_id must be {RETRY_KEY_RULE}",
            )
        display_text = body.get("display_text")
        if display_text is not None and (
            not is_text(display_text) or self.limits.too_long(display_text)
        ):
            return _error(400, "bad_request", "display_text must be a string no longer than text")

        redis = self.outbox.redis()  # the channel's bounded pool
        customer = claims.subject
        message_id = uuid.uuid4().hex
        # The client's id before the customer's: it has no ":", so keys can't collide.
        idempotency_key = f"app:idem:{client_message_id}:{customer}" if client_message_id else None
        if idempotency_key:
            reserved = await redis.set(
                idempotency_key,
                json.dumps({"status": "processing", "message_id": message_id}),
                nx=True,
                ex=PROCESSING_LEASE_SECONDS,
            )
            if not reserved:
                return await self._duplicate(redis, idempotency_key)

        decision = await self.rate_limiter.hit(redis, customer)
        if not decision.allowed:
            if idempotency_key:
                await redis.delete(idempotency_key)
            retry_after = max(1, math.ceil(decision.retry_after))
            answer = _error(
                429,
                "too_fast",
                f"too many messages; retry in {retry_after} s",
                retry_after=retry_after,
                message=notice("too_fast", text),
            )
            answer.headers["Retry-After"] = str(retry_after)
            return answer

        extra: dict[str, Any] = {}
        if client_message_id:
            extra[REPEAT_KEY] = client_message_id
        if display_text:
            extra["display_text"] = display_text
        output = AppOutput(self.outbox)
        user_message = UserMessage(
            text,
            output,
            claims.identity.conversation_id,
            input_channel=self.name(),
            message_id=message_id,
            metadata=claims.identity.metadata(**extra),
        )

        async def turn() -> dict[str, Any]:
            lease = None
            if idempotency_key:
                lease = asyncio.ensure_future(_renew_lease(redis, idempotency_key))
            try:
                await on_new_message(user_message)
            except BaseException:
                if idempotency_key:  # not processed: let the retry through
                    await redis.delete(idempotency_key)
                raise
            finally:
                if lease is not None:
                    lease.cancel()
            result = {
                "message_id": message_id,
                "replies": len(output.message_ids),
                "reply_ids": output.message_ids,
            }
            if idempotency_key:
                try:
                    await redis.set(
                        idempotency_key,
                        json.dumps({"status": "done", **result}),
                        ex=IDEMPOTENCY_TTL_SECONDS,
                    )
                except RedisError:  # processed all the same; say so
                    logger.exception("could not record app message %s as done", message_id)
            return result

        # Sanic cancels a handler whose client hangs up; the turn must still
        # finish (the replies go to the outbox) rather than stop half-way.
        task = asyncio.ensure_future(turn())
        _turns.add(task)
        task.add_done_callback(_finished_turn)
        try:
            result = await asyncio.shield(task)
        except Exception:  # logged by _finished_turn, whether or not the client waited
            return _error(
                500,
                "turn_failed",
                "the message could not be processed; please try again",
                message=notice("trouble", text),
            )
        return response.json(result)

    @staticmethod
    async def _duplicate(redis: Any, key: str) -> HTTPResponse:
        stored = await redis.get(key)
        record = json.loads(stored) if stored else {"status": "processing"}
        if record.get("status") == "done":
            record.pop("status")
            return response.json({"duplicate": True, **record})
        answer = _error(
            409,
            "in_progress",
            "a message with this client_message_id is still being processed",
            message_id=record.get("message_id"),
        )
        answer.headers["Retry-After"] = "1"
        return answer

    # --- receiving ------------------------------------------------------------

    async def _socket(self, request: Request, ws: Any) -> None:
        _cap_frames(ws, self.max_body_bytes)
        if self.verifier is None:
            await _refuse(ws, WS_CHANNEL_OFF, "channel_off", "the app channel is off")
            return
        token = bearer_token(request.headers.get("Authorization"))
        since = request.args.get("since")
        if token is None:
            address = client_address(request, self.real_ip_header or "")
            # Counted while it has shown no token: a flood of idle sockets is cut short.
            if not self.sockets.do_start_unauthenticated(address):
                log_refusal(
                    logger, "app_socket_too_many",
                    "app socket refused: too many without a token from %s", address,
                    level=logging.INFO,
                )
                await _refuse(
                    ws,
                    WS_TOO_MANY,
                    "too_many",
                    "too many sockets without a token from your address; authenticate first",
                )
                return
            try:
                frame = await _first_frame(ws, self.auth_timeout_seconds)
            finally:
                self.sockets.do_end_unauthenticated(address)
            if frame is None:
                await _refuse(
                    ws,
                    WS_UNAUTHORIZED,
                    "unauthorized",
                    f"no token within {self.auth_timeout_seconds:g} s: send Authorization: "
                    'Bearer <jwt> or a first frame {"type": "auth", "token": ...}',
                )
                return
            token = frame.get("token") if isinstance(frame.get("token"), str) else ""
            since = frame.get("since", since)
        try:
            claims = self._claims(token)
        except BadToken as error:
            _log_refused("socket", error)
            await _refuse(ws, WS_UNAUTHORIZED, "unauthorized", str(error))
            return
        try:
            cursor = check_since(None if since is None else str(since))
        except BadCursor as error:
            await _refuse(ws, WS_BAD_REQUEST, "bad_request", str(error))
            return

        customer = claims.subject
        socket_id = uuid.uuid4().hex
        # Online before "ready": from then on, nothing for this customer triggers a push.
        try:
            await self.outbox.mark_online(customer, socket_id)
        except RedisError:
            logger.exception("app socket of %s: Redis unavailable", customer)
            await _refuse(ws, WS_SERVER_ERROR, "unavailable", "please reconnect later")
            return
        cap = self.sockets.max_per_customer

        def evict() -> None:
            logger.info("app socket of %s closed: more than %d open", customer, cap)
            closing = asyncio.ensure_future(
                _refuse(
                    ws,
                    WS_REPLACED,
                    "replaced",
                    f"closed: this customer opened more than {cap} sockets; this was the oldest",
                )
            )
            _turns.add(closing)
            closing.add_done_callback(_finished_turn)

        self.sockets.do_open(customer, socket_id, evict)
        pump: asyncio.Future[None] | None = None
        try:
            await _send(
                ws,
                {
                    "type": "ready",
                    "customer_id": customer,
                    "conversation_id": claims.identity.conversation_id,
                },
            )
            pump = asyncio.ensure_future(self._pump(ws, claims, cursor, socket_id))
            while not pump.done():
                raw = await ws.recv()
                if raw is None:
                    break
                await self._client_frame(ws, raw)
        except Exception as error:  # the client went away: nothing to tell it
            logger.debug("app socket of %s ended: %r", customer, error)
        finally:
            self.sockets.do_close(customer, socket_id)
            if pump is not None:
                pump.cancel()
            # In a task of its own: this handler may itself be being cancelled.
            cleanup = asyncio.ensure_future(self.outbox.mark_offline(customer, socket_id))
            _turns.add(cleanup)
            cleanup.add_done_callback(_finished_turn)

    async def _client_frame(self, ws: Any, raw: str | bytes) -> None:
        try:
            frame = json.loads(raw)
        except _NOT_JSON:
            frame = None
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "ping":
            await _send(ws, {"type": "pong"})
        else:
            await _send(
                ws,
                {
                    "type": "error",
                    "error": "unsupported",
                    "detail": 'the socket takes only {"type": "ping"}; '
                    "send messages with POST /webhooks/app/messages",
                },
            )

    async def _pump(self, ws: Any, claims: Claims, cursor: str, socket_id: str) -> None:
        """Outbox → socket: the backlog after `cursor`, then whatever is appended.

        Reads with XRANGE after the cursor whenever this process's subscriber says
        the customer's stream grew (see connectors.app.outbox.Wakeups), and at
        least every wait interval: no Redis connection is held while idle."""
        customer = claims.subject
        presence_every = self.outbox.config.presence_ttl_seconds / 3
        wait_seconds = min(self.keepalive_seconds, presence_every)
        last_sent = last_presence = time.monotonic()
        wakeups = self.outbox.wakeups()
        woken = wakeups.register(customer)
        try:
            while True:
                if time.time() > claims.expires_at + self.verifier_leeway:
                    await _refuse(ws, WS_UNAUTHORIZED, "unauthorized", "token expired")
                    return
                if not woken.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(woken.wait(), wait_seconds)
                # Cleared before reading: a notification during the read sets it again.
                woken.clear()
                batch = await self.outbox.read(customer, cursor, count=PUMP_BATCH)
                if batch.gap:
                    await _send(ws, _gap_frame(cursor, batch.first_kept, self.outbox))
                    cursor = batch.dropped_up_to or cursor  # told once
                found = batch.messages
                for message_id, message in found:
                    await _send(ws, {"type": "message", "id": message_id, "message": message})
                    cursor = message_id
                if len(found) == PUMP_BATCH:
                    woken.set()  # more waiting: read on without sleeping
                now = time.monotonic()
                if found:
                    last_sent = now
                elif now - last_sent >= self.keepalive_seconds - 0.5:
                    await _send(ws, {"type": "ping"})
                    last_sent = now
                if now - last_presence >= presence_every - 0.5:
                    await self.outbox.mark_online(customer, socket_id)
                    last_presence = now
        except asyncio.CancelledError:
            raise
        except Exception:
            # Redis trouble or a send on a dead socket: the client reconnects
            # with its last id and loses nothing.
            logger.warning("app socket of %s stopped", customer, exc_info=True)
            await _refuse(ws, WS_SERVER_ERROR, "unavailable", "please reconnect")
        finally:
            wakeups.unregister(customer, woken)

    @property
    def verifier_leeway(self) -> float:
        return self.verifier.leeway if self.verifier else 0.0


def _cap_frames(ws: Any, max_bytes: int) -> None:
    """Frames (an auth frame, a ping) are refused past a message body's size: the
    connection is closed with 1009 before more is buffered (Sanic's default is
    16 MB for every WebSocket). Set on websockets' protocol object, which reads
    its max_size at each frame."""
    connection = getattr(ws, "connection", None)
    if connection is not None and hasattr(connection, "max_size"):
        connection.max_size = max_bytes


def _log_refused(what: str, error: BadToken) -> None:
    # The code only: the reason's text may quote the token's claims.
    log_refusal(
        logger, f"app_{what}_{error.code}", "app %s refused: %s token", what, error.code,
        level=logging.INFO,
    )


def _unavailable(message: str | None = None) -> HTTPResponse:
    logger.exception("app channel: Redis unavailable")
    extra = {"message": message} if message else {}
    answer = _error(503, "unavailable", "the service is briefly unavailable; retry later", **extra)
    answer.headers["Retry-After"] = "5"
    return answer


def _text_of(request: Request) -> str:
    """The message's text if the body has one (only to pick the notice's language)."""
    try:
        body = json.loads(request.body or b"")
    except (ValueError, RecursionError):  # bad JSON or encoding; "[[[[…"
        return ""
    text = body.get("text") if isinstance(body, dict) else None
    return text if isinstance(text, str) else ""


async def _renew_lease(redis: Any, key: str) -> None:
    """Keep a client_message_id's "processing" mark while its turn runs."""
    while True:
        await asyncio.sleep(PROCESSING_LEASE_SECONDS / 3)
        try:
            await redis.expire(key, PROCESSING_LEASE_SECONDS)
        except RedisError:  # the turn will fail or finish without it; the retry decides
            logger.warning("could not renew the lease of %s", key)


def _finished_turn(task: asyncio.Task[Any]) -> None:
    _turns.discard(task)
    if not task.cancelled() and task.exception() is not None:
        error = task.exception()
        logger.error("app channel task failed: %r", error, exc_info=error)


async def _send(ws: Any, frame: dict[str, Any]) -> None:
    await ws.send(json.dumps(frame, ensure_ascii=False))


def _gap_frame(since: str, first_kept: str | None, outbox: Outbox) -> dict[str, Any]:
    config = outbox.config
    return {
        "type": "gap",
        "since": since,
        "first_kept": first_kept,
        "detail": "messages after since are no longer kept (the outbox keeps the latest "
        f"{config.max_length} for {config.ttl_seconds / 86400:g} days); "
        "the whole conversation: GET /webhooks/app/history",
    }


async def _first_frame(ws: Any, timeout: float) -> dict[str, Any] | None:
    """The client's {"type": "auth", ...} frame, or None (timeout, not JSON, other type)."""
    try:
        raw = await ws.recv(timeout=timeout)
        frame = json.loads(raw) if raw is not None else None
    except _NOT_JSON:
        return None
    if isinstance(frame, dict) and frame.get("type") == "auth":
        return frame
    return None


async def _refuse(ws: Any, code: int, error: str, detail: str) -> None:
    """Tell the client why, then close; a client already gone is fine."""
    try:
        await _send(ws, {"type": "error", "error": error, "detail": detail})
        # A close reason is at most 123 bytes.
        await ws.close(code, detail.encode()[:120].decode(errors="ignore"))
    except Exception:  # the socket is already closed
        logger.debug("app socket closed before the error could be sent")
