"""The desk's live state in Redis: queues, chats, agents' presence and load, and
each agent's event feed. Shared by every desk instance and the action server.

Keys (all under `desk:`):

    desk:chat:<conversation id>  hash   a conversation handed off (Chat)
    desk:chats                   set    conversation ids of every open handoff
    desk:queue:<group>           zset   queued conversation ids, by priority then arrival
    desk:agent:<id>              hash   an agent: name, role, groups, capacity, status
    desk:group:<group>           set    agent ids serving that group
    desk:supervisors             set    supervisor and admin ids
    desk:load                    zset   agent id -> conversations they have
    desk:mine:<agent id>         set    those conversations
    desk:seen                    zset   agent id -> when their console last spoke (s)
    desk:synced                  zset   agent id -> when their console last loaded the state (s)
    desk:feed:<agent id>         stream what that agent's console is told (event ids)
    desk:handle:<group>          list   recent handle times (s), for wait estimates
    desk:lock                    lock   held while a handoff changes hands

Live delivery: an event is appended to each recipient's feed (its id is the
event id) and announced on the pub/sub channel `desk:live`; every desk
instance forwards announcements to the consoles connected to it. A console
that reconnects reads its feed from the last id it saw: nothing is missed.
A group's queue events go only to its agents who follow their feeds
(`listening`); an agent who comes back gets a `resync` in their feed
(`renew`), so a console from before reloads the state instead.
"""

from __future__ import annotations

import json
import math
import time
from contextvars import ContextVar
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Iterable, List, Sequence, Set

from redis import asyncio as aioredis

P = "desk:"
CHATS = P + "chats"
LOAD = P + "load"
SEEN = P + "seen"
SYNCED = P + "synced"
SUPERVISORS = P + "supervisors"
LOCK = P + "lock"
LIVE = P + "live"
WAKE = P + "wake"
FEED_LENGTH = 2000
HANDLE_SAMPLES = 50
# Queue scores: higher priority first, then arrival. Seconds since this epoch
# keep millisecond precision in a float score next to priority * 1e9.
_EPOCH = 1_700_000_000
_FRONT = 1000  # requeued conversations (their agent left) go before everyone


def chat_key(conversation_id: str) -> str:
    return f"{P}chat:{conversation_id}"


def queue_key(group: str) -> str:
    return f"{P}queue:{group}"


def agent_key(agent_id: int | str) -> str:
    return f"{P}agent:{agent_id}"


def group_key(group: str) -> str:
    return f"{P}group:{group}"


def mine_key(agent_id: int | str) -> str:
    return f"{P}mine:{agent_id}"


def feed_key(agent_id: int | str) -> str:
    return f"{P}feed:{agent_id}"


def handle_key(group: str) -> str:
    return f"{P}handle:{group}"


@dataclass
class Chat:
    """A conversation with an open handoff, as the desk keeps it in Redis."""

    conversation_id: str
    handoff_id: int
    channel: str
    group: str
    state: str = "queued"  # queued | with_agent
    priority: int = 0
    reason: str = "asked"
    language: str = "zh"
    customer_id: int = 0
    customer_name: str = ""
    customer_level: str = ""
    verified: int = 0
    agent_id: int = 0
    agent_name: str = ""
    queued_at: float = 0.0
    assigned_at: float = 0.0
    # Rasa has stored the pause: only then may a person join (no bot reply can cross).
    paused: int = 0
    front: int = 0
    last_text: str = ""
    last_at: float = 0.0
    last_position: int = 0
    last_notice_at: float = 0.0
    last_ack_at: float = 0.0
    unread: int = 0

    def to_redis(self) -> Dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_redis(cls, raw: Dict[Any, Any]) -> Chat | None:
        if not raw:
            return None
        data = {as_text(k): as_text(v) for k, v in raw.items()}
        values: Dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.type in ("int", int):
                values[f.name] = int(float(value or 0))
            elif f.type in ("float", float):
                values[f.name] = float(value or 0)
            else:
                values[f.name] = value
        if "conversation_id" not in values or "handoff_id" not in values:
            return None
        values.setdefault("channel", values["conversation_id"].split(":", 1)[0])
        values.setdefault("group", "general")
        return cls(**values)

    @property
    def score(self) -> float:
        priority = self.priority + (_FRONT if self.front else 0)
        return -priority * 1e9 + (self.queued_at - _EPOCH)


