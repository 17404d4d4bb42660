"""The web widget channel: Rasa's socket.io protocol, verified identity, any-process push.

Protocol (what rasa-webchat speaks, so it works unchanged):

    client → session_request {session_id?}            server → session_confirm "<session id>"
    client → user_uttered {message, session_id, customData?, message_id?}
    server → bot_uttered {text} | {text, quick_replies} | {attachment} | {custom}

Our own widget also gets (stock clients ignore them): `history` {session_id,
messages} after session_confirm, `typing` {typing} while the bot works,
`customer_uttered` {text} (what the customer typed in another tab) and
`error` {code, message} when a request is refused ({code: "rate_limited",
message, retry_after} when its address minted too many visitors).

Limits per client address (connectors.web.addresses), besides those per
conversation: connecting (refused: connect_error {message, data: {code:
"rate_limited", retry_after}}), minting a visitor (the error above; no
session) and messages (the `too_fast` notice, as per conversation).
Browsers may open the socket from the service's own origin and the
configured `allowed_origins` ("*": any).

Identity (connectors.web.identity): the session id is a token the server
signed; a host-site user proves who they are with an HMAC (in the connect
`auth` or in session_request). The conversation id ("web:v-<visitor>" or
"web:u-<user>") is kept server-side in the socket's session, and a
user_uttered naming any other session id is refused.

Scale-out: python-socketio's AsyncRedisManager on REDIS_URL, so an emit to a
conversation's room reaches its sockets on every server process, and
`get_output_channel()` pushes from processes that have no server at all.
Across instances socket.io needs either websocket-only clients (our widget)
or sticky sessions for long-polling.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import socketio
from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.core.channels.socketio import SocketBlueprint, SocketIOOutput
from sanic import Blueprint, Sanic, response
from sanic.request import Request
from sanic.response import HTTPResponse
from socketio.exceptions import ConnectionRefusedError as SocketRefused

from connectors.body_limit import cap_bodies
from connectors.clients import PerLoop, get_redis, redis_url
from connectors.history import transcript
from connectors.identity import Identity
from connectors.limits import Limits, RateLimiter
from connectors.notices import notice
from connectors.push import CUSTOMER_TYPING
from connectors.refusals import log_refusal
from connectors.retry_keys import REPEAT_KEY, RETRY_KEY_RULE, is_retry_key
from connectors.text import is_text
from connectors.web.addresses import AddressLimits, client_address
from connectors.web.identity import (
    DEFAULT_TOKEN_DAYS,
    HostClaim,
    IdentityRefused,
    SessionTokens,
    WebSession,
    host_user_claim,
    verify_host_user,
)
from connectors.web.packets import (
    MAX_PACKET_BYTES,
    SOCKETIO_PATH,
    CheckedServer,
    guarded,
    polling_checks,
)
from connectors.web.pages import (
    add_demo_login_routes,
    add_static_routes,
    parse_switch,
    serve_demo_page_at_root,
)
from connectors.web.retention import DEFAULT_RETENTION_DAYS, RetentionJob, do_mark_seen

logger = logging.getLogger(__name__)
# A typing customer is announced at most this often (seconds) per socket.
TYPING_EVERY = 2.0

BOT_EVENT = "bot_uttered"
MAX_CUSTOM_DATA_BYTES = 4096


def pubsub_channel(url: str) -> str:
    """The Redis pub/sub channel of this deployment's sockets. Pub/sub ignores Redis'
    database numbers, so the number goes into the name: deployments (or test
    sessions) that share a Redis server on different databases stay apart."""
    db = (urlsplit(url).path or "/0").strip("/") or "0"
    return f"socketio:web:{db}"


ANY_ORIGIN = "*"


def parse_origins(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        items = str(value or "").split(",")
    return [item.strip().rstrip("/") for item in items if item.strip()]


def origin_checker(allowed: list[str]) -> Callable[[str | None, dict[str, Any]], bool] | str:
    """engine.io's cors_allowed_origins: the service's own origin (the demo page)
    plus the configured ones; any origin only if "*" is configured."""
    if ANY_ORIGIN in allowed:
        return ANY_ORIGIN

    def check(origin: str | None, environ: dict[str, Any]) -> bool:
        if not origin:
            return True  # not a browser: CORS is about browsers
        if origin.rstrip("/") in allowed:
            return True
        host = environ.get("HTTP_HOST", "")
        return bool(host) and urlsplit(origin).netloc == host

    return check


class WebOutput(SocketIOOutput):
    """Stock SocketIOOutput's payloads, sent to the conversation's room (all its tabs,
    on any server process). `emitter` is the server, or a write-only Redis manager."""

    @classmethod
    def name(cls) -> str:
        return "web"

    def __init__(self, emitter: Any, extra: dict[str, Any] | None = None) -> None:
        super().__init__(emitter, BOT_EVENT)
        self._extra = extra or {}

    async def send_response(self, recipient_id: str, message: dict[str, Any]) -> None:
        agent = message.get("agent")
        if agent and not self._extra:
            # An agent's message (a bot event whose metadata names the agent): every
            # payload says so, for widgets that show who is talking.
            tagged = WebOutput(self.sio, {"agent": str(agent)})
            await tagged.send_response(recipient_id, message)
            return
        await super().send_response(recipient_id, message)

    async def _send_message(self, socket_id: str, response: Any) -> None:
        await self.sio.emit(self.bot_message_evt, {**response, **self._extra}, room=socket_id)

    async def send_custom_json(
        self, recipient_id: str, json_message: dict[str, Any], **kwargs: Any
    ) -> None:
        # Stock SocketIOOutput spreads the dict into emit()'s keyword arguments,
        # which loses it; widgets expect it under "custom" (agent_joined, …).
        await self._send_message(recipient_id, {"custom": json_message})


class _RedisEmitter:
    """emit() for processes without a socket.io server (the desk, `bot push`).
    One write-only manager per event loop: its Redis client is bound to one."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._managers: PerLoop[socketio.AsyncRedisManager] = PerLoop()

    async def emit(self, event: str, data: Any, room: str | None = None, **kwargs: Any) -> None:
        if not room:
            raise ValueError("a push needs a conversation room")  # never broadcast
        manager = self._managers.get(
            self.url,
            lambda: socketio.AsyncRedisManager(
                self.url, channel=pubsub_channel(self.url), write_only=True, logger=logger
            ),
        )
        await manager.emit(event, data, namespace="/", room=room)


class RequestRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RateLimited(Exception):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        # Whole seconds, at least 1: what a client waits before trying again.
        self.retry_after = max(1, math.ceil(retry_after))


@dataclass(frozen=True)
class Utterance:
    text: str
    display_text: str | None
    custom_data: dict[str, Any]
    session_id: str | None
    message_id: str | None = None


def parse_utterance(data: Any) -> Utterance:
    """A user_uttered payload, checked; raises RequestRefused("bad_request")."""

    def bad(message: str) -> RequestRefused:
        return RequestRefused("bad_request", message)

    if not isinstance(data, dict):
        raise bad("user_uttered needs an object {message, session_id}")
    text = data.get("message")
    if not is_text(text) or not text.strip():
        raise bad("message must be non-empty text")
    session_id = data.get("session_id")
    if session_id is not None and not is_text(session_id):
        raise bad("session_id must be a string")
    display_text = data.get("display_text")
    if display_text is not None and not is_text(display_text):
        raise bad("display_text must be a string")
    custom = data.get("customData")
    if custom is None:
        custom = {}
    if not isinstance(custom, dict):
        raise bad("customData must be an object")
    try:
        size = len(json.dumps(custom, ensure_ascii=False).encode())
    except (ValueError, RecursionError):  # a lone surrogate (UnicodeEncodeError)
        raise bad("customData must be JSON text") from None
    if size > MAX_CUSTOM_DATA_BYTES:
        raise bad(f"customData is larger than {MAX_CUSTOM_DATA_BYTES} bytes")
    message_id = data.get("message_id")
    if message_id is not None and not is_retry_key(message_id):
        raise bad(f"message_id must be {RETRY_KEY_RULE}")
    return Utterance(text, display_text or None, custom, session_id, message_id)


class _InOrder:
    """Keeps one socket's messages in the order they arrived: they are checked
    concurrently (rate limits see a burst as a burst) but processed one by one."""

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Future[None]] = {}

    def ticket(self, sid: str) -> tuple[asyncio.Future[None] | None, asyncio.Future[None]]:
        before = self._tails.get(sid)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[sid] = mine
        return before, mine

    def release(
        self, sid: str, before: asyncio.Future[None] | None, mine: asyncio.Future[None]
    ) -> None:
        def finish(_: object = None) -> None:
            if not mine.done():
                mine.set_result(None)
            if self._tails.get(sid) is mine:
                del self._tails[sid]

        # A refused message is done at once, but the ones after it must still
        # wait for those before it.
        if before is None or before.done():
            finish()
        else:
            before.add_done_callback(finish)


