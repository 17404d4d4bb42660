"""WeChat Official Account channel: webhook /webhooks/wechat/webhook.

WeChat's servers POST each customer message (plain or AES "safe" mode), wait
5 s for an answer and retry up to three times in all. So:

- a request is checked first (signature, freshness, size, XML: see
  connectors.wechat.inbound); anything refused is not processed;
- the message-encryption mode is explicit (connectors.wechat.modes): in safe
  mode a plain body is refused; each signature (the query's and msg_signature)
  stands for one message only, on every instance (Redis);
- a message is processed once, whatever the retries and whichever instance
  they reach: the first copy claims its MsgId in Redis with a lease it renews
  while it works; later copies read what became of it, or take it over if the
  lease lapsed (its instance died mid-turn) so the reply is not lost
  (connectors.wechat.claims);
- when the bot's reply is ready within `passive_reply_seconds` it is the
  answer to the request (one passive reply); otherwise the answer is
  "success" and the reply goes through the customer-service message API when
  ready (connectors.wechat.output). A retry that finds the first copy still
  working switches it to that API, so a reply is never lost with an answer
  WeChat already gave up on, nor sent twice;
- once WeChat was told "success" it never sends the message again: until its
  reply is delivered, it is owed in Redis, and another instance takes it over
  if this one dies first (connectors.wechat.deliveries);
- a copy or instance that takes a message over runs it with its retry key:
  a turn the dead instance stored is answered from the store, not run twice.

The conversation id is "wechat:<OpenID>" from the signed request; media the
bot can't read is acknowledged, kept in the transcript and a person offered.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Coroutine

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from rasa.shared.core.events import BotUttered, UserUttered
from sanic import Blueprint, response
from sanic.exceptions import PayloadTooLarge
from sanic.request import Request
from sanic.response import HTTPResponse
from wechatpy.crypto import WeChatCrypto

from connectors.clients import get_redis
from connectors.identity import Identity
from connectors.limits import Limits, RateLimiter
from connectors.notices import media_notice, notice
from connectors.push import PushError
from connectors.refusals import log_refusal
from connectors.retry_keys import REPEAT_KEY
from connectors.rich import language_of
from connectors.wechat.api import DEFAULT_API_BASE_URL, WeChatAPI
from connectors.wechat.claims import (
    DEFAULT_LEASE_SECONDS,
    MAX_LEASE_SECONDS,
    MIN_LEASE_SECONDS,
    Claims,
)
from connectors.wechat.deliveries import (
    MAX_TAKEOVERS,
    SWEEP_SECONDS,
    Deliveries,
    OwedReply,
)
from connectors.wechat.inbound import (
    MAX_BODY_BYTES,
    MAX_CLOCK_SKEW_SECONDS,
    Inbound,
    Refused,
    read_message,
    render_reply,
    verify_url,
)
from connectors.wechat.modes import PLAIN, SAFE, check_mode, encryption_mode
from connectors.wechat.output import TEXT_LIMIT_BYTES, WeChatOutput, render_turn

if TYPE_CHECKING:  # importing it loads TensorFlow; a pushing process needn't
    from rasa.core.agent import Agent

logger = logging.getLogger(__name__)

CHANNEL = "wechat"
WECHAT_TIMEOUT_SECONDS = 5.0
MEDIA_TYPES = ("image", "video", "shortvideo", "voice", "location", "link", "file")
HUMAN_OPTION = {
    "zh": {"title": "转人工", "payload": "/human_handoff"},
    "en": {"title": "Talk to a person", "payload": "/human_handoff"},
}
SUCCESS = "success"  # WeChat: received, nothing to say (no retry, nothing shown)

@dataclass(frozen=True)
class WeChatConfig:
    token: str = ""
    app_id: str = ""
    app_secret: str = ""
    encoding_aes_key: str = ""
    encryption_mode: str = PLAIN
    claim_lease_seconds: float = DEFAULT_LEASE_SECONDS
    api_base_url: str = DEFAULT_API_BASE_URL
    passive_reply_seconds: float = 4.0
    menu_intents: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> WeChatConfig:
        given = credentials or {}

        def text(key: str) -> str:
            return str(given.get(key) or "").strip()

        base_url = text("api_base_url") or DEFAULT_API_BASE_URL
        raw_seconds = given.get("passive_reply_seconds")
        try:
            seconds = 4.0 if raw_seconds in (None, "") else float(raw_seconds)
        except (TypeError, ValueError):
            raise ValueError(
                f"wechat passive_reply_seconds must be a number, got {raw_seconds!r}"
            ) from None
        if not 0 <= seconds < WECHAT_TIMEOUT_SECONDS:
            raise ValueError(
                f"wechat passive_reply_seconds must be 0 to <{WECHAT_TIMEOUT_SECONDS:g} "
                f"(WeChat gives up after {WECHAT_TIMEOUT_SECONDS:g} s), got {seconds}"
            )
        raw_lease = given.get("claim_lease_seconds")
        try:
            lease = DEFAULT_LEASE_SECONDS if raw_lease in (None, "") else float(raw_lease)
        except (TypeError, ValueError):
            raise ValueError(
                f"wechat claim_lease_seconds must be a number, got {raw_lease!r}"
            ) from None
        if not MIN_LEASE_SECONDS <= lease <= MAX_LEASE_SECONDS:
            raise ValueError(
                f"wechat claim_lease_seconds must be {MIN_LEASE_SECONDS:g} to "
                f"{MAX_LEASE_SECONDS:g} (a retry of the message must see it lapse within "
                f"WeChat's {WECHAT_TIMEOUT_SECONDS:g} s), got {lease:g}"
            )
        intents = given.get("menu_intents") or {}
        if not isinstance(intents, dict) or not all(
            isinstance(v, str) and v for v in intents.values()
        ):
            raise ValueError("wechat menu_intents must map menu keys to messages, e.g. /greet")
        return cls(
            token=text("token"),
            app_id=text("app_id"),
            app_secret=text("app_secret"),
            encoding_aes_key=text("encoding_aes_key"),
            encryption_mode=encryption_mode(text("encryption_mode"), text("encoding_aes_key")),
            claim_lease_seconds=lease,
            api_base_url=base_url if base_url.endswith("/") else base_url + "/",
            passive_reply_seconds=seconds,
            menu_intents={str(k): v for k, v in intents.items()},
            limits=Limits.from_credentials(given),
        )

    @property
    def missing(self) -> list[str]:
        names = {"token": "TOKEN", "app_id": "APP_ID", "app_secret": "APP_SECRET"}
        return [f"WECHAT_{env}" for key, env in names.items() if not getattr(self, key)]

    @property
    def off_reason(self) -> str:
        if not self.missing:
            return ""
        return f"the WeChat channel is not configured (set {', '.join(self.missing)})"


def _crypto(config: WeChatConfig) -> WeChatCrypto | None:
    if config.encryption_mode == PLAIN or config.missing:
        return None
    try:
        return WeChatCrypto(config.token, config.encoding_aes_key, config.app_id)
    except Exception:  # wechatpy asserts on the key's length; say what is wrong instead
        raise ValueError(
            "wechat encoding_aes_key must be the 43-character EncodingAESKey "
            "from WeChat's console (WECHAT_ENCODING_AES_KEY)"
        ) from None


def media_details(inbound: Inbound) -> dict[str, Any]:
    """What the transcript keeps of a media message (WeChat's own field names)."""
    wanted = {
        "image": ("PicUrl", "MediaId"),
        "voice": ("MediaId", "Format"),
        "video": ("MediaId", "ThumbMediaId"),
        "shortvideo": ("MediaId", "ThumbMediaId"),
        "location": ("Location_X", "Location_Y", "Scale", "Label"),
        "link": ("Title", "Description", "Url"),
        "file": ("Title", "Description", "FileKey", "FileMd5", "FileTotalLen"),
    }.get(inbound.msg_type, ())
    details = {name: inbound.fields[name] for name in wanted if inbound.fields.get(name)}
    return {"type": inbound.msg_type, **details}


def media_text(details: dict[str, Any]) -> str:
    """A line an agent can read in the transcript, e.g. "[image] https://…"."""
    shown = [details.get(k) for k in ("Title", "Label", "Url", "PicUrl")]
    if details["type"] == "location":
        shown.append(f"({details.get('Location_X')}, {details.get('Location_Y')})")
    return " ".join([f"[{details['type']}]", *[s for s in shown if s]])


class WeChatInput(InputChannel):
    def __init__(self, config: WeChatConfig) -> None:
        self.config = config
        self.crypto = _crypto(config)
        self.api = (
            None
            if config.missing
            else WeChatAPI(config.app_id, config.app_secret, config.api_base_url)
        )
        self.output = WeChatOutput(self.api, config.off_reason)
        self.rate = RateLimiter(config.limits, prefix=f"ratelimit:{CHANNEL}")
        self._tasks: set[asyncio.Future] = set()
        # This process, as the owner of replies it takes over (connectors.wechat.deliveries).
        self._instance = uuid.uuid4().hex
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    def name(cls) -> str:
        return CHANNEL

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> WeChatInput:
        return cls(WeChatConfig.from_credentials(credentials))

    def get_output_channel(self) -> WeChatOutput:
        return self.output

    # --- HTTP ---------------------------------------------------------------------------

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        blueprint = Blueprint("wechat_webhook", __name__)
        if self.config.missing:
            logger.warning("%s; its webhook answers 503", self.config.off_reason)
        else:
            mode = self.config.encryption_mode
            taken = {SAFE: "encrypted messages only", PLAIN: "plain messages only"}
            logger.info(
                "WeChat channel on for app %s, %s mode (%s)",
                self.config.app_id, mode, taken.get(mode, "plain and encrypted messages"),
            )

        @blueprint.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok", "configured": not self.config.missing})

        @blueprint.route("/webhook", methods=["GET"])
        async def verify(request: Request) -> HTTPResponse:
            if self.config.missing:
                return response.json({"error": self.config.off_reason}, status=503)
            try:
                return response.text(verify_url(request.args, self.config.token))
            except Refused as refused:
                return self._refused(refused)

        @blueprint.route("/webhook", methods=["POST"], stream=True)
        async def receive(request: Request) -> HTTPResponse:
            started = time.monotonic()
            if self.config.missing:
                return response.json({"error": self.config.off_reason}, status=503)
            try:
                check_mode(self.config.encryption_mode, request.args)
                body = await _read_body(request)
                inbound = read_message(body, request.args, self.config.token, self.crypto)
            except Refused as refused:
                return self._refused(refused)
            try:
                # The replay check needs Redis too: inside, so an outage gets the notice.
                await self._check_replay(request, inbound)
                return await self._handle(request, inbound, on_new_message, started)
            except Refused as refused:
                return self._refused(refused)
            except Exception:  # e.g. Redis unreachable: say so rather than WeChat's "无法提供服务"
                logger.exception("WeChat message from %s failed", inbound.openid)
                return self._reply(inbound, notice("trouble", language="zh"))

        @blueprint.listener("after_server_start")
        async def start_sweeping(*_: Any) -> None:
            if not self.config.missing and self._sweeper is None:
                self._sweeper = asyncio.ensure_future(self._sweep(on_new_message))

        @blueprint.listener("before_server_stop")
        async def stop_sweeping(*_: Any) -> None:
            if self._sweeper is not None:
                self._sweeper.cancel()
                self._sweeper = None

        return blueprint

    def _refused(self, refused: Refused) -> HTTPResponse:
        # One line per kind a minute: a flood of bad requests can't fill the disk.
        log_refusal(logger, refused.code, "refused a WeChat webhook request: %s", refused.summary)
        return response.json({"error": refused.reason}, status=refused.status)

    def _reply(self, inbound: Inbound, text: str) -> HTTPResponse:
        xml = render_reply(inbound, text, self.crypto)
        return response.text(xml, content_type="application/xml; charset=utf-8")

    async def _check_replay(self, request: Request, inbound: Inbound) -> None:
        """Each signature stands for one message only, in every mode: the query's
        `signature` covers only timestamp+nonce (not the body), and it is sent
        with encrypted messages too, where any proxy's access log shows it. A
        retry of the same message may carry it again (and is then de-duplicated)."""
        message = f"{inbound.openid} {inbound.dedup_id}"
        redis = get_redis()
        for name in ("signature", "msg_signature"):
            signature = request.args.get(name)
            if not signature:
                continue
            key = f"wechat:{self.config.app_id}:signature:{signature}"
            # Kept for the whole window in which its timestamp is accepted.
            if await redis.set(key, message, nx=True, ex=2 * MAX_CLOCK_SKEW_SECONDS):
                continue
            if await redis.get(key) != message:
                raise Refused(
                    403, f"this {name} was already used for another message",
                    code="signature_reused",
                )

    # --- one message ----------------------------------------------------------------------

    async def _handle(
        self,
        request: Request,
        inbound: Inbound,
        on_new_message: Callable[[UserMessage], Awaitable[Any]],
        started: float,
    ) -> HTTPResponse:
        redis = get_redis()
        claims = Claims(redis, self.config.app_id, self.config.claim_lease_seconds)
        owner = uuid.uuid4().hex  # this copy of the message
        if not await claims.claim(inbound.dedup_id, owner):
            outcome = await claims.await_outcome(inbound.dedup_id, owner)
            if not outcome.take_over:
                return self._retry_answer(inbound, outcome.reply)
            logger.warning(
                "WeChat message %s: the copy in work elsewhere stopped renewing its lease "
                "(its instance died?); this copy processes it", inbound.dedup_id,
            )

        identity = Identity(CHANNEL, inbound.openid, "wechat_signature")
        conversation = identity.conversation_id
        metadata = identity.metadata(
            app_id=self.config.app_id, msg_id=inbound.dedup_id, msg_type=inbound.msg_type
        )
        # A copy that takes over from an owner that died after storing the turn
        # gets that turn's replies, not a second turn (bot.repeated_messages).
        metadata[REPEAT_KEY] = inbound.dedup_id
        fields = inbound.fields
        text: str | None = None
        if inbound.msg_type == "event":
            event = inbound.event
            if event == "unsubscribe":
                agent = request.app.ctx.agent
                self._spawn(self._record_unsubscribe(agent, conversation, inbound, metadata))
                return await self._quiet(claims, inbound, owner)
            key_field = fields.get("EventKey") or ""
            # Events become intent payloads the channel itself chose (the dialogue
            # reads customer text that looks like a payload as words).
            metadata.update(server_payload=True)
            if event in ("subscribe", "scan"):
                text = "/greet"
                metadata.update(event=event)
                if key_field:
                    metadata.update(scene=key_field.removeprefix("qrscene_"))
            elif event == "click" and key_field in self.config.menu_intents:
                text = self.config.menu_intents[key_field]
                metadata.update(event=event, menu_key=key_field)
            else:
                if event == "click":
                    logger.warning("WeChat menu key %r is not in menu_intents", key_field)
                return await self._quiet(claims, inbound, owner)  # VIEW, LOCATION, reports…
        elif inbound.msg_type == "text" or (
            inbound.msg_type == "voice" and fields.get("Recognition")
        ):
            if inbound.msg_type == "voice":
                metadata.update(voice_recognition=True, media_id=fields.get("MediaId"))
            # Typed text that looks like a payload ("/restart") is read as words and a
            # bare number as the option the bot offered (bot.nlu.payloads).
            text = (fields.get("Content") or fields.get("Recognition") or "").strip()
            if not text:
                return await self._quiet(claims, inbound, owner)
        elif inbound.msg_type not in MEDIA_TYPES:
            logger.info("WeChat message type %r ignored", inbound.msg_type)
            return await self._quiet(claims, inbound, owner)

        # Limits: a notice right away (no turn to wait for), nothing processed.
        language = language_of(text) if text and not metadata.get("server_payload") else "zh"
        if not (await self.rate.hit(redis, inbound.openid)).allowed:
            too_fast = notice("too_fast", language=language)
            return await self._notice(claims, inbound, owner, too_fast)
        if text is not None and self.config.limits.too_long(text):
            limit = self.config.limits.max_message_chars
            too_long = notice("too_long", language=language, limit=limit)
            return await self._notice(claims, inbound, owner, too_long)

        work: Coroutine[Any, Any, list[dict[str, Any]]]
        owed: OwedReply | None = None
        if text is None:
            agent = request.app.ctx.agent
            work = self._media(agent, conversation, inbound, metadata)
        else:
            message = UserMessage(
                text,
                CollectingOutputChannel(),
                conversation,
                input_channel=CHANNEL,
                message_id=inbound.dedup_id,
                metadata=metadata,
            )
            work = self._turn(on_new_message, message)
            # Written down if the reply misses the passive window (see _respond).
            owed = OwedReply(inbound.dedup_id, conversation, text, metadata, language)
        return await self._respond(
            claims, inbound, owner, conversation, work, started, language, owed
        )

    def _retry_answer(self, inbound: Inbound, given: str | None) -> HTTPResponse:
        logger.info("WeChat retry of %s (%s)", inbound.dedup_id, "passive" if given else "async")
        if given is not None:
            # WeChat dropped the first answer (or it would not retry): the same again.
            return self._reply(inbound, given)
        return response.text(SUCCESS)

    async def _notice(
        self, claims: Claims, inbound: Inbound, owner: str, text: str
    ) -> HTTPResponse:
        await claims.answer_passively(inbound.dedup_id, owner, text)
        return self._reply(inbound, text)

    async def _quiet(self, claims: Claims, inbound: Inbound, owner: str) -> HTTPResponse:
        """Nothing to say: settle the claim (a later copy is not processed again)."""
        await claims.go_async(inbound.dedup_id, owner)
        return response.text(SUCCESS)

    async def _respond(
        self,
        claims: Claims,
        inbound: Inbound,
        owner: str,
        conversation: str,
        work: Coroutine[Any, Any, list[dict[str, Any]]],
        started: float,
        language: str,
        owed: OwedReply | None = None,
    ) -> HTTPResponse:
        task = asyncio.ensure_future(self._guarded(work, conversation, language))
        self._spawn(claims.keep_lease(inbound.dedup_id, owner, task))
        remaining = self.config.passive_reply_seconds - (time.monotonic() - started)
        if remaining > 0:
            await asyncio.wait({task}, timeout=remaining)
        if task.done():
            messages = task.result()
            text = render_turn(messages)
            if not text:
                return await self._quiet(claims, inbound, owner)
            fits = len(text.encode()) <= TEXT_LIMIT_BYTES
            if fits and await claims.answer_passively(inbound.dedup_id, owner, text):
                return self._reply(inbound, text)
        if await claims.go_async(inbound.dedup_id, owner):
            # WeChat won't send this message again once told "success": the reply
            # is owed in Redis until delivered, for another instance to take over
            # should this one die first.
            if owed is not None:
                try:
                    await self._deliveries().owe(owed, owner)
                except Exception:
                    logger.exception("could not write down the reply owed for WeChat "
                                     "message %s; it is delivered from here only", owed.message_id)
                    owed = None
            self._spawn(self._deliver(task, conversation, owed, owner))
        else:  # a copy took it over while this one hung past its lease: one reply
            logger.warning("WeChat message %s was taken over; this copy sends nothing",
                           inbound.dedup_id)
        return response.text(SUCCESS)

    async def _guarded(
        self,
        work: Coroutine[Any, Any, list[dict[str, Any]]],
        conversation: str,
        language: str,
    ) -> list[dict[str, Any]]:
        try:
            return await work
        except Exception:
            logger.exception("WeChat message of %s failed", conversation)
            return [{"text": notice("trouble", language=language)}]

    def _deliveries(self) -> Deliveries:
        return Deliveries(get_redis(), self.config.app_id)

    async def _deliver(
        self,
        task: asyncio.Future[list[dict[str, Any]]],
        conversation: str,
        owed: OwedReply | None = None,
        owner: str = "",
    ) -> None:
        if owed is None:
            await self._send(await task, conversation)
            return
        deliveries = self._deliveries()
        await deliveries.keep(owed.message_id, owner, task)  # its lease lives while it runs
        messages = task.result()
        try:
            mine = await deliveries.renew(owed.message_id, owner)
        except Exception:  # Redis away: deliver all the same (at least once)
            mine = True
        if not mine:  # this process hung past its lease and another took it over
            logger.warning("owed WeChat reply %s was taken over; not sent from here",
                           owed.message_id)
            return
        await self._send(messages, conversation)
        try:
            await deliveries.settle(owed.message_id, owner)
        except Exception:  # left owed: another instance will deliver it again
            logger.warning("could not settle the owed WeChat reply %s", owed.message_id)

    async def _send(self, messages: list[dict[str, Any]], conversation: str) -> None:
        try:
            await self.output.send_messages(conversation, messages)
        except PushError as error:  # logged and recorded for the desk by the output
            logger.debug("async WeChat reply not delivered: %s", error)

    async def _sweep(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> None:
        """Take over replies owed by instances that stopped renewing their lease."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                due = await self._deliveries().take_due(self._instance)
            except Exception:  # Redis away: the next sweep tries again
                logger.debug("could not look for owed WeChat replies", exc_info=True)
                continue
            for owed in due:
                self._spawn(self._take_over(owed, on_new_message))

    async def _take_over(
        self, owed: OwedReply, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> None:
        logger.warning(
            "WeChat message %s of %s: its reply was owed by an instance that stopped; "
            "answering it here (take-over %d)", owed.message_id, owed.conversation,
            owed.takeovers,
        )
        work: Coroutine[Any, Any, list[dict[str, Any]]]
        if owed.takeovers > MAX_TAKEOVERS:
            work = _said(notice("trouble", language=owed.language))
        else:
            # Its retry key is in the metadata: a turn the dead instance stored is
            # answered from the store, not run again.
            message = UserMessage(
                owed.text,
                CollectingOutputChannel(),
                owed.conversation,
                input_channel=CHANNEL,
                message_id=owed.message_id,
                metadata=owed.metadata,
            )
            work = self._guarded(self._turn(on_new_message, message), owed.conversation,
                                 owed.language)
        await self._deliver(asyncio.ensure_future(work), owed.conversation, owed, self._instance)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        # Keep a reference: the loop holds tasks only weakly.
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- turns ----------------------------------------------------------------------------

    async def _turn(
        self, on_new_message: Callable[[UserMessage], Awaitable[Any]], message: UserMessage
    ) -> list[dict[str, Any]]:
        await on_new_message(message)
        return list(message.output_channel.messages)  # type: ignore[attr-defined]

    async def _media(
        self, agent: Agent, conversation: str, inbound: Inbound, metadata: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Keep the media in the transcript without a bot turn (the bot can't read
        it); acknowledge it and offer a person, unless a person has it already."""
        details = media_details(inbound)
        metadata = {**metadata, "media": details}
        replies: list[dict[str, Any]] = []

        def events(tracker: Any) -> list[Any]:
            said = UserUttered(
                media_text(details),
                input_channel=CHANNEL,
                message_id=inbound.dedup_id,
                metadata=metadata,
            )
            if tracker.is_paused():  # with an agent, who sees the media in the transcript
                return [said]
            language = tracker.get_slot("language")
            language = language if language in HUMAN_OPTION else "zh"  # the bot's default
            reply = {
                "text": media_notice(inbound.msg_type, language),
                "buttons": [HUMAN_OPTION[language]],
            }
            replies.append(reply)
            notice_event = BotUttered(
                reply["text"], {"buttons": reply["buttons"]}, {"notice": "media_received"}
            )
            return [said, notice_event]

        await _append_to_transcript(agent, conversation, metadata, events)
        return replies

    async def _record_unsubscribe(
        self, agent: Agent, conversation: str, inbound: Inbound, metadata: dict[str, Any]
    ) -> None:
        metadata = {**metadata, "event": "unsubscribe"}
        try:
            await _append_to_transcript(
                agent,
                conversation,
                metadata,
                lambda _: [
                    UserUttered(
                        "[unsubscribe]",
                        input_channel=CHANNEL,
                        message_id=inbound.dedup_id,
                        metadata=metadata,
                    )
                ],
            )
        except Exception:
            logger.exception("could not record that %s unsubscribed", conversation)


async def _said(text: str) -> list[dict[str, Any]]:
    return [{"text": text}]


async def _append_to_transcript(
    agent: Agent,
    conversation: str,
    metadata: dict[str, Any],
    make_events: Callable[[Any], list[Any]],
) -> None:
    """Append events to a conversation as Rasa does for a message, under the
    conversation's lock, but with no prediction (nothing for the bot to do)."""
    if agent is None or agent.processor is None:
        raise RuntimeError("no model loaded")
    async with agent.lock_store.lock(conversation):
        tracker = await agent.processor.fetch_tracker_and_update_session(
            conversation, CollectingOutputChannel(), metadata
        )
        for event in make_events(tracker):
            tracker.update(event)
        await agent.processor.save_tracker(tracker)


async def _read_body(request: Request) -> bytes:
    """The body, read only up to MAX_BODY_BYTES (Sanic's default limit is 100 MB)."""
    request.stream.request_max_size = MAX_BODY_BYTES
    try:
        return b"".join([chunk async for chunk in request.stream])
    except PayloadTooLarge:
        raise Refused(400, f"body larger than {MAX_BODY_BYTES} bytes", code="too_large") from None
