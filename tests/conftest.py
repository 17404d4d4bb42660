"""Session fixtures: one trained model and the running service, shared by all tests.

Training takes minutes and a Rasa server tens of seconds to start, so both
happen once per session; tests that need them ask for `model` or `service`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOT = str(Path(sys.executable).with_name("bot"))
TOKEN = "test-api-token"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
SYSTEM_REDIS_URL = "redis://127.0.0.1:6379/14"
START_TIMEOUT = 420


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"REDIS_URL", "DATABASE_URL", "TRACKER_DATABASE_URL", "BOT_API_TOKEN"}
    }
    env.update(RASA_TELEMETRY_ENABLED="false", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def model() -> Path:
    """The project's model, trained once if data or config changed (as `bot run` does)."""
    from bot.training import latest_model

    subprocess.run([BOT, "train"], cwd=ROOT, env=base_env(), check=True, timeout=1500)
    found = latest_model(ROOT / "models")
    assert found is not None
    return found


@dataclass
class Service:
    url: str
    var_dir: Path
    process: subprocess.Popen
    log: Path

    def post(self, path: str, body: dict[str, Any], token: str | None = TOKEN) -> Any:
        url = f"{self.url}{path}" + (f"?token={token}" if token else "")
        request = urllib.request.Request(
            url, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def get(self, path: str, token: str | None = TOKEN) -> Any:
        url = f"{self.url}{path}" + (f"?token={token}" if token else "")
        with urllib.request.urlopen(url, timeout=60) as response:
            return json.loads(response.read())

    def say(self, sender: str, text: str) -> list[dict[str, Any]]:
        """Send a message through Rasa's REST channel; returns the bot's messages."""
        return self.post("/webhooks/rest/webhook", {"sender": sender, "message": text}, None)

    def texts(self, sender: str, text: str) -> str:
        return "\n".join(m.get("text", "") for m in self.say(sender, text))


def start_service(var_dir: Path, env_extra: dict[str, str], name: str) -> Service:
    var_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = base_env(
        BOT_VAR_DIR=str(var_dir),
        BOT_RASA_PORT=str(port),
        BOT_ACTION_PORT=str(free_port()),
        BOT_API_TOKEN=TOKEN,
        **env_extra,
    )
    log = var_dir / f"{name}.out"
    process = subprocess.Popen(
        [BOT, "run", "--no-train"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    service = Service(f"http://127.0.0.1:{port}", var_dir, process, log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bot run exited {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if service.get("/status").get("model_file"):
                return service
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    stop_service(service)
    raise RuntimeError(f"bot run not ready after {START_TIMEOUT}s:\n{log.read_text()[-4000:]}")


def stop_service(service: Service) -> int:
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGINT)
        try:
            service.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait()
    return service.process.returncode


@pytest.fixture(scope="session")
def service(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`bot run` on the embedded defaults: its own Redis and SQLite under var/."""
    svc = start_service(tmp_path_factory.mktemp("embedded") / "var", {}, "bot-run")
    yield svc
    code = stop_service(svc)
    assert code == 0, svc.log.read_text()[-3000:]


@pytest.fixture(scope="session")
def scaled(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Service]]:
    """Two service instances sharing PostgreSQL and the machine's Redis (scale-out)."""
    shared = {"REDIS_URL": SYSTEM_REDIS_URL, "DATABASE_URL": POSTGRES_URL}
    base = tmp_path_factory.mktemp("scaled")
    instances = [start_service(base / f"var{i}", shared, f"bot-run-{i}") for i in (1, 2)]
    yield instances
    for svc in instances:
        stop_service(svc)
