"""Forgetting web visitors who never came back.

Anyone can mint a visitor (a page view does), and every visitor who said
something leaves a conversation in the tracker store. `do_sweep` deletes the
conversations ("web:v-…" trackers, Rasa's `events` table) of visitors idle for
`days`, and their record here (the last time they resumed, Redis sorted set
SEEN_KEY). Idle means: no event in the tracker and no resume since then.

Kept whatever their age, because someone may still need them:
- a visitor who bound an account (shop `identities`): a customer now, whose
  account's history the desk shows;
- a conversation that was ever handed to a person (`handoffs`) or left a
  ticket (`tickets`): the desk's records, ratings and replies point at its
  transcript;
- host-site users ("web:u-…") and every other channel: they are customers.

No valid token can open a deleted conversation: the channel refuses to keep
conversations shorter than tokens live (connectors.web.channel), and a token
is issued only when the visitor connects, which counts as being seen.

The running service sweeps once an hour (`RetentionJob`, started by the web
channel); with several instances a Redis lock lets one of them do it.
`python -m connectors.web.retention --days N` sweeps once by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from redis import asyncio as aioredis
from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    func,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

logger = logging.getLogger(__name__)

VISITOR_PREFIX = "web:v-"
# conversation id → when the visitor last resumed (Unix time).
SEEN_KEY = "web:visitors:seen"
LOCK_KEY = "web:visitors:retention-lock"
DEFAULT_RETENTION_DAYS = 30
SWEEP_EVERY_SECONDS = 3600.0
# IN lists stay well below any database's parameter limit.
_CHUNK = 400

# Rasa's SQLTrackerStore table (rasa.core.tracker_store.SQLTrackerStore.SQLEvent):
# only the columns a sweep touches.
_EVENTS = Table(
    "events",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("sender_id", String(255)),
    Column("timestamp", Float),
)


@dataclass
class SweepReport:
    deleted: list[str] = field(default_factory=list)  # conversation ids
    kept: list[str] = field(default_factory=list)  # idle, but bound, handed off or ticketed


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def check_days(days: float) -> float:
    if days <= 0:
        raise ValueError(f"visitor retention must be more than 0 days, got {days}")
    return days


# The shop's tables a sweep reads (bot.shop.schema; only these columns). A
# channel imports nothing from the service (DESIGN.md), so they are named here.
_SHOP = MetaData()
_IDENTITIES = Table("identities", _SHOP, Column("channel", String(10)),
                    Column("subject", String(128)))
_HANDOFFS = Table("handoffs", _SHOP, Column("conversation_id", String(200)))
_TICKETS = Table("tickets", _SHOP, Column("conversation_id", String(200)))


def _engine(url: str) -> Engine:
    """A connection per use: a sweep runs once an hour."""
    if url.startswith("postgres://"):  # Heroku-style; SQLAlchemy 1.4 wants postgresql
        url = "postgresql://" + url[len("postgres://"):]
    return create_engine(url, future=True, poolclass=NullPool)


def idle_visitors(tracker_url: str, cutoff: float) -> list[str]:
    """Visitors' conversations whose last event is older than `cutoff`."""
    engine = _engine(tracker_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(_EVENTS.c.sender_id)
                .where(_EVENTS.c.sender_id.like(f"{VISITOR_PREFIX}%"))
                .group_by(_EVENTS.c.sender_id)
                .having(func.max(_EVENTS.c.timestamp) < cutoff)
            )
            return sorted(str(row[0]) for row in rows)
    finally:
        engine.dispose()


def still_needed(shop_url: str, conversation_ids: Sequence[str]) -> set[str]:
    """Which of these conversations the shop or the desk still refer to."""
    needed: set[str] = set()
    engine = _engine(shop_url)
    try:
        with engine.connect() as connection:
            for chunk in _chunks(conversation_ids):
                subjects = {cid.removeprefix("web:"): cid for cid in chunk}
                bound = connection.execute(
                    select(_IDENTITIES.c.subject).where(
                        _IDENTITIES.c.channel == "web",
                        _IDENTITIES.c.subject.in_(list(subjects)),
                    )
                ).scalars()
                needed.update(subjects[subject] for subject in bound)
                for table in (_HANDOFFS, _TICKETS):
                    column = table.c.conversation_id
                    needed.update(connection.execute(
                        select(column).where(column.in_(list(chunk)))).scalars())
    finally:
        engine.dispose()
    return needed


