"""Models: what a model is made of (fingerprint), which one is latest, and
training a new one with a readable progress display.

A model is `models/<name>.tar.gz`; beside it `models/<name>.fingerprint.json`
says which inputs it was trained from. A model without one (e.g. made by a
bare `rasa train`) is treated as stale, since we can't tell what it contains.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TextIO

from bot.supervisor import SignalTrap, StatusLine, rotate, shown_path, spawn, tail, terminate

# Everything that changes what `rasa train` produces. Custom components are
# code, but they are part of the model too.
MODEL_INPUTS: tuple[str, ...] = ("data", "config.yml", "domain.yml", "bot/nlu", "bot/policies")
MODEL_PREFIX = "jade-mart"
MODEL_SUFFIX = ".tar.gz"
FINGERPRINT_SUFFIX = ".fingerprint.json"
KEEP_MODELS = 3
TRAIN_TAIL_LINES = 30


class TrainingError(Exception):
    """Training could not run or failed; `log_tail` holds the end of its log."""

    def __init__(self, message: str, log_tail: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.log_tail = list(log_tail)


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM during training; no model was kept."""


# --- fingerprint --------------------------------------------------------------


def _skipped(name: str) -> bool:
    # Caches and editor droppings don't change a model.
    return name.startswith(".") or name == "__pycache__" or name.endswith((".pyc", "~"))


def input_files(root: Path, inputs: Iterable[str] = MODEL_INPUTS) -> list[str]:
    """Relative POSIX paths of the files under `inputs`, sorted."""
    found: list[str] = []
    for entry in inputs:
        path = root / entry
        if path.is_file():
            found.append(Path(entry).as_posix())
        elif path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = [d for d in dirnames if not _skipped(d)]
                for filename in filenames:
                    if not _skipped(filename):
                        found.append((Path(dirpath) / filename).relative_to(root).as_posix())
    return sorted(set(found))


def fingerprint(root: Path, inputs: Iterable[str] = MODEL_INPUTS, salt: str = "") -> str:
    """sha256 over the sorted relative paths and contents; mtimes don't count."""
    digest = hashlib.sha256(salt.encode())
    for relative in input_files(root, inputs):
        content = (root / relative).read_bytes()
        # Lengths keep "a"+"bc" and "ab"+"c" apart.
        for part in (relative.encode(), content):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()


def rasa_salt() -> str:
    """A model from another Rasa version may not load: count the version in."""
    try:
        return f"rasa=={metadata.version('rasa')}"
    except metadata.PackageNotFoundError:
        return ""


# --- models on disk -----------------------------------------------------------


def fingerprint_path(model: Path) -> Path:
    return model.with_name(model.name.removesuffix(MODEL_SUFFIX) + FINGERPRINT_SUFFIX)


def latest_model(models_dir: Path) -> Path | None:
    """The newest `*.tar.gz` in `models_dir` (what `rasa run` would pick too)."""
    try:
        models = [p for p in models_dir.iterdir() if p.name.endswith(MODEL_SUFFIX) and p.is_file()]
    except FileNotFoundError:
        return None
    if not models:
        return None
    return max(models, key=lambda p: (p.stat().st_mtime, p.name))


