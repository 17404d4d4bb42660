"""The linear classifier: its own features, FAQ keys summed into their retrieval
intent and the parse data filled in the way Rasa's ResponseSelector would, the
in-domain gate, multi-label sets, and two requests in one message."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData
from sklearn.feature_extraction.text import CountVectorizer

from bot.nlu import linear_model
from bot.nlu.features import Features, TextFeaturizer, ngrams
from bot.nlu.in_domain import InDomainGate
from bot.nlu.linear_classifier import LinearIntentClassifier
from bot.nlu.multilabel import SetDecoder, canonical
from bot.nlu.requests import Clause, Labelled, pick_requests, split_clauses
from bot.nlu.tokenizer import _init_jieba

_init_jieba(None)


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
    parse = classifier._parse(np.array([0.25, 0.4, 0.35]))
    assert parse["intent"]["name"] == "faq"
    assert parse["intent"]["confidence"] == pytest.approx(0.65)
    assert [r["name"] for r in parse["intent_ranking"]] == ["faq", "greet"]
    selected = parse["response_selector"]
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
    parse = classifier._parse(np.array([0.1, 0.1, 0.8]))
    assert parse["intent"] == {"name": "greet", "confidence": pytest.approx(0.8)}


# --- features ---------------------------------------------------------------------------


@pytest.mark.parametrize("words", [["refund", "my", "order"], ["我", "订单", "到哪了"], ["a"]])
def test_char_ngrams_are_sklearns_char_wb(words: list[str]) -> None:
    ours = sorted(t[2:] for t in ngrams(words) if t.startswith("c:"))
    sk = CountVectorizer(analyzer="char_wb", ngram_range=(1, 4)).build_analyzer()
    assert ours == sorted(sk(" ".join(words)))
    assert "w:" + " ".join(words[:2]) in set(ngrams(words)) or len(words) < 2


def test_features_are_unit_length_per_block() -> None:
    tokens = [["运费", "多少"], ["refund", "refund", "please"], []]
    featurizer = TextFeaturizer.fit(tokens, dense_weight=2.0)
    vectors = np.array([[3.0, 4.0] + [0.0] * 510, [1.0] * 512, [0.0] * 512], np.float32)
    features = featurizer(tokens, vectors)
    out = np.hstack([features.sparse.toarray(), features.dense])
    n = len(featurizer.vocabulary)
    assert out.shape == (3, featurizer.dim)
    assert np.linalg.norm(out[0, :n]) == pytest.approx(1.0)
    assert np.linalg.norm(out[0, n:]) == pytest.approx(2.0)
    # An empty text (no tokens, zero sentence vector) stays zero instead of dividing by 0.
    assert not out[2].any()
    # Unknown n-grams are ignored, not an error (only the padding space is known).
    row = featurizer.counts([["ℤℤ"]])
    assert [featurizer.vocabulary[j] for j in row.indices] == ["c: "]


def test_linear_model_fits_both_heads() -> None:
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(60, 4)).astype(np.float32)
    sparse = sp.csr_matrix(rng.random((60, 3)) > 0.5, dtype=np.float32)
    features = Features(sparse, dense)
    labels = (dense[:, 0] > 0).astype(int) + 2 * (dense[:, 1] > 0).astype(int)
    softmax = linear_model.fit(features, linear_model.one_hot(labels.tolist(), 4), "softmax",
                               C=100.0)
    assert (softmax.scores(features).argmax(axis=1) == labels).mean() > 0.95
    targets = np.stack([dense[:, 0] > 0, dense[:, 1] > 0], axis=1).astype(float)
    sigmoid = linear_model.fit(features, targets, "sigmoid", C=100.0)
    assert ((sigmoid.scores(features) > 0) == targets).mean() > 0.95


# --- out of scope -------------------------------------------------------------------------


def test_in_domain_gate_passes_training_like_vectors_and_stops_others() -> None:
    rng = np.random.default_rng(1)
    centre = np.zeros(8)
    centre[0] = 1.0
    examples = centre + 0.1 * rng.normal(size=(50, 8))
    gate = InDomainGate.fit(examples, quantile=0.05)
    far = np.zeros((1, 8))
    far[0, 3] = 1.0
    assert gate.factor(examples[:5]).min() == pytest.approx(1.0)
    assert gate.factor(far)[0] == 0.0


def test_gate_moves_lost_confidence_to_the_out_of_scope_class(tmp_path) -> None:
    config = LinearIntentClassifier.get_default_config()
    clf = LinearIntentClassifier(config, LocalModelStorage(tmp_path), Resource("c"),
                                 classes=["greet", "out_of_scope"])
    probs = np.array([[0.9, 0.1], [0.9, 0.1]])
    clf._gate(probs, np.array([1.0, 0.25]))
    assert probs[0] == pytest.approx([0.9, 0.1])
    assert probs[1] == pytest.approx([0.225, 0.775])


# --- multi-label ---------------------------------------------------------------------------


def test_set_decoder_prefers_the_set_the_atom_heads_agree_with() -> None:
    decoder = SetDecoder.from_labels(["Request-b+Inform-a", "Inform-a", "Request-b"], "+", 0.5)
    assert decoder.sets == ["Inform-a", "Inform-a+Request-b", "Request-b"]
    assert canonical("Request-b+Inform-a+Inform-a", "+") == "Inform-a+Request-b"
    # The powerset head is unsure; both atom heads say yes.
    probs = decoder.probabilities(np.zeros((1, 3)), np.array([[3.0, 3.0]]))
    assert decoder.sets[int(probs.argmax())] == "Inform-a+Request-b"
    assert probs.sum() == pytest.approx(1.0)


# --- two requests ---------------------------------------------------------------------------


def test_clauses_split_at_punctuation_and_connectors_with_offsets() -> None:
    for text, expected in [
        ("查下订单 顺便问下运费", ["查下订单", "顺便问下运费"]),
        ("我要退款，另外发票怎么开", ["我要退款", "另外发票怎么开"]),
        ("where is my parcel? also do you ship to Hong Kong",
         ["where is my parcel", "also do you ship to Hong Kong"]),
        ("refund my order and how long does it take",
         ["refund my order", "and how long does it take"]),
        ("钱包还有多少钱", ["钱包还有多少钱"]),  # 还有 inside a clause is not a connector
        ("handbag", ["handbag"]),  # "and" inside a word is not a connector
    ]:
        clauses = split_clauses(text)
        assert [c.text for c in clauses] == expected
        assert all(text[c.start : c.end] == c.text for c in clauses)


def _labelled(text: str, start: int, intent: str, confidence: float,
              answer: str | None = None) -> Labelled:
    parse = {"intent": {"name": intent, "confidence": confidence}, "intent_ranking": []}
    return Labelled(Clause(text, start, start + len(text)), intent, confidence, answer, parse)


REQUESTS = ["order_status", "faq", "request_refund"]


def test_two_confident_different_requests_are_reported_in_order() -> None:
    text = "你好，查下订单 JM202411230456，顺便问下运费"
    items = [
        _labelled("你好", 0, "greet", 0.9),
        _labelled("查下订单 JM202411230456", 3, "order_status", 0.8),
        _labelled("顺便问下运费", 23, "faq", 0.9, "faq/shipping_fee"),
    ]
    requests = pick_requests(items, text, REQUESTS, 0.6)
    assert [r["intent"]["name"] for r in requests] == ["order_status", "faq"]
    assert requests[0]["text"] == "查下订单 JM202411230456" and requests[0]["start"] == 3
    assert requests[1]["text"] == "顺便问下运费"


def test_no_requests_for_one_request_same_request_or_unclear_first() -> None:
    text = "我的订单到哪了，三天了还没到"
    same = [_labelled("我的订单到哪了", 0, "order_status", 0.9),
            _labelled("三天了还没到", 8, "order_status", 0.7)]
    assert pick_requests(same, text, REQUESTS, 0.6) == []
    unclear_first = [_labelled("嗯嗯", 0, "order_status", 0.4),
                     _labelled("我要退款", 3, "request_refund", 0.9),
                     _labelled("运费多少", 8, "faq", 0.9, "faq/shipping_fee")]
    assert pick_requests(unclear_first, "嗯嗯 我要退款 运费多少", REQUESTS, 0.6) == []
    two_answers = [_labelled("运费多少", 0, "faq", 0.9, "faq/shipping_fee"),
                   _labelled("发票怎么开", 5, "faq", 0.9, "faq/invoice")]
    assert len(pick_requests(two_answers, "运费多少 发票怎么开", REQUESTS, 0.6)) == 2
    greeting = [_labelled("你好", 0, "greet", 0.9), _labelled("我要退款", 3, "request_refund", 0.9)]
    assert pick_requests(greeting, "你好，我要退款", REQUESTS, 0.6) == []


# --- the component, trained for real --------------------------------------------------------

TRAIN = {
    "order_status": ["我的订单到哪了", "查下订单", "物流到哪了", "where is my order",
                     "track my parcel", "where's my package"],
    "request_refund": ["我要退款", "申请退款", "退钱给我", "I want a refund", "refund me please",
                       "give me my money back"],
    "faq/shipping_fee": ["运费多少", "包邮吗", "邮费怎么算", "how much is shipping",
                         "is delivery free", "shipping cost"],
    "greet": ["你好", "在吗", "哈喽", "hello", "hi there", "good morning"],
    "out_of_scope": ["讲个笑话", "今天天气怎么样", "tell me a joke", "what's the weather"],
}


def _train(tmp_path, data: dict[str, list[str]], **config) -> LinearIntentClassifier:
    storage = LocalModelStorage(tmp_path)
    full = {**LinearIntentClassifier.get_default_config(), **config}
    messages = []
    for label, texts in data.items():
        intent, _, key = label.partition("/")
        for text in texts:
            values = {"text": text, "intent": intent}
            if key:
                values["intent_response_key"] = label
            messages.append(Message(values))
    clf = LinearIntentClassifier(full, storage, Resource("clf"))
    clf.train(TrainingData(messages))
    return LinearIntentClassifier.load(full, storage, Resource("clf"), None)


def _parse(clf: LinearIntentClassifier, text: str) -> Message:
    message = Message({"text": text})
    clf.process([message])
    return message


@pytest.mark.slow
def test_trained_classifier_round_trips_and_reports_two_requests(tmp_path) -> None:
    clf = _train(tmp_path, TRAIN, request_threshold=0.3)
    assert clf.gate is not None and clf.decoder is None
    assert _parse(clf, "我的订单到哪了").get("intent")["name"] == "order_status"
    message = _parse(clf, "查下订单 顺便问下运费")
    requests = message.get("requests")
    assert [r["intent"]["name"] for r in requests] == ["order_status", "faq"]
    assert message.get("intent")["name"] == "order_status"
    assert requests[1]["response_selector"]["faq"]["response"]["intent_response_key"] == (
        "faq/shipping_fee"
    )
    assert message.get("response_selector") is None  # the first request has no answer key
    assert _parse(clf, "你好，我要退款").get("requests") is None


@pytest.mark.slow
def test_multi_label_mode_predicts_label_sets_in_canonical_order(tmp_path) -> None:
    data = {
        "Request-酒店": ["酒店电话是多少", "这家酒店地址在哪", "酒店有wifi吗", "酒店价格多少"],
        "Inform-酒店+Request-酒店": ["帮我找个评分4.5以上的酒店，电话多少",
                                   "推荐一个便宜的酒店，地址在哪",
                                   "我要住五星级酒店，价格多少",
                                   "找个有wifi的酒店，电话是多少"],
        "General-thank": ["谢谢", "好的谢谢", "太感谢了", "谢谢你"],
        "Request-景点": ["这个景点门票多少", "景点开放时间", "景点地址在哪", "游玩时间多久"],
    }
    clf = _train(tmp_path, data)
    assert clf.decoder is not None
    assert "Inform-酒店+Request-酒店" in clf.classes
    parsed = _parse(clf, "帮我找个评分高的酒店，地址在哪")
    assert set(parsed.get("intent")["name"].split("+")) <= {"Inform-酒店", "Request-酒店"}
    assert parsed.get("requests") is None  # no request splitting in multi-label mode
    assert _parse(clf, "谢谢").get("intent")["name"] == "General-thank"