@dataclass
class AgentState:
    id: int
    username: str
    name: str
    role: str
    groups: List[str]
    capacity: int
    status: str = "offline"  # online | away | offline

    @property
    def supervises(self) -> bool:
        return self.role in ("supervisor", "admin")

    def to_redis(self) -> Dict[str, str]:
        return {
            "id": str(self.id), "username": self.username, "name": self.name,
            "role": self.role, "groups": ",".join(self.groups),
            "capacity": str(self.capacity), "status": self.status,
        }

    @classmethod
    def from_redis(cls, raw: Dict[Any, Any]) -> AgentState | None:
        if not raw:
            return None
        d = {as_text(k): as_text(v) for k, v in raw.items()}
        return cls(
            id=int(d["id"]), username=d["username"], name=d["name"], role=d["role"],
            groups=[g for g in d.get("groups", "").split(",") if g],
            capacity=int(d.get("capacity") or 1), status=d.get("status") or "offline",
        )


def as_text(value: Any) -> str:
    """A Redis reply (bytes) or any value as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def now() -> float:
    return time.time()


# --- chats ----------------------------------------------------------------------------


async def get_chat(r: aioredis.Redis, conversation_id: str) -> Chat | None:
    return Chat.from_redis(await r.hgetall(chat_key(conversation_id)))


async def get_chats(r: aioredis.Redis, conversation_ids: Sequence[str]) -> List[Chat]:
    if not conversation_ids:
        return []
    pipe = r.pipeline(transaction=False)
    for cid in conversation_ids:
        pipe.hgetall(chat_key(cid))
    return [c for c in map(Chat.from_redis, await pipe.execute()) if c is not None]


async def all_chats(r: aioredis.Redis) -> List[Chat]:
    ids = sorted(as_text(c) for c in await r.smembers(CHATS))
    return await get_chats(r, ids)


async def put_queued(r: aioredis.Redis, chat: Chat) -> None:
    chat.state, chat.agent_id, chat.agent_name, chat.assigned_at = "queued", 0, "", 0.0
    pipe = r.pipeline(transaction=True)
    pipe.delete(chat_key(chat.conversation_id))
    pipe.hset(chat_key(chat.conversation_id), mapping=chat.to_redis())
    pipe.sadd(CHATS, chat.conversation_id)
    pipe.zadd(queue_key(chat.group), {chat.conversation_id: chat.score})
    await pipe.execute()


async def set_fields(r: aioredis.Redis, conversation_id: str, **values: Any) -> None:
    await r.hset(chat_key(conversation_id), mapping={k: str(v) for k, v in values.items()})


async def put_assigned(r: aioredis.Redis, chat: Chat, agent: AgentState) -> None:
    previous = chat.agent_id
    chat.state, chat.agent_id, chat.agent_name = "with_agent", agent.id, agent.name
    chat.assigned_at = now()
    chat.front = 0
    pipe = r.pipeline(transaction=True)
    pipe.zrem(queue_key(chat.group), chat.conversation_id)
    if previous and previous != agent.id:
        pipe.srem(mine_key(previous), chat.conversation_id)
        pipe.zincrby(LOAD, -1, str(previous))
    if previous != agent.id:
        pipe.sadd(mine_key(agent.id), chat.conversation_id)
        pipe.zincrby(LOAD, 1, str(agent.id))
    pipe.hset(chat_key(chat.conversation_id), mapping=chat.to_redis())
    await pipe.execute()


async def release_agent(r: aioredis.Redis, chat: Chat) -> None:
    """The chat's agent no longer has it (it is requeued or ended)."""
    if chat.agent_id:
        pipe = r.pipeline(transaction=True)
        pipe.srem(mine_key(chat.agent_id), chat.conversation_id)
        pipe.zincrby(LOAD, -1, str(chat.agent_id))
        await pipe.execute()


