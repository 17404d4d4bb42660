"""Rasa's REST channel, for trusted callers only.

The stock REST channel lets the caller name any `sender`, i.e. speak as any
customer. Here it answers only requests that carry the REST caller's token
(BOT_REST_TOKEN) in an `Authorization: Bearer` header, so it serves tests,
benchmarks and server-side integrations; customers come through wechat, web
or app. That token is not the admin token of Rasa's HTTP API (BOT_API_TOKEN):
a REST caller can talk as a customer, not read transcripts or replace the model.
It is never taken from the URL, where proxies and access logs would keep it.

Bodies are capped at `max_body_bytes` (64 KB) before they are read, and
checked before anything reaches the bot (`check_body`): a JSON object whose
`sender` is printable text, `message` non-blank text and `metadata`, if any, an
object of bounded depth; anything else is a 400 that says which. (Stock Rasa
answered an empty or non-object body with a 500, passed a list or a number on
as the message, and took a missing sender as a new random conversation.)

A caller that may resend (a time-out, a dropped connection, a balancer
retrying on another instance) gives each message a `message_id`: sent again
in the same conversation, a message whose turn is stored is not run a second
time, and the answer is that turn's stored replies (bot.repeated_messages).
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import orjson
from rasa.core.channels.channel import UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors.body_limit import cap_bodies
from connectors.draining import do_close_when_stopping
from connectors.notices import notice
from connectors.refusals import log_refusal
from connectors.retry_keys import REPEAT_KEY, RETRY_KEY_RULE, is_retry_key

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 64 * 1024
MAX_SENDER_CHARS = 256
# Deeper metadata is no caller's real need, and Rasa copies it recursively.
MAX_METADATA_DEPTH = 32


class BadBody(ValueError):
    """The body is not a message this channel takes; the text says why."""


@dataclass(frozen=True)
class RestMessage:
    sender: str
    text: str
    metadata: dict[str, Any] | None  # with the caller's message_id as REPEAT_KEY


def _depth(value: Any, limit: int) -> int:
    """How deeply `value` nests (JSON containers), counting no further than `limit` + 1."""
    deepest, level = 0, [value]
    while level and deepest <= limit:
        containers = [v for v in level if isinstance(v, (dict, list))]
        if not containers:
            break
        deepest += 1
        level = [c for v in containers for c in (v.values() if isinstance(v, dict) else v)]
    return deepest


def check_body(body: bytes) -> RestMessage:
    """The message in a REST request's body, or BadBody."""
    usage = 'the body must be a JSON object: {"sender": "...", "message": "..."}'
    try:
        # orjson: strict JSON (no NaN), UTF-8 only, no lone surrogates, depth-limited.
        data = orjson.loads(body or b"")
    except orjson.JSONDecodeError:
        raise BadBody(usage) from None
    if not isinstance(data, dict):
        raise BadBody(usage)
    sender, text, metadata = data.get("sender"), data.get("message"), data.get("metadata")
    if not (
        isinstance(sender, str) and 0 < len(sender) <= MAX_SENDER_CHARS
        and sender.isprintable() and sender.strip()
    ):
        raise BadBody(f"sender must be 1 to {MAX_SENDER_CHARS} printable characters")
    if not isinstance(text, str) or not text.strip():
        raise BadBody("message must be non-blank text")
    if metadata is not None and not isinstance(metadata, dict):
        raise BadBody("metadata must be a JSON object")
    if metadata is not None and _depth(metadata, MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        raise BadBody(f"metadata nests deeper than {MAX_METADATA_DEPTH} levels")
    if data.get("input_channel") not in (None, "rest"):
        # Stock Rasa let the caller name the channel a message came from.
        raise BadBody("input_channel can only be rest")
    message_id = data.get("message_id")
    if message_id is not None and not is_retry_key(message_id):
        raise BadBody(f"message_id must be {RETRY_KEY_RULE}")
    if metadata is not None and REPEAT_KEY in metadata:
        # The retry key is message_id's alone: one way to give it.
        metadata = {k: v for k, v in metadata.items() if k != REPEAT_KEY}
    if message_id is not None:
        metadata = {**(metadata or {}), REPEAT_KEY: message_id}
    return RestMessage(sender, text, metadata)


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if there is one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def check_token(given: str | None, expected: str | None) -> bool:
    """Constant-time: how much of a guess matches must not show in the timing."""
    if not given or not expected:
        return False
    # surrogateescape: Sanic decodes a header's non-UTF-8 bytes to lone surrogates,
    # which a plain encode() raised on (a 500 and a traceback per request).
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


class TokenRestInput(RestInput):
    def __init__(self, token: str | None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.token = token or None
        self.max_body_bytes = max_body_bytes

    @classmethod
    def name(cls) -> str:
        return "rest"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> TokenRestInput:
        credentials = credentials or {}
        raw = credentials.get("max_body_bytes") or DEFAULT_MAX_BODY_BYTES
        try:
            max_body_bytes = int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"rest: max_body_bytes must be a whole number, got {raw!r}") from None
        return cls(credentials.get("token"), max_body_bytes)

    def _refusal(self, request: Request) -> str | None:
        """Why this request may not use the channel; None when it may."""
        if not self.token:
            return "the REST channel is off (no BOT_REST_TOKEN)"
        given = bearer_token(request)
        if given is None:
            if "token" in request.args:
                return "send the REST token in an Authorization: Bearer header, not the URL"
            return "the REST channel needs its token (Authorization: Bearer)"
        if not check_token(given, self.token):
            return "wrong REST token"
        return None

    # Rasa's receive handler reads the message through these: the checked one.
    async def _extract_sender(self, req: Request) -> str | None:
        return req.ctx.rest_message.sender

    def _extract_message(self, req: Request) -> str | None:
        return req.ctx.rest_message.text

    def _extract_input_channel(self, req: Request) -> str:
        return self.name()

    def get_metadata(self, request: Request) -> dict[str, Any] | None:
        return request.ctx.rest_message.metadata

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        async def handle(message: UserMessage) -> None:
            # A failed turn (Redis or the tracker store away, a crash mid-turn) gets
            # the trouble notice, as on the other channels: Rasa's REST channel logs
            # it and answers [], which a caller can't tell from a bot saying nothing.
            try:
                await on_new_message(message)
            except Exception:
                logger.exception("REST message of %s failed", message.sender_id)
                await message.output_channel.send_text_message(
                    message.sender_id, notice("trouble", message.text or "")
                )

        blueprint = super().blueprint(handle)
        cap_bodies(blueprint, self.max_body_bytes)
        # App-wide (every channel's answers): a stopping server drains, see connectors.draining.
        do_close_when_stopping(blueprint)

        @blueprint.route("/ready", methods=["GET"])
        async def ready(request: Request) -> HTTPResponse:
            # For `bot run`'s readiness check when Rasa's HTTP API is off
            # (BOT_ADMIN_API=0): says only whether a model is loaded.
            agent = getattr(request.app.ctx, "agent", None)
            loaded = bool(agent is not None and agent.is_ready())
            return response.json({"model_loaded": loaded}, status=200 if loaded else 503)

        @blueprint.middleware("request")
        async def require_token(request: Request) -> HTTPResponse | None:
            if request.method != "POST":
                return None
            reason = self._refusal(request)
            if reason is not None:
                log_refusal(logger, reason, "REST request refused: %s", reason)
                return response.json(
                    {"error": reason}, status=401, headers={"WWW-Authenticate": "Bearer"}
                )
            try:
                request.ctx.rest_message = check_body(request.body)
            except BadBody as bad:
                log_refusal(logger, "bad_body", "REST request refused: %s", bad)
                return response.json({"error": str(bad)}, status=400)
            return None

        return blueprint