def delete_conversations(tracker_url: str, conversation_ids: Sequence[str], cutoff: float) -> int:
    """Delete these conversations' events, unless one got an event after `cutoff`
    meanwhile (the visitor came back while the sweep ran). Rows deleted."""
    engine = _engine(tracker_url)
    deleted = 0
    try:
        for chunk in _chunks(conversation_ids):
            came_back = (
                select(_EVENTS.c.sender_id)
                .where(_EVENTS.c.sender_id.in_(list(chunk)), _EVENTS.c.timestamp >= cutoff)
                .scalar_subquery()
            )
            with engine.begin() as connection:
                result = connection.execute(
                    delete(_EVENTS).where(
                        _EVENTS.c.sender_id.in_(list(chunk)),
                        _EVENTS.c.sender_id.not_in(came_back),
                    )
                )
                deleted += int(result.rowcount or 0)
    finally:
        engine.dispose()
    return deleted


async def do_mark_seen(redis: aioredis.Redis, conversation_id: str) -> None:
    """A visitor resumed: their conversation is not idle, whatever its last event."""
    await redis.zadd(SEEN_KEY, {conversation_id: time.time()})


async def do_sweep(
    tracker_url: str,
    shop_url: str,
    redis: aioredis.Redis,
    days: float,
    now: float | None = None,
) -> SweepReport:
    """Delete the conversations and records of visitors idle for `days`."""
    cutoff = (time.time() if now is None else now) - check_days(days) * 86400
    idle = await asyncio.to_thread(idle_visitors, tracker_url, cutoff)
    seen_lately = {_text(cid) for cid in await redis.zrangebyscore(SEEN_KEY, cutoff, "+inf")}
    candidates = [cid for cid in idle if cid not in seen_lately]
    needed = await asyncio.to_thread(still_needed, shop_url, candidates) if candidates else set()
    report = SweepReport(
        deleted=[cid for cid in candidates if cid not in needed],
        kept=[cid for cid in candidates if cid in needed],
    )
    if report.deleted:
        await asyncio.to_thread(delete_conversations, tracker_url, report.deleted, cutoff)
        for chunk in _chunks(report.deleted):
            await redis.zrem(SEEN_KEY, *chunk)
    # Visitors who resumed once and neither spoke nor came back since.
    await redis.zremrangebyscore(SEEN_KEY, "-inf", f"({cutoff}")
    return report


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RetentionJob:
    """`do_sweep` every `every` seconds while the service runs; with several
    instances, the one that takes the period's lock does it."""

    def __init__(
        self,
        tracker_url: str,
        shop_url: str,
        redis: aioredis.Redis,
        days: float,
        every: float = SWEEP_EVERY_SECONDS,
    ) -> None:
        self.tracker_url = tracker_url
        self.shop_url = shop_url
        self.redis = redis
        self.days = check_days(days)
        self.every = every
        self._owner = secrets.token_hex(8)

    async def do_once(self) -> SweepReport | None:
        """A sweep, unless another instance did one within the period."""
        lock_ms = max(1, int(self.every * 1000))
        if not await self.redis.set(LOCK_KEY, self._owner, nx=True, px=lock_ms):
            return None
        report = await do_sweep(self.tracker_url, self.shop_url, self.redis, self.days)
        if report.deleted or report.kept:
            logger.info(
                "web visitors idle %g days: %d conversations deleted, %d kept "
                "(bound, handed off or ticketed)",
                self.days, len(report.deleted), len(report.kept),
            )
        return report

    async def run_forever(self, first_after: float = 60.0) -> None:
        await asyncio.sleep(first_after)  # not in the way of the service's start
        while True:
            try:
                await self.do_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the next period tries again
                logger.exception("sweeping idle web visitors failed")
            await asyncio.sleep(self.every)


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(
        prog="python -m connectors.web.retention",
        description="Delete the conversations of web visitors idle for DAYS (once).",
    )
    parser.add_argument("--days", type=float, default=DEFAULT_RETENTION_DAYS)
    parser.add_argument("--redis-url", required=True, help="the service's REDIS_URL")
    parser.add_argument("--tracker-db-url", default=os.environ.get("TRACKER_DATABASE_URL"),
                        help="the tracker store's database (default: TRACKER_DATABASE_URL)")
    parser.add_argument("--shop-db-url", default=os.environ.get("DATABASE_URL"),
                        help="the shop's database (default: DATABASE_URL)")
    args = parser.parse_args(argv)
    if not (args.tracker_db_url and args.shop_db_url):
        parser.error("give --tracker-db-url and --shop-db-url (or set TRACKER_DATABASE_URL "
                     "and DATABASE_URL as `bot run` does)")

    async def sweep() -> SweepReport:
        redis = aioredis.Redis.from_url(args.redis_url, decode_responses=True)
        try:
            return await do_sweep(args.tracker_db_url, args.shop_db_url, redis, args.days)
        finally:
            await redis.close()

    report = asyncio.run(sweep())
    print(f"deleted {len(report.deleted)} idle visitors' conversations; kept {len(report.kept)} "
          "(bound, handed off or ticketed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