async def remove_chat(r: aioredis.Redis, chat: Chat) -> None:
    await release_agent(r, chat)
    pipe = r.pipeline(transaction=True)
    pipe.zrem(queue_key(chat.group), chat.conversation_id)
    pipe.srem(CHATS, chat.conversation_id)
    pipe.delete(chat_key(chat.conversation_id))
    await pipe.execute()


async def dequeue(r: aioredis.Redis, chat: Chat) -> None:
    await r.zrem(queue_key(chat.group), chat.conversation_id)


async def position(r: aioredis.Redis, chat: Chat) -> int | None:
    """1 for the next to be served."""
    rank = await r.zrank(queue_key(chat.group), chat.conversation_id)
    return None if rank is None else rank + 1


async def queue(r: aioredis.Redis, group: str) -> List[str]:
    return [as_text(c) for c in await r.zrange(queue_key(group), 0, -1)]


# --- agents ---------------------------------------------------------------------------


async def register_agent(r: aioredis.Redis, agent: AgentState, all_groups: Iterable[str]) -> None:
    """The agent's profile as SQL has it (status kept as it is)."""
    key = agent_key(agent.id)
    status = await r.hget(key, "status")
    if status is not None:
        agent.status = as_text(status)
    pipe = r.pipeline(transaction=True)
    pipe.hset(key, mapping=agent.to_redis())
    for group in all_groups:
        if group in agent.groups:
            pipe.sadd(group_key(group), agent.id)
        else:
            pipe.srem(group_key(group), agent.id)
    if agent.supervises:
        pipe.sadd(SUPERVISORS, agent.id)
    else:
        pipe.srem(SUPERVISORS, agent.id)
    pipe.zadd(LOAD, {str(agent.id): 0}, nx=True)
    await pipe.execute()


async def unregister_agent(r: aioredis.Redis, agent_id: int, all_groups: Iterable[str]) -> None:
    pipe = r.pipeline(transaction=True)
    for group in all_groups:
        pipe.srem(group_key(group), agent_id)
    pipe.srem(SUPERVISORS, agent_id)
    pipe.hset(agent_key(agent_id), "status", "offline")
    await pipe.execute()


async def get_agent(r: aioredis.Redis, agent_id: int | str) -> AgentState | None:
    return AgentState.from_redis(await r.hgetall(agent_key(agent_id)))


async def get_agents(r: aioredis.Redis, agent_ids: Iterable[int | str]) -> List[AgentState]:
    ids = list(agent_ids)
    if not ids:
        return []
    pipe = r.pipeline(transaction=False)
    for agent_id in ids:
        pipe.hgetall(agent_key(agent_id))
    return [a for a in map(AgentState.from_redis, await pipe.execute()) if a is not None]


async def group_agent_ids(r: aioredis.Redis, group: str) -> List[int]:
    return [int(as_text(a)) for a in await r.smembers(group_key(group))]


async def supervisor_ids(r: aioredis.Redis) -> List[int]:
    return [int(as_text(a)) for a in await r.smembers(SUPERVISORS)]


async def set_status(r: aioredis.Redis, agent_id: int, status: str) -> None:
    await r.hset(agent_key(agent_id), "status", status)


async def touch(r: aioredis.Redis, agent_id: int, at: float | None = None) -> None:
    """The agent's console is there (it connected or pinged)."""
    await r.zadd(SEEN, {str(agent_id): at if at is not None else now()})


async def seen_at(r: aioredis.Redis, agent_ids: Sequence[int]) -> Dict[int, float]:
    if not agent_ids:
        return {}
    pipe = r.pipeline(transaction=False)
    for agent_id in agent_ids:
        pipe.zscore(SEEN, str(agent_id))
    return {a: (s or 0.0) for a, s in zip(agent_ids, await pipe.execute(), strict=True)}


