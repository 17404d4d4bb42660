"""NLU quality gate: intent accuracy on a held-out split of our own data.

Each language's examples are split 80/20 by a hash of their text, so the
held-out set is stable: adding examples never moves existing ones between the
two sides, and a new example has a one-in-five chance of being held out. The
pipeline in config.yml is trained on the 80% and must label the held-out 20%
right at least 95% of the time, per language. FAQ messages count as
right only when the answer selector also picks the right answer. A data or
pipeline change that breaks understanding fails here.

The same model also answers out-of-scope messages (clinc150's out-of-scope
queries, clinc150 intents a shop doesn't serve, and Chinese ones written here),
which must not come out as an FAQ answer or a task, and messages that ask two
things, composed from the held-out examples (tests/nlu_requests_eval.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from rasa.shared.nlu.training_data.loading import load_data
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from tests.nlu_eval_sets import (
    HAND_WRITTEN,
    REQUEST_INTENTS,
    out_of_scope_messages,
    two_request_messages,
)

ROOT = Path(__file__).resolve().parent.parent
THRESHOLD = 0.95
HELD_OUT_BUCKETS = 5  # one in five examples is held out


def label(message: Message) -> str:
    return message.get("intent_response_key") or message.get("intent")


def held_out(message: Message) -> bool:
    digest = hashlib.sha256(message.get("text").encode("utf-8")).digest()
    return digest[0] % HELD_OUT_BUCKETS == 0


def split(data: TrainingData) -> tuple[list[Message], list[Message]]:
    train, test = [], []
    for example in data.intent_examples:
        (test if held_out(example) else train).append(example)
    return train, test


@pytest.fixture(scope="module")
def held_out_sets() -> tuple[list[Message], dict[str, list[Message]]]:
    train_examples: list[Message] = []
    tests: dict[str, list[Message]] = {}
    for language in ("zh", "en"):
        train, test = split(load_data(str(ROOT / "data/nlu" / language)))
        train_examples += train
        tests[language] = test
    return train_examples, tests


@pytest.fixture(scope="module")
def agent(
    tmp_path_factory: pytest.TempPathFactory,
    held_out_sets: tuple[list[Message], dict[str, list[Message]]],
) -> Any:
    """The pipeline of config.yml trained on the 80% (one model for every test here)."""
    from rasa.core.agent import Agent
    from rasa.model_training import train_nlu

    work = tmp_path_factory.mktemp("nlu-quality")
    regexes = load_data(str(ROOT / "data/nlu/regex.yml"))
    train_examples, _ = held_out_sets
    train_data = TrainingData(train_examples).merge(regexes)
    (work / "train.yml").write_text(train_data.nlu_as_yaml(), encoding="utf-8")

    model = train_nlu(
        config=str(ROOT / "config.yml"),
        nlu_data=str(work / "train.yml"),
        output=str(work),
        domain=str(ROOT / "domain.yml"),
    )
    started = time.perf_counter()
    loaded = Agent.load(model)
    print(json.dumps({"agent_load_s": round(time.perf_counter() - started, 2)}))
    return loaded


def parse(agent: Any, text: str) -> dict[str, Any]:
    return asyncio.run(agent.parse_message(text))


def served(parsed: dict[str, Any]) -> str:
    """What the bot acts on: the intent, or the FAQ answer key for a retrieval intent."""
    intent = parsed["intent"]
    return intent.get("full_retrieval_intent_name") or intent["name"]


@pytest.fixture(scope="module")
def results(
    agent: Any,
    held_out_sets: tuple[list[Message], dict[str, list[Message]]],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, dict]:
    work = tmp_path_factory.mktemp("nlu-quality-results")
    _, tests = held_out_sets
    scores: dict[str, dict] = {}
    timings: list[float] = []
    for language, test in tests.items():
        predictions = []
        for m in test:
            started = time.perf_counter()
            predictions.append(served(parse(agent, m.get("text"))))
            timings.append(1000 * (time.perf_counter() - started))
        errors = [
            {"text": m.get("text"), "expected": label(m), "predicted": p}
            for m, p in zip(test, predictions, strict=True)
            if p != label(m)
        ]
        scores[language] = {
            "examples": len(test),
            "accuracy": 1 - len(errors) / len(test),
            "errors": errors,
        }
    (work / "results.json").write_text(json.dumps(scores, ensure_ascii=False, indent=1))
    print(json.dumps({k: round(v["accuracy"], 4) for k, v in scores.items()}))
    print(json.dumps({"parse_p50_ms": round(statistics.median(timings), 2),
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
    return scores


@pytest.mark.slow
@pytest.mark.parametrize("language", ["zh", "en"])
def test_held_out_intent_accuracy(results: dict[str, dict], language: str) -> None:
    result = results[language]
    assert result["examples"] >= 200
    shown = "\n".join(
        f"  {e['expected']:>28} <- {e['predicted']:<28} {e['text']}" for e in result["errors"]
    )
    assert result["accuracy"] >= THRESHOLD, (
        f"{language} held-out accuracy {result['accuracy']:.3f} < {THRESHOLD}:\n{shown}"
    )


# --- out of scope -------------------------------------------------------------------

# Share of out-of-scope messages that may still get an FAQ answer or start a task.
# Measured 2026-11-28 (later) after examples of near-shop topics (banking, pay and tax,
# work, travel, phone plans) went into out_of_scope: test 0.060 of 334 (0.036 an
# FAQ answer; 0.143 before), val 0.054 of 280 (0.036 an FAQ answer). What is
# still answered is near the shop's words: "call the grocery store and get their
# operational hours" -> business hours. A per-answer similarity gate cost more
# right answers than it saved (bench/results/nlu-experiments-2026-11-28.md).
OUT_OF_SCOPE_ANSWERED_MAX = 0.09


def acts_on(parsed: dict[str, Any]) -> bool:
    """The bot would answer an FAQ or start a task (not fallback / out_of_scope / chit-chat)."""
    return parsed["intent"]["name"] in REQUEST_INTENTS


@pytest.mark.slow
@pytest.mark.parametrize("split", ["test", "val"])
def test_out_of_scope_messages_get_no_answer(agent: Any, split: str) -> None:
    messages = out_of_scope_messages(split)
    answered = []
    for text in messages:
        parsed = parse(agent, text)
        if acts_on(parsed) or parsed.get("requests"):
            answered.append(f"  {served(parsed):<24} {parsed['intent']['confidence']:.2f} {text}")
    share = len(answered) / len(messages)
    print(json.dumps({"split": split, "out_of_scope_answered": round(share, 4),
                      "n": len(messages)}))
    assert share <= OUT_OF_SCOPE_ANSWERED_MAX, (
        f"{share:.3f} of {len(messages)} out-of-scope messages answered:\n" + "\n".join(answered)
    )


# --- two requests in one message ------------------------------------------------------

# Measured 2026-11-28 (request_threshold 0.8): precision 0.97, recall 0.69, false
# splits 0.006 (285 two-request and 705 one-request messages). Misses are mostly a
# clause the classifier is less sure of than 0.8; wrong ones its own confusions
# (refund_status vs request_refund) or a third clause read as a request.
TWO_REQUESTS_MIN_PRECISION = 0.93
TWO_REQUESTS_MIN_RECALL = 0.6
FALSE_SPLITS_MAX = 0.01


def request_labels(parsed: dict[str, Any]) -> list[str]:
    labels = []
    for request in parsed.get("requests") or []:
        name = request["intent"]["name"]
        selector = request.get("response_selector", {}).get(name)
        labels.append(selector["response"]["intent_response_key"] if selector else name)
    return labels


def score_requests(agent: Any, cases: list[tuple[str, list[str]]]) -> dict[str, Any]:
    emitted = right = doubles = singles = false_splits = 0
    misses = []
    for text, expected in cases:
        parsed = parse(agent, text)
        found = request_labels(parsed)
        emitted += bool(found)
        if len(expected) >= 2:
            doubles += 1
            right += found == expected
            if found != expected:
                misses.append(f"  {expected} <- {found} {text}")
        else:
            singles += 1
            false_splits += bool(found)
            if found:
                misses.append(f"  SPLIT {found} {text}")
            elif expected and served(parsed) != expected[0]:
                misses.append(f"  (one request, intent {served(parsed)} != {expected[0]}) {text}")
    return {
        "precision": right / emitted if emitted else 1.0,
        "recall": right / doubles if doubles else 1.0,
        "false_split_rate": false_splits / singles if singles else 0.0,
        "n_two": doubles,
        "n_one": singles,
        "misses": misses,
    }


@pytest.mark.slow
def test_two_requests_composed_from_held_out(
    agent: Any, held_out_sets: tuple[list[Message], dict[str, list[Message]]]
) -> None:
    _, tests = held_out_sets
    held = {lang: [(m.get("text"), label(m)) for m in ms] for lang, ms in tests.items()}
    result = score_requests(agent, two_request_messages(held))
    figures = {k: (round(v, 4) if isinstance(v, float) else v)
               for k, v in result.items() if k != "misses"}
    print(json.dumps(figures))
    shown = "\n".join(result["misses"][:80])
    assert result["precision"] >= TWO_REQUESTS_MIN_PRECISION, shown
    assert result["recall"] >= TWO_REQUESTS_MIN_RECALL, shown
    assert result["false_split_rate"] <= FALSE_SPLITS_MAX, shown


@pytest.mark.slow
def test_two_requests_hand_written(agent: Any) -> None:
    result = score_requests(agent, HAND_WRITTEN)
    print(json.dumps({k: v for k, v in result.items() if k != "misses"}))
    shown = "\n".join(result["misses"])
    assert result["false_split_rate"] == 0.0, shown
    assert result["recall"] >= 10 / 12, shown
    # The message's own intent is the first request's, so the dialogue handles it first.
    parsed = parse(agent, "查下订单 顺便问下运费")
    first, second = parsed["requests"]
    assert parsed["intent"]["name"] == first["intent"]["name"] == "order_status"
    assert (first["text"], first["start"], first["end"]) == ("查下订单", 0, 4)
    assert (second["text"], second["start"], second["end"]) == ("顺便问下运费", 5, 11)
    assert second["response_selector"]["faq"]["response"]["intent_response_key"] == (
        "faq/shipping_fee"
    )
    assert "response_selector" not in first
