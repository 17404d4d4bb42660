"""Model fingerprints, latest-model lookup, and training progress.

No real `rasa train` here (minutes of CPU): the runner is exercised with a
small stand-in that prints what Rasa prints, through the real tqdm.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from bot.training import (
    MODEL_PREFIX,
    TrainingError,
    TrainingInterrupted,
    TrainProgress,
    ensure_model,
    fingerprint,
    fingerprint_path,
    input_files,
    latest_model,
    prune_models,
    read_fingerprint,
    split_output,
    train,
    write_fingerprint,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "data" / "nlu" / "en").mkdir(parents=True)
    (tmp_path / "data" / "nlu" / "en" / "faq.yml").write_text(
        'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hello\n'
    )
    (tmp_path / "data" / "rules.yml").write_text('version: "3.1"\nrules: []\n')
    (tmp_path / "config.yml").write_text("language: zh\npipeline: []\n")
    (tmp_path / "domain.yml").write_text('version: "3.1"\nintents: [greet]\n')
    (tmp_path / "bot" / "nlu").mkdir(parents=True)
    (tmp_path / "bot" / "nlu" / "tokenizer.py").write_text("SPLIT = 1\n")
    return tmp_path


# --- fingerprint ----------------------------------------------------------------


def test_fingerprint_is_stable(project: Path) -> None:
    assert fingerprint(project) == fingerprint(project)
    assert len(fingerprint(project)) == 64


def test_fingerprint_changes_with_content(project: Path) -> None:
    before = fingerprint(project)
    faq = project / "data" / "nlu" / "en" / "faq.yml"
    faq.write_text(faq.read_text() + "    - hi there\n")
    assert fingerprint(project) != before


def test_fingerprint_changes_when_a_file_is_added(project: Path) -> None:
    before = fingerprint(project)
    (project / "data" / "stories.yml").write_text('version: "3.1"\nstories: []\n')
    assert fingerprint(project) != before


def test_fingerprint_changes_when_a_file_is_renamed(project: Path) -> None:
    before = fingerprint(project)
    (project / "data" / "rules.yml").rename(project / "data" / "rules2.yml")
    assert fingerprint(project) != before


def test_fingerprint_changes_with_component_code(project: Path) -> None:
    before = fingerprint(project)
    (project / "bot" / "nlu" / "tokenizer.py").write_text("SPLIT = 2\n")
    assert fingerprint(project) != before


def test_fingerprint_ignores_mtime(project: Path) -> None:
    before = fingerprint(project)
    future = time.time() + 3600
    for path in (project / "data" / "rules.yml", project / "config.yml"):
        os.utime(path, (future, future))
    assert fingerprint(project) == before


def test_fingerprint_ignores_caches_and_other_files(project: Path) -> None:
    before = fingerprint(project)
    cache = project / "bot" / "nlu" / "__pycache__"
    cache.mkdir()
    (cache / "tokenizer.cpython-310.pyc").write_bytes(b"\x00\x01")
    (project / "data" / ".faq.yml.swp").write_text("editor")
    (project / "endpoints.yml").write_text("action_endpoint: {}\n")  # not a model input
    (project / "README.md").write_text("hello\n")
    assert fingerprint(project) == before


def test_fingerprint_salt(project: Path) -> None:
    assert fingerprint(project, salt="rasa==3.6.21") != fingerprint(project, salt="rasa==3.6.20")


def test_input_files_are_sorted_relative_paths(project: Path) -> None:
    assert input_files(project) == [
        "bot/nlu/tokenizer.py",
        "config.yml",
        "data/nlu/en/faq.yml",
        "data/rules.yml",
        "domain.yml",
    ]


# --- models on disk ------------------------------------------------------------------


def _model(models: Path, name: str, age: float) -> Path:
    path = models / name
    path.write_bytes(b"model")
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_latest_model(tmp_path: Path) -> None:
    models = tmp_path / "models"
    assert latest_model(models) is None  # no directory yet
    models.mkdir()
    assert latest_model(models) is None
    _model(models, "jade-mart-20240101-000000.tar.gz", age=300)
    newest = _model(models, "20240102-000000-hand-made.tar.gz", age=100)
    _model(models, "jade-mart-20240103-000000.tar.gz", age=200)
    (models / "notes.txt").write_text("newer, but not a model")
    write_fingerprint(models / "jade-mart-20240101-000000.tar.gz", "abc")
    assert latest_model(models) == newest


def test_fingerprint_sidecar(tmp_path: Path) -> None:
    model = tmp_path / "jade-mart-20240101-000000.tar.gz"
    assert fingerprint_path(model) == tmp_path / "jade-mart-20240101-000000.fingerprint.json"
    assert read_fingerprint(model) is None
    write_fingerprint(model, "f" * 64, salt="rasa==3.6.21")
    assert read_fingerprint(model) == "f" * 64
    assert json.loads(fingerprint_path(model).read_text())["salt"] == "rasa==3.6.21"
    fingerprint_path(model).write_text("{not json")
    assert read_fingerprint(model) is None


def test_prune_keeps_newest_of_ours_only(tmp_path: Path) -> None:
    ours = [
        _model(tmp_path, f"{MODEL_PREFIX}-2024010{i}-000000.tar.gz", age=100 - i) for i in range(5)
    ]
    for model in ours:
        write_fingerprint(model, "x")
    hand_made = _model(tmp_path, "20230101-000000-old.tar.gz", age=1000)
    removed = prune_models(tmp_path, keep=3)
    assert sorted(removed) == ours[:2]
    assert [m.exists() for m in ours] == [False, False, True, True, True]
    assert not fingerprint_path(ours[0]).exists()
    assert hand_made.exists()


# --- progress ---------------------------------------------------------------------------

# As `rasa train` (3.6) prints them: logging lines and tqdm bars, the bars
# redrawn with carriage returns.
RASA_OUTPUT = (
    "2024-05-02 10:11:05 INFO     rasa.cli.train  - "
    "Started validating domain and training data...\n"
    "2024-05-02 10:11:09 INFO     rasa.validator  - Validating intents...\n"
    "Processed story blocks: 100%|██████████| 14/14 [00:00<00:00, 2217.51it/s, # trackers=1]\n"
    "Processed rules: 100%|██████████| 9/9 [00:00<00:00, 3024.01it/s, # trackers=1]\n"
    "2024-05-02 10:11:12 INFO     rasa.engine.training.hooks  - Restored component "
    "'CountVectorsFeaturizer' from cache.\n"
    "2024-05-02 10:11:12 INFO     rasa.engine.training.hooks  - Starting to train component "
    "'DIETClassifier'.\n"
    "Epochs:   0%|          | 0/100 [00:00<?, ?it/s]\r"
    "Epochs:  45%|████▌     | 45/100 [00:10<00:12,  4.41it/s, t_loss=2.15, i_acc=0.953]\r"
)


def test_split_output_handles_carriage_returns() -> None:
    lines, rest = split_output("a\nb\r\nc\rd\r\re")
    assert lines == ["a", "b", "c", "d"]
    assert rest == "e"


def test_progress_from_rasa_lines() -> None:
    progress = TrainProgress()
    assert progress.stage == "starting Rasa"
    lines, rest = split_output(RASA_OUTPUT)
    assert rest == ""
    stages = []
    for line in lines:
        progress.feed(line)
        stages.append(progress.stage)
    assert stages[0] == "validating domain and training data"
    assert "restored CountVectorsFeaturizer from cache" in stages
    assert progress.stage == "training DIETClassifier"
    assert progress.detail == "epochs 45% (45/100)"
    assert progress.components_done == 1
    assert progress.text(75) == "[01:15] training DIETClassifier — epochs 45% (45/100)"
    assert progress.key == "training DIETClassifier"

    progress.feed(
        "2024-05-02 10:11:35 INFO     rasa.engine.training.hooks  - Finished training "
        "component 'DIETClassifier'."
    )
    assert progress.components_done == 2
    # What runs after a component (tracker generation) isn't named: no new step.
    assert progress.stage == "2 components trained"
    assert progress.key == "training DIETClassifier"
    progress.feed(
        "Processed trackers:  50%|█████     | 7/14 [00:00<00:00, 1680.42it/s, # action=52]"
    )
    assert progress.detail == "processed trackers 7/14"
    progress.feed(
        "Your Rasa model is trained and saved at 'models/jade-mart-20240502-101105.tar.gz'."
    )
    assert progress.stage == "model saved"
    assert progress.model_path == "models/jade-mart-20240502-101105.tar.gz"


def test_progress_through_colour_codes() -> None:
    # Rasa colours some lines even into a pipe; seen in a real training log.
    progress = TrainProgress()
    progress.feed(
        "\x1b[0m2026-11-24 10:55:12 INFO     rasa.engine.training.hooks  - "
        "Starting to train component 'CountVectorsFeaturizer'."
    )
    assert progress.stage == "training CountVectorsFeaturizer"
    progress.feed(
        "Epochs:   2%|▏         | 1/60 [00:10<09:53, 10.06s/it, t_loss=13.7, r_acc=0.389]"
    )
    assert progress.detail == "epochs 2% (1/60)"
    progress.feed(
        "\x1b[92mYour Rasa model is trained and saved at '/tmp/models1/m1.tar.gz'.\x1b[0m"
    )
    assert progress.model_path == "/tmp/models1/m1.tar.gz"


def test_progress_ignores_other_lines() -> None:
    progress = TrainProgress()
    for line in (
        "/venv/lib/python3.10/site-packages/rasa/utils/train_utils.py:530: UserWarning: ...",
        "2024-05-02 10:11:05 WARNING  rasa.shared.utils.common  - The UnexpecTED Intent Policy ...",
        "  warnings.warn(",
    ):
        progress.feed(line)
    assert (progress.stage, progress.detail) == ("starting Rasa", "")


# --- the runner, with a stand-in for rasa train -----------------------------------------

FAKE_RASA = """
import sys, time
from pathlib import Path
from tqdm import tqdm
models, name, outcome = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
log = "2024-05-02 10:11:12 INFO     rasa.engine.training.hooks  - "
print(log + "Starting to train component 'DIETClassifier'.", flush=True)
for _ in tqdm(range(5), desc="Epochs", mininterval=0):
    time.sleep(0.01)