async def loads(r: aioredis.Redis, agent_ids: Sequence[int]) -> Dict[int, int]:
    if not agent_ids:
        return {}
    pipe = r.pipeline(transaction=False)
    for agent_id in agent_ids:
        pipe.scard(mine_key(agent_id))
    return {a: int(n) for a, n in zip(agent_ids, await pipe.execute(), strict=True)}


async def agent_chats(r: aioredis.Redis, agent_id: int) -> List[str]:
    return [as_text(c) for c in await r.smembers(mine_key(agent_id))]


PRESENT_SECONDS = 60  # a console pings every 20 s


async def available_agents(
    r: aioredis.Redis, group: str, present_seconds: float = PRESENT_SECONDS
) -> List[AgentState]:
    """Agents who may get a new chat of `group` now: online, console present (it
    spoke within `present_seconds`: after that the agent counts as gone)."""
    ids = await group_agent_ids(r, group)
    agents = await get_agents(r, ids)
    seen = await seen_at(r, [a.id for a in agents])
    cutoff = now() - present_seconds
    return [a for a in agents if a.status == "online" and seen.get(a.id, 0) >= cutoff]


# Queue events reach an agent's feed while their console follows it: they are
# online or away, and a console of theirs spoke or loaded the state this recently
# (an open console touches every 15 s at most; longer than the default grace, so a
# console back within it replays its feed).
LISTENING_SECONDS = 120.0
LISTENING_STATUSES = ("online", "away")


async def listening(
    r: aioredis.Redis, agent_ids: Iterable[int], within: float = LISTENING_SECONDS
) -> Set[int]:
    """Those of `agent_ids` whose consoles follow their feeds (see LISTENING_SECONDS).
    Only they are told of their groups' queues as they change: the others' consoles
    load the queues from the state when they come back (`renew`)."""
    ids = {int(a) for a in agent_ids}
    if not ids:
        return set()
    cutoff = now() - within
    pipe = r.pipeline(transaction=False)
    pipe.zrangebyscore(SEEN, cutoff, "+inf")
    pipe.zrangebyscore(SYNCED, cutoff, "+inf")
    seen, synced = await pipe.execute()
    recent = sorted(ids & {int(as_text(a)) for a in (*seen, *synced)})
    if not recent:
        return set()
    pipe = r.pipeline(transaction=False)
    for agent_id in recent:
        pipe.hget(agent_key(agent_id), "status")
    statuses = await pipe.execute()
    return {a for a, status in zip(recent, statuses, strict=True)
            if status is not None and as_text(status) in LISTENING_STATUSES}


async def renew(
    r: aioredis.Redis, agent_id: int, *, seen: bool = False, synced: bool = False,
    status: str | None = None,
) -> str | None:
    """A console of the agent's connected (`seen`) or loaded the state (`synced`),
    or their status changes. If that makes them `listening` after a time they were
    not, their feed lacks the queue events of that time: a `resync` goes into it,
    so a console from before reloads the state rather than replaying its feed (one
    that loads the state from now on starts after it). The resync's id, if so."""
    key = str(agent_id)
    at = now()
    # Read and written at once: of two renewals together, one sees the other's.
    pipe = r.pipeline(transaction=True)
    pipe.hget(agent_key(agent_id), "status")
    pipe.zscore(SEEN, key)
    pipe.zscore(SYNCED, key)
    if seen:
        pipe.zadd(SEEN, {key: at})
    if synced:
        pipe.zadd(SYNCED, {key: at})
    if status is not None:
        pipe.hset(agent_key(agent_id), "status", status)
    old_status, old_seen, old_synced = (await pipe.execute())[:3]
    before = as_text(old_status) if old_status is not None else "offline"
    recent = max(old_seen or 0.0, old_synced or 0.0) >= at - LISTENING_SECONDS
    was = before in LISTENING_STATUSES and recent
    now_listening = (status or before) in LISTENING_STATUSES and (recent or seen or synced)
    if now_listening and not was:
        return (await notify(r, [agent_id], {"type": "resync"}))[agent_id]
    return None