class WebSocketServer:
    """The socket.io event handlers of one Rasa server process."""

    def __init__(
        self,
        channel: WebInput,
        on_new_message: Callable[[UserMessage], Awaitable[Any]],
        url: str,
    ) -> None:
        self.channel = channel
        self.on_new_message = on_new_message
        self.tokens = SessionTokens(channel.visitor_secret, channel.token_days)
        self.limiter = RateLimiter(channel.limits)
        self.address_limiters = channel.address_limits.limiters()
        self.retention: asyncio.Task[None] | None = None
        self.in_order = _InOrder()
        self.app: Sanic | None = None
        self.sio = CheckedServer(
            async_mode="sanic",
            client_manager=socketio.AsyncRedisManager(url, channel=pubsub_channel(url)),
            cors_allowed_origins=origin_checker(channel.allowed_origins),
            max_http_buffer_size=MAX_PACKET_BYTES,
        )
        self.sio.on("connect", self.connect)
        self.sio.on("disconnect", self.disconnect)
        for event, handler in (
            ("session_request", self.session_request),
            ("user_uttered", self.user_uttered),
            ("user_typing", self.user_typing),
        ):
            self.sio.on(event, guarded(self.sio, event, handler))
        self.sio.on("*", self.unknown_event)

    # --- events --------------------------------------------------------------------

    async def connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        # engine.io's environ says REMOTE_ADDR 127.0.0.1 for everyone: Sanic's request knows.
        address = client_address(environ.get("sanic.request"), self.channel.real_ip_header)
        state: dict[str, Any] = {"address": address}
        try:
            await self._check_address(address, "connect", "too many connections")
        except RateLimited as limited:
            # The client gets connect_error {message, data: {code, retry_after}}.
            raise SocketRefused(
                str(limited), {"code": "rate_limited", "retry_after": limited.retry_after}
            ) from None
        claim = host_user_claim(auth)
        if claim is not None:
            try:
                state["host_user"] = self._verify_host_user(claim)
            except IdentityRefused as error:
                log_refusal(logger, "web_identity_refused", "web socket refused: identity_refused")
                raise SocketRefused(str(error), {"code": "identity_refused"}) from None
        await self.sio.save_session(sid, state)

    def _verify_host_user(self, claim: HostClaim) -> Identity:
        return verify_host_user(
            self.channel.identity_secret,
            claim.user_id,
            claim.user_hash,
            claim.expires,
            allow_without_expiry=self.channel.allow_hash_without_expiry,
        )

    async def _check_address(self, address: str, kind: str, what: str) -> None:
        """Raises RateLimited when `address` is over its `kind` limit. Without Redis
        nobody is turned away here: the limits protect the service, they are not
        worth an outage."""
        try:
            decision = await self.address_limiters[kind].hit(get_redis(), address)
        except Exception:
            logger.exception("rate limiter unavailable (%s)", kind)
            return
        if not decision.allowed:
            log_refusal(
                logger, f"web_limit_{kind}", "web: %s from %s; refused", what, address,
                level=logging.INFO,
            )
            raise RateLimited(
                f"{what} from your network address; try again later", decision.retry_after
            )

    async def disconnect(self, sid: str, *args: Any) -> None:
        logger.debug("web socket %s disconnected", sid)

    async def unknown_event(self, event: str, sid: str, *args: Any) -> None:
        await self.error(sid, "unknown_event", "unknown event")

    async def session_request(self, sid: str, data: Any = None) -> None:
        data = {} if data is None else data
        if not isinstance(data, dict):
            await self.error(sid, "bad_request", "session_request needs an object or nothing")
            return
        state = await self.sio.get_session(sid)
        host_user = state.get("host_user")
        claim = host_user_claim(data)
        if claim is not None:
            try:
                host_user = self._verify_host_user(claim)
            except IdentityRefused as error:
                await self.error(sid, "identity_refused", str(error))
                return
        if host_user is not None:
            session = self.tokens.for_user(host_user)
        else:
            try:
                session = await self._visitor_session(sid, state, data.get("session_id"))
            except RateLimited as limited:
                await self.sio.emit(
                    "error",
                    {"code": "rate_limited", "message": str(limited),
                     "retry_after": limited.retry_after},
                    to=sid,
                )
                return
        previous: WebSession | None = state.get("session")
        if previous is not None and previous.conversation_id != session.conversation_id:
            await self.sio.leave_room(sid, previous.conversation_id)
        state["session"] = session
        await self.sio.save_session(sid, state)
        await self.sio.enter_room(sid, session.conversation_id)
        await self.sio.emit("session_confirm", session.session_id, to=sid)
        await self.sio.emit(
            "history",
            {"session_id": session.session_id, "messages": await self._history(session)},
            to=sid,
        )

    async def _visitor_session(self, sid: str, state: dict[str, Any], given: Any) -> WebSession:
        """The visitor's resumed session (with a fresh token), or a new visitor;
        raises RateLimited when the socket's address minted too many."""
        resumed = None
        if given not in (None, ""):
            try:
                resumed = self.tokens.resume_visitor(given)
            except IdentityRefused as error:
                # Never a conversation id: the client starts afresh, and is told why.
                await self.error(sid, "invalid_session", f"{error}; starting a new session")
        if resumed is not None:
            try:
                await do_mark_seen(get_redis(), resumed.conversation_id)
            except Exception:  # only retention reads it; the chat goes on
                logger.exception("could not note that %s came back", resumed.conversation_id)
            return resumed
        # None also for a user's token without the user's HMAC (e.g. after logout).
        await self._check_address(
            state.get("address", "unknown"), "new_visitor", "too many new visitors"
        )
        return self.tokens.new_visitor()

    async def user_uttered(self, sid: str, data: Any = None) -> dict[str, Any]:
        """Returns the client's acknowledgement (socket.io's ack, when it asked for
        one): the message is done with, answered or refused. Our widget resends
        a message it got no acknowledgement for once it is connected again."""
        # Taken before any await, so messages are processed in arrival order.
        before, mine = self.in_order.ticket(sid)
        message_id = data.get("message_id") if isinstance(data, dict) else None
        try:
            try:
                utterance = parse_utterance(data)
                session = await self._session_of(sid, utterance)
            except RequestRefused as refused:
                await self.error(sid, refused.code, str(refused))
                return {"message_id": message_id, "status": "refused"}
            if not await self._within_limits(sid, session, utterance):
                return {"message_id": message_id, "status": "refused"}
            if before is not None:
                await before
            answered = await self._process(sid, session, utterance)
            return {"message_id": message_id, "status": "done" if answered else "failed"}
        finally:
            self.in_order.release(sid, before, mine)

    async def user_typing(self, sid: str, data: Any = None) -> None:
        """The customer is typing: announced (at most every few seconds per socket)
        on Redis's CUSTOMER_TYPING channel, for whoever serves the conversation
        (the agent desk shows it to the agent). Nothing is stored."""
        state = await self.sio.get_session(sid)
        session: WebSession | None = state.get("session")
        now = time.monotonic()
        if session is None or now - state.get("typing_at", 0.0) < TYPING_EVERY:
            return
        state["typing_at"] = now
        await self.sio.save_session(sid, state)
        try:
            await get_redis().publish(CUSTOMER_TYPING, session.conversation_id)
        except Exception:  # a hint only: never worth an error to the customer
            logger.debug("typing signal of %s not sent", session.conversation_id)

    async def _session_of(self, sid: str, utterance: Utterance) -> WebSession:
        """The socket's verified session, if the utterance may speak in it."""
        state = await self.sio.get_session(sid)
        session: WebSession | None = state.get("session")
        if session is None:
            raise RequestRefused("no_session", "send session_request first")
        given = utterance.session_id
        # A missing session_id means the socket's own; any other is refused. An
        # older token of the same conversation is its own too: stock clients send
        # what their storage holds, which another tab may have renewed meanwhile.
        if given is not None and not hmac.compare_digest(
            given.encode(), session.session_id.encode()
        ) and not self._same_conversation(given, session):
            raise RequestRefused("wrong_session", "session_id is not this socket's session")
        return session

    def _same_conversation(self, token: str, session: WebSession) -> bool:
        try:
            subject = self.tokens.subject_of(token)
        except IdentityRefused:
            return False
        return hmac.compare_digest(f"web:{subject}".encode(), session.conversation_id.encode())

    async def _within_limits(self, sid: str, session: WebSession, utterance: Utterance) -> bool:
        limits = self.channel.limits
        text = utterance.text
        if limits.too_long(text) or limits.too_long(utterance.display_text):
            await self.notice(sid, "too_long", text, limit=limits.max_message_chars)
            return False
        state = await self.sio.get_session(sid)
        address = state.get("address", "unknown")
        try:
            # Per conversation, and per address: fresh visitors don't add up to more.
            decision = await self.limiter.hit(get_redis(), session.conversation_id)
            if decision.allowed:
                decision = await self.address_limiters["message"].hit(get_redis(), address)
        except Exception:
            logger.exception("rate limiter unavailable")
            await self.notice(sid, "trouble", text)
            return False
        if not decision.allowed:
            await self.notice(sid, "too_fast", text)
            return False
        return True

    async def _process(self, sid: str, session: WebSession, utterance: Utterance) -> bool:
        """Run the turn; False if it failed (the customer got the trouble notice)."""
        room = session.conversation_id
        shown = utterance.display_text or utterance.text
        await self.sio.emit("customer_uttered", {"text": shown}, room=room, skip_sid=sid)
        extra: dict[str, Any] = {"client": utterance.custom_data}
        if utterance.display_text:
            extra["display_text"] = utterance.display_text  # history shows the button's title
        if utterance.message_id:
            extra[REPEAT_KEY] = utterance.message_id  # sent again: not run twice
        message = UserMessage(
            utterance.text,
            WebOutput(self.sio),
            room,
            input_channel=self.channel.name(),
            metadata=session.identity.metadata(**extra),
        )
        await self.sio.emit("typing", {"typing": True}, room=room)
        try:
            await self.on_new_message(message)
        except Exception:
            logger.exception("web message of %s failed", room)
            await self.notice(sid, "trouble", utterance.text)
            return False
        finally:
            await self.sio.emit("typing", {"typing": False}, room=room)
        return True

    # --- replies to one socket -------------------------------------------------------------

    async def error(self, sid: str, code: str, message: str) -> None:
        """Refuse a request: `code` is one of a few fixed words (it keys the log's limit)."""
        log_refusal(logger, f"web_{code}", "web socket request refused: %s", code,
                    level=logging.INFO)
        await self.sio.emit("error", {"code": code, "message": message}, to=sid)

    async def notice(self, sid: str, key: str, hint_text: str, **values: object) -> None:
        """What the channel itself tells the customer, as a bot message stock clients show."""
        text = notice(key, hint_text, **values)
        await self.sio.emit(BOT_EVENT, {"text": text, "notice": key}, to=sid)

    async def _history(self, session: WebSession) -> list[dict[str, Any]]:
        agent = getattr(self.app.ctx, "agent", None) if self.app else None
        if agent is None:
            return []
        try:
            return await transcript(agent, session.conversation_id)
        except Exception:  # the chat works without its history
            logger.exception("could not read the history of %s", session.conversation_id)
            return []

    # --- lifecycle ----------------------------------------------------------------------

    def attach(self, app: Sanic) -> None:
        self.app = app
        serve_demo_page_at_root(app)
        app.register_middleware(polling_checks(self.sio), "request")
        app.register_listener(self.do_start_retention, "after_server_start")
        app.register_listener(self._stop_listening, "before_server_stop")

    async def do_start_retention(self, *args: Any, first_after: float = 60.0) -> None:
        """Sweep idle visitors' conversations periodically (connectors.web.retention)."""
        days = self.channel.retention_days
        if not days or self.retention is not None:
            return
        # `bot run` gives the Rasa server both databases' URLs (bot.cli.child_env).
        tracker_url, shop_url = (os.environ.get("TRACKER_DATABASE_URL"),
                                 os.environ.get("DATABASE_URL"))
        if not (tracker_url and shop_url):
            logger.warning("web visitors' retention is off: TRACKER_DATABASE_URL and "
                           "DATABASE_URL are not set (start the service with `bot run`)")
            return
        job = RetentionJob(tracker_url, shop_url, get_redis(), days)
        self.retention = asyncio.create_task(job.run_forever(first_after))

    async def _stop_listening(self, *args: Any) -> None:
        # The Redis manager's listener runs forever; end it before the loop closes.
        for task in (getattr(self.sio.manager, "thread", None), self.retention):
            if isinstance(task, asyncio.Task) and not task.done():
                task.cancel()


