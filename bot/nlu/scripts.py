"""Which writing system each part of a message is in.

One regex pass splits a message into runs of Han characters, Latin words or
numbers, and emoji; both language detection and tokenization build on it so
they can never disagree about what is Chinese and what is not.
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
