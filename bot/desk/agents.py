"""The desk's people: agents, supervisors and admins, with hashed passwords.

Passwords are hashed with Argon2id (argon2-cffi, its recommended parameters);
only the hash is stored, and a hash made with older parameters is replaced at
the next successful login. `bot agents add|list|passwd|disable` manage them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Sequence

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.shop.schema import AGENT_ROLES, Agent

MIN_PASSWORD = 10
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{2,39}")
_hasher = PasswordHasher()


class AgentError(ValueError):
    """What was asked can't be done; the text says why."""


def check_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME.fullmatch(name):
        raise AgentError(
            f"{username!r} is not a username: 3–40 of a-z, 0-9, '.', '_', '-' (starting with "
            "a letter or digit)"
        )
    return name


def check_password(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AgentError(f"a password needs at least {MIN_PASSWORD} characters")
    if username.lower() in password.lower():
        raise AgentError("the password must not contain the username")


def check_groups(groups: Sequence[str]) -> List[str]:
    found = sorted({g.strip().lower() for g in groups if g.strip()})
    bad = [g for g in found if not re.fullmatch(r"[a-z][a-z0-9_-]{0,29}", g)]
    if bad:
        raise AgentError(f"not group names: {', '.join(bad)}")
    return found


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def do_add(
    session: Session, username: str, password: str, display_name: str, role: str = "agent",
    groups: Sequence[str] = ("general",), capacity: int = 5,
) -> Agent:
    name = check_username(username)
    check_password(password, name)
    if role not in AGENT_ROLES:
        raise AgentError(f"role {role!r}: one of {', '.join(AGENT_ROLES)}")
    if not display_name.strip() or len(display_name) > 60:
        raise AgentError("a display name (what customers see) of 1–60 characters is needed")
    if not 1 <= capacity <= 50:
        raise AgentError("capacity (chats at once) must be 1–50")
    if session.scalars(select(Agent).where(Agent.username == name)).first() is not None:
        raise AgentError(f"there is already an agent {name!r}")
    agent = Agent(username=name, display_name=display_name.strip(), role=role,
                  groups=check_groups(groups), capacity=capacity,
                  password_hash=hash_password(password), active=1)
    session.add(agent)
    session.flush()
    return agent


def find(session: Session, username: str) -> Agent:
    agent = session.scalars(
        select(Agent).where(Agent.username == username.strip().lower())
    ).first()
    if agent is None:
        raise AgentError(f"no agent {username!r}")
    return agent


def do_set_password(session: Session, username: str, password: str) -> None:
    agent = find(session, username)
    check_password(password, agent.username)
    agent.password_hash = hash_password(password)


def do_disable(session: Session, username: str) -> None:
    find(session, username).active = 0


def authenticate(session: Session, username: str, password: str) -> Agent | None:
    """The active agent these credentials are right for, else None (the same for
    an unknown name as for a wrong password, and about as slow)."""
    agent = session.scalars(
        select(Agent).where(Agent.username == username.strip().lower())
    ).first()
    stored = agent.password_hash if agent is not None else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if agent is None or not agent.active:
        return None
    if _hasher.check_needs_rehash(stored):
        agent.password_hash = hash_password(password)
    return agent


@dataclass(frozen=True)
class Listed:
    username: str
    display_name: str
    role: str
    groups: List[str]
    capacity: int
    active: bool


def listing(session: Session) -> List[Listed]:
    """Everyone, without their hashes."""
    return [
        Listed(a.username, a.display_name, a.role, list(a.groups or []), a.capacity,
               bool(a.active))
        for a in session.scalars(select(Agent).order_by(Agent.username))
    ]


# Verifying against this when the name is unknown costs what a real check costs.
_DUMMY_HASH = _hasher.hash("not-a-password-anyone-has")