class _WebBlueprint(SocketBlueprint):
    def __init__(self, server: WebSocketServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(server.sio, SOCKETIO_PATH, *args, **kwargs)
        self.ctx.server = server

    def register(self, app: Sanic, options: dict[str, Any]) -> None:
        super().register(app, options)
        self.ctx.server.attach(app)


def _retention_days(value: Any) -> float:
    """visitor_retention_days: empty the default (30), 0 off (keep everything)."""
    if value in (None, ""):
        return float(DEFAULT_RETENTION_DAYS)
    days = float(value)
    if days < 0:
        raise ValueError(f"visitor_retention_days must be 0 (off) or more, got {value!r}")
    return days


class WebInput(InputChannel):
    """Rasa input channel "web" (credentials.yml: connectors.web.WebInput)."""

    @classmethod
    def name(cls) -> str:
        return "web"

    def __init__(
        self,
        visitor_secret: str = "",
        identity_secret: str = "",
        allowed_origins: list[str] | None = None,
        limits: Limits | None = None,
        token_days: float = DEFAULT_TOKEN_DAYS,
        demo_logins: bool = False,
        real_ip_header: str = "",
        address_limits: AddressLimits | None = None,
        retention_days: float = 0.0,
        allow_hash_without_expiry: bool = False,
    ) -> None:
        if token_days <= 0:
            raise ValueError(f"visitor_token_days must be more than 0, got {token_days}")
        if retention_days and retention_days < token_days:
            # Else a visitor's valid token could lead to a deleted conversation.
            raise ValueError(
                f"visitor_retention_days ({retention_days:g}) must be at least "
                f"visitor_token_days ({token_days:g}), or 0 (keep every conversation)"
            )
        self.visitor_secret = visitor_secret
        self.identity_secret = identity_secret
        self.allowed_origins = allowed_origins or []
        self.limits = limits or Limits()
        self.token_days = token_days
        # Only this header (a reverse proxy's) may say who the client is.
        self.real_ip_header = real_ip_header.strip()
        self.address_limits = address_limits or AddressLimits()
        self.retention_days = retention_days
        self.allow_hash_without_expiry = allow_hash_without_expiry
        # The demo page's "log in as" a demo customer (connectors.web.pages).
        self.demo_logins = demo_logins
        self.server: WebSocketServer | None = None
        self._pusher: WebOutput | None = None

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> WebInput:
        credentials = credentials or {}
        return cls(
            visitor_secret=str(credentials.get("visitor_secret") or ""),
            identity_secret=str(credentials.get("identity_secret") or ""),
            allowed_origins=parse_origins(credentials.get("allowed_origins")),
            limits=Limits.from_credentials(credentials),
            token_days=float(credentials.get("visitor_token_days") or DEFAULT_TOKEN_DAYS),
            # On unless switched off: the embedded demo shows it (DEMO_LOGINS).
            demo_logins=parse_switch(credentials.get("demo_logins"), default=True),
            real_ip_header=str(credentials.get("real_ip_header") or ""),
            address_limits=AddressLimits.from_credentials(credentials),
            retention_days=_retention_days(credentials.get("visitor_retention_days")),
            allow_hash_without_expiry=parse_switch(
                credentials.get("allow_hash_without_expiry"), default=False
            ),
        )

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        self.server = WebSocketServer(self, on_new_message, redis_url())
        blueprint = _WebBlueprint(self.server, "web_channel", __name__)
        # socket.io's polling bodies, refused past the packet size before they are read
        # (the route is the app's own, hence the prefix).
        cap_bodies(blueprint, MAX_PACKET_BYTES, path_prefix=SOCKETIO_PATH)

        @blueprint.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        add_static_routes(blueprint)
        if self.demo_logins and self.identity_secret:
            add_demo_login_routes(blueprint, self.identity_secret)
        elif self.demo_logins:
            logger.warning("demo logins need the web channel's identity_secret: they are off")
        return blueprint

    def get_output_channel(self) -> OutputChannel | None:
        """Pushes to "web:…" conversations; from any process that can reach REDIS_URL."""
        if self.server is not None:
            return WebOutput(self.server.sio)
        if self._pusher is None:
            url = os.environ.get("REDIS_URL")
            if not url:
                logger.warning("the web channel can't push: REDIS_URL is not set")
                return None
            self._pusher = WebOutput(_RedisEmitter(url))
        return self._pusher
