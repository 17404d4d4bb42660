"""Platform hardening, tried the way an attacker would (issue 15, items 3, 5, 6, 8).

- bodies: a huge body is refused (413) before it is read, on every route, and
  the server keeps answering;
- tokens: the REST channel's token is not the admin token; both travel in a
  header; wrong ones are refused; Rasa's HTTP API can be switched off;
- the embedded Redis: a password nobody else can read, no CONFIG;
- var/: private to the service's user; refused requests don't flood the log.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from bot.redis_server import EmbeddedRedis, free_port
from bot.supervisor import Child, ChildSpec, make_private, spawn
from connectors.refusals import RefusalLog
from tests.conftest import (
    BOT,
    REST_TOKEN,
    ROOT,
    TOKEN,
    Service,
    base_env,
    stop_process,
)

REST_CAP = 64 * 1024  # credentials.yml: the REST channel's max_body_bytes
SERVER_CAP = 1024 * 1024  # BOT_MAX_REQUEST_BYTES' default


def sender() -> str:
    return f"sec-{uuid.uuid4().hex[:10]}"


def _http(
    url: str, *, method: str = "GET", body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """(status, the body as JSON, or as text when it is not JSON)."""
    request = urllib.request.Request(url, body, headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        with error:
            status, raw = error.code, error.read()
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, raw.decode(errors="replace")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


# --- bodies -----------------------------------------------------------------------------


def announce(
    service: Service, path: str, length: int, headers: dict[str, str]
) -> tuple[str, float]:
    """Send only the head of a POST announcing `length` bytes; the status line
    of the answer and how long it took (the server must not wait for the body)."""
    parts = urlsplit(service.url)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=15) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}"
            f"Content-Length: {length}\r\n\r\n".encode()
        )
        try:
            answer = sock.recv(4096).decode(errors="replace")
        except TimeoutError:
            answer = "(no answer in 15 s)"
    return answer.split("\r\n", 1)[0], time.monotonic() - started


def stream_chunked(
    service: Service, path: str, headers: dict[str, str], limit: int
) -> tuple[str, int]:
    """POST a chunked body, 64 KB a chunk, until the server answers or `limit`
    bytes are sent; the status line and how much was sent by then."""
    parts = urlsplit(service.url)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    chunk = b"x" * 65536
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=15) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        try:
            while sent < limit:
                if select.select([sock], [], [], 0.02)[0]:
                    break
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
            sock.settimeout(5)
            answer = sock.recv(4096).decode(errors="replace")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            answer = "(connection closed without an answer)"
    return answer.split("\r\n", 1)[0], sent


ROUTES = [
    # (path, headers, the cap that applies)
    ("/webhooks/rest/webhook", _bearer(REST_TOKEN), REST_CAP),
    ("/webhooks/rest/webhook", {}, REST_CAP),  # no token: refused all the same
    ("/webhooks/app/messages", {"Authorization": "Bearer not-a-jwt"}, SERVER_CAP),
    ("/socket.io/?EIO=4&transport=polling&sid=nobody", {}, SERVER_CAP),
    ("/model/parse", _bearer(TOKEN), SERVER_CAP),
    (f"/conversations/{sender()}/tracker/events", _bearer(TOKEN), SERVER_CAP),
]


@pytest.mark.parametrize(("path", "headers", "cap"), ROUTES)
def test_a_huge_body_is_refused_before_it_is_read(
    service: Service, path: str, headers: dict[str, str], cap: int
) -> None:
    for length in (cap + 1, 50_000_000):
        status, took = announce(service, path, length, headers)
        assert status == "HTTP/1.1 413 Request Entity Too Large", (path, length, status)
        assert took < 3, (path, took)
    assert service.say(sender(), "你好")  # and the server keeps answering


@pytest.mark.parametrize(("path", "headers", "cap"), [ROUTES[0], ROUTES[4]])
def test_a_streamed_body_is_cut_off_at_the_cap(
    service: Service, path: str, headers: dict[str, str], cap: int
) -> None:
    limit = 8 * SERVER_CAP
    status, sent = stream_chunked(service, path, headers, limit)
    assert status == "HTTP/1.1 413 Request Entity Too Large", (path, status, sent)
    # Refused once past the cap (plus what the sockets' buffers held), not at the end.
    assert cap < sent < limit, sent
    assert service.say(sender(), "hello")


def test_a_body_under_the_cap_still_works(service: Service) -> None:
    who = sender()
    body = json.dumps({"sender": who, "message": "你好", "metadata": {"pad": "x" * 50_000}})
    status, replies = _http(
        f"{service.url}/webhooks/rest/webhook", method="POST", body=body.encode(),
        headers=_bearer(REST_TOKEN),
    )
    assert status == 200 and replies and replies[0]["text"]


# --- tokens -----------------------------------------------------------------------------


def test_a_flood_of_refused_requests_writes_one_log_line(service: Service) -> None:
    # First of the tests that refuse a token in the URL: its window is fresh.
    log = service.var_dir / "log" / "rasa.log"
    before = log.read_text(errors="replace")
    body = json.dumps({"sender": sender(), "message": "hi"}).encode()
    for _ in range(40):
        status, _ = _http(f"{service.url}/webhooks/rest/webhook?token=guess", method="POST",
                          body=body)
        assert status == 401
    time.sleep(1)  # the log is written as it happens (PYTHONUNBUFFERED)
    added = log.read_text(errors="replace")[len(before):]
    lines = [line for line in added.splitlines() if "REST request refused" in line]
    assert len(lines) == 1, lines
    assert "not the URL" in lines[0]


def test_the_rest_token_cannot_use_the_admin_api(service: Service) -> None:
    who = sender()
    assert service.say(who, "你好")  # the REST token talks as a customer…
    tracker = f"{service.url}/conversations/{who}/tracker"
    # …but reads no transcript, in a header or in the URL,
    assert _http(tracker, headers=_bearer(REST_TOKEN))[0] == 401
    assert _http(f"{tracker}?token={REST_TOKEN}")[0] == 401
    # injects no events and replaces no model.
    event = json.dumps([{"event": "slot", "name": "language", "value": "en"}]).encode()
    assert _http(f"{tracker}/events", method="POST", body=event,
                 headers=_bearer(REST_TOKEN))[0] == 401
    assert _http(f"{service.url}/model", method="PUT", body=b'{"model_file": "/x"}',
                 headers=_bearer(REST_TOKEN))[0] == 401


def test_the_admin_token_works_in_a_header(service: Service) -> None:
    who = sender()
    service.say(who, "where is my refund")
    status, tracker = _http(
        f"{service.url}/conversations/{who}/tracker", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200 and tracker["slots"]["language"] == "en"
    # Lower-case scheme, as some clients send it.
    assert _http(f"{service.url}/status", headers={"Authorization": f"bearer {TOKEN}"})[0] == 200
    # The query string still works for the admin API (the desk, `bot push`: loopback).
    assert _http(f"{service.url}/status?token={TOKEN}")[0] == 200


@pytest.mark.parametrize(
    "headers_or_query",
    [
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},  # all but the last character
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer \x80\xff"},  # not UTF-8 on the wire (latin-1 bytes)
        "?token=",
        f"?token={TOKEN.upper()}",
        {},
    ],
)
def test_wrong_admin_tokens_are_refused(service: Service, headers_or_query: Any) -> None:
    query = headers_or_query if isinstance(headers_or_query, str) else ""
    headers = headers_or_query if isinstance(headers_or_query, dict) else {}
    for path in ("/status", f"/conversations/{sender()}/tracker"):
        assert _http(f"{service.url}{path}{query}", headers=headers)[0] == 401, path


def test_the_rest_channel_takes_only_its_own_token_in_a_header(service: Service) -> None:
    who = sender()
    url = f"{service.url}/webhooks/rest/webhook"
    body = json.dumps({"sender": who, "message": "你好"}).encode()
    refused = [
        _bearer(TOKEN),  # the admin token is not a REST caller's
        _bearer("wrong"),
        _bearer(REST_TOKEN[:-1]),
        {"Authorization": REST_TOKEN},
    ]
    for headers in refused:
        status, answer = _http(url, method="POST", body=body, headers=headers)
        assert status == 401, headers
    # In the URL it is refused, and the answer says where it goes.
    status, answer = _http(f"{url}?token={REST_TOKEN}", method="POST", body=body)
    assert status == 401 and "Authorization: Bearer" in answer["error"]
    events = service.get(f"/conversations/{who}/tracker")["events"]
    assert not [e for e in events if e["event"] == "user"]  # nothing got through
    assert _http(url, method="POST", body=body, headers=_bearer(REST_TOKEN))[0] == 200


def test_admin_token_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rasa's `==` is replaced: every offered token goes through hmac.compare_digest."""
    import asyncio

    from bot import rasa_auth

    rasa_auth.install()
    import rasa.server

    assert rasa.server.requires_auth is rasa_auth.requires_auth
    compared: list[tuple[bytes, bytes]] = []
    real = rasa_auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(rasa_auth.hmac, "compare_digest", spy)
    app = SimpleNamespace(config={})

    async def view(request: Any) -> str:
        return "served"

    guarded = rasa_auth.requires_auth(app, "the-admin-token")(view)

    def call(headers: dict[str, str], args: dict[str, str]) -> str:
        request = SimpleNamespace(headers=headers, args=args)
        try:
            return asyncio.run(guarded(request))
        except rasa.server.ErrorResponse as error:
            return str(int(error.status))

    assert call({"Authorization": "Bearer the-admin-token"}, {}) == "served"
    assert call({}, {"token": "the-admin-token"}) == "served"
    assert call({"Authorization": "Bearer the-admin-tokem"}, {}) == "401"
    assert call({}, {}) == "401"
    assert (b"the-admin-tokem", b"the-admin-token") in compared


