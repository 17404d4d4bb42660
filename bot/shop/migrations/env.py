"""Alembic's entry point for the shop's schema (run through bot.shop.database)."""

from __future__ import annotations

from alembic import context

from bot.shop.database import create
from bot.shop.schema import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = create(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite can't ALTER most things: Alembic copies the table instead.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not set up; run them online")
run_migrations_online()
