"""The desk's lines in the transcript, written without a trip through Rasa.

The transcript is the tracker: what an agent (or the desk) says to a customer is
a `bot` event in the conversation's tracker, whose metadata names the agent.
Appending it through Rasa's HTTP API makes Rasa's one event loop load the whole
conversation, append and save it again for every agent message: at 1,000 open
chats that was half of Rasa's work (bench/handoff.py). Here the desk does what
Rasa's SQL tracker store does for a new event, under Rasa's own conversation
lock (the Redis lock store every Rasa instance uses, so no turn of Rasa's can
interleave), and appends it to the event pipe as Rasa's broker would.
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict

from redis import asyncio as aioredis

from bot.events.stream import DEFAULT_MAX_LENGTH, STREAM, entry_fields
from bot.stores import RedisURLLockStore, URLTrackerStore

MESSAGE_DATA_KEYS = ("buttons", "quick_replies", "image", "attachment", "custom", "elements")


def bot_event(message: Dict[str, Any], metadata: Dict[str, Any]) -> Dict[str, Any]:
    """A Rasa `bot` event (BotUttered.as_dict()) for a delivered message."""
    data = {k: message.get(k) for k in MESSAGE_DATA_KEYS}
    return {"event": "bot", "timestamp": time.time(), "metadata": metadata,
            "text": message.get("text"), "data": data}


class TranscriptWriter:
    def __init__(self, tracker_db_url: str, redis: aioredis.Redis) -> None:
        self.store = URLTrackerStore(host=tracker_db_url)
        self.locks = RedisURLLockStore()
        self.redis = redis

    async def append(self, conversation_id: str, event: Dict[str, Any]) -> None:
        async with self.locks.lock(conversation_id):
            await self.store.in_store_thread(self._insert, conversation_id, event)
        await self.redis.xadd(STREAM, entry_fields({**event, "sender_id": conversation_id}),
                              maxlen=DEFAULT_MAX_LENGTH, approximate=True)

    def _insert(self, conversation_id: str, event: Dict[str, Any]) -> None:
        with self.store.session_scope() as session:
            session.add(self.store.SQLEvent(
                sender_id=conversation_id, type_name="bot", timestamp=event["timestamp"],
                intent_name=None, action_name=None, data=json.dumps(event),
            ))
            session.commit()
