"""The supervisor with small real child processes (`python -c ...`).

Every wait is bounded, so a hang fails the test instead of stalling the run.
"""

from __future__ import annotations

import io
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import replace
from pathlib import Path

import pytest

from bot.cli import api_token
from bot.redis_server import free_port
from bot.settings import Settings
from bot.supervisor import ChildSpec, StatusLine, Supervisor, describe_exit, tail

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent

# Writes "<pid> <grandchild pid>" once up (atomically: the readiness check reads
# it), notes SIGTERM in a shared file, and sleeps. The grandchild checks that
# stopping a child reaches what it forked.
SLEEPER = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    name, state = sys.argv[1], sys.argv[2]
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    stubborn = len(sys.argv) > 4 and sys.argv[4] == "stubborn"

    def on_term(signum, frame):
        with open(os.path.join(state, "stopped.txt"), "a") as fh:
            fh.write(name + "\\n")
        if not stubborn:
            sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    time.sleep(delay)
    tmp = os.path.join(state, name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(f"{os.getpid()} {grandchild.pid}")
    os.replace(tmp, os.path.join(state, name + ".pids"))
    print(name, "is up", flush=True)
    while True:
        time.sleep(0.1)
    """
)

# Prints 30 numbered lines, then dies with exit code 3.
DIES = textwrap.dedent(
    """
    import sys, time
    for i in range(30):
        print(f"line {i}", flush=True)
    time.sleep(float(sys.argv[1]))
    print("boom: the disk is on fire", flush=True)
    sys.exit(3)
    """
)


def sleeper(
    name: str, state: Path, delay: float = 0.0, stubborn: bool = False, **kw: object
) -> ChildSpec:
    argv = [sys.executable, "-c", SLEEPER, name, str(state), str(delay)]
    if stubborn:
        argv.append("stubborn")
    pids = state / f"{name}.pids"
    return ChildSpec(name=name, argv=argv, ready=pids.exists, ready_timeout=20, **kw)  # type: ignore[arg-type]


def pids_of(state: Path, *names: str) -> list[int]:
    pids: list[int] = []
    for name in names:
        pids += [int(p) for p in (state / f"{name}.pids").read_text().split()]
    return pids


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: Iterable[int], timeout: float = 10.0) -> list[int]:
    """The pids still alive after `timeout` (empty when all are gone)."""
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [pid for pid in left if alive(pid)]
        time.sleep(0.05)
    return left


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    """Whatever a failing test left running goes, so it can't skew the next."""
    yield
    for pids in tmp_path.glob("*.pids"):
        for pid in (int(p) for p in pids.read_text().split()):
            if alive(pid):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def stop_me_soon() -> None:
    """An on_ready callback: a stop signal, as Ctrl-C or `kill` would send."""
    os.kill(os.getpid(), signal.SIGTERM)


# --- in-process ---------------------------------------------------------------


def test_ready_in_order_then_signal_stops_in_reverse(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def on_ready() -> None:
        seen.append(sorted(p.name for p in tmp_path.glob("*.pids")))
        stop_me_soon()

    out = io.StringIO()
    specs = [sleeper("first", tmp_path, delay=0.5), sleeper("second", tmp_path)]
    started = time.monotonic()
    code = Supervisor(specs, tmp_path / "log", out).run(on_ready=on_ready)

    assert code == 0
    assert time.monotonic() - started < 15
    # on_ready ran once, after both were ready (first took 0.5 s to get there).
    assert seen == [["first.pids", "second.pids"]]
    text = out.getvalue()
    assert text.index("first ready") < text.index("second ready")
    assert text.rstrip().endswith("stopped")
    assert (tmp_path / "stopped.txt").read_text().split() == ["second", "first"]
    assert wait_gone(pids_of(tmp_path, "first", "second")) == []
    assert "first is up" in (tmp_path / "log" / "first.log").read_text()


def test_a_child_dies_the_others_are_stopped(tmp_path: Path) -> None:
    out = io.StringIO()
    specs = [
        sleeper("steady", tmp_path),
        ChildSpec(name="flaky", argv=[sys.executable, "-c", DIES, "1.0"]),
        sleeper("after", tmp_path),
    ]
    code = Supervisor(specs, tmp_path / "log", out).run()

    assert code == 1
    text = out.getvalue()
    assert "flaky exited with code 3" in text
    assert "last 20 lines of" in text and "flaky.log" in text
    assert "boom: the disk is on fire" in text
    assert "line 29" in text and "line 10" not in text  # only the tail
    assert "stopping after, steady" in text
    assert "stopped\n" not in text
    assert wait_gone(pids_of(tmp_path, "steady", "after")) == []



def test_a_child_killed_is_started_again_and_the_others_keep_running(tmp_path: Path) -> None:
    import threading

    out = io.StringIO()
    specs = [sleeper("steady", tmp_path), sleeper("victim", tmp_path, restart=True)]
    seen: dict[str, object] = {}

    def kill_then_stop() -> None:
        first = pids_of(tmp_path, "victim")[0]
        (tmp_path / "victim.pids").unlink()
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while out.getvalue().count("victim ready") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen["restarted"] = (tmp_path / "victim.pids").exists()
        seen["steady alive"] = alive(pids_of(tmp_path, "steady")[0])
        stop_me_soon()

    code = Supervisor(specs, tmp_path / "log", out).run(
        on_ready=lambda: threading.Thread(target=kill_then_stop).start()
    )
    text = out.getvalue()
    assert code == 0, text  # stopped by the signal, not failed
    assert seen == {"restarted": True, "steady alive": True}, text
    assert "victim was killed by SIGKILL (9); restarting it" in text
    assert text.count("victim ready") == 2
    assert "stopping victim, steady" in text
    assert wait_gone(pids_of(tmp_path, "steady", "victim")) == []


def test_a_crash_loop_gives_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.supervisor as supervisor

    monkeypatch.setattr(supervisor, "RESTART_PAUSES", (0.0,))
    out = io.StringIO()
    specs = [
        sleeper("steady", tmp_path),
        ChildSpec(name="flaky", argv=[sys.executable, "-c", DIES, "0.1"], restart=True),
    ]
    assert Supervisor(specs, tmp_path / "log", out).run() == 1
    text = out.getvalue()
    assert text.count("restarting it") == supervisor.RESTART_LIMIT
    assert f"failed {supervisor.RESTART_LIMIT} times in a row, giving up" in text
    assert "boom: the disk is on fire" in text
    assert wait_gone(pids_of(tmp_path, "steady")) == []


def test_a_child_dies_while_starting(tmp_path: Path) -> None:
    out = io.StringIO()
    specs = [
        sleeper("steady", tmp_path),
        ChildSpec(
            name="broken",
            argv=[sys.executable, "-c", "import sys; print('bad config'); sys.exit(2)"],
            ready=lambda: False,
        ),
        sleeper("never", tmp_path),
    ]
    code = Supervisor(specs, tmp_path / "log", out).run()
    assert code == 1
    assert "broken exited with code 2 while starting" in out.getvalue()
    assert "bad config" in out.getvalue()
    assert not (tmp_path / "never.pids").exists()  # later children never started
    assert wait_gone(pids_of(tmp_path, "steady")) == []


def test_killed_by_a_signal_is_named(tmp_path: Path) -> None:
    out = io.StringIO()
    kill_self = "import os, signal, time; time.sleep(0.5); os.kill(os.getpid(), signal.SIGKILL)"
    specs = [sleeper("steady", tmp_path), ChildSpec("victim", [sys.executable, "-c", kill_self])]
    assert Supervisor(specs, tmp_path / "log", out).run() == 1
    assert "victim was killed by SIGKILL (9)" in out.getvalue()
    assert wait_gone(pids_of(tmp_path, "steady")) == []


def test_not_ready_in_time(tmp_path: Path) -> None:
    out = io.StringIO()
    spec = ChildSpec(
        name="slowpoke",
        argv=[
            sys.executable,
            "-c",
            "import time; print('warming up', flush=True); time.sleep(600)",
        ],
        ready=lambda: False,
        ready_timeout=1.0,
    )
    started = time.monotonic()
    code = Supervisor([sleeper("steady", tmp_path), spec], tmp_path / "log", out).run()
    assert code == 1
    assert time.monotonic() - started < 10
    assert "slowpoke was not ready after 1 s" in out.getvalue()
    assert "warming up" in out.getvalue()
    assert wait_gone(pids_of(tmp_path, "steady")) == []


def test_stubborn_child_is_killed_after_the_stop_timeout(tmp_path: Path) -> None:
    out = io.StringIO()
    specs = [sleeper("stubborn", tmp_path, stubborn=True, stop_timeout=1.0)]
    started = time.monotonic()
    code = Supervisor(specs, tmp_path / "log", out).run(on_ready=stop_me_soon)
    assert code == 0
    assert time.monotonic() - started < 10
    assert (tmp_path / "stopped.txt").read_text().split() == ["stubborn"]  # it was asked
    assert wait_gone(pids_of(tmp_path, "stubborn")) == []


def test_polite_stop_request_is_used(tmp_path: Path) -> None:
    asked: list[str] = []
    specs = [
        # Only records the request and keeps running: SIGKILL after 0.5 s.
        sleeper("polite", tmp_path, request_stop=lambda: asked.append("polite"), stop_timeout=0.5),
        # A request that fails falls back to SIGTERM.
        sleeper("failing", tmp_path, request_stop=lambda: 1 / 0),
    ]
    code = Supervisor(specs, tmp_path / "log", io.StringIO()).run(on_ready=stop_me_soon)
    assert code == 0
    assert asked == ["polite"]
    assert (tmp_path / "stopped.txt").read_text().split() == ["failing"]
    assert wait_gone(pids_of(tmp_path, "polite", "failing")) == []


def test_foreground_child_ends_the_run_with_its_code(tmp_path: Path) -> None:
    out = io.StringIO()
    specs = [
        sleeper("backing", tmp_path),
        ChildSpec(
            name="shell",
            argv=[sys.executable, "-c", "import sys, time; time.sleep(0.3); sys.exit(5)"],
            foreground=True,
        ),
    ]
    code = Supervisor(specs, tmp_path / "log", out).run()
    assert code == 5
    assert "exited with code" not in out.getvalue()  # not a failure
    assert not (tmp_path / "log" / "shell.log").exists()  # it had the terminal
    assert wait_gone(pids_of(tmp_path, "backing")) == []


def test_missing_executable(tmp_path: Path) -> None:
    out = io.StringIO()
    specs = [sleeper("steady", tmp_path), ChildSpec("ghost", [str(tmp_path / "no-such-binary")])]
    assert Supervisor(specs, tmp_path / "log", out).run() == 1
    assert "ghost could not start" in out.getvalue()
    assert wait_gone(pids_of(tmp_path, "steady")) == []


def test_child_environment_and_log_rotation(tmp_path: Path) -> None:
    show_env = "import os; print('REDIS_URL=' + os.environ['REDIS_URL'], flush=True)"
    spec = ChildSpec(
        "env",
        [sys.executable, "-c", show_env],
        env={"REDIS_URL": "redis://127.0.0.1:1234/0"},
        foreground=False,
    )
    log = tmp_path / "log" / "env.log"
    for _ in range(2):
        Supervisor([spec], tmp_path / "log", io.StringIO()).run()
    assert "REDIS_URL=redis://127.0.0.1:1234/0" in log.read_text()
    assert (tmp_path / "log" / "env.log.1").exists()  # the previous run's log


def test_names_must_be_unique(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unique"):
        Supervisor([sleeper("a", tmp_path), sleeper("a", tmp_path)], tmp_path)


def test_tail_shows_progress_bars_as_drawn_last(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text(
        "start\nEpochs:  10%|#| 1/10\rEpochs:  90%|#| 9/10\rEpochs: 100%|#| 10/10\nend\n\n"
    )
    assert tail(log, 5) == ["start", "Epochs: 100%|#| 10/10", "end"]
    assert tail(tmp_path / "missing.log") == []


def test_describe_exit() -> None:
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(-signal.SIGTERM) == "was killed by SIGTERM (15)"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_status_line_redraws_on_a_terminal_and_prints_lines_elsewhere() -> None:
    tty = _Terminal()
    line = StatusLine(tty)
    line.update("starting rasa … 1 s", key="rasa")
    line.update("starting rasa … 2 s", key="rasa")
    line.done("rasa ready")
    assert tty.getvalue().count("\r") == 3 and tty.getvalue().endswith("rasa ready\x1b[K\n")

    plain = io.StringIO()
    line = StatusLine(plain)
    line.update("starting rasa … 1 s", key="rasa")
    line.update("starting rasa … 2 s", key="rasa")
    line.done("rasa ready")
    assert plain.getvalue() == "starting rasa … 1 s\nrasa ready\n"


# --- the supervisor as its own process ---------------------------------------------

RUN_SUPERVISOR = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from pathlib import Path
    from bot.supervisor import ChildSpec, Supervisor
    state, sleeper = Path(sys.argv[2]), sys.argv[3]
    specs = [
        ChildSpec(name, [sys.executable, "-c", sleeper, name, str(state)],
                  ready=(state / f"{name}.pids").exists, ready_timeout=20)
        for name in ("alpha", "beta", "gamma")
    ]
    def ready():
        print("READY", flush=True)
    sys.exit(Supervisor(specs, state / "log").run(on_ready=ready))
    """
)


def _start_supervisor(tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RUN_SUPERVISOR, str(ROOT), str(tmp_path), SLEEPER],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Its own group, so a stray signal can't reach pytest (and vice versa).
        start_new_session=True,
    )


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 30.0) -> str:
    # Raw reads: a buffered readline() may swallow the marker into a buffer
    # that select() can't see.
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = ""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            pytest.fail(f"no {marker!r} from the supervisor in {timeout} s; it said:\n{seen}")
        if select.select([fd], [], [], min(left, 0.5))[0]:
            chunk = os.read(fd, 4096).decode()
            if not chunk:
                pytest.fail(f"the supervisor exited ({proc.wait()}); it said:\n{seen}")
            seen += chunk
    return seen


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_the_supervisor_process(tmp_path: Path, sig: int) -> None:
    proc = _start_supervisor(tmp_path)
    try:
        _read_until(proc, "READY")
        pids = pids_of(tmp_path, "alpha", "beta", "gamma")
        assert all(alive(pid) for pid in pids)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert output.rstrip().endswith("stopped"), output
    assert (tmp_path / "stopped.txt").read_text().split() == ["gamma", "beta", "alpha"]
    assert wait_gone(pids) == []


def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    # SIGKILL leaves the supervisor no chance to clean up; the kernel's
    # parent-death signal (Linux) still stops its direct children.
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signal is Linux-only")
    proc = _start_supervisor(tmp_path)
    try:
        _read_until(proc, "READY")
        children = [pids_of(tmp_path, name)[0] for name in ("alpha", "beta", "gamma")]
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stdout:
            proc.stdout.close()
    assert wait_gone(children) == []
    # Their own children are each child's business (Rasa, Redis and rasa_sdk
    # have none with one worker); the fixture removes them.


# --- the `bot` command's wiring ----------------------------------------------------


def _bot(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # A throwaway var/ and models/, so nothing here touches the project's.
    unset = ("REDIS_URL", "BOT_API_TOKEN", "TRACKER_DATABASE_URL", "DATABASE_URL")
    base = {key: value for key, value in os.environ.items() if key not in unset}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=ROOT,
        env={
            **base,
            "BOT_VAR_DIR": str(tmp_path / "var"),
            "BOT_MODELS_DIR": str(tmp_path / "models"),
            "RASA_TELEMETRY_ENABLED": "false",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bot_run_without_a_model_explains(tmp_path: Path) -> None:
    result = _bot(tmp_path, "run", "--no-train", BOT_ACTION_PORT="0", BOT_RASA_PORT="0",
                  BOT_DESK_PORT="0")
    assert result.returncode == 1
    assert "no model in" in result.stderr and "bot train" in result.stderr


def test_bot_run_with_a_dead_redis_url_explains(tmp_path: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    result = _bot(tmp_path, "run", "--no-train", REDIS_URL=url)
    assert result.returncode == 1
    assert "does not answer PING" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_api_token_is_generated_once_and_private(tmp_path: Path) -> None:
    settings = Settings(
        root=tmp_path,
        var_dir=tmp_path / "var",
        models_dir=tmp_path / "models",
        host="127.0.0.1",
        rasa_port=5005,
        action_port=5055,
        redis_url=None,
        tracker_db_url="sqlite://",
        api_token=None,
    )
    token, where = api_token(settings)
    assert len(token) >= 32 and where.endswith("api_token")
    assert (tmp_path / "var" / "api_token").stat().st_mode & 0o777 == 0o600
    assert api_token(settings) == (token, where)  # stable across restarts
    assert api_token(replace(settings, api_token="from-env")) == ("from-env", "BOT_API_TOKEN")


def test_before_restart_runs_before_each_restart_and_may_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.supervisor as supervisor

    monkeypatch.setattr(supervisor, "RESTART_PAUSES", (0.0,))
    calls: list[int] = []

    def release() -> None:  # what `bot run` does for Rasa: let go of its locks
        calls.append(len(calls))
        if len(calls) == 2:
            raise RuntimeError("Redis is away")

    out = io.StringIO()
    specs = [ChildSpec(name="flaky", argv=[sys.executable, "-c", DIES, "0.1"], restart=True,
                       before_restart=release)]
    assert Supervisor(specs, tmp_path / "log", out).run() == 1
    text = out.getvalue()
    # Once before every restart, and a failing one doesn't stop the restart.
    assert len(calls) == supervisor.RESTART_LIMIT == text.count("restarting it")
    assert "flaky: before restarting: Redis is away" in text
