"""NLU quality gate: intent accuracy on a held-out split of our own data.

Each language's examples are split 80/20 by a hash of their text, so the
held-out set is stable: adding examples never moves existing ones between the
two sides, and a new example has a one-in-five chance of being held out. The
pipeline in config.yml is trained on the 80% and must label the held-out 20%
right at least 95% of the time, per language. FAQ messages count as
right only when the answer selector also picks the right answer. A data or
pipeline change that breaks understanding fails here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest
from rasa.shared.nlu.training_data.loading import load_data
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

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
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    from rasa.core.agent import Agent
    from rasa.model_training import train_nlu

    work = tmp_path_factory.mktemp("nlu-quality")
    regexes = load_data(str(ROOT / "data/nlu/regex.yml"))
    train_examples: list[Message] = []
    tests: dict[str, list[Message]] = {}
    for language in ("zh", "en"):
        train, test = split(load_data(str(ROOT / "data/nlu" / language)))
        train_examples += train
        tests[language] = test
    train_data = TrainingData(train_examples).merge(regexes)
    (work / "train.yml").write_text(train_data.nlu_as_yaml(), encoding="utf-8")

    model = train_nlu(
        config=str(ROOT / "config.yml"),
        nlu_data=str(work / "train.yml"),
        output=str(work),
        domain=str(ROOT / "domain.yml"),
    )
    agent = Agent.load(model)

    async def predict(text: str) -> str:
        parsed = await agent.parse_message(text)
        intent = parsed["intent"]
        return intent.get("full_retrieval_intent_name") or intent["name"]

    scores: dict[str, dict] = {}
    for language, test in tests.items():
        predictions = [asyncio.run(predict(m.get("text"))) for m in test]
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
