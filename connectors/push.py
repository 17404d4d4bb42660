"""Deliver a message to a customer at any time, whatever their channel.

The one interface the rest of the service (the desk, proactive messages,
`bot push`) calls. The conversation id's prefix names the channel; the
channel's own `get_output_channel()` (Rasa's hook for "an output channel
usable outside a request") delivers: WeChat through the customer-service
message API, the web widget through socket.io's Redis manager, the app
through its outbox stream. All of them work from any process that can reach
Redis, so it does not matter which server instance the customer is on.

    push = Push.from_credentials_file("credentials.yml")
    await push.send("wechat:oAbc…", {"text": "您好，我是客服小青"})

What was delivered is also appended to the conversation's tracker (the
transcript), through Rasa's own API (`POST /conversations/<id>/tracker/events`,
which takes the conversation's lock), when the Rasa server's URL and API token
are known (`BOT_RASA_URL`, `BOT_API_TOKEN`): the transcript, a reloaded widget
and the dialogue then see it, and a number the customer types picks from its
options as from the bot's own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from rasa.core.channels.channel import InputChannel, OutputChannel
from rasa.shared.utils.common import class_from_module_path
from rasa.shared.utils.io import read_config_file

from connectors.credentials import credential_variables
from connectors.identity import split_conversation_id

logger = logging.getLogger(__name__)

# Message keys Rasa's OutputChannel.send_response understands.
MESSAGE_KEYS = {"text", "buttons", "quick_replies", "image", "attachment", "custom", "elements"}


class PushError(Exception):
    """The message could not be delivered; the text says why."""


class UnknownChannel(PushError):
    pass


class DeliveryFailed(PushError):
    """The channel's platform refused the message (e.g. WeChat 45015)."""

    def __init__(self, channel: str, conversation_id: str, code: str, detail: str) -> None:
        super().__init__(f"{channel} refused a message to {conversation_id}: {code} {detail}")
        self.channel, self.conversation_id, self.code, self.detail = (
            channel,
            conversation_id,
            code,
            detail,
        )


# The desk reads failed deliveries from here to show agents why a customer
# didn't get a message (outside WeChat's 48-hour window, quota exhausted…).
DELIVERY_FAILURES_STREAM = "delivery:failures"
# Pub/sub channel on which channels announce "this conversation's customer is
# typing" (the conversation id as the message), where the platform tells it.
CUSTOMER_TYPING = "customer:typing"


async def record_delivery_failure(redis: Any, failure: DeliveryFailed) -> None:
    """Append a failure to the Redis stream (capped); never raises."""
    try:
        await redis.xadd(
            DELIVERY_FAILURES_STREAM,
            {
                "channel": failure.channel,
                "conversation_id": failure.conversation_id,
                "code": failure.code,
                "detail": failure.detail,
            },
            maxlen=10000,
            approximate=True,
        )
    except Exception:  # the failure is logged by the caller either way
        logger.exception("could not record a delivery failure")


def read_credentials(credentials_file: str | Path) -> dict[str, Any]:
    """credentials.yml with ${VAR}s expanded as Rasa does, unset ones as empty
    (which switches that part off) rather than Rasa's error: a process that
    only pushes needn't carry every channel's secrets."""
    names = credential_variables(Path(credentials_file))
    missing = {n for n in names if n not in os.environ}
    os.environ.update(dict.fromkeys(missing, ""))
    try:
        return read_config_file(str(credentials_file)) or {}
    finally:
        for name in missing:
            os.environ.pop(name, None)


def load_channels(credentials_file: str | Path) -> list[InputChannel]:
    """Our channels from credentials.yml (Rasa's built-in ones can't push)."""
    credentials = read_credentials(credentials_file)
    channels = []
    for key, config in credentials.items():
        if "." not in key:  # "rest", "socketio"…: Rasa's, no push
            continue
        cls = class_from_module_path(key)
        channels.append(cls.from_credentials(config or {}))
    return channels


class Transcript:
    """Appends delivered messages to conversations' trackers through Rasa's HTTP API."""

    def __init__(self, rasa_url: str, token: str, timeout: float = 10.0) -> None:
        self.rasa_url = rasa_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> aiohttp.ClientSession:
        # One connection pool per process and event loop: a line per message adds up.
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
            self._loop = loop
        return self._session

    @classmethod
    def from_env(cls) -> Transcript | None:
        url, token = os.environ.get("BOT_RASA_URL"), os.environ.get("BOT_API_TOKEN")
        return cls(url, token) if url and token else None

    async def append(
        self, conversation_id: str, message: dict[str, Any],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Raises on failure (the caller decides what a missing line means)."""
        data = {k: v for k, v in message.items() if k in MESSAGE_KEYS - {"text"}}
        event = {
            "event": "bot",
            "text": message.get("text"),
            "data": data,
            "metadata": {**(metadata or {}), "pushed": True},
            "timestamp": time.time(),
        }
        url = f"{self.rasa_url}/conversations/{quote(conversation_id, safe='')}/tracker/events"
        params = {"token": self.token, "include_events": "NONE"}
        async with self._client().post(url, json=[event], params=params) as answer:
            if answer.status >= 300:
                detail = (await answer.text())[:200]
                raise PushError(f"Rasa refused the transcript line: {answer.status} {detail}")


class Push:
    def __init__(
        self, channels: list[InputChannel], transcript: Transcript | None = None
    ) -> None:
        self._channels = {channel.name(): channel for channel in channels}
        self._outputs: dict[str, OutputChannel] = {}
        self.transcript = transcript

    @classmethod
    def from_credentials_file(cls, credentials_file: str | Path = "credentials.yml") -> Push:
        return cls(load_channels(credentials_file), Transcript.from_env())

    @property
    def channel_names(self) -> list[str]:
        return sorted(self._channels)

    def output_for(self, conversation_id: str) -> OutputChannel:
        channel_name, _ = split_conversation_id(conversation_id)
        channel = self._channels.get(channel_name)
        if channel is None:
            raise UnknownChannel(
                f"no channel {channel_name!r} for {conversation_id!r} "
                f"(configured: {', '.join(self.channel_names) or 'none'})"
            )
        if channel_name not in self._outputs:
            output = channel.get_output_channel()
            if output is None:
                raise PushError(f"channel {channel_name!r} cannot push")
            self._outputs[channel_name] = output
        return self._outputs[channel_name]

    async def send(
        self, conversation_id: str, message: dict[str, Any],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Deliver one Rasa-style bot message ({"text", "buttons", "image", …}).

        `metadata` goes into the transcript line (e.g. the agent who wrote it)."""
        if not isinstance(message, dict) or not MESSAGE_KEYS & message.keys():
            raise PushError(f"nothing to send: a message needs one of {sorted(MESSAGE_KEYS)}")
        output = self.output_for(conversation_id)
        await output.send_response(conversation_id, dict(message))
        logger.debug("pushed a message to %s via %s", conversation_id, output.name())
        if self.transcript is None:
            return
        try:
            await self.transcript.append(conversation_id, message, metadata)
        except Exception as error:  # delivered all the same: say so, don't fail the push
            logger.warning(
                "message to %s delivered but not in its transcript: %s", conversation_id, error
            )
