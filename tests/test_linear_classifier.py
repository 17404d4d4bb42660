"""The linear classifier: FAQ keys summed into their retrieval intent, and the
parse data filled in the way Rasa's ResponseSelector would."""

from __future__ import annotations

import numpy as np
import pytest
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.training_data.message import Message

from bot.nlu.linear_classifier import FeatureTransform, LinearIntentClassifier


@pytest.fixture
def classifier(tmp_path) -> LinearIntentClassifier:
    config = LinearIntentClassifier.get_default_config()
    return LinearIntentClassifier(
        config,
        LocalModelStorage(tmp_path),
        Resource("clf"),
        classes=["faq/invoice", "faq/shipping_fee", "greet"],
    )


def test_faq_keys_add_up_to_the_faq_intent(classifier: LinearIntentClassifier) -> None:
    message = Message({"text": "运费多少 能开发票吗"})
    classifier._annotate(message, np.array([0.25, 0.4, 0.35]))
    assert message.get("intent")["name"] == "faq"
    assert message.get("intent")["confidence"] == pytest.approx(0.65)
    assert [r["name"] for r in message.get("intent_ranking")] == ["faq", "greet"]
    selected = message.get("response_selector")
    assert selected["all_retrieval_intents"] == ["faq"]
    response = selected["faq"]["response"]
    assert response["intent_response_key"] == "faq/shipping_fee"
    assert response["utter_action"] == "utter_faq/shipping_fee"
    assert response["confidence"] == pytest.approx(0.4 / 0.65)
    assert [r["intent_response_key"] for r in selected["faq"]["ranking"]] == [
        "faq/shipping_fee",
        "faq/invoice",
    ]


def test_plain_intent_wins_when_likelier(classifier: LinearIntentClassifier) -> None:
    message = Message({"text": "你好"})
    classifier._annotate(message, np.array([0.1, 0.1, 0.8]))
    assert message.get("intent") == {"name": "greet", "confidence": pytest.approx(0.8)}


def test_tfidf_transform_is_unit_length_per_block() -> None:
    import scipy.sparse as sp

    counts = sp.csr_matrix(np.array([[2, 0, 1], [0, 1, 0]], dtype=np.float32))
    dense = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    transform = FeatureTransform.fit(counts, dense_weight=1.0)
    out = transform(counts, dense).toarray()
    assert np.linalg.norm(out[0, :3]) == pytest.approx(1.0)
    assert out[0, 3:] == pytest.approx([0.6, 0.8])
    # An all-zero sentence vector (empty text) stays zero instead of dividing by 0.
    assert out[1, 3:] == pytest.approx([0.0, 0.0])
