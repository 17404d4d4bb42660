"""The garbage collector and a process that holds a model.

A loaded model leaves about half a million long-lived objects (TensorFlow,
the pipeline's tables) that CPython's full collection walks every time it runs:
180 ms here, during which nothing else in the process moves — the spikes in
bench/handoff.py's p99. `freeze()` moves everything alive at that moment into
the permanent generation, which collections skip; what is made later is
collected as before.
"""

from __future__ import annotations

import gc
import logging
import time

logger = logging.getLogger(__name__)


def freeze() -> None:
    """Collect once, then keep what is left out of later collections."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    logger.info("heap: %d objects frozen out of garbage collection in %.0f ms",
                gc.get_freeze_count(), (time.perf_counter() - started) * 1000)
