"""The NLU component that puts the message's language (zh, en or none) into the
parse data. The detection itself is in connectors.text, which the channels use
too."""

from __future__ import annotations

from typing import Any, Dict, List

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from connectors.text import LANGUAGES, detect_language, message_language

# Message property (and parse-data key) that holds the detected language.
LANGUAGE_KEY = "language"

__all__ = ["LANGUAGES", "LANGUAGE_KEY", "LanguageDetector", "detect_language", "message_language"]


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
