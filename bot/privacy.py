"""Personal data masked where it is not needed: in what the service logs.

`mask_personal_data(text)` masks, in free Chinese or English text:

- Chinese mobile numbers, also written with +86/0086/86, spaces or dashes:
  138****5678 (a prefix stays as written: +86 138****5678);
- e-mail addresses: z***@example.com;
- mainland ID card numbers (18 characters, the last may be X): 110***********123X;
- bank card numbers (13–19 digits, optionally in groups of 4): ************1234;
- other numbers written in international form (+44 7911 123456): +********3456.

It leaves alone what someone reading a log needs: order, refund and ticket
numbers (JM/RF/TK + 12 digits, or the 12 digits alone), tracking numbers,
amounts and other decimals, dates and times (also 20240101123045), Redis
stream ids (1795905862278-0), one-time codes, and anything glued to Latin
letters, which is an identifier (SF1234567890123), not a number someone typed.

`install_log_masking()` applies it to every log record the process creates;
`bot run` calls it first thing in each Python process it starts (bot.cli).
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from types import TracebackType
from typing import Any, Callable

# What people put between the groups of a number: space, dash, ideographic space.
_SEP = r"[ \-\u3000]"
# A number ends where no letter or digit follows, nor a decimal or dash part
# (13812345678.50 is an amount, 1795905862278-0 a Redis stream id).
_END = r"(?![\dA-Za-z]|[.\-]\d)"

# One pass, left to right, one token at a time: each alternative consumes a
# whole token, so a match can only start where a token starts, never inside a
# longer number or word. That is also why escapes are tokens: in Rasa's JSON
# log lines 码13812345678 arrives as \u780113812345678.
_KEEP = (
    r"(?P<escape>\\(?:u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|x[0-9A-Fa-f]{2}|[^\d])"
    r"|%[0-9A-Fa-f]{2}|\x1b\[[0-9;]*[A-Za-z])"
)
_EMAIL = (
    r"(?P<email>[A-Za-z0-9][A-Za-z0-9._%+\-]*@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,})"
)
_NUMBERS = (
    r"(?P<word>[A-Za-z][A-Za-z0-9]*)"
    rf"|(?P<mobile>(?:(?:\+|00)86{_SEP}?|86)?[1１][3-9３-９]\d(?:{_SEP}?\d{{4}}){{2}}){_END}"
    rf"|(?P<id_card>[1-9]\d{{5}}{_SEP}?(?:18|19|20)\d{{2}}(?:0[1-9]|1[0-2])"
    rf"(?:0[1-9]|[12]\d|3[01]){_SEP}?\d{{3}}[\dXx]){_END}"
    rf"|(?P<card>\d{{4}}(?:{_SEP}?\d{{4}}){{2,3}}(?:{_SEP}?\d{{1,3}})?){_END}"
    rf"|(?P<international>\+\d{{1,3}}(?:{_SEP}?\d){{7,13}}){_END}"
    r"|(?P<other>\d[\dA-Za-z]*(?:\.\d[\dA-Za-z]*)*)"
)
_WITH_EMAIL = re.compile(f"{_KEEP}|{_EMAIL}|{_NUMBERS}")
_WITHOUT_EMAIL = re.compile(f"{_KEEP}|{_NUMBERS}")
# Everything masked has an '@' or at least 11 digits in a row, give or take
# single separators, where a token starts: not glued to a word (JM2024…), not
# after a decimal point (0.99876…), but after an escape (码 in a JSON log line:
# \u780113812345678) or a colour code. Most log lines have none and cost one
# search; the checks come after the first digit, which keeps it fast.
_DIGITS = (
    r"\d(?:(?<![A-Za-z\d]\d)(?<!\d\.\d)|(?<=\\[^\duUx]\d)|(?<=\\u[0-9A-Fa-f]{4}\d)"
    r"|(?<=\\U[0-9A-Fa-f]{8}\d)|(?<=\\x[0-9A-Fa-f]{2}\d)|(?<=%[0-9A-Fa-f]{2}\d)|(?<=m\d))"
    rf"(?:{_SEP}?\d){{10,}}"
)
# International numbers may have fewer (+65 9123 4567).
_DIGITS += rf"|\+\d(?:{_SEP}?\d){{7,}}"
_NUMBER_CANDIDATE = re.compile(_DIGITS)
_ANY_CANDIDATE = re.compile(f"@|{_DIGITS}")
_COMPACT_TIME = re.compile(
    r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?:[01]\d|2[0-3])[0-5]\d[0-5]\d"
)


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


_ELEVEN_DIGITS_AT_END = re.compile(rf"\d(?:{_SEP}?\d){{10}}$")


def _mobile(text: str) -> str:
    # The number is the last 11 digits; a country code before it stays as written.
    number = _ELEVEN_DIGITS_AT_END.search(text)
    assert number is not None  # the pattern ends with 11 digits
    digits = _digits(number.group())
    return f"{text[:number.start()]}{digits[:3]}****{digits[-4:]}"


def _id_card(text: str) -> str:
    chars = [c for c in text if c.isdigit() or c in "Xx"]
    return "".join(chars[:3]) + "*" * (len(chars) - 7) + "".join(chars[-4:])


def _card(text: str) -> str:
    digits = _digits(text)
    if not 13 <= len(digits) <= 19:
        return text  # 12 digits: an order, refund or tracking number
    if len(digits) in (14, 17) and _COMPACT_TIME.fullmatch(digits[:14]):
        return text  # 20240101123045(123): a timestamp
    return "*" * (len(digits) - 4) + digits[-4:]


def _international(text: str) -> str:
    digits = _digits(text)
    return "+" + "*" * (len(digits) - 4) + digits[-4:]


def _email(text: str) -> str:
    name, domain = text.split("@", 1)
    return f"{name[:1]}***@{domain}"


_MASKERS: dict[str, Callable[[str], str]] = {
    "mobile": _mobile,
    "id_card": _id_card,
    "card": _card,
    "international": _international,
    "email": _email,
}


def _replace(match: re.Match[str]) -> str:
    masker = _MASKERS.get(match.lastgroup or "")
    return match.group() if masker is None else masker(match.group())


# Characters no token to mask contains, and after which a token always starts
# (after an escape's second character too): where a region may begin and end.
# Not spaces and dashes, which may be inside a number (138 1234 5678).
_HARD = "\t\n\r\"',:=(){}<>|，。：；、（）！？"
_HARD_AHEAD = re.compile("[" + re.escape(_HARD) + "]")
_UP_TO_LAST_HARD = re.compile(".*[" + re.escape(_HARD) + "]", re.DOTALL)


def _region_start(text: str, position: int, floor: int) -> int:
    last = _UP_TO_LAST_HARD.match(text, floor, position)
    return floor if last is None else last.end()


def mask_personal_data(text: str) -> str:
    """`text` with phone, e-mail, ID card and bank card numbers masked."""
    # The e-mail alternatives only where there is an '@' (a fast check): they
    # would slow down both searches.
    if "@" in text:
        candidates, pattern = _ANY_CANDIDATE, _WITH_EMAIL
    else:
        candidates, pattern = _NUMBER_CANDIDATE, _WITHOUT_EMAIL
    candidate = candidates.search(text)
    if candidate is None:
        return text
    # Only the regions around candidates are tokenized (a JSON log line of
    # several KB has a few): each from the hard character before it to the one
    # after it, so that every region starts and ends on a token boundary.
    parts: list[str] = []
    done = 0
    while candidate is not None:
        start = _region_start(text, candidate.start(), done)
        after = _HARD_AHEAD.search(text, candidate.end())
        end = after.start() if after is not None else len(text)
        parts += [text[done:start], pattern.sub(_replace, text[start:end])]
        done = end
        candidate = candidates.search(text, end)
    parts.append(text[done:])
    return "".join(parts)


def mask_phone_number(phone: str) -> str:
    """A field known to hold a phone number, any country: 138****5678.

    What the actions show customers too (actions.shop.mask_phone): the last 11
    digits, first 3 and last 4 kept.
    """
    digits = _digits(phone)[-11:]
    if len(digits) < 7:
        return "*" * len(digits)
    return f"{digits[:3]}{'*' * (len(digits) - 7)}{digits[-4:]}"


# --- logging ---------------------------------------------------------------------

_traceback_formatter = logging.Formatter()


class PersonalDataFilter(logging.Filter):
    """Masks the message, traceback and stack of each record it sees; drops none.

    Usable in a logging configuration like any filter; `install_log_masking`
    applies it to every record of the process instead, because the handlers
    that matter are created after our code runs (Rasa's coloredlogs, Sanic's
    own loggers, which don't propagate to the root).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args or not isinstance(record.msg, str):
            try:
                message = record.getMessage()
            except Exception:
                return True  # a broken record: logging reports it when it is emitted
            # Formatted once here, so the handler does not format it again.
            record.msg, record.args = mask_personal_data(message), ()
        else:
            record.msg = mask_personal_data(record.msg)
        if record.exc_info and not record.exc_text:
            # Handlers use exc_text when it is set; this is what they would render.
            record.exc_text = mask_personal_data(
                _traceback_formatter.formatException(record.exc_info)
            )
        if record.stack_info:
            record.stack_info = mask_personal_data(record.stack_info)
        return True


def mask_name(name: str) -> str:
    """张** / E*** C***: the owner recognises it, a screenshot doesn't identify them."""
    if " " in name.strip():
        return " ".join(f"{part[:1]}***" for part in name.split())
    return name[:1] + "*" * max(len(name) - 1, 1)


def install_log_masking() -> None:
    """Mask personal data in every log record this process creates from now on.

    Through the log record factory, logging's documented hook for every record
    whatever logger or handler: Rasa's structlog lines are rendered into
    standard records too (structlog.stdlib.LoggerFactory), so they are covered.
    Not covered: attributes passed with `extra=` (set after the record is made)
    and text written to stdout/stderr without logging, except a crash's
    traceback, which is masked here too. Calling it again does nothing.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "masks_personal_data", False):
        return
    mask = PersonalDataFilter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        mask.filter(record)
        return record

    factory.masks_personal_data = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)

    if sys.excepthook is not sys.__excepthook__:
        return  # someone else renders crashes; leave theirs

    # A process that dies writes its traceback to stderr, i.e. into var/log/.
    def excepthook(
        kind: type[BaseException], error: BaseException, trace: TracebackType | None
    ) -> None:
        text = "".join(traceback.format_exception(kind, error, trace))
        sys.stderr.write(mask_personal_data(text))

    sys.excepthook = excepthook
