"""bot.lean_rasa: the Rasa server keeps TensorFlow out only when the model needs none."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bot.cli import _RASA_WITH_ENV_TOKEN
from bot.lean_rasa import lean_possible, model_metadata, needs_tensorflow
from tests.conftest import ROOT, TOKEN, Service, base_env, free_port, stop_process

LEAN_NODES = {
    "train_MemoizationPolicy0": {"uses": "rasa.core.policies.memoization.MemoizationPolicy"},
    "train_DefaultV1RecipeValidator": {
        "uses": "rasa.graph_components.validators.default_recipe_validator."
        "DefaultV1RecipeValidator"
    },
}
TF_NODES = {
    **LEAN_NODES,
    "train_TEDPolicy1": {"uses": "rasa.core.policies.ted_policy.TEDPolicy"},
}


def archive(path: Path, nodes: dict[str, Any], before: bytes = b"") -> Path:
    """A model archive as Rasa lays it out: components first, metadata.json after."""
    metadata = json.dumps(
        {"train_schema": {"nodes": nodes}, "predict_schema": {"nodes": {}}}
    ).encode()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("components/x/weights.bin", before), ("metadata.json", metadata)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_decides_from_the_models_components(tmp_path: Path) -> None:
    lean = archive(tmp_path / "lean.tar.gz", LEAN_NODES)
    tf = archive(tmp_path / "tf.tar.gz", TF_NODES)
    assert not needs_tensorflow(model_metadata(lean) or {})
    assert needs_tensorflow(model_metadata(tf) or {})
    assert lean_possible(["rasa", "run", "--model", str(lean)])
    assert not lean_possible(["rasa", "run", "--model", str(tf)])


@pytest.mark.parametrize(
    "argv",
    [
        ["rasa", "run"],  # Rasa picks a model itself: we don't guess
        ["rasa", "run", "--model", "models/"],
        ["rasa", "run", "--model", "missing.tar.gz"],
    ],
)
def test_keeps_the_real_imports_when_the_model_is_unknown(argv: list[str]) -> None:
    assert not lean_possible(argv)


def test_keeps_the_real_imports_when_metadata_is_far_in(tmp_path: Path) -> None:
    # TensorFlow weights before metadata.json: not worth unpacking to find out.
    big = archive(tmp_path / "big.tar.gz", LEAN_NODES, before=b"\0" * 2048)
    assert model_metadata(big, limit=1024) is None
    assert model_metadata(big) is not None


def test_switched_off_by_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lean = archive(tmp_path / "lean.tar.gz", LEAN_NODES)
    monkeypatch.setenv("BOT_LEAN_RASA", "0")
    assert not lean_possible(["rasa", "run", "--model", str(lean)])


# In a fresh interpreter, as the launcher does it; prints what the test checks.
PROBE = """
import json, sys
from bot.lean_rasa import StandInUsed, install, stood_in
lean = install(["rasa", "run", "--model", sys.argv[1]])
import rasa.core.agent
from rasa.graph_components.validators.default_recipe_validator import DefaultV1RecipeValidator
from rasa.core.policies.ted_policy import TEDPolicy
from rasa.core.policies.memoization import MemoizationPolicy
refusals = []
try:
    TEDPolicy({}, None, None, None)
except StandInUsed as error:
    refusals.append(str(error))
except Exception:
    pass  # the real TEDPolicy wants real arguments
try:
    class Mine(TEDPolicy): pass
except StandInUsed as error:
    refusals.append(str(error))
print(json.dumps({
    "lean": lean,
    "stood_in": stood_in(),
    "tensorflow": "tensorflow" in sys.modules,
    "memoization_is_ted": issubclass(MemoizationPolicy, TEDPolicy),
    "refusals": refusals,
}))
"""


def probe(model: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(model)], cwd=ROOT, env=base_env(),
        capture_output=True, text=True, timeout=300, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_rasa_without_tensorflow_for_a_lean_model(tmp_path: Path) -> None:
    seen = probe(archive(tmp_path / "lean.tar.gz", LEAN_NODES))
    assert seen["lean"] and not seen["tensorflow"]
    assert "rasa.core.policies.ted_policy" in seen["stood_in"]
    assert not seen["memoization_is_ted"]
    # Using a stand-in says what happened and how to switch it off.
    assert len(seen["refusals"]) == 2
    assert all("BOT_LEAN_RASA=0" in refusal for refusal in seen["refusals"])


@pytest.mark.slow
def test_rasa_with_real_tensorflow_for_a_tensorflow_model(tmp_path: Path) -> None:
    seen = probe(archive(tmp_path / "tf.tar.gz", TF_NODES))
    assert not seen["lean"] and seen["tensorflow"]
    assert seen["stood_in"] == []
    assert seen["refusals"] == []


def descendants(pid: int) -> dict[int, str]:
    """Processes under `pid`, with their command lines."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile
        parents[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), command)
    family = {pid}
    while True:
        more = {p for p, (parent, _) in parents.items() if parent in family} - family
        if not more:
            return {p: parents[p][1] for p in family - {pid} if p in parents}
        family |= more


