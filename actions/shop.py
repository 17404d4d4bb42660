"""The shop's database as the actions see it: who the customer is, and the
audit trail.

Who the customer is comes only from the identity the channel put into the
message's metadata (a signed WeChat OpenID, the host site's verified user id,
the app's JWT subject), looked up among the identities bound to an account.
Never from slots or entities: those are what a customer types.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, Tuple, TypeVar

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from bot.privacy import mask_name as mask_name  # shared with the actions
from bot.privacy import mask_phone_number
from bot.settings import get_settings
from bot.shop import database
from bot.shop.numbers import next_number as next_number  # shared with the actions
from bot.shop.schema import AuditRecord, Customer, Identity

T = TypeVar("T")
logger = logging.getLogger(__name__)
ChannelIdentity = Tuple[str, str]  # (channel, subject)
MEMBER_LEVEL_SLOT = "member_level"


def identity_in(metadata: Any) -> ChannelIdentity | None:
    """The channel identity in a message's metadata, if a channel vouched for one."""
    found = metadata.get("identity") if isinstance(metadata, dict) else None
    if not isinstance(found, dict):
        return None
    channel, subject = found.get("channel"), found.get("subject")
    if isinstance(channel, str) and isinstance(subject, str) and channel and subject:
        return channel, subject
    return None


def identity_of(tracker: Tracker) -> ChannelIdentity | None:
    """The channel identity of the customer's latest message, if a channel vouched for one."""
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            return identity_in(event.get("metadata"))
    return None


def can_bind(tracker: Tracker) -> bool:
    """Whether this customer may bind their channel identity with a code: a WeChat
    follower or an anonymous web visitor (an app or host-site customer is who their
    login says; a REST caller has no lasting identity)."""
    channel, subject = identity_of(tracker) or ("", "")
    return channel == "wechat" or (channel == "web" and subject.startswith("v-"))


def logged_in(tracker: Tracker) -> bool:
    """Whether the app or the host site vouched for a customer login."""
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            found = (event.get("metadata") or {}).get("identity") or {}
            return found.get("customer") is True
    return False


def verified_customer(session: Session, identity: ChannelIdentity | None) -> Customer | None:
    """The account this channel identity is bound to, or None."""
    if identity is None:
        return None
    channel, subject = identity
    bound = session.scalars(
        select(Identity).where(Identity.channel == channel, Identity.subject == subject)
    ).first()
    return bound.customer if bound else None


def member_level(customer: Customer | None) -> Dict[str, Any]:
    """The `member_level` slot for a customer just verified (None: nobody verified), which
    desk.yml's `direct` rules read."""
    return SlotSet(MEMBER_LEVEL_SLOT, customer.level if customer else None)


def audit(
    session: Session,
    identity: ChannelIdentity | None,
    action: str,
    customer: Customer | None = None,
    target: str | None = None,
    detail: Dict[str, Any] | None = None,
) -> None:
    channel, subject = identity or (None, None)
    session.add(AuditRecord(
        actor="customer", channel=channel, subject=subject,
        customer_id=customer.id if customer else None, action=action, target=target,
        detail=detail,
    ))


@contextmanager
def shop_session() -> Iterator[Session]:
    with database.session(get_settings().database_url) as session:
        yield session


async def in_thread(work: Callable[[], T]) -> T:
    """Database work off the action server's event loop."""
    return await asyncio.to_thread(work)


# A new number that collided with one taken at the same moment is tried again,
# after a random pause that grows: with dozens of customers submitting at once
# (bench/latency.py, 64 at once) three immediate retries all collided again.
NUMBER_ATTEMPTS = 12
RETRY_PAUSE_SECONDS = 0.01


async def in_thread_retrying(work: Callable[[], T]) -> T:
    """`in_thread`, again when an insert lost a race for a new number
    (`next_number`): the whole transaction runs again and takes the next one."""
    for attempt in range(NUMBER_ATTEMPTS):
        try:
            return await in_thread(work)
        except IntegrityError:
            if attempt == NUMBER_ATTEMPTS - 1:
                raise
            logger.info("a new number was taken meanwhile; trying again")
            await asyncio.sleep(random.uniform(0, RETRY_PAUSE_SECONDS * 2 ** min(attempt, 5)))
    raise AssertionError("unreachable")


async def read_quietly(work: Callable[[], T], what: str) -> T | None:
    """A look-up the answer can do without (buttons, a figure in a question):
    None when the database fails, logged."""
    try:
        return await in_thread(work)
    except SQLAlchemyError:
        logger.exception("%s: the shop database failed", what)
        return None


def mask_phone(phone: str) -> str:
    """138****5678: enough for the owner to recognise, useless to anyone else (the
    same masking the logs use)."""
    return mask_phone_number(phone)


def mask_email(email: str | None) -> str:
    if not email or "@" not in email:
        return "-"
    name, domain = email.split("@", 1)
    return f"{name[:1]}***@{domain}"


_CN_MOBILE = re.compile(r"(?:\+?86)?(1[3-9]\d{9})")


def clean_mobile(text: str) -> str | None:
    """A Chinese mobile number as 11 digits (spaces, dashes, +86 allowed), or None."""
    match = _CN_MOBILE.fullmatch(re.sub(r"[\s\-()]", "", text))
    return match.group(1) if match else None


def money(cents: int) -> str:
    return f"¥{cents / 100:,.2f}"