print(log + "Finished training component 'DIETClassifier'.", flush=True)
if outcome == "fail":
    print("ValueError: cannot train on nothing", file=sys.stderr)
    sys.exit(3)
path = models / (name + ".tar.gz")
if outcome == "ok":
    path.write_bytes(b"model")
print(f"Your Rasa model is trained and saved at '{path}'.")
"""


def fake_rasa(outcome: str = "ok") -> Callable[[Path, str], Sequence[str]]:
    def command(models_dir: Path, name: str) -> Sequence[str]:
        return [sys.executable, "-c", FAKE_RASA, str(models_dir), name, outcome]

    return command


def test_train_writes_model_log_and_fingerprint(project: Path) -> None:
    out = io.StringIO()  # not a terminal: plain lines at stage changes
    log = project / "var" / "log" / "train.log"
    model = train(project, project / "models", log, out, command=fake_rasa())
    assert model.is_file()
    assert model.name.startswith(f"{MODEL_PREFIX}-")
    assert read_fingerprint(model) is not None
    text = log.read_text()
    assert "Epochs: 100%" in text and "Your Rasa model is trained" in text
    shown = out.getvalue().splitlines()
    assert any(line.endswith("training DIETClassifier") for line in shown), shown
    assert "\r" not in out.getvalue()
    assert shown[-1].startswith("training finished in")


def test_train_failure_keeps_the_tail(project: Path) -> None:
    out = io.StringIO()
    log = project / "var" / "log" / "train.log"
    with pytest.raises(TrainingError, match="exit code 3") as info:
        train(project, project / "models", log, out, command=fake_rasa("fail"))
    assert "ValueError: cannot train on nothing" in info.value.log_tail
    # The bar's last drawing, not every redraw.
    assert any(line.startswith("Epochs: 100%") for line in info.value.log_tail)
    assert latest_model(project / "models") is None


def test_train_without_a_model_file_fails(project: Path) -> None:
    with pytest.raises(TrainingError, match="is not there"):
        train(
            project,
            project / "models",
            project / "train.log",
            io.StringIO(),
            command=fake_rasa("no-file"),
        )


def test_train_needs_the_inputs(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="config.yml, domain.yml, data missing"):
        train(tmp_path, tmp_path / "models", tmp_path / "train.log", io.StringIO())


def test_ensure_model_trains_only_on_change(project: Path) -> None:
    models, log = project / "models", project / "train.log"
    command = fake_rasa()
    first = ensure_model(project, models, log, io.StringIO(), command=command)

    out = io.StringIO()
    assert ensure_model(project, models, log, out, command=command) == first
    assert "up to date" in out.getvalue()

    os.utime(project / "domain.yml")  # touched, not changed
    assert ensure_model(project, models, log, io.StringIO(), command=command) == first

    (project / "domain.yml").write_text('version: "3.1"\nintents: [greet, goodbye]\n')
    out = io.StringIO()
    second = ensure_model(project, models, log, out, command=command)
    assert second != first and second.is_file()
    assert "changed since" in out.getvalue()

    out = io.StringIO()
    third = ensure_model(project, models, log, out, force=True, command=command)
    assert third not in (first, second)
    assert "forced" in out.getvalue()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_train_progress_on_a_terminal_is_one_updating_line(project: Path) -> None:
    out = _Terminal()
    train(project, project / "models", project / "train.log", out, command=fake_rasa())
    text = out.getvalue()
    drawn = text.split("\r")
    assert len(drawn) > 3  # redrawn in place ...
    assert text.count("\n") == 1  # ... and one line ends it
    assert any("training DIETClassifier — epochs" in part for part in drawn), drawn
    assert drawn[-1].startswith("training finished in")


INTERRUPTED_RASA = """
import os, signal, sys, time
from pathlib import Path
models, name = Path(sys.argv[1]), sys.argv[2]
(models / (name + ".tar.gz")).write_bytes(b"half")  # a half-written archive
open(sys.argv[3], "w").write(str(os.getpid()))
os.kill(os.getppid(), signal.SIGTERM)  # as if someone stopped `bot train`
time.sleep(600)
"""


def test_interrupted_training_stops_rasa_and_keeps_no_model(project: Path) -> None:
    pid_file = project / "trainer.pid"

    def command(models_dir: Path, name: str) -> Sequence[str]:
        return [sys.executable, "-c", INTERRUPTED_RASA, str(models_dir), name, str(pid_file)]

    out = io.StringIO()
    started = time.monotonic()
    with pytest.raises(TrainingInterrupted):
        train(project, project / "models", project / "train.log", out, command=command)
    assert time.monotonic() - started < 20
    assert "stopping training" in out.getvalue()
    assert latest_model(project / "models") is None
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
