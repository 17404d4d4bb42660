"""The desk's reader of the event pipe (bot.events.stream): what customers say
while handed off reaches the agent; Rasa's pause lets a person join.

It reads with the consumer group "desk", so a desk instance that restarts
first gets what it had read and not acknowledged, and several instances share
the work. An entry is acknowledged only after it was handled; a marker per
handled entry keeps one that comes again (after a crash between handling and
acknowledging) from reaching the agent twice: it is written in the same Redis
transaction as the first thing the entry tells an agent (bot.desk.state.notify).
"""

from __future__ import annotations

import asyncio
import logging

from bot.desk import state as st
from bot.desk.handoffs import Desk
from bot.events.stream import Entry, StreamConsumer

logger = logging.getLogger(__name__)

_KINDS = {"user", "bot", "pause"}


class DeskConsumer:
    def __init__(self, desk: Desk, consumer: StreamConsumer) -> None:
        self.desk = desk
        self.consumer = consumer

    async def handle(self, entry: Entry) -> None:
        kind = entry.event.get("event")
        if kind not in _KINDS or not entry.sender_id:
            return
        r = self.desk.r
        chat = await st.get_chat(r, entry.sender_id)
        if chat is None:
            return  # not handed off: the bot has it
        marker = st.handled_key(entry.id)
        if await r.exists(marker):
            return  # handled before a crash: read again, not told again
        st.handling.set(entry.id)
        if kind == "pause":
            await st.set_fields(r, chat.conversation_id, paused=1)
            await self.desk.route()
        elif not chat.paused:
            pass  # the turn that asked for a person: the bot's own, already answered
        elif kind == "user":
            await self.desk.on_customer_line(chat, entry.event)
        else:
            await self.desk.on_bot_line(chat, entry.event)
        if st.handling.get() is not None:  # nothing was told: mark it now
            st.handling.set(None)
            await r.set(marker, 1, ex=st.HANDLED_TTL)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.consumer.run_once(self.handle, count=100, block_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away or a bad entry: try again, lose nothing
                logger.exception("desk: reading the event pipe failed; retrying")
                await asyncio.sleep(1)
