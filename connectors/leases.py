"""Keeping a lease alive while the work it covers runs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

logger = logging.getLogger(__name__)


async def renew_until_done(
    work: asyncio.Future[Any], interval: float, renew: Callable[[], Awaitable[bool]], what: str
) -> None:
    """Call `renew` every `interval` seconds until `work` is done or `renew`
    says the lease is no longer ours (answered, settled, taken over)."""
    while not work.done():
        await asyncio.wait({work}, timeout=interval)
        if work.done():
            return
        try:
            if not await renew():
                return
        except Exception:  # Redis away: another may take over; the work goes on
            logger.warning("could not renew the lease on %s", what)