def rasa_server_pid(parent: int) -> int:
    pids = [p for p, command in descendants(parent).items() if "rasa.__main__" in command]
    assert len(pids) == 1, descendants(parent)
    return pids[0]


def loaded_tensorflow(pid: int) -> bool:
    """Whether TensorFlow's native library is mapped into the process."""
    return "libtensorflow" in Path(f"/proc/{pid}/maps").read_text()


def rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_bot_run_serves_our_model_without_tensorflow(service: Service) -> None:
    assert service.texts("lean-rasa", "hi")
    pid = rasa_server_pid(service.process.pid)
    assert not loaded_tensorflow(pid)
    # Issue 14's budget for the Rasa server, with room for load on top.
    assert rss_mb(pid) < 600


# A model with TensorFlow components, as small as Rasa trains one.
TINY_CONFIG = """
recipe: default.v1
language: en
assistant_id: tiny-tf
pipeline:
- name: WhitespaceTokenizer
- name: CountVectorsFeaturizer
- name: DIETClassifier
  epochs: 1
policies:
- name: TEDPolicy
  epochs: 1
  max_history: 2
"""
TINY_DOMAIN = """
version: "3.1"
intents: [greet, bye]
responses:
  utter_greet: [{text: "Hello!"}]
  utter_bye: [{text: "Bye!"}]
"""
TINY_DATA = """
version: "3.1"
nlu:
- intent: greet
  examples: |
    - hi
    - hello
    - hey there
- intent: bye
  examples: |
    - bye
    - goodbye
    - see you
stories:
- story: greet
  steps:
  - intent: greet
  - action: utter_greet
- story: bye
  steps:
  - intent: bye
  - action: utter_bye
"""


@pytest.mark.slow
def test_the_launcher_still_serves_a_tensorflow_model(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text(TINY_CONFIG)
    (tmp_path / "domain.yml").write_text(TINY_DOMAIN)
    (tmp_path / "data.yml").write_text(TINY_DATA)
    rasa = str(Path(sys.executable).with_name("rasa"))
    subprocess.run(
        [rasa, "train", "--config", "config.yml", "--domain", "domain.yml", "--data", "data.yml",
         "--out", "models", "--fixed-model-name", "tiny"],
        cwd=tmp_path, env=base_env(), check=True, timeout=900, capture_output=True,
    )
    model = tmp_path / "models" / "tiny.tar.gz"
    port = free_port()
    log = tmp_path / "rasa.out"
    # bot.cli's launcher, as `bot run` starts it.
    process = subprocess.Popen(
        [sys.executable, "-c", _RASA_WITH_ENV_TOKEN, "run", "--enable-api", "--auth-token",
         "@BOT_API_TOKEN", "-i", "127.0.0.1", "-p", str(port), "--model", str(model)],
        cwd=tmp_path, env=base_env(BOT_API_TOKEN=TOKEN), stdout=log.open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/status?token={TOKEN}", timeout=10) as answer:
                    if json.loads(answer.read()).get("model_file"):
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        request = urllib.request.Request(
            f"{url}/webhooks/rest/webhook",
            json.dumps({"sender": "tiny", "message": "hello"}).encode(),
            {"Content-Type": "application/json"},
        )
        try:
            # TensorFlow traces TED's graph on the first message: seconds when
            # idle, more beside the rest of the suite's servers.
            with urllib.request.urlopen(request, timeout=180) as answer:
                replies = json.loads(answer.read())
        except (urllib.error.URLError, TimeoutError) as error:
            tail = log.read_text()[-4000:]
            raise AssertionError(f"{error!r}; the server's log:\n{tail}") from error
        assert isinstance(replies, list)  # one epoch: what it answers is anyone's guess
        assert loaded_tensorflow(process.pid)
    finally:
        stop_process(process, timeout=30)
