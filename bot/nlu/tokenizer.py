"""Tokenizer for Chinese, English and both in one message.

Rasa's JiebaTokenizer hands the whole message to jieba, which mangles Latin
words, numbers and emoji in mixed text (Rasa issue #7910); WhitespaceTokenizer
can't split Chinese at all. Here each script run gets the right treatment:
jieba for Han runs, word rules for Latin runs and numbers, one token per emoji.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List

import jieba
from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.tokenizers.tokenizer import Token, Tokenizer
from rasa.shared.nlu.training_data.message import Message

from connectors.text import runs

# Shop vocabulary jieba doesn't know (青玉钱包, 转人工, 价保…), so they stay whole.
SHOP_WORDS = Path(__file__).with_name("shop_words.txt")
_DIGIT = re.compile(r"\d")
_jieba_ready = False


def _init_jieba(extra_words: str | None) -> None:
    global _jieba_ready
    if _jieba_ready:
        return
    jieba.setLogLevel(60)  # its start-up banner goes to stderr otherwise
    jieba.initialize()
    jieba.load_userdict(str(SHOP_WORDS))
    if extra_words:
        jieba.load_userdict(extra_words)
    _jieba_ready = True


def split_mixed(text: str) -> List[Token]:
    """Split text into tokens with character offsets into the original text."""
    tokens: List[Token] = []
    for run in runs(text):
        if run.kind == "han":
            for word, start, end in jieba.tokenize(run.text, HMM=True):
                tokens.append(Token(word, run.start + start, run.start + end))
        else:
            tokens.append(Token(run.text, run.start, run.start + len(run.text)))
    for token in tokens:
        # Numbers differ in every message; their shape (length) is what matters,
        # so featurizers see "jm000000000000" for every order number.
        token.lemma = _DIGIT.sub("0", token.text.lower())
    return tokens


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.MESSAGE_TOKENIZER, is_trainable=False
)
class MixedTokenizer(Tokenizer):
    """jieba for Chinese runs, word rules for Latin runs, emoji as tokens."""

    @staticmethod
    def get_default_config() -> Dict[str, Any]:
        return {
            # A jieba user dictionary (word [freq] [tag] per line), added to ours.
            "dictionary_path": None,
            "intent_tokenization_flag": False,
            "intent_split_symbol": "_",
            "token_pattern": None,
            "prefix_separator_symbol": None,
        }

    @staticmethod
    def supported_languages() -> List[str] | None:
        return None

    @staticmethod
    def required_packages() -> List[str]:
        return ["jieba"]

    @classmethod
    def create(
        cls,
        config: Dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> MixedTokenizer:
        _init_jieba(config.get("dictionary_path"))
        return cls(config)

    def tokenize(self, message: Message, attribute: str) -> List[Token]:
        tokens = split_mixed(message.get(attribute) or "")
        return self._apply_token_pattern(tokens)
