"""Session fixtures: one trained model and the running service, shared by all tests.

Training takes minutes and a Rasa server tens of seconds to start, so both
happen once per session; tests that need them ask for `model` or `service`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest
import structlog

from tests.fake_wechat import APP_ID as WECHAT_APP_ID
from tests.fake_wechat import APP_SECRET as WECHAT_APP_SECRET
from tests.fake_wechat import FakeWeChatAPI
from tests.http_recorder import Recorder

if TYPE_CHECKING:
    from connectors.push import Push

ROOT = Path(__file__).resolve().parent.parent

# Rasa logs every parse and prediction through structlog at debug level unless
# its CLI configured logging; in-process tests (Rasa's Agent) would render them
# all, thousands of lines a second. Warnings and errors still show.
structlog.configure(
    wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
)
BOT = str(Path(sys.executable).with_name("bot"))
TOKEN = "test-api-token"  # the admin token of Rasa's HTTP API
REST_TOKEN = "test-rest-token"  # the REST channel's callers
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
# The scaled fixture flushes this database; parallel sessions pick their own.
SYSTEM_REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('TEST_SYSTEM_REDIS_DB', '14')}"
START_TIMEOUT = 420

# The channels' secrets in the test service (credentials.yml reads them from the env).
WECHAT_TOKEN = "test-wechat-token"
# 43 characters, as WeChat's console generates them.
WECHAT_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
WEB_VISITOR_SECRET = "test-web-visitor-secret-0123456789"
WEB_IDENTITY_SECRET = "test-host-site-identity-secret"
APP_JWT_SECRET = "test-app-jwt-secret-0123456789abcdef"
APP_PUSH_WEBHOOK_SECRET = "test-app-push-webhook-secret"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# A host site on another origin that embeds the widget (tests/test_web_widget.py
# serves its pages here): the services list it in WEB_ALLOWED_ORIGINS.
HOST_SITE_ORIGIN = f"http://127.0.0.1:{free_port()}"


def base_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"REDIS_URL", "DATABASE_URL", "TRACKER_DATABASE_URL", "BOT_API_TOKEN",
                     "BOT_REST_TOKEN", "BOT_ADMIN_API", "DEMO_LOGINS"}
        and not k.startswith(("WECHAT_", "WEB_", "APP_"))
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


@pytest.fixture(scope="session")
def shop_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A shop database of its own (SQLite) with the demo data, as `bot run` leaves it."""
    from bot.shop import database, demo
    from tests.conversations import bind_fuzz_customers

    url = f"sqlite:///{tmp_path_factory.mktemp('shop') / 'shop.db'}"
    database.upgrade(url)
    with database.session(url) as session:
        demo.seed(session)
    bind_fuzz_customers(url)
    return url


@pytest.fixture(scope="session")
def action_var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The action server's var dir (its development SMS log is in log/sms.log)."""
    return tmp_path_factory.mktemp("actions-var")


