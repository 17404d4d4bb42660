"""Two requests in one message ("查下订单 顺便问下运费").

The message is cut into clauses at sentence punctuation and before connectors
(顺便, 另外, "by the way", "also"…); the classifier labels each clause, and
`pick_requests` decides which clauses are requests. A connector stays at the
start of the clause it introduces, offsets point into the original text, and a
request's span runs on over the clauses after it that are not requests (an
order number, "thanks"), so entities found there belong to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

# Cut after these; a comma too, since customers chain requests with it.
_PUNCTUATION = r"[，。？！；、,.?!;…\n]+"
# These start a new request wherever they stand ...
_ZH_CONNECTORS = ["顺便", "另外", "再问", "此外", "还想问", "还要问"]
# ... these only after a space: inside a clause they are ordinary words
# (钱包还有多少钱, 先退货然后退款).
_ZH_SPACED = ["还有", "以及", "然后", "并且", "同时", "对了"]
_EN_CONNECTORS = [
    "and", "also", "plus", "btw", "by the way", "oh and", "as well as", "another thing",
]
_CUT = re.compile(
    rf"{_PUNCTUATION}"
    rf"|\s*(?=(?:{'|'.join(_ZH_CONNECTORS)}))"
    rf"|\s+(?=(?:{'|'.join(_ZH_SPACED)}))"
    rf"|\s+(?=(?:{'|'.join(_EN_CONNECTORS)})\b)",  # whole English words only
    re.IGNORECASE,
)
_STRIP = " \t\r\n，。？！；、,.?!;…~～"


@dataclass
class Clause:
    text: str
    start: int
    end: int


def split_clauses(text: str) -> List[Clause]:
    """Non-empty clauses, trimmed of spaces and punctuation, with offsets into `text`."""
    clauses: List[Clause] = []
    begin = 0
    for match in _CUT.finditer(text):
        if match.start() == 0 and match.end() == 0:
            continue
        _add(text, begin, match.start(), clauses)
        begin = match.end()
    _add(text, begin, len(text), clauses)
    return clauses


def _add(text: str, start: int, end: int, out: List[Clause]) -> None:
    while start < end and text[start] in _STRIP:
        start += 1
    while end > start and text[end - 1] in _STRIP:
        end -= 1
    if end > start:
        out.append(Clause(text[start:end], start, end))


@dataclass
class Labelled:
    """A clause with what the classifier made of it."""

    clause: Clause
    intent: str
    confidence: float
    answer: str | None  # the FAQ answer key for a retrieval intent
    parse: Dict[str, Any]  # intent, intent_ranking, response_selector (as in parse data)


def pick_requests(
    labelled: Sequence[Labelled],
    text: str,
    request_intents: Sequence[str],
    threshold: float,
) -> List[Dict[str, Any]]:
    """The requests, in the order written, when there are two or more; else []."""
    found: List[Labelled] = []
    ends: List[int] = []
    for item in labelled:
        is_request = item.intent in request_intents
        if item.confidence < threshold:
            if not found:
                return []  # the first request is unclear: don't guess at the rest
            continue
        if not is_request:
            continue
        same = [
            i for i, f in enumerate(found) if (f.intent, f.answer) == (item.intent, item.answer)
        ]
        if same:
            ends[same[0]] = max(ends[same[0]], item.clause.end)
            continue
        found.append(item)
        ends.append(item.clause.end)
    if len(found) < 2:
        return []
    requests = []
    for i, item in enumerate(found):
        # Up to the next request: trailing clauses (an order number) belong to this one.
        limit = found[i + 1].clause.start if i + 1 < len(found) else len(text)
        end = max(ends[i], _last_end(labelled, item.clause.start, limit))
        start = item.clause.start
        requests.append({"text": text[start:end], "start": start, "end": end, **item.parse})
    return requests


def _last_end(labelled: Sequence[Labelled], start: int, limit: int) -> int:
    return max(
        (x.clause.end for x in labelled if start <= x.clause.start and x.clause.end <= limit),
        default=start,
    )
