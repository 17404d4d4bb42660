"""Detects whether a message is Chinese or English.

Mixed messages go by their dominant script, counted in words: a Chinese word
averages about 1.5 characters, so "我的order到哪了" (about 4 Chinese words, one
English) is Chinese and "where is my 订单" is English. Messages with no words
at all (an order number, an emoji) have no language, and the conversation
keeps the one it had.
"""

from __future__ import annotations

from typing import Any, Dict, List

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.nlu.scripts import is_latin_word, runs

LANGUAGES = ("zh", "en")
# Message property (and parse-data key) that holds the detected language.
LANGUAGE_KEY = "language"
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


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False
)
class LanguageDetector(GraphComponent):
    """Adds the message's language to the parse data (`language`: zh, en or null)."""

    @staticmethod
    def get_default_config() -> Dict[str, Any]:
        return {}

    @classmethod
    def create(
        cls,
        config: Dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> LanguageDetector:
        return cls()

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        for example in training_data.training_examples:
            if example.get(TEXT):
                example.set(LANGUAGE_KEY, message_language(example.get(TEXT)))
        return training_data

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            text = message.get(TEXT) or ""
            message.set(LANGUAGE_KEY, message_language(text), add_to_output=True)
        return messages
