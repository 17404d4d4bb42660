"""The conversation fuzzer (tests/conversations.py) against the trained dialogue.

Thousands of seeded random customer turns, every one checked against the
dialogue's invariant: a bot message, in the customer's language, no unfilled
template or error text, no form asking the same question more than twice in a
row. A failure prints the shortest failing conversation found.

`FUZZ_SEED=<n>` replays (or explores) another seed; CI uses the fixed default so
a red run is reproducible.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from tests.conversations import fuzz

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("FUZZ_SEED", "20261128"))
CONVERSATIONS = int(os.environ.get("FUZZ_CONVERSATIONS", "350"))


def verified_lookups(shop_url: str) -> int:
    from sqlalchemy import func, select

    from bot.shop import database
    from bot.shop.schema import AuditRecord

    with database.session(shop_url) as session:
        return session.scalar(
            select(func.count(AuditRecord.id)).where(AuditRecord.customer_id.is_not(None))
        )


def test_random_conversations_keep_the_invariant(dialogue_agent: Any, shop_url: str) -> None:
    lookups_before = verified_lookups(shop_url)
    started = time.monotonic()
    result = asyncio.run(fuzz(dialogue_agent, SEED, CONVERSATIONS))
    seconds = time.monotonic() - started
    print(
        f"fuzzer: seed {SEED}, {result.conversations} conversations, {result.turns} turns "
        f"in {seconds:.0f} s; turns by kind {result.by_kind}"
    )
    reports = "\n\n".join(failure.report() for failure in result.failures)
    assert not result.failures, f"seed {SEED}: shortest failing conversations:\n{reports}"
    assert result.turns >= 2000
    # Every kind of customer turn was tried.
    kinds = {
        "example", "click", "number", "order_id", "wrong_number", "emoji",
        "payload", "two_requests", "long", "gibberish", "form_answer",
    }
    assert kinds <= set(result.by_kind)
    # Logged-in customers' account look-ups ran against the database.
    assert verified_lookups(shop_url) > lookups_before