@pytest.fixture(scope="session")
def action_server(
    tmp_path_factory: pytest.TempPathFactory, shop_url: str, action_var_dir: Path
) -> Iterator[str]:
    """The project's action server (rasa_sdk, actions/) as `bot run` starts it, on
    the session's shop database; its URL."""
    import dataclasses

    from bot.cli import action_server_spec
    from bot.settings import get_settings

    port = free_port()
    log = tmp_path_factory.mktemp("actions") / "actions.out"
    settings = dataclasses.replace(get_settings(), action_port=port)
    spec = action_server_spec(
        settings, base_env(
            DATABASE_URL=shop_url, BOT_VAR_DIR=str(action_var_dir),
            BUSINESS_HOURS_FILE=str(ROOT / "tests" / "data" / "hours_always_open.yml"),
        )
    )
    assert spec.ready is not None
    process = subprocess.Popen(
        spec.argv,
        cwd=ROOT,
        env={**os.environ, **spec.env},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not spec.ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"action server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    yield f"http://127.0.0.1:{port}/webhook"
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


@pytest.fixture(scope="session")
def dialogue_agent(model: Path, action_server: str) -> Any:
    """The trained model in process (Rasa's Agent, in-memory stores) with the real
    action server: the dialogue without channels, for many fast conversations."""
    from rasa.core.agent import Agent
    from rasa.utils.endpoints import EndpointConfig

    return Agent.load(str(model), action_endpoint=EndpointConfig(action_server))


@dataclass
class Service:
    url: str
    var_dir: Path
    process: subprocess.Popen
    log: Path
    desk_url: str = ""

    def post(self, path: str, body: dict[str, Any], token: str | None = "") -> Any:
        """POST JSON with `token` (default: the REST token for the REST channel,
        else the admin token) as a bearer token; None: without one."""
        headers = {"Content-Type": "application/json", **_bearer(path, token)}
        request = urllib.request.Request(f"{self.url}{path}", json.dumps(body).encode(), headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def get(self, path: str, token: str | None = "") -> Any:
        request = urllib.request.Request(f"{self.url}{path}", headers=_bearer(path, token))
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def say(self, sender: str, text: str) -> list[dict[str, Any]]:
        """Send a message through Rasa's REST channel; returns the bot's messages."""
        return self.post("/webhooks/rest/webhook", {"sender": sender, "message": text})

    def texts(self, sender: str, text: str) -> str:
        return "\n".join(m.get("text", "") for m in self.say(sender, text))


def _bearer(path: str, token: str | None) -> dict[str, str]:
    if token == "":
        token = REST_TOKEN if path.startswith("/webhooks/rest/") else TOKEN
    return {"Authorization": f"Bearer {token}"} if token else {}


def start_service(var_dir: Path, env_extra: dict[str, str], name: str) -> Service:
    var_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    desk_port = free_port()
    # Read at each handoff: a test may close the shop for a moment (`hours_closed`).
    hours = var_dir / "business_hours.yml"
    hours.write_text((ROOT / "tests" / "data" / "hours_always_open.yml").read_text())
    env = base_env(
        BOT_VAR_DIR=str(var_dir),
        BOT_RASA_PORT=str(port),
        BOT_ACTION_PORT=str(free_port()),
        BOT_DESK_PORT=str(desk_port),
        BOT_API_TOKEN=TOKEN,
        BOT_REST_TOKEN=REST_TOKEN,
        # People answer at any hour unless a test says otherwise (tests/data/).
        BUSINESS_HOURS_FILE=str(hours),
        # Short limits: position updates, time-outs and grace periods within a test.
        DESK_FILE=str(ROOT / "tests" / "data" / "desk.yml"),
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
    service = Service(f"http://127.0.0.1:{port}", var_dir, process, log,
                      f"http://127.0.0.1:{desk_port}")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bot run exited {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if service.get("/status").get("model_file") and _answers(
                f"{service.desk_url}/desk/health"
            ):
                return service
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    stop_service(service)
    raise RuntimeError(f"bot run not ready after {START_TIMEOUT}s:\n{log.read_text()[-4000:]}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def stop_process(process: subprocess.Popen, timeout: float = 60) -> int:
    """Ctrl-C to a `bot run` (or a child we started in its own session), then, past
    `timeout`, SIGKILL to its whole process group."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def stop_service(service: Service) -> int:
    return stop_process(service.process)


@pytest.fixture(scope="session")
def wechat_api() -> Iterator[FakeWeChatAPI]:
    """The stand-in for WeChat's API servers that every service instance talks to."""
    fake = FakeWeChatAPI().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def app_push() -> Iterator[Recorder]:
    """The app's push-notification service (records the webhook calls)."""
    recorder = Recorder(lambda request: (200, {"ok": True})).start()
    yield recorder
    recorder.stop()


def channel_env(wechat_api: FakeWeChatAPI, app_push: Recorder) -> dict[str, str]:
    return {
        "WECHAT_TOKEN": WECHAT_TOKEN,
        "WECHAT_APP_ID": WECHAT_APP_ID,
        "WECHAT_APP_SECRET": WECHAT_APP_SECRET,
        "WECHAT_ENCODING_AES_KEY": WECHAT_AES_KEY,
        # Plain and encrypted messages both (the scaled instances: encrypted only).
        "WECHAT_ENCRYPTION_MODE": "compatible",
        "WECHAT_API_BASE_URL": wechat_api.base_url,
        "WEB_VISITOR_SECRET": WEB_VISITOR_SECRET,
        "WEB_IDENTITY_SECRET": WEB_IDENTITY_SECRET,
        "WEB_ALLOWED_ORIGINS": HOST_SITE_ORIGIN,
        # Every test's visitors come from 127.0.0.1: no per-address limit in the way
        # (test_web_limits.py tries them on servers of its own).
        **{name: "1000000" for name in ("WEB_CONNECTS_PER_MINUTE", "WEB_NEW_VISITORS_PER_HOUR",
                                        "WEB_MESSAGES_PER_MINUTE")},
        "APP_JWT_ALGORITHM": "HS256",
        "APP_JWT_KEY": APP_JWT_SECRET,
        "APP_PUSH_WEBHOOK_URL": f"{app_push.url}/push",
        "APP_PUSH_WEBHOOK_SECRET": APP_PUSH_WEBHOOK_SECRET,
    }


@pytest.fixture(scope="session")
def service(
    model: Path,
    tmp_path_factory: pytest.TempPathFactory,
    wechat_api: FakeWeChatAPI,
    app_push: Recorder,
) -> Iterator[Service]:
    """`bot run` on the embedded defaults: its own Redis and SQLite under var/,
    every channel configured (WeChat's API servers faked on loopback)."""
    svc = start_service(
        tmp_path_factory.mktemp("embedded") / "var",
        channel_env(wechat_api, app_push),
        "bot-run",
    )
    yield svc
    code = stop_service(svc)
    assert code == 0, svc.log.read_text()[-3000:]


@pytest.fixture(scope="session")
def scaled(
    model: Path,
    tmp_path_factory: pytest.TempPathFactory,
    wechat_api: FakeWeChatAPI,
    app_push: Recorder,
) -> Iterator[list[Service]]:
    """Two service instances sharing PostgreSQL and the machine's Redis (scale-out)."""
    shared = {
        "REDIS_URL": SYSTEM_REDIS_URL,
        "DATABASE_URL": POSTGRES_URL,
        **channel_env(wechat_api, app_push),
        # WeChat: the embedded service answers passively, these two always
        # through the customer-service API, so tests cover both paths.
        "WECHAT_PASSIVE_REPLY_SECONDS": "0",
        # The default with an EncodingAESKey: safe mode, encrypted messages only.
        "WECHAT_ENCRYPTION_MODE": "",
        # A deployment switches the demo page's logins off; the embedded one has them.
        "DEMO_LOGINS": "0",
    }
    # A clean slate: keys left by an earlier session (cached WeChat tokens from
    # another fake server, rate-limit buckets, outboxes) must not leak in.
    import redis

    redis.Redis.from_url(SYSTEM_REDIS_URL).flushdb()
    base = tmp_path_factory.mktemp("scaled")
    instances = [start_service(base / f"var{i}", shared, f"bot-run-{i}") for i in (1, 2)]
    yield instances
    for svc in instances:
        stop_service(svc)


@contextmanager
def push_from_outside(
    redis_url: str, wechat_api: FakeWeChatAPI, app_push: Recorder, rasa: Service | None = None
) -> Iterator[Push]:
    """`connectors.push.Push` as another process of the service (the desk) has it:
    the service's credentials.yml and environment, no Rasa server of its own
    (given `rasa`, what it delivers goes into the transcript through that server)."""
    from connectors.push import Push

    saved = dict(os.environ)
    os.environ.update(channel_env(wechat_api, app_push), REDIS_URL=redis_url)
    if rasa is not None:
        os.environ.update(BOT_RASA_URL=rasa.url, BOT_API_TOKEN=TOKEN)
    try:
        yield Push.from_credentials_file(ROOT / "credentials.yml")
    finally:
        os.environ.clear()
        os.environ.update(saved)
