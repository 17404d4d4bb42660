"""The desk's client for Rasa's HTTP API (the transcript is the tracker).

Reads a conversation's tracker, appends events (pause, resume, a slot), lets
the bot take a turn by intent (`trigger_intent`, its replies through the
customer's own channel) and asks NLU about a text (suggested answers).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List
from urllib.parse import quote

import aiohttp

logger = logging.getLogger(__name__)


class RasaError(Exception):
    """Rasa answered with an error or not at all."""


class RasaClient:
    def __init__(self, url: str, token: str, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _conversation(self, conversation_id: str, tail: str) -> str:
        return f"{self.url}/conversations/{quote(conversation_id, safe='')}/{tail}"

    async def _call(self, method: str, url: str, body: Any = None,
                    **params: str) -> Any:
        params["token"] = self.token
        try:
            async with self.session.request(method, url, json=body, params=params) as answer:
                if answer.status >= 300:
                    detail = (await answer.text())[:300]
                    raise RasaError(f"{method} {url.split('?')[0]}: {answer.status} {detail}")
                return await answer.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise RasaError(f"{method} {url.split('?')[0]}: {error!r}") from error

    async def tracker(self, conversation_id: str) -> Dict[str, Any]:
        return await self._call(
            "GET", self._conversation(conversation_id, "tracker"), include_events="ALL"
        )

    async def append(self, conversation_id: str, events: List[Dict[str, Any]]) -> None:
        await self._call(
            "POST", self._conversation(conversation_id, "tracker/events"), events,
            include_events="NONE",
        )

    async def trigger(
        self, conversation_id: str, intent: str, channel: str,
        entities: Dict[str, Any] | None = None,
    ) -> None:
        """The bot's turn as if the customer had said `intent`, answered through the
        customer's channel (by name: the conversation id's prefix)."""
        await self._call(
            "POST", self._conversation(conversation_id, "trigger_intent"),
            {"name": intent, "entities": entities or {}},
            output_channel=channel, include_events="NONE",
        )

    async def parse(self, text: str) -> Dict[str, Any]:
        return await self._call("POST", f"{self.url}/model/parse", {"text": text})
