"""Tracker and lock stores configured by URL: the embedded default and scale-out."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import EndpointConfig

from bot.stores import RedisURLLockStore, URLTrackerStore, sqlalchemy_url

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(str(ROOT / "domain.yml"))


async def _roundtrip(store: URLTrackerStore, domain: Domain) -> None:
    sender = f"test-{uuid.uuid4().hex}"
    tracker = DialogueStateTracker.from_events(
        sender,
        [
            UserUttered("我的订单到哪了", {"name": "order_status", "confidence": 0.9}),
            SlotSet("language", "zh"),
        ],
        domain.slots,
    )
    await store.save(tracker)
    again = await store.retrieve(sender)
    assert again is not None
    assert again.latest_message.text == "我的订单到哪了"
    assert again.get_slot("language") == "zh"


@pytest.mark.asyncio
async def test_sqlite_tracker_store_creates_its_folder_and_keeps_conversations(
    tmp_path: Path, domain: Domain
) -> None:
    url = f"sqlite:///{tmp_path / 'var' / 'tracker.db'}"
    store = URLTrackerStore(domain=domain, host=url)
    await _roundtrip(store, domain)
    assert (tmp_path / "var" / "tracker.db").exists()


@pytest.mark.asyncio
async def test_postgres_tracker_store(domain: Domain) -> None:
    store = URLTrackerStore(domain=domain, host=POSTGRES_URL)
    await _roundtrip(store, domain)


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_read_tracker_saves_only_its_new_events_without_counting(
    backend: str, tmp_path: Path, domain: Domain, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'tracker.db'}" if backend == "sqlite" else POSTGRES_URL
    store = URLTrackerStore(domain=domain, host=url)
    sender = f"test-{uuid.uuid4().hex}"
    first = [UserUttered("你好", {"name": "greet", "confidence": 0.9}), SlotSet("language", "zh")]
    new = DialogueStateTracker.from_events(sender, first, domain.slots)
    await store.save(new)  # a new conversation's tracker: counted once

    def counted(*_: object) -> None:
        raise AssertionError("a tracker read from the store counted its stored events")

    monkeypatch.setattr(store, "_additional_events", counted)
    new.update(SlotSet("language", "zh"))  # the same object saved again: not counted
    await store.save(new)
    tracker = await store.retrieve(sender)
    assert tracker is not None
    tracker.update(UserUttered("运费", {"name": "faq", "confidence": 0.9}))
    await store.save(tracker)
    tracker.update(SlotSet("language", "en"))  # saved again: only what is new then
    await store.save(tracker)
    again = await store.retrieve(sender)
    assert again is not None
    assert [e.as_dict()["event"] for e in again.events] == [
        "user", "slot", "slot", "user", "slot"
    ]
    assert again.get_slot("language") == "en"
    # A session's events are what it counts: a new session starts a new count.
    again.update(SessionStarted())
    again.update(UserUttered("hi", {"name": "greet", "confidence": 0.9}))
    await store.save(again)
    latest = await store.retrieve(sender)
    assert latest is not None
    assert [e.as_dict()["event"] for e in latest.events] == ["session_started", "user"]
    full = await store.retrieve_full_tracker(sender)
    assert full is not None and len(full.events) == 7


def test_heroku_style_postgres_url_is_accepted() -> None:
    assert sqlalchemy_url("postgres://u:p@h/db") == "postgresql://u:p@h/db"


def test_redis_lock_store_from_url() -> None:
    store = RedisURLLockStore(EndpointConfig(url=REDIS_URL))
    sender = f"test-{uuid.uuid4().hex}"
    ticket = store.issue_ticket(sender)
    lock = store.get_lock(sender)
    assert lock is not None and lock.is_someone_waiting()
    assert ticket == 0
    store.finish_serving(sender, ticket)
    assert store.get_lock(sender) is None or not store.get_lock(sender).is_someone_waiting()
    # The lock lives in the Redis the URL names (database 15), not elsewhere.
    client = redis.Redis.from_url(REDIS_URL)
    assert client.ping()


def test_lock_store_without_redis_url_says_how_to_fix_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot import settings

    monkeypatch.delenv("REDIS_URL", raising=False)
    settings.get_settings.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="bot run"):
            RedisURLLockStore()
    finally:
        settings.get_settings.cache_clear()