# --- wait estimates ---------------------------------------------------------------------


async def record_handle_time(r: aioredis.Redis, group: str, seconds: float) -> None:
    pipe = r.pipeline(transaction=False)
    pipe.lpush(handle_key(group), f"{seconds:.1f}")
    pipe.ltrim(handle_key(group), 0, HANDLE_SAMPLES - 1)
    await pipe.execute()


async def estimated_wait_minutes(
    r: aioredis.Redis, group: str, position: int, default_handle_seconds: float,
    present_seconds: float = PRESENT_SECONDS,
) -> int:
    """About how long the customer at `position` waits: the recent mean handle time,
    shared by the group's online agents' free and future capacity."""
    samples = [float(as_text(s)) for s in await r.lrange(handle_key(group), 0, -1)]
    handle = sum(samples) / len(samples) if samples else default_handle_seconds
    agents = await available_agents(r, group, present_seconds)
    slots = sum(a.capacity for a in agents) or 1
    return max(1, math.ceil(position * handle / slots / 60))


# --- feeds ------------------------------------------------------------------------------


# The event-pipe entry being handled (bot.desk.consumer): its "handled" marker is
# written in the same transaction as the first feed entries it causes, so an
# entry read again after a crash never reaches an agent twice.
handling: ContextVar[str | None] = ContextVar("handling", default=None)
HANDLED_TTL = 24 * 3600


def handled_key(entry_id: str) -> str:
    return f"{P}handled:{entry_id}"


async def notify(
    r: aioredis.Redis, agent_ids: Iterable[int], event: Dict[str, Any]
) -> Dict[int, str]:
    """Append `event` to each agent's feed and announce it to the desk instances;
    its event id in each feed."""
    recipients = sorted(set(agent_ids))
    if not recipients:
        return {}
    body = json.dumps(event, ensure_ascii=False)
    entry = handling.get()
    pipe = r.pipeline(transaction=entry is not None)
    for agent_id in recipients:
        pipe.xadd(feed_key(agent_id), {"e": body}, maxlen=FEED_LENGTH, approximate=True)
    if entry is not None:
        pipe.set(handled_key(entry), 1, ex=HANDLED_TTL)
        handling.set(None)
    ids = [as_text(i) for i in (await pipe.execute())[: len(recipients)]]
    pipe = r.pipeline(transaction=False)
    for agent_id, event_id in zip(recipients, ids, strict=True):
        pipe.publish(LIVE, f"{agent_id} {event_id} {body}")
    await pipe.execute()
    return dict(zip(recipients, ids, strict=True))


async def feed_since(
    r: aioredis.Redis, agent_id: int, last_id: str, count: int = 1000
) -> List[tuple[str, Dict[str, Any]]] | None:
    """The agent's events after `last_id`; None if some were trimmed since (resync)."""
    key = feed_key(agent_id)
    oldest = await r.xrange(key, "-", "+", count=1)
    # Older than anything kept: unless the console has seen nothing yet of a feed
    # that was never trimmed, something may be gone.
    if (
        oldest
        and split_id(last_id) < split_id(as_text(oldest[0][0]))
        and (last_id not in ("0", "0-0") or await r.xlen(key) >= FEED_LENGTH)
    ):
        return None
    rows = await r.xrange(key, f"({last_id}", "+", count=count)
    return [(as_text(i), json.loads(as_text(f.get(b"e", f.get("e"))))) for i, f in rows]


async def last_feed_id(r: aioredis.Redis, agent_id: int) -> str:
    rows = await r.xrevrange(feed_key(agent_id), "+", "-", count=1)
    return as_text(rows[0][0]) if rows else "0-0"


def split_id(stream_id: str) -> tuple[int, int]:
    """A stream (event) id "<ms>-<seq>" as a tuple that compares in stream order."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def parse_announcement(message: str) -> tuple[int, str, str]:
    agent, event_id, body = message.split(" ", 2)
    return int(agent), event_id, body
