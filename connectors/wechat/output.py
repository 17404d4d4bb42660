"""Sending to a WeChat customer through the customer-service message API
(客服消息): bot replies that missed the passive window, and pushes from any
process (agent replies, queue updates).

WeChat shows text only here: buttons become numbered options (remembered, so
the customer may answer with the number), images and links their URL, and a
long text is split into messages within WeChat's 2048-byte limit.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List

from rasa.core.channels.channel import OutputChannel
from wechatpy.exceptions import WeChatClientException

from connectors.clients import get_redis
from connectors.identity import BadConversationId, split_conversation_id
from connectors.push import DeliveryFailed, PushError, record_delivery_failure
from connectors.rich import as_text, merge_split_texts
from connectors.wechat.api import WeChatAPI

logger = logging.getLogger(__name__)

CHANNEL = "wechat"
# WeChat cuts (passive) or refuses (客服消息) longer text messages; UTF-8 bytes.
TEXT_LIMIT_BYTES = 2048


def render_turn(messages: list[dict[str, Any]]) -> str:
    """The bot's messages of one turn as one text (a response that Rasa split into
    its text and its custom payload read as one)."""
    return "\n\n".join(
        text for text in (as_text(m).strip() for m in merge_split_texts(messages)) if text
    )


def split_text(text: str, limit: int = TEXT_LIMIT_BYTES) -> list[str]:
    """Pieces of at most `limit` UTF-8 bytes, cut at paragraph, line or
    sentence ends where one is not too far back."""
    chunks: list[str] = []
    rest = text.strip()
    while rest:
        if len(rest.encode()) <= limit:
            chunks.append(rest)
            break
        # The longest prefix that fits, never splitting a character.
        head = rest.encode()[:limit].decode("utf-8", "ignore")
        cut = len(head)
        for separator in ("\n\n", "\n", "。", "！", "？", ". ", " "):
            at = head.rfind(separator)
            if at > len(head) // 2:
                cut = at + len(separator)
                break
        chunks.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return chunks


def openid_of(conversation_id: str) -> str:
    try:
        channel, openid = split_conversation_id(conversation_id)
    except BadConversationId as error:
        raise PushError(str(error)) from None
    if channel != CHANNEL:
        raise PushError(f"{conversation_id!r} is not a WeChat conversation")
    return openid


def _failure(conversation_id: str, error: Exception) -> DeliveryFailed:
    """The desk's view of a failure: WeChat's errcode (45015, 45047…), else what broke."""
    if isinstance(error, WeChatClientException):
        if error.errcode is not None:
            return DeliveryFailed(CHANNEL, conversation_id, str(error.errcode), str(error.errmsg))
        status = getattr(error.response, "status_code", "?")
        return DeliveryFailed(CHANNEL, conversation_id, "http", f"WeChat's API answered {status}")
    return DeliveryFailed(CHANNEL, conversation_id, type(error).__name__, str(error) or repr(error))


class WeChatOutput(OutputChannel):
    """Delivers to `wechat:<OpenID>` at any time, from any process that reaches Redis."""

    def __init__(self, api: WeChatAPI | None, off_reason: str = "") -> None:
        self.api = api
        self.off_reason = off_reason

    @classmethod
    def name(cls) -> str:
        return CHANNEL

    async def send_response(self, recipient_id: str, message: Dict[str, Any]) -> None:
        await self.send_messages(recipient_id, [message])

    async def send_messages(self, recipient_id: str, messages: list[dict[str, Any]]) -> None:
        """One turn's messages as few WeChat messages as possible (the API has a quota)."""
        if self.api is None:
            raise PushError(self.off_reason or "the WeChat channel is not configured")
        openid = openid_of(recipient_id)
        text = render_turn(messages)
        if not text:
            return
        redis = get_redis()
        for chunk in split_text(text):
            try:
                await self.api.send_text(openid, chunk)
            except Exception as error:  # whatever WeChat or the network did: record, report
                failure = _failure(recipient_id, error)
                logger.warning("WeChat message to %s not delivered: %s", recipient_id, failure)
                await record_delivery_failure(redis, failure)
                raise failure from error

    # Rasa's per-kind hooks (used by its own API, e.g. trigger_intent with this channel).
    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        await self.send_response(recipient_id, {"text": text})

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: List[Dict[str, Any]], **kwargs: Any
    ) -> None:
        await self.send_response(recipient_id, {"text": text, "buttons": buttons})

    async def send_quick_replies(
        self, recipient_id: str, text: str, quick_replies: List[Dict[str, Any]], **kwargs: Any
    ) -> None:
        await self.send_response(recipient_id, {"text": text, "quick_replies": quick_replies})

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        await self.send_response(recipient_id, {"image": image})

    async def send_attachment(self, recipient_id: str, attachment: str, **kwargs: Any) -> None:
        await self.send_response(recipient_id, {"attachment": attachment})

    async def send_custom_json(
        self, recipient_id: str, json_message: Dict[str, Any], **kwargs: Any
    ) -> None:
        await self.send_response(recipient_id, {"custom": json_message})
