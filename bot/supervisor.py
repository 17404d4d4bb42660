"""Start, watch and stop the processes of the service.

Generic: it knows nothing about Rasa or Redis. Each child is described as data
(a `ChildSpec`: name, argv, environment, readiness check, how to ask it to
stop), so adding a process (the desk, an archiver...) means adding a spec, not
control flow.

Rules it keeps:
- children start in order; each must be ready before the next starts;
- every background child runs in its own session (process group) and logs to
  `<log_dir>/<name>.log`, so a terminal Ctrl-C reaches only the supervisor,
  which then stops them in reverse start order, and stopping a child also
  reaches whatever it forked;
- on Linux each child gets SIGTERM if the supervisor dies, even by SIGKILL;
- children run with umask 077 and logs are 0600: what they write is private;
- a child that exits on its own is started again (`restart`; the service's
  children all are), after a pause that grows while it keeps failing: Redis,
  the action server, Rasa and the desk each reconnect to the others, so one
  crash costs a few seconds, not the service. A child without `restart`, or
  one that failed RESTART_LIMIT times in a row (a crash loop, e.g. a broken
  config), stops the others and fails the run.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TextIO

from bot.privacy import mask_personal_data

ReadyCheck = Callable[[], bool]

TAIL_LINES = 20
STOP_TIMEOUT = 10.0
_POLL = 0.2
# A child that failed this many starts in a row is not started again.
RESTART_LIMIT = 5
# Pauses before each restart of a child that keeps failing (the last repeats).
RESTART_PAUSES = (0.0, 1.0, 2.0, 5.0, 10.0)
# Up this long: its next exit is a new failure, not one more of a crash loop.
STEADY_SECONDS = 60.0


@dataclass(frozen=True)
class ChildSpec:
    """One process of the service, as data."""

    name: str
    argv: Sequence[str]
    # Added to the supervisor's own environment.
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    # Polled until it returns True; None means ready as soon as it started.
    ready: ReadyCheck | None = None
    ready_timeout: float = 60.0
    # Shown while waiting, e.g. "loading the model".
    waiting: str = ""
    # A polite stop request (e.g. Redis SHUTDOWN). None, or if it raises:
    # SIGTERM to the child's process group.
    request_stop: Callable[[], None] | None = None
    stop_timeout: float = STOP_TIMEOUT
    # Shares the supervisor's terminal (e.g. `rasa shell`): not logged to a
    # file, and its exit ends the run with its exit code instead of failing it.
    foreground: bool = False
    # Started again when it exits on its own (see RESTART_LIMIT).
    restart: bool = False
    # Run before each restart, e.g. to let go of what the dead process held.
    # A failure is reported and the restart goes on.
    before_restart: Callable[[], None] | None = None


# --- processes -------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    try:
        # Loaded here, before any fork: loading a library in a forked child is unsafe.
        _libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - exotic libc
        _libc = None


def _child_setup() -> None:
    # Runs in the child between fork and exec. What children create (the
    # tracker database, the Redis AOF with the WeChat token, their own files)
    # is readable by the service's user only.
    os.umask(0o077)
    # If the supervisor is killed outright (no chance to clean up), the kernel
    # still sends SIGTERM here.
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdout: IO[bytes] | int | None = None,
    foreground: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a process that cannot outlive us.

    A background process gets its own session, so its process group id is its
    pid (see `signal_group`) and the terminal's Ctrl-C doesn't reach it.
    """
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=full_env,
        stdin=None if foreground else subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is not None else None,
        start_new_session=not foreground,
        preexec_fn=_child_setup,
    )


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal a background child and everything it forked."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def terminate(
    proc: subprocess.Popen[bytes],
    *,
    timeout: float = STOP_TIMEOUT,
    request_stop: Callable[[], None] | None = None,
    hurry: Callable[[], bool] = lambda: False,
    group: bool = True,
) -> int:
    """Ask politely, wait up to `timeout` (or until `hurry()`), then SIGKILL."""

    def send(sig: int) -> None:
        if group:
            signal_group(proc, sig)
        elif proc.poll() is None:
            proc.send_signal(sig)

    if proc.poll() is None:
        asked = False
        if request_stop is not None:
            try:
                request_stop()
                asked = True
            except Exception:
                pass  # fall back to the signal
        if not asked:
            send(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline and not hurry():
            time.sleep(0.05)
        if proc.poll() is None:
            send(signal.SIGKILL)
    code = proc.wait()
    if group:
        # Whatever the child left behind in its group goes too: no orphans.
        signal_group(proc, signal.SIGKILL)
    return code


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name} ({-code})"
    return f"exited with code {code}"


def tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """Last lines of a log, as a terminal would show them.

    Progress bars redraw with carriage returns: keep what was drawn last.
    """
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", errors="replace")
    shown = [line.rstrip("\r").rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]
    while shown and not shown[-1]:
        shown.pop()
    return shown[-lines:]


def rotate(path: Path) -> None:
    """Keep the previous run's log as `<name>.1` for post-mortems."""
    if path.exists():
        older = path.with_name(path.name + ".1")
        path.replace(older)
        os.chmod(older, 0o600)  # may be from a release that wrote logs 0644


def open_private(path: Path) -> IO[bytes]:
    """`path` truncated for writing, readable by its owner only (logs hold
    conversations): 0600 whatever the umask, in a 0700 directory."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def make_private(directory: Path) -> None:
    """`directory` (created 0700 if missing) and what we own under it lose every
    group and other permission: var/ holds logs, databases, the Redis AOF with
    the WeChat token, and secrets. Files of other owners are left alone."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    uid = os.geteuid()
    for path in [directory, *directory.rglob("*")]:
        try:
            info = path.lstat()
            if info.st_uid == uid and not path.is_symlink() and info.st_mode & 0o077:
                os.chmod(path, info.st_mode & 0o7700)
        except OSError:
            continue  # gone meanwhile, or not ours to change


# --- readiness checks ------------------------------------------------------

# Readiness checks talk to our own loopback servers: never through a proxy.
_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StartFailed(Exception):
    """Raised by a readiness check that knows the child will never be ready."""


def http_get(
    url: str, headers: Mapping[str, str] | None = None, timeout: float = 2.0
) -> tuple[int, bytes] | None:
    """(status, body) of GET `url`, any status; None when nothing answers."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with _no_proxy.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()
    except (urllib.error.URLError, OSError, ValueError):
        return None


def http_ready(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    accept: Callable[[bytes], bool] | None = None,
    timeout: float = 2.0,
) -> ReadyCheck:
    """Ready when GET `url` answers 2xx (and `accept(body)` agrees)."""

    def check() -> bool:
        answer = http_get(url, headers, timeout)
        if answer is None or not 200 <= answer[0] < 300:
            return False
        return accept is None or accept(answer[1])

    return check


def json_has(key: str) -> Callable[[bytes], bool]:
    """For `http_ready`: the body is a JSON object with a non-empty `key`."""

    def accept(body: bytes) -> bool:
        try:
            data = json.loads(body)
        except ValueError:
            return False
        return isinstance(data, dict) and bool(data.get(key))

    return accept


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could bind host:port now (checked before a slow start)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Like the servers themselves: a port in TIME_WAIT is usable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# --- terminal output -------------------------------------------------------


class StatusLine:
    """One line of progress: redrawn in place on a terminal; elsewhere (make
    output piped to a file, CI) a plain line each time `key` changes."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._key: str | None = None
        self._drawn = False

    def update(self, text: str, key: str | None = None) -> None:
        if self.tty:
            width = max(20, shutil.get_terminal_size().columns - 1)
            self.out.write("\r" + text[:width] + "\x1b[K")
            self._drawn = True
        else:
            key = text if key is None else key
            if key == self._key:
                return
            self._key = key
            self.out.write(text + "\n")
        self.out.flush()

    def done(self, text: str | None = None) -> None:
        if self.tty:
            if text is not None:
                self.out.write("\r" + text + "\x1b[K\n")
            elif self._drawn:
                self.out.write("\n")
        elif text is not None:
            self.out.write(text + "\n")
        self.out.flush()
        self._drawn = False
        self._key = None


# --- signals ---------------------------------------------------------------


