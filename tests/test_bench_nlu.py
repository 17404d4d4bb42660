"""bench/nlu.py: a real (tiny) train-and-parse run of our pipeline, plus its metrics."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "nlu.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_nlu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


bench = _load_bench()

# 3 intents x 15 examples, English and Chinese, one of them a `+`-joined label. The
# texts carry what a hand-written NLU YAML gets wrong: quotes, colons, `#`, brackets.
GREET = [
    "hello", "hi there", "good morning", "hey!", "hello, anyone there?",
    "你好", "您好", "早上好", "嗨，在吗", "哈喽",
    'say "hi"', "hi: it's me", "#hello", "hey [friend]", "你好：请问在吗",
]
TRACK = [
    "where is my order", "track my package", "order status please",
    "has my parcel shipped?", "when will my order arrive: JM20241123",
    "我的订单到哪了", "查一下物流", "快递什么时候到", "订单状态", "包裹发货了吗",
    "where's order #12345?", 'what does "in transit" mean for my order', "track {order} now",
    "我的order到哪了", "物流信息：还没更新",
]
BOTH = [
    "hi, where is my order", "hello! track my package", "good morning, order status?",
    "hey: has my parcel shipped", "hi there #where is my order",
    "你好，我的订单到哪了", "您好，查一下物流", "早上好，快递什么时候到", "嗨，订单状态",
    "哈喽，包裹发货了吗",
    'hello "track" my order', "hi [again], where's my order", "你好：物流信息呢",
    "hello, order JM20241123 status", "你好，我的order到哪了",
]


def _write(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "intent"])
        writer.writerows(rows)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_bench_runs_our_pipeline_on_a_tiny_csv_pair(tmp_path: Path) -> None:
    data = {"greet": GREET, "track_order": TRACK, "greet+track_order": BOTH}
    train = [(t, label) for label, texts in data.items() for t in texts[:10]]
    test = [(t, label) for label, texts in data.items() for t in texts[10:]]
    _write(tmp_path / "train.csv", train)
    _write(tmp_path / "test.csv", test)
    results = tmp_path / "results"
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "train.csv"), str(tmp_path / "test.csv"),
         "--only", "ours", "--name", "tiny", "--results-dir", str(results),
         "--set", "LinearIntentClassifier.C=10"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((results / "nlu-tiny.json").read_text(encoding="utf-8"))
    assert (results / "nlu-tiny.md").read_text(encoding="utf-8").startswith("# NLU benchmark")

    assert report["data"]["n_train"] == 30 and report["data"]["n_eval"] == 15
    assert report["data"]["multi_label_sep"] == "+"
    assert report["data"]["oos_label"] is None
    assert set(report["runs"]) == {"ours"}
    run = report["runs"]["ours"]
    names = [c["name"] for c in run["pipeline"]]
    assert "ResponseSelector" not in names and names[-1] == "FallbackClassifier"
    assert any(c.get("C") == 10 for c in run["pipeline"])  # --set reached the config
    assert run["train"]["train_time_s"] > 0
    assert run["train"]["n_duplicates_dropped"] == 0  # every example made it through YAML
    test_metrics = run["splits"]["test"]
    for value in (test_metrics["accuracy"], test_metrics["macro_f1"],
                  test_metrics["served"]["accuracy"],
                  test_metrics["multi_label"]["exact_match"],
                  test_metrics["multi_label"]["atomic_micro_f1"]):
        assert 0.0 <= value <= 1.0
    # The re-implemented fallback decision agrees with Rasa's FallbackClassifier.
    assert test_metrics["fallback_simulation_agreement"] == 1.0
    latency = run["serve"]["latency"]
    assert latency["n"] == 15 and 0 < latency["p50_ms"] <= latency["max_ms"]
    assert run["serve"]["peak_rss_mb"] > 0
    assert report["machine"]["nproc"] >= 1 and report["versions"]["rasa"]


# --- metrics, no training --------------------------------------------------------------


def test_multilabel_metrics_split_on_the_separator() -> None:
    gold = ["a+b", "a", "b+c"]
    pred = ["b+a", "a+c", "nlu_fallback"]
    m = bench.multilabel_metrics(gold, pred, "+")
    assert m["exact_match"] == pytest.approx(1 / 3)
    # tp: a, b, a = 3; fp: c = 1; fn: b, c = 2
    assert m["atomic_micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))


def test_oos_metrics_follow_larson_et_al() -> None:
    gold = ["x", "x", "y", "oos", "oos"]
    served = ["x", "nlu_fallback", "x", "oos", "nlu_fallback"]
    m = bench.oos_metrics(gold, served, "oos")
    assert m["in_scope_accuracy"] == pytest.approx(1 / 3)  # a rejection is wrong
    assert m["oos_recall"] == 1.0  # the label and nlu_fallback both count
    assert m["overall_accuracy"] == pytest.approx(3 / 5)


def test_fallback_simulation_matches_rasa_rules() -> None:
    ranking = [("a", 0.5), ("b", 0.46)]
    assert bench.simulate_fallback(ranking, 0.6, 0.0) == "nlu_fallback"  # below threshold
    assert bench.simulate_fallback(ranking, 0.3, 0.05) == "nlu_fallback"  # ambiguous
    assert bench.simulate_fallback(ranking, 0.3, 0.02) == "a"
    pred = {"intent": "nlu_fallback",
            "ranking": [["nlu_fallback", 0.6], ["a", 0.5], ["b", 0.46]]}
    assert bench.top_intent(pred) == "a"


def test_macro_f1_counts_a_fallback_as_a_miss_only() -> None:
    assert bench.macro_f1(["a", "a", "b"], ["a", "nlu_fallback", "b"]) == pytest.approx(
        (2 / 3 + 1.0) / 2)


def test_set_overrides_address_components_by_name_and_index() -> None:
    pipeline = [{"name": "bot.nlu.linear_classifier.LinearIntentClassifier"},
                {"name": "CountVectorsFeaturizer"}, {"name": "CountVectorsFeaturizer"}]
    bench.apply_set(pipeline, "LinearIntentClassifier.C=5")
    bench.apply_set(pipeline, "CountVectorsFeaturizer[1].max_ngram=5")
    assert pipeline[0]["C"] == 5 and pipeline[2]["max_ngram"] == 5
    with pytest.raises(SystemExit):
        bench.apply_set(pipeline, "CountVectorsFeaturizer.max_ngram=5")  # which one?


def test_read_csv_takes_named_columns_and_cleans_text(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text('category,text\ncard,"two\nlines,  here"\n', encoding="utf-8")
    assert bench.read_csv(path) == [("two lines, here", "card")]


def test_stratified_split_keeps_every_label_in_training() -> None:
    rows = [(f"t{i}", "a") for i in range(10)] + [("u0", "b"), ("u1", "b"), ("v", "c")]
    train, dev = bench.stratified_split(rows, 0.2, seed=1)
    assert {lab for _, lab in train} == {"a", "b", "c"}
    assert sorted(lab for _, lab in dev) == ["a", "a", "b"]
    assert sorted(train + dev) == sorted(rows)
