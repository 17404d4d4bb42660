"""Agents' sessions: a random id in an HttpOnly, SameSite=Strict cookie, the
session itself in Redis (so any desk instance knows it), a CSRF token per
session for every call that changes something, and login attempts limited
per username and per address."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from redis import asyncio as aioredis

COOKIE = "desk_session"
SESSION_SECONDS = 12 * 3600  # a working day; renewed while in use
# Wrong passwords allowed in the window per username, and per client address
# (higher: a whole office may share one address behind NAT).
MAX_FAILURES = 5
MAX_FAILURES_PER_ADDRESS = 20
FAILURE_WINDOW = 15 * 60


def _session_key(token: str) -> str:
    return f"desk:session:{token}"


@dataclass(frozen=True)
class Session:
    token: str
    agent_id: int
    csrf: str


async def create_session(r: aioredis.Redis, agent_id: int) -> Session:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    await r.hset(_session_key(token), mapping={"agent_id": agent_id, "csrf": csrf})
    await r.expire(_session_key(token), SESSION_SECONDS)
    return Session(token, agent_id, csrf)


async def get_session(r: aioredis.Redis, token: str | None) -> Session | None:
    if not token or len(token) > 100:
        return None
    raw = await r.hgetall(_session_key(token))
    if not raw:
        return None
    data = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes)
                                                          else v) for k, v in raw.items()}
    await r.expire(_session_key(token), SESSION_SECONDS)
    return Session(token, int(data["agent_id"]), data["csrf"])


async def end_session(r: aioredis.Redis, token: str) -> None:
    await r.delete(_session_key(token))


def csrf_ok(session: Session, header: str | None) -> bool:
    return bool(header) and hmac.compare_digest(session.csrf, header or "")


def _failure_keys(username: str, address: str) -> list[str]:
    return [f"desk:login-failures:user:{username.strip().lower()[:60]}",
            f"desk:login-failures:addr:{address}"]


async def login_wait(r: aioredis.Redis, username: str, address: str) -> int:
    """Seconds until this username or address may try again (0: now)."""
    wait = 0
    limits = (MAX_FAILURES, MAX_FAILURES_PER_ADDRESS)
    for key, limit in zip(_failure_keys(username, address), limits, strict=True):
        count = await r.get(key)
        if count is not None and int(count) >= limit:
            wait = max(wait, int(await r.ttl(key)) or 1)
    return wait


async def login_failed(r: aioredis.Redis, username: str, address: str) -> None:
    for key in _failure_keys(username, address):
        if await r.incr(key) == 1:  # the window starts at the first failure
            await r.expire(key, FAILURE_WINDOW)


async def login_succeeded(r: aioredis.Redis, username: str) -> None:
    await r.delete(_failure_keys(username, "")[0])
