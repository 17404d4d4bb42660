"""JSON text of events, written and read where every turn pays for it.

Each turn's events are serialised for the tracker store and the event pipe,
and a conversation's stored events parsed whenever it is read: with the
standard library that was a few per cent of the Rasa server's Python time
(py-spy --gil). orjson writes the same JSON (UTF-8, not \\u-escaped, as the
event pipe already wrote it) several times faster; a value it can't write
goes to the standard library, which behaves as before.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except TypeError:  # a type orjson doesn't know, or an int past 64 bits
        return json.dumps(value, ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # e.g. NaN, which json.dumps wrote and orjson refuses
        return json.loads(text)
