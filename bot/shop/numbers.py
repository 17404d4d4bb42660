"""Customer-facing numbers (refunds, tickets): prefix + day + serial."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session


def next_number(session: Session, model: Any, prefix: str) -> str:
    """The next customer-facing number of the day: prefix + YYYYMMDD + 4 digits
    (RF202611280001). Two requests racing for one number: the second insert fails
    on the primary key and the caller's transaction retries (`with_retry`)."""
    day = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
    start = f"{prefix}{day}"
    last = session.scalar(select(func.max(model.id)).where(model.id.like(f"{start}%")))
    serial = int(last[len(start):]) + 1 if last else 1
    return f"{start}{serial:04d}"