def read_fingerprint(model: Path) -> str | None:
    try:
        data = json.loads(fingerprint_path(model).read_text())
    except (OSError, ValueError):
        return None
    value = data.get("fingerprint") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def write_fingerprint(model: Path, value: str, salt: str = "") -> None:
    record = {
        "fingerprint": value,
        "salt": salt,
        "inputs": list(MODEL_INPUTS),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    fingerprint_path(model).write_text(json.dumps(record, indent=2) + "\n")


def prune_models(models_dir: Path, keep: int = KEEP_MODELS) -> list[Path]:
    """Delete our older models (~60 MB each), keeping the newest `keep`.

    Only models named by `bot train` are touched; hand-made ones stay.
    """
    ours = sorted(
        (p for p in models_dir.glob(f"{MODEL_PREFIX}-*{MODEL_SUFFIX}") if p.is_file()),
        key=lambda p: (p.stat().st_mtime, p.name),
        reverse=True,
    )
    removed = ours[keep:]
    for model in removed:
        model.unlink(missing_ok=True)
        fingerprint_path(model).unlink(missing_ok=True)
    return removed


def new_model_name(models_dir: Path) -> str:
    # No dots: Rasa replaces the last "suffix" of --fixed-model-name.
    base = f"{MODEL_PREFIX}-{time.strftime('%Y%m%d-%H%M%S')}"
    name, n = base, 1
    while (models_dir / f"{name}{MODEL_SUFFIX}").exists():
        n += 1
        name = f"{base}-{n}"
    return name


# --- progress -------------------------------------------------------------------

_STARTING = re.compile(r"Starting to train component '([^']+)'")
_FINISHED = re.compile(r"Finished training component '([^']+)'")
_RESTORED = re.compile(r"Restored component '([^']+)' from cache")
_SAVED = re.compile(r"Your Rasa model is trained and saved at '([^']+)'")
_VALIDATING = "Started validating domain and training data"
# tqdm: "Epochs:  45%|████▌     | 45/100 [00:10<00:12, 4.41it/s, t_loss=2.15]"
_BAR = re.compile(
    r"^\s*(?P<desc>[A-Za-z][^:|]*):\s*(?P<pct>\d{1,3})%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)"
)


@dataclass
class TrainProgress:
    """What `rasa train` is doing, from its output lines.

    `stage` is shown with `detail` (redrawn constantly on a terminal); `key`
    changes once per step, and plain output prints a line only then.
    """

    stage: str = "starting Rasa"
    detail: str = ""
    key: str = "starting Rasa"
    components_done: int = 0
    model_path: str | None = None

    def _step(self, stage: str) -> None:
        self.stage = self.key = stage
        self.detail = ""

    def feed(self, line: str) -> None:
        if match := _BAR.match(line):
            desc, pct = match["desc"].strip(), match["pct"]
            count = f"{match['n']}/{match['total']}"
            if desc == "Epochs":
                self.detail = f"epochs {pct}% ({count})"
            else:
                self.detail = f"{desc.lower()} {count}"
        elif match := _STARTING.search(line):
            self._step(f"training {match[1]}")
        elif _FINISHED.search(line):
            # Not a new step: what runs next (e.g. tracker generation) isn't named.
            self.components_done += 1
            done = self.components_done
            self.stage, self.detail = f"{done} component{'s' * (done != 1)} trained", ""
        elif match := _RESTORED.search(line):
            self.components_done += 1
            self._step(f"restored {match[1]} from cache")
        elif match := _SAVED.search(line):
            self.model_path = match[1]
            self._step("model saved")
        elif _VALIDATING in line:
            self._step("validating domain and training data")

    def text(self, elapsed: float) -> str:
        minutes, seconds = divmod(int(elapsed), 60)
        detail = f" — {self.detail}" if self.detail else ""
        return f"[{minutes:02d}:{seconds:02d}] {self.stage}{detail}"


def split_output(buffer: str) -> tuple[list[str], str]:
    """Complete lines (ended by \\n or tqdm's \\r) and the unfinished rest."""
    parts = re.split(r"\r\n|\r|\n", buffer)
    return [p for p in parts[:-1] if p.strip()], parts[-1]


# --- training ---------------------------------------------------------------------


def rasa_train_argv(models_dir: Path, name: str) -> list[str]:
    return [
        sys.executable, "-m", "rasa", "train",
        "--config", "config.yml",
        "--domain", "domain.yml",
        "--data", "data",
        "--out", str(models_dir),
        "--fixed-model-name", name,
    ]  # fmt: skip


def run_training(
    argv: Sequence[str],
    *,
    cwd: Path,
    log_path: Path,
    out: TextIO,
    env: dict[str, str] | None = None,
) -> int:
    """Run a training command: full output to `log_path`, progress to `out`.

    Returns its exit code; raises TrainingInterrupted on Ctrl-C/SIGTERM (after
    stopping it).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rotate(log_path)
    progress = TrainProgress()
    status = StatusLine(out)
    began = time.monotonic()
    child_env = {"RASA_TELEMETRY_ENABLED": "false", "PYTHONUNBUFFERED": "1", **(env or {})}
    with SignalTrap() as trap, log_path.open("wb") as log:
        proc = spawn(argv, env=child_env, cwd=cwd, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        pending = ""
        # Incremental: a read may end inside a multi-byte character (the bars' █).
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            while not trap.stop_requested:
                # A timeout, so the clock on the line ticks while Rasa is quiet.
                readable, _, _ = select.select([fd], [], [], 0.5)
                if readable:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    log.write(chunk)
                    log.flush()
                    lines, pending = split_output(pending + decoder.decode(chunk))
                    for line in lines:
                        progress.feed(line)
                status.update(progress.text(time.monotonic() - began), key=progress.key)
            if trap.stop_requested:
                status.done()
                out.write("stopping training …\n")
                terminate(proc, hurry=lambda: len(trap.received) > 1)
                raise TrainingInterrupted
            progress.feed(pending)
            code = proc.wait()
        finally:
            # Normal exit, interruption or a bug here: the trainer never outlives us.
            terminate(proc, timeout=2)
            proc.stdout.close()
    elapsed = time.monotonic() - began
    status.done(f"training finished in {elapsed:.0f} s" if code == 0 else None)
    return code


def train(
    root: Path,
    models_dir: Path,
    log_path: Path,
    out: TextIO,
    *,
    command: Callable[[Path, str], Sequence[str]] = rasa_train_argv,
) -> Path:
    """Train a new model and record its fingerprint; returns the model path.

    `command(models_dir, name)` is the training command line (tests swap it).
    """
    missing = [p for p in ("config.yml", "domain.yml", "data") if not (root / p).exists()]
    if missing:
        raise TrainingError(f"cannot train: {', '.join(missing)} missing in {root}")
    models_dir.mkdir(parents=True, exist_ok=True)
    salt = rasa_salt()
    # Taken before training: an edit made while it runs makes the next run retrain.
    value = fingerprint(root, salt=salt)
    name = new_model_name(models_dir)
    model = models_dir / f"{name}{MODEL_SUFFIX}"
    try:
        code = run_training(command(models_dir, name), cwd=root, log_path=log_path, out=out)
    except BaseException:
        model.unlink(missing_ok=True)  # half-written archive
        raise
    if code != 0:
        model.unlink(missing_ok=True)
        raise TrainingError(
            f"rasa train failed (exit code {code})", tail(log_path, TRAIN_TAIL_LINES)
        )
    if not model.is_file():
        raise TrainingError(
            f"rasa train succeeded but {model} is not there", tail(log_path, TRAIN_TAIL_LINES)
        )
    write_fingerprint(model, value, salt)
    prune_models(models_dir)
    return model


def ensure_model(
    root: Path,
    models_dir: Path,
    log_path: Path,
    out: TextIO,
    *,
    force: bool = False,
    command: Callable[[Path, str], Sequence[str]] = rasa_train_argv,
) -> Path:
    """The latest model if its inputs are unchanged, else a newly trained one."""
    current = latest_model(models_dir)
    if current is not None and not force:
        recorded = read_fingerprint(current)
        if recorded == fingerprint(root, salt=rasa_salt()):
            out.write(f"model up to date: {shown_path(current)}\n")
            return current
        reason = (
            f"{current.name} has no fingerprint (not made by `bot train`)"
            if recorded is None
            else f"training data, config or components changed since {current.name}"
        )
    else:
        reason = "forced" if force else "no model yet"
    out.write(f"training a new model ({reason}); full log in {shown_path(log_path)}\n")
    out.flush()
    model = train(root, models_dir, log_path, out, command=command)
    out.write(f"new model: {shown_path(model)}\n")
    return model


def model_is_current(root: Path, model: Path) -> bool:
    return read_fingerprint(model) == fingerprint(root, salt=rasa_salt())