class SignalTrap:
    """Turns SIGINT/SIGTERM/SIGHUP into a flag that polling loops check.

    A flag rather than an exception: an exception could fire inside Popen
    between fork and bookkeeping and leave a child nobody knows about.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: list[int] = []
        # While a foreground child owns the terminal, Ctrl-C is for it.
        self.ignore_sigint = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.ignore_sigint:
            return
        self.received.append(signum)

    def __enter__(self) -> SignalTrap:
        try:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:
            # Not the main thread: signals can't be trapped; run untrapped.
            pass
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            if handler is not None:  # None: not set from Python, nothing to restore
                signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    @property
    def stop_requested(self) -> bool:
        return bool(self.received)


# --- one child ---------------------------------------------------------------


class Child:
    """A running `ChildSpec`."""

    def __init__(self, spec: ChildSpec, log_dir: Path) -> None:
        self.spec = spec
        self.log_path: Path | None = None if spec.foreground else log_dir / f"{spec.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.started_at = 0.0
        self.failures = 0  # starts in a row that ended in an exit

    @property
    def name(self) -> str:
        return self.spec.name

    def start(self) -> None:
        if self.log_path is not None:
            self.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            rotate(self.log_path)
            self._log = open_private(self.log_path)
        self.started_at = time.monotonic()
        try:
            self.proc = spawn(
                self.spec.argv,
                env=self.spec.env,
                cwd=self.spec.cwd,
                stdout=self._log,
                foreground=self.spec.foreground,
            )
        except OSError:
            self._close_log()
            raise

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def is_ready(self) -> bool:
        if self.spec.ready is None:
            return True
        try:
            return self.spec.ready()
        except StartFailed:
            raise
        except Exception:
            # A check that blows up means "not yet", not "supervisor crashed".
            return False

    def stop(self, hurry: Callable[[], bool] = lambda: False) -> None:
        if self.proc is not None:
            terminate(
                self.proc,
                timeout=self.spec.stop_timeout,
                request_stop=self.spec.request_stop,
                hurry=hurry,
                group=not self.spec.foreground,
            )
        self._close_log()

    def tail(self, lines: int = TAIL_LINES) -> list[str]:
        # Shown on the terminal: what bypassed the child's logging (a crash
        # printed by a library) is masked here too.
        shown = [] if self.log_path is None else tail(self.log_path, lines)
        return [mask_personal_data(line) for line in shown]

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    @contextmanager
    def running(self, timeout: float | None = None) -> Iterator[Child]:
        """Start, wait until ready, and always stop: for one-off use and tests."""
        self.start()
        try:
            deadline = time.monotonic() + (timeout or self.spec.ready_timeout)
            while not self.is_ready():
                code = self.poll()
                if code is not None:
                    raise RuntimeError(f"{self.name} {describe_exit(code)}: {self.tail()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} not ready: {self.tail()}")
                time.sleep(0.05)
            yield self
        finally:
            self.stop()


# --- the supervisor ----------------------------------------------------------


class _Stop(Exception):
    """A stop signal arrived."""


class _Failed(Exception):
    """A child failed; the message says which and how."""

    def __init__(self, message: str, child: Child) -> None:
        super().__init__(message)
        self.child = child


class Supervisor:
    """Runs children in order and keeps them running until one exits or we are told to stop.

    `run()` returns the process exit code: 0 after a stop signal, the
    foreground child's code when it ends the run, 1 when a child failed.
    """

    def __init__(
        self,
        children: Sequence[ChildSpec],
        log_dir: Path,
        out: TextIO | None = None,
    ) -> None:
        names = [spec.name for spec in children]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique: {names}")
        self.specs = list(children)
        self.log_dir = log_dir
        self.out = out if out is not None else sys.stdout
        self.started: list[Child] = []

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def run(self, on_ready: Callable[[], None] | None = None) -> int:
        code, message = 1, ""
        with SignalTrap() as trap:
            try:
                for spec in self.specs:
                    self._start(spec, trap)
                if on_ready is not None:
                    on_ready()
                code = self._watch(trap)
            except _Stop:
                code, message = 0, "stopped"
            except _Failed as failure:
                self._report(str(failure), failure.child)
            finally:
                # Also on an unexpected error: never leave children behind.
                self._stop_all(trap)
        if message:
            self.say(message)
        return code

    def _start(self, spec: ChildSpec, trap: SignalTrap) -> None:
        if trap.stop_requested:
            raise _Stop
        child = Child(spec, self.log_dir)
        try:
            child.start()
        except OSError as error:
            raise _Failed(f"{spec.name} could not start: {error}", child) from error
        self.started.append(child)
        if spec.foreground:
            trap.ignore_sigint = True
        self._wait_ready(child, trap)

    def _wait_ready(self, child: Child, trap: SignalTrap) -> None:
        spec = child.spec
        status = StatusLine(self.out)
        label = f"starting {spec.name}" + (f" ({spec.waiting})" if spec.waiting else "")
        began = time.monotonic()
        while True:
            elapsed = time.monotonic() - began
            if trap.stop_requested:
                status.done()
                raise _Stop
            code = child.poll()
            if code is not None:
                status.done()
                if spec.foreground:
                    return
                raise _Failed(f"{spec.name} {describe_exit(code)} while starting", child)
            try:
                ready = child.is_ready()
            except StartFailed as error:
                status.done()
                raise _Failed(f"{spec.name} failed to start: {error}", child) from None
            if ready:
                if spec.ready is not None:
                    status.done(f"{spec.name} ready ({elapsed:.1f} s)")
                return
            if elapsed > spec.ready_timeout:
                status.done()
                raise _Failed(f"{spec.name} was not ready after {spec.ready_timeout:.0f} s", child)
            # The clock only where it can tick in place.
            status.update(f"{label} … {elapsed:.0f} s" if status.tty else f"{label} …", key=label)
            time.sleep(_POLL)

    def _watch(self, trap: SignalTrap) -> int:
        while True:
            if trap.stop_requested:
                raise _Stop
            for child in self.started:
                code = child.poll()
                if code is None:
                    continue
                if child.spec.foreground:
                    return code
                if not child.spec.restart:
                    raise _Failed(f"{child.name} {describe_exit(code)}", child)
                self._restart(child, f"{child.name} {describe_exit(code)}", trap)
            time.sleep(_POLL)

    def _restart(self, child: Child, why: str, trap: SignalTrap) -> None:
        """Start a child that exited again, until it is ready or failed too often."""
        if time.monotonic() - child.started_at > STEADY_SECONDS:
            child.failures = 0
        while True:
            child.stop()  # reaps it, and whatever it left in its group
            child.failures += 1
            if child.failures > RESTART_LIMIT:
                raise _Failed(f"{why}; it failed {RESTART_LIMIT} times in a row, giving up", child)
            pause = RESTART_PAUSES[min(child.failures, len(RESTART_PAUSES)) - 1]
            self.say(f"{why}; restarting it" + (f" in {pause:.0f} s" if pause else ""))
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline:
                if trap.stop_requested:
                    raise _Stop
                time.sleep(_POLL)
            if child.spec.before_restart is not None:
                try:
                    child.spec.before_restart()
                except Exception as error:  # the restart matters more
                    self.say(f"{child.name}: before restarting: {error}")
            try:
                child.start()
            except OSError as error:
                why = f"{child.name} could not start: {error}"
                continue
            try:
                self._wait_ready(child, trap)
                return
            except _Failed as failure:
                why = str(failure)

    def _report(self, message: str, child: Child) -> None:
        self.say(f"\n{message}")
        lines = child.tail()
        if lines and child.log_path is not None:
            self.say(f"--- last {len(lines)} lines of {shown_path(child.log_path)} ---")
            for line in lines:
                self.say(f"  {line}")
            self.say("---")

    def _stop_all(self, trap: SignalTrap) -> None:
        trap.ignore_sigint = False
        running = [child for child in reversed(self.started) if child.poll() is None]
        if running:
            self.say(f"stopping {', '.join(child.name for child in running)} …")
        signals_so_far = len(trap.received)

        def hurry() -> bool:
            # A second Ctrl-C while stopping: don't wait for anyone any more.
            return len(trap.received) > signals_so_far

        for child in reversed(self.started):
            child.stop(hurry)


def shown_path(path: Path) -> str:
    """A path relative to the working directory when that's shorter."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
