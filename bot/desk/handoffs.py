"""The handoff lifecycle (DESIGN.md): request → queued → with_agent → closed, with
transfer, cancel, time-out and "out of reach" (a ticket) on the way.

`request` runs in the action server (action_handoff): it decides whether a
person can come at all and, if so, queues the conversation. Everything after
that runs in the desk (`Desk`): assignment, the agent's replies, transfer,
close. Each step changes SQL first (the durable record), then Redis (the live
state), then tells the consoles and the customer (Zulip's order: notify after
commit).

Changes of hands (assign, transfer, close, cancel, requeue) run under one Redis
lock, so several desk instances never give a conversation to two agents.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List

from redis import asyncio as aioredis

from bot.desk import records
from bot.desk import state as st
from bot.desk.config import DeskConfig
from bot.desk.phrases import Phrases
from bot.desk.rasa import RasaClient, RasaError
from bot.desk.state import AgentState, Chat

logger = logging.getLogger(__name__)

# Typed (or tapped) while waiting: back to the bot.
CANCEL_WORDS = {
    "取消", "取消排队", "不等了", "不排了", "退出排队", "退出人工", "算了",
    "cancel", "stop", "stop waiting", "never mind", "nevermind", "quit", "exit",
}
# Messages typed while waiting get an acknowledgement at most this often.
ACK_SECONDS = 5.0


def is_cancel(text: str | None) -> bool:
    cleaned = (text or "").strip().lower().rstrip("。.!！~～ ")
    return cleaned in CANCEL_WORDS


# --- the request (action server) ---------------------------------------------------------


@dataclass
class Request:
    conversation_id: str
    channel: str
    language: str
    reason: str  # asked | complaint | misunderstood | vip
    topic_intent: str | None
    customer_id: int = 0
    customer_name: str = ""
    customer_level: str = ""
    verified: bool = False
    last_text: str = ""


@dataclass
class Outcome:
    # queued | connecting (a person is free) | no_agent | closed_hours
    kind: str
    position: int = 0
    wait_minutes: int = 0
    opens: dt.datetime | None = None
    handoff_id: int = 0


async def request(
    r: aioredis.Redis, database_url: str, config: DeskConfig, req: Request,
    is_open: bool, opens: dt.datetime | None,
) -> Outcome:
    """Queue the conversation for a person, or say why no person can come."""
    existing = await st.get_chat(r, req.conversation_id)
    if existing is not None:  # asked twice: same place in the queue
        position = await st.position(r, existing) or 0
        return Outcome("queued", position, 1, handoff_id=existing.handoff_id)
    if not is_open:
        return Outcome("closed_hours", opens=opens)
    group = config.group_for(req.topic_intent)
    if not await st.available_agents(r, group, config.grace_seconds):
        return Outcome("no_agent")
    priority = config.priority_for(req.reason, req.customer_level)
    handoff_id = await records.in_thread(lambda: records.create_handoff(
        database_url, conversation_id=req.conversation_id, channel=req.channel,
        customer_id=req.customer_id or None, language=req.language, group_name=group,
        priority=priority, reason=req.reason, topic_intent=req.topic_intent,
    ))
    chat = Chat(
        conversation_id=req.conversation_id, handoff_id=handoff_id, channel=req.channel,
        group=group, priority=priority, reason=req.reason, language=req.language,
        customer_id=req.customer_id, customer_name=req.customer_name,
        customer_level=req.customer_level, verified=int(req.verified),
        queued_at=st.now(), last_text=req.last_text[:200], last_at=st.now(),
    )
    await st.put_queued(r, chat)
    position = await st.position(r, chat) or 1
    chat.last_position = position
    await st.set_fields(r, chat.conversation_id, last_position=position)
    await st.notify(r, await audience(r, chat), {
        "type": "conversation", "conversation": await summary(r, chat, position)})
    free = await _free_agents(r, group, config.grace_seconds)
    if position == 1 and free:
        return Outcome("connecting", 1, 0, handoff_id=handoff_id)
    wait = await st.estimated_wait_minutes(r, group, position, config.default_handle_seconds,
                                           config.grace_seconds)
    return Outcome("queued", position, wait, handoff_id=handoff_id)


async def _free_agents(r: aioredis.Redis, group: str, present: float) -> List[AgentState]:
    agents = await st.available_agents(r, group, present)
    load = await st.loads(r, [a.id for a in agents])
    return [a for a in agents if load.get(a.id, 0) < a.capacity]


async def audience(r: aioredis.Redis, chat: Chat) -> set[int]:
    """Who is told of this conversation: supervisors, its agent, and while it waits,
    its group's agents whose consoles follow their feeds (busy ones too: the console
    shows the queue); the others load the queue from the state when they come back."""
    ids = set(await st.supervisor_ids(r))
    if chat.agent_id:
        ids.add(chat.agent_id)
    if chat.state == "queued":
        ids |= await st.listening(r, await st.group_agent_ids(r, chat.group))
    return ids


async def summary(r: aioredis.Redis, chat: Chat, position: int | None = None) -> Dict[str, Any]:
    if position is None and chat.state == "queued":
        position = await st.position(r, chat)
    return {
        "id": chat.conversation_id,
        "channel": chat.channel,
        "state": chat.state,
        "handoff_id": chat.handoff_id,
        "group": chat.group,
        "priority": chat.priority,
        "reason": chat.reason,
        "language": chat.language,
        "customer": {"name": chat.customer_name or None, "level": chat.customer_level or None,
                     "verified": bool(chat.verified)},
        "agent": {"id": chat.agent_id, "name": chat.agent_name} if chat.agent_id else None,
        "queued_at": chat.queued_at,
        "assigned_at": chat.assigned_at or None,
        "position": position if chat.state == "queued" else None,
        "last_message": {"text": chat.last_text, "at": chat.last_at} if chat.last_text else None,
        "unread": chat.unread,
    }


# --- the desk ---------------------------------------------------------------------------


class Desk:
    """The desk process's view: live state, records, the customer's channel, Rasa."""

    def __init__(
        self, redis: aioredis.Redis, database_url: str, config: DeskConfig, push: Any,
        rasa: RasaClient, phrases: Phrases, transcript: Any = None,
    ) -> None:
        self.r = redis
        self.database_url = database_url
        self.config = config
        # Delivers only; what it delivered goes into the tracker via `transcript`
        # (bot.desk.transcript.TranscriptWriter; None: not recorded, e.g. in tests
        # without Rasa).
        self.push = push
        self.rasa = rasa
        self.phrases = phrases
        self.transcript = transcript

    async def record(self, conversation_id: str, message: Dict[str, Any],
                     metadata: Dict[str, Any]) -> None:
        """A delivered message into the conversation's transcript."""
        if self.transcript is None:
            return
        from bot.desk.transcript import bot_event

        try:
            await self.transcript.append(
                conversation_id, bot_event(message, {**metadata, "pushed": True}))
        except Exception:  # delivered all the same: say so, don't fail the reply
            logger.exception("message to %s delivered but not in its transcript",
                             conversation_id)

    def lock(self) -> Any:
        return self.r.lock(st.LOCK, timeout=30, blocking_timeout=15)

    # --- telling people ---

    async def tell(self, chat: Chat, event: Dict[str, Any], also: Iterable[int] = ()) -> None:
        await st.notify(self.r, (await audience(self.r, chat)) | set(also), event)

    async def tell_changed(self, chat: Chat, also: Iterable[int] = ()) -> None:
        await self.tell(chat, {"type": "conversation",
                               "conversation": await summary(self.r, chat)}, also)

    async def say(self, chat: Chat, response: str, **values: Any) -> bool:
        """A desk sentence (domain.yml) to the customer; False if it didn't arrive."""
        message = self.phrases.message(response, chat.language, **values)
        try:
            await self.push.send(chat.conversation_id, message)
        except Exception as error:  # the customer is out of reach: the desk goes on
            logger.warning("%s to %s not delivered: %s", response, chat.conversation_id, error)
            return False
        await self.record(chat.conversation_id, message, {"desk": True, "response": response})
        await self.tell(chat, {"type": "line", "conversation_id": chat.conversation_id,
                               "line": line_of_bot(message, None)})
        return True

    async def audit(self, agent: AgentState | None, action: str, chat: Chat | None,
                    **detail: Any) -> None:
        actor = f"agent:{agent.username}" if agent else "system"
        await records.in_thread(lambda: records.audit(
            self.database_url, actor, action,
            target=chat.conversation_id if chat else None,
            detail={"handoff_id": chat.handoff_id, **detail} if chat else (detail or None),
            customer_id=chat.customer_id if chat else None,
        ))

    # --- routing ---

    async def route(self) -> int:
        """Give waiting conversations (paused by Rasa) to free agents with the skill,
        least loaded first. Returns how many were assigned."""
        assigned = 0
        async with self.lock():
            for group in self.config.group_names:
                ids = await st.queue(self.r, group)
                if not ids:
                    continue
                for chat in await st.get_chats(self.r, ids):
                    if not chat.paused:
                        continue
                    free = await _free_agents(self.r, group, self.config.grace_seconds)
                    if not free:
                        break
                    load = await st.loads(self.r, [a.id for a in free])
                    agent = min(free, key=lambda a: (load.get(a.id, 0), a.id))
                    await self._assign(chat, agent, transfer=False)
                    assigned += 1
        return assigned

    async def _assign(self, chat: Chat, agent: AgentState, transfer: bool,
                      by: AgentState | None = None) -> None:
        """Under the lock."""
        previous = chat.agent_id
        was_queued = chat.state == "queued"
        # Those who were told it waits (`audience`) are told it no longer does.
        group_before = (await st.listening(self.r, await st.group_agent_ids(self.r, chat.group))
                        if was_queued else set())
        await records.in_thread(lambda: records.mark_assigned(
            self.database_url, chat.handoff_id, agent.id, transfer))
        await st.put_assigned(self.r, chat, agent)
        view = await summary(self.r, chat)
        sees = await audience(self.r, chat)
        gone = (set(group_before) | ({previous} if previous else set())) - sees
        await st.notify(self.r, gone, {"type": "conversation_removed",
                                       "conversation_id": chat.conversation_id,
                                       "why": "assigned"})
        await st.notify(self.r, sees - {agent.id}, {"type": "conversation", "conversation": view})
        await st.notify(self.r, [agent.id], {"type": "assigned", "conversation": view})
        await self.audit(by, "desk.transfer" if transfer else "desk.assign", chat,
                         to=agent.username)
        if previous and previous != agent.id:
            await self.say(chat, "utter_handoff_transferred", agent=agent.name)
        else:
            await self.say(chat, "utter_handoff_agent_joined", agent=agent.name)

    async def accept(self, chat_id: str, agent: AgentState) -> Chat:
        async with self.lock():
            chat = await self._open(chat_id)
            if chat.state != "queued":
                raise Conflict("this conversation is not waiting")
            if chat.group not in agent.groups and not agent.supervises:
                raise Forbidden("not your group")
            await self._assign(chat, agent, transfer=False, by=agent)
            return chat

    async def assign(self, chat_id: str, target: AgentState, by: AgentState) -> Chat:
        async with self.lock():
            chat = await self._open(chat_id)
            if chat.agent_id == target.id:
                raise Conflict("already theirs")
            await self._assign(chat, target, transfer=chat.state == "with_agent", by=by)
            return chat

    async def transfer_to_group(self, chat_id: str, group: str, by: AgentState) -> Chat:
        if group not in self.config.groups:
            raise BadRequest(f"no group {group!r}")
        async with self.lock():
            chat = await self._open(chat_id)
            previous = chat.agent_id
            await st.release_agent(self.r, chat)
            await st.dequeue(self.r, chat)
            chat.group, chat.front = group, 1
            await records.in_thread(lambda: records.mark_requeued(
                self.database_url, chat.handoff_id, transfer=True))
            await st.put_queued(self.r, chat)
            await self.audit(by, "desk.transfer", chat, group=group)
            if previous:
                await st.notify(self.r, [previous], {
                    "type": "conversation_removed", "conversation_id": chat.conversation_id,
                    "why": "transferred"})
            await self.tell_changed(chat)
            await self.say(chat, "utter_handoff_requeued")
        await self.route()
        return chat

    async def requeue_agent(self, agent_id: int) -> int:
        """The agent is gone (grace period over): their chats go back, at the front."""
        moved = 0
        async with self.lock():
            for chat in await st.get_chats(self.r, await st.agent_chats(self.r, agent_id)):
                if chat.agent_id != agent_id:
                    continue
                await st.release_agent(self.r, chat)
                chat.front = 1
                await records.in_thread(lambda c=chat: records.mark_requeued(
                    self.database_url, c.handoff_id, transfer=False))
                await st.put_queued(self.r, chat)
                await self.audit(None, "desk.requeue", chat, agent_id=agent_id)
                await st.notify(self.r, [agent_id], {
                    "type": "conversation_removed", "conversation_id": chat.conversation_id,
                    "why": "requeued"})
                await self.tell_changed(chat)
                await self.say(chat, "utter_handoff_requeued")
                moved += 1
        if moved:
            await self.route()
        return moved

    # --- ending ---

    async def close(self, chat_id: str, by: AgentState) -> Chat:
        """The agent is done: the bot takes over and asks whether it was solved."""
        async with self.lock():
            chat = await self._open(chat_id)
            if chat.state != "with_agent":
                raise Conflict("only a conversation with an agent can be closed")
            await self._end(chat, "closed", f"agent:{by.username}", "closed")
            await self.audit(by, "desk.close", chat)
            if chat.assigned_at:
                await st.record_handle_time(self.r, chat.group, st.now() - chat.assigned_at)
        await self._back_to_bot(chat, "handoff_closed")
        return chat

    async def cancel(self, chat: Chat, why: str = "cancelled", then: str = "handoff_cancelled"
                     ) -> None:
        """The customer stopped waiting (or chose to leave a message instead)."""
        async with self.lock():
            current = await st.get_chat(self.r, chat.conversation_id)
            if current is None or current.handoff_id != chat.handoff_id:
                return
            await self._end(current, "cancelled", "customer", why)
            await self.audit(None, f"desk.{why}", current)
        await self._back_to_bot(current, then)

    async def time_out(self, chat: Chat) -> None:
        async with self.lock():
            current = await st.get_chat(self.r, chat.conversation_id)
            if current is None or current.state != "queued":
                return
            await self._end(current, "cancelled", "system:timeout", "timeout")
            await self.audit(None, "desk.timeout", current)
        await self._back_to_bot(current, "handoff_timeout")

    async def unreachable(self, chat: Chat, agent: AgentState, code: str, detail: str,
                          undelivered: str) -> str:
        """The platform refused the agent's message (WeChat 45015: the customer
        hasn't written for 48 hours): the conversation becomes a ticket."""
        async with self.lock():
            current = await st.get_chat(self.r, chat.conversation_id) or chat
            ticket = await records.in_thread(lambda: records.create_ticket(
                self.database_url, current.conversation_id, current.channel,
                current.customer_id, current.conversation_id,
                f"[{agent.name}, not delivered: {code}] {undelivered}\n"
                f"[customer] {current.last_text}", current.language))
            await self._end(current, "message_left", f"agent:{agent.username}", "ticket",
                            ticket_id=ticket)
            await self.audit(agent, "desk.ticket", current, code=code, ticket=ticket)
        await st.notify(self.r, (await audience(self.r, current)) | {agent.id}, {
            "type": "delivery_failed", "conversation_id": current.conversation_id,
            "code": code, "detail": detail, "ticket_id": ticket})
        await self._resume(current)
        # Worth a try: a refusal may be temporary (45047: quota), and then the
        # customer knows their message number.
        await self.say(current, "utter_handoff_ticket", ticket_id=ticket)
        return ticket

    async def _end(self, chat: Chat, state: str, ended_by: str, why: str,
                   ticket_id: str | None = None) -> None:
        """Under the lock: the durable record, the live state, the consoles."""
        await records.in_thread(lambda: records.mark_ended(
            self.database_url, chat.handoff_id, state, ended_by, ticket_id))
        sees = await audience(self.r, chat)
        await st.remove_chat(self.r, chat)
        await st.notify(self.r, sees, {"type": "conversation_removed",
                                       "conversation_id": chat.conversation_id, "why": why})

    async def _resume(self, chat: Chat) -> None:
        try:
            # The pause ended a turn without Rasa's action_listen: add it, so the
            # bot's next turn starts as any turn does (rules expect it).
            await self.rasa.append(chat.conversation_id, [
                {"event": "resume"},
                {"event": "slot", "name": "language", "value": chat.language},
                {"event": "action", "name": "action_listen"},
            ])
        except RasaError:
            logger.exception("could not resume %s", chat.conversation_id)

    async def _back_to_bot(self, chat: Chat, intent: str) -> None:
        await self._resume(chat)
        try:
            await self.rasa.trigger(chat.conversation_id, intent, chat.channel)
        except RasaError:
            logger.exception("the bot could not take %s back", chat.conversation_id)

    async def _open(self, chat_id: str) -> Chat:
        chat = await st.get_chat(self.r, chat_id)
        if chat is None:
            raise NotFound("no open handoff for this conversation")
        return chat

    # --- messages ---

    async def reply(self, chat: Chat, agent: AgentState, text: str) -> Dict[str, Any]:
        """The agent's message, through the customer's own channel, into the transcript."""
        from connectors.push import DeliveryFailed

        metadata = {"desk": True, "agent": {"id": agent.id, "name": agent.name,
                                            "username": agent.username}}
        try:
            await self.push.send(chat.conversation_id, {"text": text})
        except DeliveryFailed as failure:
            if failure.code in ("45015", "45047", "48002", "43004"):
                ticket = await self.unreachable(chat, agent, failure.code, failure.detail, text)
                raise Unreachable(failure.code, failure.detail, ticket) from failure
            raise Unreachable(failure.code, failure.detail, None) from failure
        line = {"role": "agent", "text": text, "at": st.now(), "agent": agent.name,
                "intent": None, "confidence": None, "buttons": []}
        await self.tell(chat, {"type": "line", "conversation_id": chat.conversation_id,
                               "line": line})
        await self.record(chat.conversation_id, {"text": text}, metadata)
        if await self.r.hsetnx(st.chat_key(chat.conversation_id), "responded", "1"):
            await records.in_thread(lambda: records.mark_first_response(
                self.database_url, chat.handoff_id))
        await self.audit(agent, "desk.reply", chat, chars=len(text))
        return line

    async def on_customer_line(self, chat: Chat, event: Dict[str, Any]) -> None:
        """A message the customer sent while handed off (from the event pipe)."""
        text = event.get("text") or ""
        parse = event.get("parse_data") or {}
        intent = (parse.get("intent") or {}).get("name")
        if chat.state == "queued":
            if is_cancel(text):
                await self.cancel(chat)
                return
            if intent == "leave_message" and (
                text.startswith("/") or (parse.get("intent") or {}).get("confidence", 0) >= 0.8
            ):
                await self.cancel(chat, why="message", then="leave_message")
                return
        line = line_of_customer(event)
        language = parse.get("language")
        if language in ("zh", "en") and language != chat.language:
            # The customer switched language: the desk's sentences and the bot's
            # closing question follow.
            chat.language = language
            await st.set_fields(self.r, chat.conversation_id, language=language)
        unread = await self.r.hincrby(st.chat_key(chat.conversation_id), "unread", 1)
        await st.set_fields(self.r, chat.conversation_id, last_text=text[:200],
                            last_at=line["at"])
        chat.unread, chat.last_text, chat.last_at = unread, text[:200], line["at"]
        await self.tell(chat, {"type": "line", "conversation_id": chat.conversation_id,
                               "line": line, "unread": unread})
        if chat.state == "queued" and st.now() - chat.last_ack_at >= ACK_SECONDS:
            # Never silent: the customer hears that their message waits for the agent.
            await st.set_fields(self.r, chat.conversation_id, last_ack_at=st.now())
            position = await st.position(self.r, chat) or 1
            await self.say(chat, "utter_handoff_waiting", position=position)

    async def on_bot_line(self, chat: Chat, event: Dict[str, Any]) -> None:
        metadata = event.get("metadata") or {}
        if metadata.get("desk"):
            return  # the desk said it and told the consoles already
        await self.tell(chat, {"type": "line", "conversation_id": chat.conversation_id,
                               "line": line_of_bot_event(event)})

    # --- the clock ---

    async def tick(self) -> None:
        """Queue positions to customers, time-outs, agents gone past their grace."""
        now = st.now()
        for group in self.config.group_names:
            ids = await st.queue(self.r, group)
            for index, chat in enumerate(await st.get_chats(self.r, ids), start=1):
                if now - chat.queued_at > self.config.max_wait_seconds and not chat.front:
                    await self.time_out(chat)
                    continue
                due = now - chat.last_notice_at >= self.config.position_update_seconds
                if index != chat.last_position and due and chat.paused:
                    wait = await st.estimated_wait_minutes(
                        self.r, group, index, self.config.default_handle_seconds,
                        self.config.grace_seconds)
                    await st.set_fields(self.r, chat.conversation_id, last_position=index,
                                        last_notice_at=now)
                    await self.say(chat, "utter_handoff_position", position=index,
                                   wait_minutes=wait)
        loaded = await self.r.zrangebyscore(st.LOAD, 1, "+inf")
        ids = [int(st.as_text(a)) for a in loaded]
        seen = await st.seen_at(self.r, ids)
        for agent_id in ids:
            if now - seen.get(agent_id, 0) > self.config.grace_seconds:
                await self.requeue_agent(agent_id)

    async def reconcile(self) -> int:
        """Open handoffs SQL has and Redis lost (a Redis without persistence
        restarted): back in their queues, in their original order. One older than
        the longest wait is over: the bot takes it back and offers a message, as
        after any wait too long (a paused conversation must not stay paused)."""
        rebuilt = 0
        now = st.now()
        async with self.lock():  # two instances starting together do it once
            for row in await records.in_thread(lambda: records.open_handoffs(self.database_url)):
                if await st.get_chat(self.r, row["conversation_id"]) is not None:
                    continue
                chat = Chat(
                    conversation_id=row["conversation_id"], handoff_id=row["id"],
                    channel=row["channel"], group=row["group"] if row["group"] in self.config.groups
                    else self.config.default_group, priority=row["priority"], reason=row["reason"],
                    language=row["language"], customer_id=row["customer_id"],
                    queued_at=row["requested_at"] or now, paused=1, front=1,
                )
                if now - chat.queued_at > self.config.max_wait_seconds:
                    await records.in_thread(lambda c=chat: records.mark_ended(
                        self.database_url, c.handoff_id, "cancelled", "system:lost"))
                    await self._back_to_bot(chat, "handoff_timeout")
                    continue
                await records.in_thread(lambda c=chat: records.mark_requeued(
                    self.database_url, c.handoff_id, transfer=False))
                await st.put_queued(self.r, chat)
                rebuilt += 1
        return rebuilt


