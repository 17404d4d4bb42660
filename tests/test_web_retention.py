"""Forgetting web visitors who never came back (connectors.web.retention), on the
real tracker store the service uses (bot.stores.URLTrackerStore) over SQLite and
PostgreSQL, the shop's real schema, and the machine's Redis (database
TEST_SYSTEM_REDIS_DB, default 11)."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest
import pytest_asyncio
from rasa.shared.core.events import BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from sqlalchemy import create_engine, text

from bot.shop import database
from bot.shop.schema import Customer, Handoff, Identity, Ticket
from bot.stores import URLTrackerStore
from connectors.web.retention import SEEN_KEY, RetentionJob, do_mark_seen, do_sweep
from tests.conftest import POSTGRES_URL
from tests.redis_db import flushed_redis, redis_url

pytestmark = pytest.mark.asyncio

REDIS_URL = redis_url("TEST_SYSTEM_REDIS_DB", 11)
redis = flushed_redis(REDIS_URL)
DAY = 86400.0


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database for the tracker store and the shop (as DATABASE_URL alone
    gives them both), SQLite or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'service.db'}"
        return
    name = f"web_retention_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        database.engine_for.cache_clear()
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[URLTrackerStore]:
    database.upgrade(database_url)
    tracker_store = URLTrackerStore(host=database_url)
    yield tracker_store
    tracker_store.engine.dispose()


def visitor() -> str:
    return f"web:v-{secrets.token_hex(16)}"


async def chat(store: URLTrackerStore, conversation_id: str, *ages_in_days: float) -> None:
    """A conversation with one message (and its answer) that many days ago, each."""
    now = time.time()
    events = []
    for age in ages_in_days:
        at = now - age * DAY
        events += [UserUttered("运费怎么算", timestamp=at),
                   BotUttered("满99包邮", timestamp=at + 1)]
    await store.save(DialogueStateTracker.from_events(conversation_id, events))


def shop_records(url: str, bound: str, handed_off: str, ticketed: str) -> None:
    with database.session(url) as session:
        customer = Customer(name="张三", phone="13800001111")
        session.add(customer)
        session.flush()
        session.add(Identity(customer_id=customer.id, channel="web",
                             subject=bound.removeprefix("web:"), bound_by="sms_code"))
        session.add(Handoff(conversation_id=handed_off, channel="web", group_name="general",
                            reason="asked", state="closed"))
        session.add(Ticket(id="TK000000000001", conversation_id=ticketed, channel="web",
                           contact="13800001111", message="请回电", language="zh"))


async def test_visitors_idle_past_the_retention_are_forgotten_and_nobody_else(
    store: URLTrackerStore, database_url: str, redis: Any
) -> None:
    gone, gone_too = visitor(), visitor()
    bound, handed_off, ticketed = visitor(), visitor(), visitor()
    resumed_lately, recent, came_back = visitor(), visitor(), visitor()
    customers = ["web:u-alice-1001", "app:c123", "wechat:oAbc123"]
    for conversation in (gone, bound, handed_off, ticketed, resumed_lately, *customers):
        await chat(store, conversation, 40)
    await chat(store, gone_too, 200, 31)
    await chat(store, recent, 40, 29)
    await chat(store, came_back, 40, 0.01)
    shop_records(database_url, bound, handed_off, ticketed)
    await do_mark_seen(redis, resumed_lately)
    # Resumed 40 days ago and never again, without a word: only the record is left.
    never_spoke = visitor()
    await redis.zadd(SEEN_KEY, {never_spoke: time.time() - 40 * DAY, gone: time.time() - 35 * DAY})

    report = await do_sweep(database_url, database_url, redis, days=30)

    assert sorted(report.deleted) == sorted([gone, gone_too])
    assert sorted(report.kept) == sorted([bound, handed_off, ticketed])
    for conversation in (gone, gone_too):
        assert await store.retrieve(conversation) is None, conversation
    for conversation in (bound, handed_off, ticketed, resumed_lately, recent, came_back,
                         *customers):
        kept = await store.retrieve(conversation)
        assert kept is not None and kept.latest_message.text == "运费怎么算", conversation
    assert await redis.zrange(SEEN_KEY, 0, -1) == [resumed_lately.encode()]

    # Nothing more to do: a second sweep deletes nothing.
    again = await do_sweep(database_url, database_url, redis, days=30)
    assert again.deleted == []


async def test_the_service_job_sweeps_once_per_period_across_instances(
    store: URLTrackerStore, database_url: str, redis: Any
) -> None:
    """Two instances' jobs: the one that takes the period's lock sweeps."""
    idle = visitor()
    await chat(store, idle, 45)
    one, two = (RetentionJob(database_url, database_url, redis, days=30, every=30)
                for _ in range(2))
    first = await one.do_once()
    assert first is not None and first.deleted == [idle]
    assert await two.do_once() is None  # the other instance did this period's
    assert await store.retrieve(idle) is None


def test_conversations_must_outlive_the_tokens_that_open_them() -> None:
    """Retention shorter than a token's life would let a valid token open a deleted
    chat (a fresh one, silently); the channel refuses such settings."""
    from connectors.web.channel import WebInput

    base = {"visitor_secret": "x" * 32}
    assert WebInput.from_credentials(base).retention_days == 30
    assert WebInput.from_credentials({**base, "visitor_retention_days": "0"}).retention_days == 0
    with pytest.raises(ValueError, match="at least visitor_token_days"):
        WebInput.from_credentials({**base, "visitor_retention_days": "7"})
    with pytest.raises(ValueError, match="at least visitor_token_days"):
        WebInput.from_credentials({**base, "visitor_token_days": "60"})
    assert WebInput.from_credentials({**base, "visitor_token_days": "60",
                                      "visitor_retention_days": "90"}).retention_days == 90


async def test_the_web_channel_runs_the_job(
    store: URLTrackerStore, database_url: str, redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the Rasa server does after it starts (WebSocketServer.attach): the
    channel's job, on the service's own databases (TRACKER_DATABASE_URL,
    DATABASE_URL) and Redis."""
    from bot import settings
    from connectors.web.channel import WebInput

    idle, active = visitor(), visitor()
    await chat(store, idle, 45)
    await chat(store, active, 45, 1)
    for name in ("TRACKER_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.setenv(name, database_url)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    settings.get_settings.cache_clear()
    channel = WebInput.from_credentials({"visitor_secret": "x" * 32})

    async def bot(message: Any) -> None:
        pass

    channel.blueprint(bot)
    server = channel.server
    assert server is not None
    try:
        await server.do_start_retention(first_after=0)
        deadline = time.monotonic() + 60
        while await store.retrieve(idle) is not None:
            assert time.monotonic() < deadline, "the job did not sweep"
            await asyncio.sleep(0.2)
        assert await store.retrieve(active) is not None
    finally:
        if server.retention is not None:
            server.retention.cancel()
        settings.get_settings.cache_clear()
