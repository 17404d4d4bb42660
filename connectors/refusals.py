"""Log refused requests without letting a flood of them fill the disk.

A stranger can send thousands of bad requests a second; one warning each would
grow var/log/ without bound and hide everything else. `log_refusal` writes the
first refusal of a kind at once, then at most one line per kind every
`every` seconds, saying how many like it were left out in between.

    from connectors.refusals import log_refusal
    log_refusal(logger, "bad_token", "REST request refused: %s", reason)

`kind` must come from a small fixed set (a code, never text from the request):
it is a key in memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_EVERY_SECONDS = 60.0
# More kinds than any channel has; beyond it the stalest is forgotten (a kind
# built from request data by mistake can't grow memory without bound).
MAX_KINDS = 256


@dataclass
class _Window:
    logged_at: float
    suppressed: int = 0


class RefusalLog:
    """One line per (logger, kind) per `every` seconds, plus a count of the rest."""

    def __init__(self, every: float = DEFAULT_EVERY_SECONDS, clock=time.monotonic) -> None:
        self.every = every
        self._clock = clock
        self._windows: OrderedDict[tuple[str, str], _Window] = OrderedDict()
        self._lock = threading.Lock()

    def log(
        self, logger: logging.Logger, kind: str, message: str, *args: object,
        level: int = logging.WARNING,
    ) -> bool:
        """Log `message % args` unless this kind was logged less than `every` s ago;
        True when a line was written."""
        if not logger.isEnabledFor(level):
            return False
        key = (logger.name, kind)
        now = self._clock()
        with self._lock:
            window = self._windows.get(key)
            if window is not None and now - window.logged_at < self.every:
                window.suppressed += 1
                return False
            suppressed = window.suppressed if window is not None else 0
            self._windows[key] = _Window(now)
            self._windows.move_to_end(key)
            while len(self._windows) > MAX_KINDS:
                self._windows.popitem(last=False)
        if suppressed:
            message += " (%d more refused for the same reason in the last %.0f s, not logged)"
            args = (*args, suppressed, now - window.logged_at)  # type: ignore[union-attr]
        logger.log(level, message, *args)
        return True


_shared = RefusalLog()


def log_refusal(
    logger: logging.Logger, kind: str, message: str, *args: object, level: int = logging.WARNING
) -> bool:
    """The process-wide `RefusalLog.log` (see the module's docstring)."""
    return _shared.log(logger, kind, message, *args, level=level)
