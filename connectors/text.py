"""What the channels and the service both need to know about a message's text:
which writing system each part is in, and so whether it is Chinese or English.

One regex pass splits a message into runs of Han characters, Latin words or
numbers, and emoji; language detection (here) and tokenization (the NLU's
MixedTokenizer) both build on it, so they can never disagree about what is
Chinese and what is not.

Mixed messages go by their dominant script, counted in words: a Chinese word
averages about 1.5 characters, so "我的order到哪了" (about 4 Chinese words, one
English) is Chinese and "where is my 订单" is English. Messages with no words
at all (an order number, an emoji) have no language, and the conversation
keeps the one it had.

It lives with the channels because channels may import nothing from the
service (`bot/`); the service imports it from here.
"""

from __future__ import annotations

import re
from typing import Iterator, NamedTuple

# Han ideographs (CJK Unified + Extension A + compatibility), the only part of a
# message jieba should see.
HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Pictographs, dingbats and flags: each one is a token, they carry sentiment.
EMOJI = r"\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF"

_RUN = re.compile(
    rf"(?P<han>[{HAN}]+)"
    # Letters and digits together ("iPhone15", "JM202411230456"), inner
    # apostrophes ("where's") and decimals ("59.9") stay one word.
    rf"|(?P<word>[^\W_{HAN}]+(?:['’.,][^\W_{HAN}]+)*)"
    rf"|(?P<emoji>[{EMOJI}])"
)


class Run(NamedTuple):
    kind: str  # "han", "word" or "emoji"
    text: str
    start: int


def runs(text: str) -> Iterator[Run]:
    """Yield the script runs of `text`; punctuation and spaces separate runs."""
    for match in _RUN.finditer(text):
        kind = match.lastgroup or "word"
        yield Run(kind, match.group(), match.start())


def is_latin_word(run: Run) -> bool:
    """A word that says something about the language: mostly letters.

    Codes such as "JM202411230456" are not: a Chinese customer answering with
    an order number is still writing Chinese.
    """
    if run.kind != "word":
        return False
    letters = sum(ch.isalpha() for ch in run.text)
    return letters > 0 and letters > len(run.text) - letters


LANGUAGES = ("zh", "en")
_CHARS_PER_CHINESE_WORD = 1.5


def detect_language(text: str) -> str | None:
    """Return "zh", "en", or None when the text has no words to go by."""
    han_chars = 0
    latin_words = 0
    for run in runs(text):
        if run.kind == "han":
            han_chars += len(run.text)
        elif is_latin_word(run):
            latin_words += 1
    zh_words = han_chars / _CHARS_PER_CHINESE_WORD
    if zh_words == 0 and latin_words == 0:
        return None
    # A tie goes to Chinese: "我要refund" style messages come from Chinese speakers.
    return "zh" if zh_words >= latin_words else "en"


def message_language(text: str) -> str | None:
    """Language of a user message; None for button payloads such as "/affirm"."""
    if text.startswith("/"):
        return None
    return detect_language(text)


def is_text(value: object) -> bool:
    """A string that is Unicode text: JSON's "\\ud800" decodes to a lone surrogate,
    which no store or Redis can encode (the turn failed after the bot had it)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True