# --- transcript lines -----------------------------------------------------------------------


def line_of_customer(event: Dict[str, Any]) -> Dict[str, Any]:
    parse = event.get("parse_data") or {}
    intent = parse.get("intent") or {}
    return {"role": "customer", "text": event.get("text") or "",
            "at": float(event.get("timestamp") or st.now()),
            "intent": intent.get("name"), "confidence": intent.get("confidence"),
            "agent": None, "buttons": []}


def line_of_bot(message: Dict[str, Any], agent: str | None) -> Dict[str, Any]:
    return {"role": "agent" if agent else "bot", "text": message.get("text") or "",
            "at": st.now(), "intent": None, "confidence": None, "agent": agent,
            "buttons": [{"title": b.get("title", ""), "payload": b.get("payload", "")}
                        for b in message.get("buttons") or []]}


def line_of_bot_event(event: Dict[str, Any]) -> Dict[str, Any]:
    data = event.get("data") or {}
    agent = ((event.get("metadata") or {}).get("agent") or {}).get("name")
    line = line_of_bot({"text": event.get("text"), "buttons": data.get("buttons")}, agent)
    line["at"] = float(event.get("timestamp") or line["at"])
    return line


def transcript(events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """A tracker's events as the console's lines (with what NLU saw)."""
    lines: List[Dict[str, Any]] = []
    for event in events:
        kind = event.get("event")
        if kind == "user":
            lines.append(line_of_customer(event))
        elif kind == "bot":
            lines.append(line_of_bot_event(event))
        elif kind in ("pause", "resume"):
            # An event appended without a time stands where it is in the transcript.
            at = float(event.get("timestamp") or (lines[-1]["at"] if lines else 0))
            lines.append({"role": "system", "text": "handed to a person" if kind == "pause"
                          else "back to the bot", "at": at,
                          "intent": None, "confidence": None, "agent": None, "buttons": []})
    return lines


class DeskError(Exception):
    status = 400


class BadRequest(DeskError):
    status = 400


class Forbidden(DeskError):
    status = 403


class NotFound(DeskError):
    status = 404


class Conflict(DeskError):
    status = 409


class Unreachable(DeskError):
    status = 502

    def __init__(self, code: str, detail: str, ticket_id: str | None) -> None:
        super().__init__(f"the customer could not be reached ({code} {detail})")
        self.code, self.detail, self.ticket_id = code, detail, ticket_id
