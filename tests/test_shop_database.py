"""The shop's database (bot.shop): Alembic migrations, constraints and demo data,
on SQLite and on the PostgreSQL that development and CI machines run."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import IntegrityError

from bot.shop import database, demo
from bot.shop.schema import (
    BEFORE_DISPATCH,
    ORDER_STATES,
    Base,
    Customer,
    Identity,
    Order,
    Refund,
    Ticket,
)
from tests.conftest import BOT, ROOT, base_env

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind (PostgreSQL: a schema of its own)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shop.db'}"
        return
    schema = f"shop_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES, future=True)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        database.engine_for(url).dispose()  # its pooled connections, before the drop
        database.engine_for.cache_clear()
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def seeded(url: str) -> str:
    database.upgrade(url)
    with database.session(url) as session:
        demo.seed(session, now=NOW)
    return url


def test_migrations_build_exactly_the_models_and_come_apart_again(url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    database.upgrade(url)
    assert database.current_revision(url) == database.head_revision()
    with database.engine_for(url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == [], "the models and the migrations disagree: add a migration"
    database.downgrade(url, "base")
    with database.engine_for(url).connect() as connection:
        left = [t for t in connection.dialect.get_table_names(connection) if t != "alembic_version"]
    assert left == []
    database.upgrade(url)  # and back: the migrations can be replayed
    assert database.current_revision(url) == database.head_revision()


def test_demo_data_has_named_customers_with_orders_in_every_state(seeded: str) -> None:
    with database.session(seeded) as session:
        customers = session.scalars(select(Customer)).all()
        assert len(customers) == len(demo.DEMO_CUSTOMERS) + 40
        zh, en, unbound = (session.get(Customer, i) for i in (1, 2, 3))
        assert re.fullmatch(r"[\u4e00-\u9fff·]{2,6}", zh.name), zh.name
        assert re.fullmatch(r"[A-Za-z .'-]+", en.name), en.name
        assert re.fullmatch(r"1[3-9]\d{9}", zh.phone), zh.phone
        assert {(i.channel, i.subject) for i in zh.identities} == {
            ("web", "demo-zh"), ("app", "app-demo-zh")
        }
        assert unbound.identities == []
        for customer in (zh, en, unbound):
            assert sorted(o.status for o in customer.orders) == sorted(ORDER_STATES)
            # Newest first: what "your recent orders" shows.
            dates = [o.created_at for o in customer.orders]
            assert dates == sorted(dates, reverse=True)
        for order in session.scalars(select(Order)):
            assert re.fullmatch(r"JM\d{12}", order.id)
            assert order.items and order.total_cents == sum(
                i.quantity * i.unit_price_cents for i in order.items
            )
            dispatched = order.status not in (*BEFORE_DISPATCH, "cancelled")
            assert (order.dispatched_at is not None) == dispatched, order.status
            assert (order.tracking_number is not None) == dispatched
        phones = session.scalars(select(Customer.phone)).all()
        assert len(set(phones)) == len(phones)
        refunds = session.scalars(select(Refund)).all()
        assert {r.status for r in refunds} >= {"paid", "requested"}
        assert all(r.amount_cents <= r.order.total_cents for r in refunds)
        assert session.scalar(select(func.count(Ticket.id))) == 1


def test_demo_data_is_the_same_for_the_same_seed(seeded: str, tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    database.upgrade(other)
    with database.session(other) as session:
        demo.seed(session, now=NOW)

    def summary(url: str) -> list[tuple]:
        with database.session(url) as session:
            return [
                (c.name, c.phone, c.level, [(o.id, o.status, o.total_cents) for o in c.orders])
                for c in session.scalars(select(Customer).order_by(Customer.id))
            ]

    assert summary(seeded) == summary(other)


def test_the_database_refuses_what_cannot_be_true(seeded: str) -> None:
    def refused(change) -> None:
        with pytest.raises(IntegrityError), database.session(seeded) as session:
            change(session)
            session.flush()

    refused(lambda s: setattr(s.get(Customer, 1), "wallet_cents", -1))
    refused(lambda s: setattr(s.get(Customer, 1), "level", "diamond"))
    refused(lambda s: setattr(s.scalars(select(Order)).first(), "status", "lost"))
    # One channel identity belongs to one customer.
    refused(lambda s: s.add(Identity(customer_id=2, channel="web", subject="demo-zh",
                                     bound_by="seed")))
    # Foreign keys hold on SQLite too (it ignores them unless asked).
    refused(lambda s: s.add(Identity(customer_id=99_999, channel="app", subject="x",
                                     bound_by="seed")))
    with database.session(seeded) as session:  # nothing was half-written
        assert session.get(Customer, 1).wallet_cents == demo.DEMO_CUSTOMERS[0].wallet_cents


def _bot(var_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BOT, *args], cwd=ROOT, env=base_env(BOT_VAR_DIR=str(var_dir), **env),
        capture_output=True, text=True, timeout=120,
    )


def test_seed_demo_command_seeds_once_and_resets_on_request(tmp_path: Path) -> None:
    first = _bot(tmp_path, "seed-demo", "--customers", "5")
    assert first.returncode == 0, first.stderr
    assert "8 customers" in first.stdout and "shop.db" in first.stdout
    again = _bot(tmp_path, "seed-demo")
    assert again.returncode == 1
    assert "already has customers" in again.stderr and "--reset" in again.stderr
    assert "Traceback" not in again.stderr
    reset = _bot(tmp_path, "seed-demo", "--reset", "--customers", "2")
    assert reset.returncode == 0, reset.stderr
    assert "5 customers" in reset.stdout


def test_instances_starting_together_migrate_and_seed_once(url: str) -> None:
    """Two processes prepare one database at the same moment (scale-out start)."""
    code = (
        "import dataclasses, sys; from bot import cli; from bot.settings import get_settings; "
        "print(cli.prepare_database(dataclasses.replace(get_settings(), "
        "database_url=sys.argv[1])))"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    runs = [
        subprocess.Popen([sys.executable, "-c", code, url], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert sum("demo data seeded" in out for out, _ in outputs) == 1, outputs
    with database.session(url) as session:
        assert session.scalar(select(func.count(Customer.id))) == len(demo.DEMO_CUSTOMERS) + 40


def test_a_database_that_cannot_be_reached_is_a_clear_error(tmp_path: Path) -> None:
    result = _bot(tmp_path, "seed-demo", DATABASE_URL="postgresql://nobody:secret@127.0.0.1:1/x")
    assert result.returncode == 1
    assert "can't" in result.stderr or "could not connect" in result.stderr.lower()
    assert "secret" not in result.stderr and "Traceback" not in result.stderr


def test_bot_run_migrates_and_seeds_the_embedded_database(service) -> None:  # noqa: ANN001
    url = f"sqlite:///{service.var_dir / 'shop.db'}"
    assert database.current_revision(url) == database.head_revision()
    with database.session(url) as session:
        demo_zh = session.scalars(
            select(Identity).where(Identity.channel == "web", Identity.subject == "demo-zh")
        ).one()
        assert demo_zh.customer.orders
    summary = service.log.read_text()
    assert "shop database" in summary and "demo data seeded" in summary


def test_scaled_instances_share_one_shop_database(scaled) -> None:  # noqa: ANN001
    assert database.current_revision(POSTGRES) == database.head_revision()
    with database.session(POSTGRES) as session:
        assert session.scalars(
            select(Identity).where(Identity.channel == "app", Identity.subject == "app-demo-en")
        ).one()
    logs = [svc.log.read_text() for svc in scaled]
    assert all("shop database" in log for log in logs)


def test_bot_codes_shows_what_the_development_sender_sent(tmp_path: Path) -> None:
    from bot.shop.notify import LogSender

    assert "no messages" in _bot(tmp_path, "codes").stdout
    LogSender(tmp_path / "log" / "sms.log").send("13800001234", "您的验证码是 123456")
    shown = _bot(tmp_path, "codes")
    # The number masked (it's a log), the code readable (that's what it is for).
    assert shown.returncode == 0 and "to 138****1234: 您的验证码是 123456" in shown.stdout
    assert "13800001234" not in (tmp_path / "log" / "sms.log").read_text()


def test_sqlite_connections_are_kept_and_a_callers_pool_is_respected(tmp_path: Path) -> None:
    from sqlalchemy import text
    from sqlalchemy.pool import NullPool, QueuePool

    url = f"sqlite:///{tmp_path / 'kept.db'}"
    kept = database.create(url)
    try:
        # The action server's sessions reuse connections (NullPool reconnected
        # and re-ran the pragmas for each), and each has the pragmas.
        assert isinstance(kept.pool, QueuePool)
        with kept.connect() as connection:
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        kept.dispose()
    # A caller choosing its own pool (the web channel's retention sweep) gets it.
    once = database.create(url, poolclass=NullPool)
    try:
        assert isinstance(once.pool, NullPool)
        with once.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        once.dispose()
