"""The desk's agents (bot.desk.agents): hashed passwords, checks, and the
`bot agents` command, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.desk import agents
from bot.shop import database
from bot.shop.schema import Agent
from tests.conftest import BOT, ROOT, base_env
from tests.test_shop_database import url  # noqa: F401 (the SQLite/PostgreSQL fixture)

PASSWORD = "correct horse battery"


def test_passwords_are_hashed_and_checked(url: str) -> None:  # noqa: F811
    database.upgrade(url)
    with database.session(url) as session:
        added = agents.do_add(session, "Xiaoqing", PASSWORD, "客服小青",
                              groups=["orders", "General"], capacity=6)
        assert added.username == "xiaoqing" and added.groups == ["general", "orders"]
    with database.session(url) as session:
        stored = session.scalars(select(Agent)).one()
        assert stored.password_hash.startswith("$argon2id$")
        assert PASSWORD not in stored.password_hash
        assert agents.authenticate(session, "XIAOQING", PASSWORD).username == "xiaoqing"
        assert agents.authenticate(session, "xiaoqing", "wrong password!") is None
        assert agents.authenticate(session, "nobody", PASSWORD) is None
        agents.do_disable(session, "xiaoqing")
    with database.session(url) as session:
        assert agents.authenticate(session, "xiaoqing", PASSWORD) is None
        assert [a.active for a in agents.listing(session)] == [False]


@pytest.mark.parametrize(
    ("username", "password", "name", "role", "why"),
    [
        ("ab", PASSWORD, "A", "agent", "not a username"),
        ("amy", "short", "Amy", "agent", "at least 10"),
        ("amy", "amy-is-great-2026", "Amy", "agent", "must not contain"),
        ("amy", PASSWORD, " ", "agent", "display name"),
        ("amy", PASSWORD, "Amy", "boss", "role"),
    ],
)
def test_what_cannot_be_an_agent_is_refused(
    tmp_path: Path, username: str, password: str, name: str, role: str, why: str
) -> None:
    sqlite = f"sqlite:///{tmp_path / 'shop.db'}"
    database.upgrade(sqlite)
    with database.session(sqlite) as session, pytest.raises(agents.AgentError, match=why):
        agents.do_add(session, username, password, name, role)


def _bot(var_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [BOT, *args], cwd=ROOT, env=base_env(BOT_VAR_DIR=str(var_dir)), input=stdin,
        capture_output=True, text=True, timeout=120,
    )


def test_bot_agents_adds_lists_and_disables(tmp_path: Path) -> None:
    added = _bot(tmp_path, "agents", "add", "amy", "--name", "Amy", "--role", "supervisor",
                 "--groups", "orders,complaints", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert "added supervisor amy (Amy)" in added.stdout
    again = _bot(tmp_path, "agents", "add", "amy", "--name", "Amy", "--password-stdin",
                 stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "already an agent 'amy'" in again.stderr
    assert "Traceback" not in again.stderr
    weak = _bot(tmp_path, "agents", "add", "bob", "--name", "Bob", "--password-stdin",
                stdin="123\n")
    assert weak.returncode == 1 and "at least 10" in weak.stderr
    assert _bot(tmp_path, "agents", "disable", "amy").returncode == 0
    listed = _bot(tmp_path, "agents", "list")
    assert listed.returncode == 0
    assert "amy" in listed.stdout and "complaints,orders" in listed.stdout
    assert "(disabled)" in listed.stdout and "argon2" not in listed.stdout
    assert "bob" not in listed.stdout
    sqlite = f"sqlite:///{tmp_path / 'shop.db'}"
    with database.session(sqlite) as session:
        assert agents.authenticate(session, "amy", PASSWORD) is None  # disabled


class _Socket:
    closed_with: int | None = None

    async def close(self, code: int) -> None:
        self.closed_with = code


@pytest.mark.asyncio
async def test_connected_agents_are_checked_in_one_query_and_the_disabled_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from bot.desk import app as desk
    from bot.desk import records

    sqlite = f"sqlite:///{tmp_path / 'shop.db'}"
    database.upgrade(sqlite)
    with database.session(sqlite) as session:
        ids = [agents.do_add(session, f"agent{n}", PASSWORD, f"Agent {n}").id for n in range(3)]
        agents.do_disable(session, "agent1")
    sockets = {agent_id: {_Socket()} for agent_id in ids}
    app = SimpleNamespace(ctx=SimpleNamespace(sockets=sockets, active_checked={},
                                              database_url=sqlite))
    queries: list[list[int]] = []
    one_for_all = records.active_agent_ids
    monkeypatch.setattr(records, "active_agent_ids",
                        lambda db, asked: queries.append(list(asked)) or one_for_all(db, asked))

    def one_by_one(db: str, agent_id: int) -> None:
        raise AssertionError(f"agent {agent_id} checked on their own")

    monkeypatch.setattr(records, "agent_by_id", one_by_one)
    await desk.check_connected(app)
    assert [sorted(q) for q in queries] == [sorted(ids)]
    closed = {agent_id: next(iter(socks)).closed_with for agent_id, socks in sockets.items()}
    assert closed == {ids[0]: None, ids[1]: 4401, ids[2]: None}
    # The others' requests meanwhile need no query of their own.
    assert set(app.ctx.active_checked) == {ids[0], ids[2]}
    assert await desk._still_active(app, ids[2])
