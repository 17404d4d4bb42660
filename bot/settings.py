"""Service settings, read once from the environment.

Every process of the service (the supervisor, Rasa, the action server, later
the desk) reads its configuration here, so one place says what each variable
means and what its default is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    root: Path
    var_dir: Path
    models_dir: Path
    host: str
    rasa_port: int
    action_port: int
    # None means: `bot run` starts the embedded Redis and sets REDIS_URL for
    # its children.
    redis_url: str | None
    tracker_db_url: str
    # The admin token of Rasa's HTTP API (transcripts, events, the model).
    api_token: str | None
    # The shop's data (bot.shop): customers, orders, refunds, tickets, audit.
    database_url: str = ""
    # The demo shop page's "log in as" a demo customer (DEMO_LOGINS=0: off, and its
    # signing route answers 404). A demo feature: anyone may log in as them.
    demo_logins: bool = True
    # How long a turn waits for the action server before the customer gets an
    # apology (Rasa's own limit is 5 minutes).
    action_timeout_seconds: int = 10
    # The agent desk (bot.desk): its port, and when people answer chats.
    desk_port: int = 5006
    business_hours_file: Path = ROOT / "business_hours.yml"
    # The desk's routing, limits and canned answers.
    desk_file: Path = ROOT / "desk.yml"
    # The REST channel's callers (BOT_REST_TOKEN; not the admin token).
    rest_token: str | None = None
    # Rasa's HTTP API (BOT_ADMIN_API=0: off, and with it the desk and the
    # transcript lines of `bot push`; the channels and the widget stay).
    admin_api: bool = True
    # The largest request body the Rasa server reads (Sanic's REQUEST_MAX_SIZE);
    # channels cap their own routes lower.
    max_request_bytes: int = 1024 * 1024

    @property
    def action_endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.action_port}/webhook"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None


_ON = {"1", "true", "yes", "on"}
_OFF = {"0", "false", "no", "off"}


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _ON | _OFF:
        return raw in _ON
    raise SystemExit(f"{name} must be 1 or 0 (on or off), got {os.environ[name]!r}")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    root = Path(os.environ.get("BOT_ROOT", ROOT)).resolve()
    var_dir = Path(os.environ.get("BOT_VAR_DIR", root / "var")).resolve()
    tracker_db_url = (
        os.environ.get("TRACKER_DATABASE_URL")
        or os.environ.get("DATABASE_URL")
        or f"sqlite:///{var_dir / 'tracker.db'}"
    )
    return Settings(
        root=root,
        var_dir=var_dir,
        models_dir=Path(os.environ.get("BOT_MODELS_DIR", root / "models")).resolve(),
        host=os.environ.get("BOT_HOST", "127.0.0.1"),
        rasa_port=_int("BOT_RASA_PORT", 5005),
        action_port=_int("BOT_ACTION_PORT", 5055),
        redis_url=os.environ.get("REDIS_URL") or None,
        tracker_db_url=tracker_db_url,
        api_token=os.environ.get("BOT_API_TOKEN") or None,
        database_url=os.environ.get("DATABASE_URL") or f"sqlite:///{var_dir / 'shop.db'}",
        demo_logins=_flag("DEMO_LOGINS", True),
        action_timeout_seconds=_int("ACTION_TIMEOUT_SECONDS", 10),
        desk_port=_int("BOT_DESK_PORT", 5006),
        business_hours_file=Path(
            os.environ.get("BUSINESS_HOURS_FILE") or root / "business_hours.yml"
        ).resolve(),
        desk_file=Path(os.environ.get("DESK_FILE") or root / "desk.yml").resolve(),
        rest_token=os.environ.get("BOT_REST_TOKEN") or None,
        admin_api=_flag("BOT_ADMIN_API", True),
        max_request_bytes=_int("BOT_MAX_REQUEST_BYTES", 1024 * 1024),
    )


