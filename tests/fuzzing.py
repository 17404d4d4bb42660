"""What the fuzz tests (tests/test_fuzz_*.py) share: reproducible hypothesis
settings, a count of the examples each parser was given (printed at the end
of the module), and a watch on the logs for errors a bad input caused."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Iterator

import pytest
from hypothesis import HealthCheck, settings


# Derandomized: CI tries the same examples every run (a failure is reproducible);
# no example database is written into the work tree.
def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


class Examples(Counter):
    """Examples tried per parser."""

    def report(self, title: str) -> list[str]:
        return [f"{title}: {count:5d} examples  {name}" for name, count in sorted(self.items())]


class ErrorLog(logging.Handler):
    """Records every log record at ERROR or above, and any with a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if (record.levelno >= logging.ERROR or record.exc_info) and not _not_ours(record):
            self.records.append(record)

    def clear(self) -> None:
        self.records.clear()

    def lines(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.records]


def _not_ours(record: logging.LogRecord) -> bool:
    """asyncio's note when it collects a task Sanic 21.12's WebSocket recv left
    pending (a client dropped mid-wait): WebSocket servers of earlier test modules
    (web, app), collected whenever the garbage collector runs, here too. One line,
    no traceback; WeChat and REST have no WebSockets."""
    return record.name == "asyncio" and "WebsocketFrameAssembler.get" in record.getMessage()


@pytest.fixture(scope="module")
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    loggers = [logging.getLogger(), logging.getLogger("sanic.error")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


def report(request: pytest.FixtureRequest, lines: list[str]) -> None:
    """Show `lines` in pytest's output even when it captures (-q)."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        print("\n".join(lines))
        return
    with capture.global_and_fixture_disabled():
        for line in lines:
            reporter.write_line(line)


# The loggers of what answers a channel's request in `bot run`'s rasa.log.
REQUEST_LOGGERS = ("connectors.rest", "connectors.wechat", "sanic", "rasa.core.channels",
                   "rasa.core.processor", "rasa.server", "asyncio", "root")


def request_errors(log_text: str, loggers: tuple[str, ...] = REQUEST_LOGGERS) -> list[str]:
    """ERROR records (and the traceback lines after them) of `loggers` in a piece
    of `bot run`'s log ("<date> <time> LEVEL logger - message")."""
    found, inside = [], False
    for line in log_text.splitlines():
        parts = line.split(maxsplit=4)
        if len(parts) >= 4 and parts[0][:1].isdigit() and "-" in parts[0]:
            inside = parts[2] in ("ERROR", "CRITICAL") and parts[3].startswith(loggers)
        if inside:
            found.append(line)
    return found
