"""Connecting to the shop's database and bringing its schema up to date.

One engine per URL per process (the action server's actions share it); the
schema belongs to Alembic (bot/shop/migrations): `upgrade(url)` applies what
is missing, the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # SQLite ignores foreign keys unless asked, per connection; WAL lets the
    # action server read while `bot seed-demo` or another process writes.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create(url: str, **options: Any) -> Engine:
    """A new engine for `url` (SQLite files get their directory created)."""
    if url.startswith("postgres://"):  # Heroku-style; SQLAlchemy 1.4 wants postgresql
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    if (url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:")
            and "poolclass" not in options):
        # SQLAlchemy 1.4 opens a new SQLite connection per session (NullPool),
        # with our pragmas each time: a third of the action server's CPU per
        # turn under load. Connections are kept instead; a file has nothing to
        # ping.
        options.setdefault("poolclass", QueuePool)
        options.setdefault("pool_size", 4)
        options.setdefault("max_overflow", 8)
        options.setdefault("connect_args", {"check_same_thread": False})
    elif not url.startswith("sqlite"):
        options.setdefault("pool_pre_ping", True)
    engine = create_engine(url, future=True, **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", sqlite_pragmas)
    return engine


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """The process's shared engine for `url`."""
    return create(url)


@lru_cache(maxsize=8)
def _sessions(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, future=True, expire_on_commit=False)


@contextmanager
def session(url: str) -> Iterator[Session]:
    """A session that commits when the block ends cleanly and rolls back otherwise."""
    with _sessions(engine_for(url))() as current:
        try:
            yield current
            current.commit()
        except BaseException:
            current.rollback()
            raise


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Percent signs in a password would be read as interpolation.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the migrations the database doesn't have yet."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    from alembic.migration import MigrationContext

    with engine_for(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


# Any fixed number: the PostgreSQL advisory lock the shop's set-up holds.
_SETUP_LOCK = 0x5B0F_DB01


@contextmanager
def setup_lock(url: str) -> Iterator[None]:
    """Held while one process migrates or seeds: instances that start together
    (scale-out, one PostgreSQL) take turns instead of racing to create tables."""
    engine = engine_for(url)
    database_file = engine.url.database if engine.dialect.name == "sqlite" else None
    if database_file and database_file != ":memory:":
        import fcntl

        with open(f"{database_file}.setup-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        return
    if engine.dialect.name != "postgresql":
        yield
        return
    from sqlalchemy import text

    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _SETUP_LOCK})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _SETUP_LOCK})


def has_customers(url: str) -> bool:
    from sqlalchemy import func, select

    from bot.shop.schema import Customer

    if not inspect(engine_for(url)).has_table("customers"):
        return False
    with session(url) as current:
        return bool(current.execute(select(func.count(Customer.id))).scalar_one())
