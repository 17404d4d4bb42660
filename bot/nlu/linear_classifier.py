"""Intent classifier and FAQ answer selector: one logistic regression.

Why not DIET and Rasa's ResponseSelector: on a few thousand short messages a
linear model over TF-IDF n-grams plus sentence-encoder vectors is as accurate,
trains in seconds instead of minutes, and loads instantly (both TensorFlow
models are rebuilt on every server start). The fitted model is stored as plain
numpy arrays, not a pickle, so loading a model file can't run code.

Retrieval intents (faq/shipping_fee, faq/invoice, ...) are learnt as classes of
their own, flat beside the other intents. A message's `faq` confidence is the
sum over its answer keys, and the best key goes into the parse data exactly as
Rasa's ResponseSelector would put it, so `utter_faq`, `rasa test` and the
processor's full-retrieval-intent handling work unchanged.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Tuple

import numpy as np
import scipy.sparse as sp
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.nlu.constants import (
    RESPONSE_SELECTOR_PREDICTION_KEY,
    RESPONSE_SELECTOR_PROPERTY_NAME,
    RESPONSE_SELECTOR_RANKING_KEY,
    RESPONSE_SELECTOR_RESPONSES_KEY,
    RESPONSE_SELECTOR_RETRIEVAL_INTENTS,
    RESPONSE_SELECTOR_UTTER_ACTION_KEY,
)
from rasa.shared.nlu.constants import (
    INTENT,
    INTENT_NAME_KEY,
    INTENT_RESPONSE_KEY,
    PREDICTED_CONFIDENCE_KEY,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

logger = logging.getLogger(__name__)

INTENT_RANKING_KEY = "intent_ranking"


def _sentence_features(message: Message) -> Tuple[sp.spmatrix | None, np.ndarray | None]:
    _, sparse = message.get_sparse_features(TEXT)
    _, dense = message.get_dense_features(TEXT)
    return (
        sparse.features if sparse is not None else None,
        dense.features if dense is not None else None,
    )


class FeatureTransform:
    """TF-IDF weighting of the sparse counts, L2 rows, dense block re-weighted."""

    def __init__(self, idf: np.ndarray | None, dense_weight: float) -> None:
        self.idf = idf
        self.dense_weight = dense_weight

    @classmethod
    def fit(cls, counts: sp.csr_matrix | None, dense_weight: float) -> FeatureTransform:
        idf = None
        if counts is not None:
            n = counts.shape[0]
            df = np.bincount(counts.indices, minlength=counts.shape[1])
            idf = np.log((1 + n) / (1 + df)) + 1.0
        return cls(idf, dense_weight)

    def __call__(self, counts: sp.csr_matrix | None, dense: np.ndarray | None) -> sp.csr_matrix:
        blocks = []
        if counts is not None and self.idf is not None:
            tf = counts.astype(np.float32).tocsr(copy=True)
            tf.data = 1.0 + np.log(np.maximum(tf.data, 1e-12))  # sublinear tf
            tf = tf.multiply(self.idf.astype(np.float32)).tocsr()
            blocks.append(_l2_rows(tf))
        if dense is not None:
            norms = np.linalg.norm(dense, axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            blocks.append(sp.csr_matrix(dense / norms * self.dense_weight))
        if not blocks:
            raise ValueError("No sentence features: put featurizers before the classifier")
        return sp.hstack(blocks, format="csr")


def _l2_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1))).ravel()
    norms[norms == 0] = 1.0
    return sp.diags(1.0 / norms) @ matrix


def _stack(
    messages: List[Message], sparse_width: int | None = None
) -> Tuple[sp.csr_matrix | None, np.ndarray | None]:
    sparse_rows, dense_rows = [], []
    for message in messages:
        sparse, dense = _sentence_features(message)
        if sparse is None and sparse_width:
            # No tokens ("?", "。。。"): no n-gram features, which is a row of zeros.
            sparse = sp.csr_matrix((1, sparse_width), dtype=np.float32)
        sparse_rows.append(sparse)
        dense_rows.append(dense)
    counts = None
    if all(row is not None for row in sparse_rows):
        counts = sp.vstack(sparse_rows, format="csr")
    dense = None
    if all(row is not None for row in dense_rows):
        dense = np.vstack(dense_rows).astype(np.float32)
    return counts, dense


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True
)
class LinearIntentClassifier(GraphComponent, IntentClassifier):
    """Logistic regression over TF-IDF sparse features and dense sentence vectors."""

    @staticmethod
    def get_default_config() -> Dict[str, Any]:
        return {
            # Inverse regularisation strength of the logistic regression.
            "C": 20.0,
            # How much the dense block counts against the (unit-length) sparse one.
            "dense_weight": 1.0,
            # "balanced" evens out intents with few examples.
            "class_weight": None,
            "max_iter": 2000,
            "ranking_length": 10,
        }

    @staticmethod
    def required_packages() -> List[str]:
        return ["sklearn"]

    def __init__(
        self,
        config: Dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        weights: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        classes: List[str] | None = None,
        transform: FeatureTransform | None = None,
    ) -> None:
        self._config = config
        self._model_storage = model_storage
        self._resource = resource
        self.weights = weights
        self.bias = bias
        self.classes = classes or []
        self.transform = transform

    @classmethod
    def create(
        cls,
        config: Dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> LinearIntentClassifier:
        return cls(config, model_storage, resource)

    def train(self, training_data: TrainingData) -> Resource:
        from sklearn.linear_model import LogisticRegression

        examples = [e for e in training_data.intent_examples if e.get(TEXT)]
        labels = [e.get(INTENT_RESPONSE_KEY) or e.get(INTENT) for e in examples]
        self.classes = sorted(set(labels))
        if len(self.classes) < 2:
            logger.warning("LinearIntentClassifier needs at least two intents; not trained.")
            return self._resource
        counts, dense = _stack(examples)
        self.transform = FeatureTransform.fit(counts, self._config["dense_weight"])
        features = self.transform(counts, dense)
        model = LogisticRegression(
            C=self._config["C"],
            class_weight=self._config["class_weight"],
            max_iter=self._config["max_iter"],
        )
        model.fit(features, labels)
        self.classes = [str(c) for c in model.classes_]
        self.weights = model.coef_.astype(np.float32)
        self.bias = model.intercept_.astype(np.float32)
        if len(self.classes) == 2:  # sklearn keeps one row for two classes
            self.weights = np.vstack([-self.weights, self.weights])
            self.bias = np.concatenate([-self.bias, self.bias])
        self.persist()
        return self._resource

    def predict_proba(self, messages: List[Message]) -> np.ndarray:
        assert self.transform is not None and self.weights is not None
        idf = self.transform.idf
        counts, dense = _stack(messages, sparse_width=len(idf) if idf is not None else None)
        scores = self.transform(counts, dense) @ self.weights.T + self.bias
        scores = np.asarray(scores)
        scores -= scores.max(axis=1, keepdims=True)
        probs = np.exp(scores)
        return probs / probs.sum(axis=1, keepdims=True)

    def process(self, messages: List[Message]) -> List[Message]:
        if self.weights is None:
            return messages
        todo = [m for m in messages if m.get(TEXT)]
        if not todo:
            return messages
        for message, probs in zip(todo, self.predict_proba(todo), strict=True):
            self._annotate(message, probs)
        return messages

    def _annotate(self, message: Message, probs: np.ndarray) -> None:
        # Sum answer-key probabilities into their retrieval intent.
        intents: Dict[str, float] = {}
        keys: Dict[str, List[Tuple[str, float]]] = {}
        for label, p in zip(self.classes, probs.tolist(), strict=True):
            intent, _, key = label.partition("/")
            intents[intent] = intents.get(intent, 0.0) + p
            if key:
                keys.setdefault(intent, []).append((label, p))
        ranking = [
            {INTENT_NAME_KEY: name, PREDICTED_CONFIDENCE_KEY: confidence}
            for name, confidence in sorted(intents.items(), key=lambda kv: -kv[1])
        ][: self._config["ranking_length"]]
        message.set(INTENT, ranking[0], add_to_output=True)
        message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
        if keys:
            message.set(
                RESPONSE_SELECTOR_PROPERTY_NAME,
                self._selector_output(keys, intents),
                add_to_output=True,
            )

    def _selector_output(
        self, keys: Dict[str, List[Tuple[str, float]]], intents: Dict[str, float]
    ) -> Dict[str, Any]:
        """The parse-data entry Rasa's ResponseSelector would write."""
        output: Dict[str, Any] = {RESPONSE_SELECTOR_RETRIEVAL_INTENTS: sorted(keys)}
        for intent, options in keys.items():
            total = intents[intent] or 1.0
            ranked = sorted(options, key=lambda kv: -kv[1])
            best, p = ranked[0]
            output[intent] = {
                RESPONSE_SELECTOR_PREDICTION_KEY: {
                    RESPONSE_SELECTOR_RESPONSES_KEY: [],
                    PREDICTED_CONFIDENCE_KEY: p / total,
                    INTENT_RESPONSE_KEY: best,
                    RESPONSE_SELECTOR_UTTER_ACTION_KEY: f"utter_{best}",
                },
                RESPONSE_SELECTOR_RANKING_KEY: [
                    {PREDICTED_CONFIDENCE_KEY: q / total, INTENT_RESPONSE_KEY: label}
                    for label, q in ranked[: self._config["ranking_length"]]
                ],
            }
        return output

    def persist(self) -> None:
        assert self.transform is not None
        with self._model_storage.write_to(self._resource) as directory:
            arrays: Dict[str, np.ndarray] = {"weights": self.weights, "bias": self.bias}
            if self.transform.idf is not None:
                arrays["idf"] = self.transform.idf
            np.savez_compressed(directory / "model.npz", **arrays)
            meta = {"classes": self.classes, "dense_weight": self.transform.dense_weight}
            (directory / "meta.json").write_text(json.dumps(meta, ensure_ascii=False))

    @classmethod
    def load(
        cls,
        config: Dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> LinearIntentClassifier:
        try:
            with model_storage.read_from(resource) as directory:
                meta = json.loads((directory / "meta.json").read_text())
                with np.load(directory / "model.npz", allow_pickle=False) as arrays:
                    weights, bias = arrays["weights"], arrays["bias"]
                    idf = arrays["idf"] if "idf" in arrays.files else None
        except ValueError:
            logger.debug("LinearIntentClassifier: no trained model found, not loading.")
            return cls(config, model_storage, resource)
        transform = FeatureTransform(idf, meta["dense_weight"])
        return cls(config, model_storage, resource, weights, bias, meta["classes"], transform)