def test_the_same_token_for_both_is_refused_at_start(tmp_path: Path) -> None:
    env = base_env(BOT_VAR_DIR=str(tmp_path / "var"), BOT_API_TOKEN="same-token-for-both",
                   BOT_REST_TOKEN="same-token-for-both", BOT_RASA_PORT=str(free_port()),
                   BOT_ACTION_PORT=str(free_port()), BOT_DESK_PORT=str(free_port()))
    done = subprocess.run([BOT, "run", "--no-train"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert "BOT_REST_TOKEN" in done.stderr and "admin token" in done.stderr


def _start_without_api(var_dir: Path) -> tuple[subprocess.Popen, str, int, Path]:
    port, desk_port = free_port(), free_port()
    log = var_dir.parent / "bot-run-no-api.out"
    env = base_env(BOT_VAR_DIR=str(var_dir), BOT_RASA_PORT=str(port),
                   BOT_ACTION_PORT=str(free_port()), BOT_DESK_PORT=str(desk_port),
                   BOT_API_TOKEN=TOKEN, BOT_REST_TOKEN=REST_TOKEN, BOT_ADMIN_API="0",
                   BUSINESS_HOURS_FILE=str(ROOT / "tests" / "data" / "hours_always_open.yml"))
    process = subprocess.Popen([BOT, "run", "--no-train"], cwd=ROOT, env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.monotonic() + 420
    while "Jade Mart bot is running" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise RuntimeError(log.read_text()[-4000:])
        time.sleep(1)
    return process, f"http://127.0.0.1:{port}", desk_port, log


def test_the_admin_api_can_be_switched_off(model: Path, tmp_path: Path) -> None:
    process, url, desk_port, log = _start_without_api(tmp_path / "var")
    try:
        summary = log.read_text()
        assert "HTTP API       off (BOT_ADMIN_API=0)" in summary
        assert "agent desk     off (BOT_ADMIN_API=0)" in summary
        # No route of the API exists, whatever the token.
        for path in ("/status", f"/conversations/{sender()}/tracker"):
            assert _http(f"{url}{path}", headers=_bearer(TOKEN))[0] == 404, path
            assert _http(f"{url}{path}?token={TOKEN}")[0] == 404, path
        assert _http(f"{url}/model/parse", method="POST", body=b'{"text": "hi"}',
                     headers=_bearer(TOKEN))[0] == 404
        # The channels and the widget are all there.
        status, replies = _http(
            f"{url}/webhooks/rest/webhook", method="POST",
            body=json.dumps({"sender": sender(), "message": "你好"}).encode(),
            headers=_bearer(REST_TOKEN),
        )
        assert status == 200 and replies[0]["text"]
        assert _http(f"{url}/webhooks/web/widget.js")[0] == 200
        with socket.socket() as sock:  # the desk, which needs the API, is not started
            assert sock.connect_ex(("127.0.0.1", desk_port)) != 0
    finally:
        assert stop_process(process) == 0, log.read_text()[-3000:]


# --- the embedded Redis -------------------------------------------------------------------


def _assert_locked_down(host: str, port: int, password: str) -> None:
    stranger = redis.Redis(host=host, port=port, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        stranger.get("anything")
    with pytest.raises(redis.AuthenticationError):
        stranger.publish("socketio:web:0", "pickled payload")
    stranger.close()
    for guess in ("", "redis", "password", password[:-1]):
        with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
            redis.Redis(host=host, port=port, password=guess or None, username=None,
                        socket_timeout=5).get("anything")
    insider = redis.Redis(host=host, port=port, password=password, socket_timeout=5)
    assert insider.ping()
    for command in (("CONFIG", "GET", "requirepass"), ("CONFIG", "SET", "dir", "/tmp")):
        with pytest.raises(redis.ResponseError, match="unknown command"):
            insider.execute_command(*command)
    insider.close()


def _cmdlines() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
    return found


def test_embedded_redis_wants_a_password_and_has_no_config(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", free_port())
    with server.running(tmp_path / "log"):
        _assert_locked_down(server.host, server.port, server.password)
        # `ps` shows no password; the config file that has it is the owner's only.
        assert not [c for c in _cmdlines() if server.password in c]
        assert server.config_path.stat().st_mode & 0o777 == 0o600
        assert server.data_dir.stat().st_mode & 0o777 == 0o700
        assert server.password not in repr(server)
    # A new start, a new password: the old one is worth nothing.
    again = EmbeddedRedis(tmp_path / "redis", free_port())
    assert again.password != server.password
    with again.running(tmp_path / "log"), pytest.raises(redis.AuthenticationError):
        redis.Redis(host=again.host, port=again.port, password=server.password).ping()


def test_the_services_redis_is_locked_down(service: Service) -> None:
    url = (service.var_dir / "run" / "redis_url").read_text().strip()
    parts = urlsplit(url)
    assert parts.password, url
    _assert_locked_down(parts.hostname or "", parts.port or 0, parts.password)
    assert not [c for c in _cmdlines() if parts.password in c]


# --- var/ ----------------------------------------------------------------------------------


def _open_to_others(root: Path) -> list[str]:
    return [f"{p} {oct(p.stat().st_mode & 0o777)}" for p in [root, *root.rglob("*")]
            if not p.is_symlink() and p.stat().st_mode & 0o077]


def test_var_is_private_to_the_service(service: Service) -> None:
    service.say(sender(), "你好")  # the tracker database exists by now
    var = service.var_dir
    for made_by_the_service in ("tracker.db", "shop.db", "log/rasa.log", "log/actions.log",
                                "log/redis.log", "run/redis_url", "redis"):
        assert (var / made_by_the_service).exists(), made_by_the_service
    assert list((var / "redis").glob("appendonly.aof*"))
    assert _open_to_others(var) == []


def test_make_private_tightens_what_an_older_release_left(tmp_path: Path) -> None:
    var = tmp_path / "var"
    (var / "log").mkdir(parents=True)
    os.chmod(var, 0o755)
    os.chmod(var / "log", 0o755)
    for name in ("tracker.db", "log/rasa.log", "api_token"):
        (var / name).write_text("secret")
        os.chmod(var / name, 0o644)
    script = var / "hook.sh"
    script.write_text("#!/bin/sh\n")
    os.chmod(script, 0o755)
    make_private(var)
    assert _open_to_others(var) == []
    assert script.stat().st_mode & 0o777 == 0o700  # the owner keeps what they had
    make_private(tmp_path / "new" / "var")
    assert (tmp_path / "new" / "var").stat().st_mode & 0o777 == 0o700


def test_children_write_private_files_and_logs(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a typical login umask
    try:
        made = tmp_path / "made-by-child"
        child = spawn(["sh", "-c", f"umask; touch {made}"], stdout=subprocess.PIPE)
        out, _ = child.communicate(timeout=10)
        assert out.decode().strip() == "0077"
        assert made.stat().st_mode & 0o777 == 0o600
        log_dir = tmp_path / "log"
        (log_dir).mkdir(mode=0o755)
        (log_dir / "echo.log").write_text("an older run's log")
        os.chmod(log_dir / "echo.log", 0o644)
        with Child(ChildSpec("echo", ["sh", "-c", "echo hi; sleep 5"]), log_dir).running():
            pass
        assert (log_dir / "echo.log").stat().st_mode & 0o777 == 0o600
        assert (log_dir / "echo.log.1").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


# --- refused requests in the log -----------------------------------------------------------


def test_refusals_are_logged_once_per_reason_and_window() -> None:
    now = [1000.0]
    refusals = RefusalLog(every=60, clock=lambda: now[0])
    logger = logging.getLogger("test.refusals")
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for _ in range(1000):
            refusals.log(logger, "bad_token", "refused: %s", "bad token")
        refusals.log(logger, "too_large", "refused: %s", "too large")
        assert lines == ["refused: bad token", "refused: too large"]
        now[0] += 61
        refusals.log(logger, "bad_token", "refused: %s", "bad token")
        assert lines[-1] == (
            "refused: bad token (999 more refused for the same reason in the last 61 s, "
            "not logged)"
        )
        # Kinds are bounded: a flood of distinct ones can't grow memory for ever.
        for i in range(10_000):
            refusals.log(logger, f"kind-{i}", "refused")
        assert len(refusals._windows) <= 256
    finally:
        logger.removeHandler(handler)
