"""The desk's authorization and session security, over HTTP and the WebSocket,
against the real service (`bot run`: desk, Rasa, embedded Redis, SQLite).

Who may call what (API.md): no session → 401; a write without the session's
CSRF token → 403 and nothing happens; agents see and act only on their groups'
queues and their own chats, supervisors on everything; logins are throttled per
username; the session cookie is HttpOnly and SameSite=Strict; the socket wants
a session and the desk's own Origin; bad input is refused.

The service is shared with the whole session: every test leaves its agents
offline and closes the handoffs it opened. Login failures come from loopback
addresses of their own (127.0.0.x), so the desk's per-address throttle never
locks out 127.0.0.1, which the other tests log in from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Callable

import aiohttp
import pytest
from multidict import CIMultiDictProxy
from sqlalchemy import select
from yarl import URL

from bot.desk import agents as people
from bot.shop import database
from bot.shop.schema import HandoffNote
from tests.conftest import Service
from tests.desk_client import PASSWORD, DeskClient, add_agent
from tests.test_desk_handoff import agent_at_desk, handoffs_of, shop_url, web_customer
from tests.web_client import WebClient, tracker

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

TIMEOUT = 60.0


def conv(cid: str, tail: str = "") -> str:
    return DeskClient.conv(cid, tail)


def calls(cid: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every call of API.md but the login, with a body that would be valid."""
    return [
        ("GET", "/desk/api/me", {}),
        ("POST", "/desk/api/status", {"status": "away"}),
        ("GET", "/desk/api/state", {}),
        ("GET", conv(cid), {}),
        ("GET", conv(cid, "/suggestions"), {}),
        ("POST", conv(cid, "/accept"), {}),
        ("POST", conv(cid, "/messages"), {"text": "not from a session"}),
        ("POST", conv(cid, "/notes"), {"text": "not from a session"}),
        ("POST", conv(cid, "/transfer"), {"group": "billing"}),
        ("POST", conv(cid, "/close"), {}),
        ("POST", conv(cid, "/assign"), {"agent": 1}),
        ("GET", "/desk/api/canned", {}),
        ("POST", "/desk/api/logout", {}),
    ]


def from_address(service: Service, address: str) -> DeskClient:
    """A desk client whose connections come from another loopback address (the
    desk counts failed logins per username and per client address)."""
    client = DeskClient(service.desk_url)
    client.http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(address, 0)),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
    )
    return client


async def raw(service: Service, method: str, path: str, *, cookie: str | None = None,
              csrf: str | None = None, data: bytes | str | None = None,
              body: Any = None) -> tuple[int, Any, CIMultiDictProxy[str]]:
    """One request with exactly these credentials (no cookie jar)."""
    headers = {}
    if cookie is not None:
        headers["Cookie"] = f"desk_session={cookie}"
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    async with aiohttp.ClientSession() as http, http.request(
        method, service.desk_url + path, headers=headers, data=data,
        json=body if data is None and method != "GET" else None,
    ) as answer:
        text = await answer.text()
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = text
        return answer.status, parsed, answer.headers


def session_cookie(client: DeskClient) -> str:
    cookies = client.http.cookie_jar.filter_cookies(URL(client.url + "/desk/api/me"))
    assert "desk_session" in cookies, "no session cookie after the login"
    return cookies["desk_session"].value


def agent_id(service: Service, username: str) -> int:
    with database.session(shop_url(service)) as session:
        return people.find(session, username).id


def notes_of(service: Service, handoff_id: int) -> list[str]:
    with database.session(shop_url(service)) as session:
        return list(session.scalars(select(HandoffNote.text).where(
            HandoffNote.handoff_id == handoff_id)))


def agent_texts(service: Service, cid: str) -> list[str]:
    """What agents said to the customer (bot events naming an agent)."""
    return [e.get("text") or "" for e in tracker(service, cid)["events"]
            if e["event"] == "bot" and (e.get("metadata") or {}).get("agent")]


async def assert_socket_answers(service: Service, cookie: str) -> None:
    """With this cookie, from the desk's own origin, the socket is live (answers a ping)."""
    ws_url = service.desk_url.replace("http", "ws", 1) + "/desk/ws"
    async with aiohttp.ClientSession() as http, http.ws_connect(
        ws_url, headers={"Cookie": f"desk_session={cookie}"}, origin=service.desk_url
    ) as ws:
        await ws.send_json({"type": "ping"})
        assert (await ws.receive_json(timeout=TIMEOUT)) == {"type": "pong"}


async def socket_close_code(service: Service, cookie: str | None, origin: str | None) -> int:
    """Open the desk's WebSocket with this cookie and Origin; the code it is closed with."""
    headers = {"Cookie": f"desk_session={cookie}"} if cookie else {}
    ws_url = service.desk_url.replace("http", "ws", 1) + "/desk/ws"
    async with aiohttp.ClientSession() as http, http.ws_connect(
        ws_url, headers=headers, origin=origin, autoclose=False
    ) as ws:
        message = await ws.receive(timeout=TIMEOUT)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
        return int(ws.close_code or message.data)


def logged_in(service: Service, username: str, name: str, groups: list[str],
              role: str = "agent") -> contextlib.AbstractAsyncContextManager[DeskClient]:
    """An agent logged in over HTTP only (no console socket: not present, so never
    routed a chat); offline afterwards."""
    return agent_at_desk(service, username, name, groups, role, connect=False)


async def open_handoff(customer: WebClient) -> None:
    answer = await customer.say("转人工")
    assert answer, "the bot answers a request for a person"


async def eventually_async(check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            assert result, f"not true within {timeout}s"
            return result
        await asyncio.sleep(0.2)


async def close_if_open(closer: DeskClient, cid: str) -> None:
    status, _ = await closer.call("POST", conv(cid, "/close"), {})
    assert status in (200, 404), f"closing {cid}: {status}"


# --- sessions and CSRF ------------------------------------------------------------------


async def test_every_call_needs_a_session_and_every_write_its_csrf_token(
    service: Service,
) -> None:
    async with agent_at_desk(service, "sec_owner", "安全甲", ["general"]) as owner, \
            logged_in(service, "sec_other", "安全乙", ["general"]) as other, \
            web_customer(service) as customer:
        cid = customer.conversation_id
        try:
            await open_handoff(customer)
            await owner.wait("assigned", lambda e: e["conversation"]["id"] == cid)
            cookie = session_cookie(owner)

            # No session, or one that does not exist: 401 for every call.
            for method, path, body in calls(cid):
                for bad in (None, "not-a-session", "x" * 200):
                    status, answer, _ = await raw(service, method, path, cookie=bad,
                                                  body=body)
                    assert status == 401, (method, path, bad, status, answer)
                    assert answer == {"error": "please log in"}, (method, path, answer)

            # A session but no token, an empty one, a wrong one, or another agent's.
            writes = [c for c in calls(cid) if c[0] == "POST"]
            assert len(writes) == 8
            for method, path, body in writes:
                for token in (None, "", "wrong-token", other.csrf):
                    status, answer, _ = await raw(service, method, path, cookie=cookie,
                                                  csrf=token, body=body)
                    assert status == 403, (path, token, status, answer)
                    assert "CSRF" in answer["error"], answer

            # Nothing of it happened: still logged in, still online, still the owner's
            # open conversation, no note, nothing said to the customer.
            me = await owner.get("/desk/api/me")
            assert me["agent"]["status"] == "online"
            state = await owner.get("/desk/api/state")
            mine = [c for c in state["conversations"] if c["id"] == cid]
            assert len(mine) == 1 and mine[0]["state"] == "with_agent", mine
            assert mine[0]["agent"]["id"] == owner.agent["id"]
            handoff = handoffs_of(service, cid)[-1]
            assert handoff.state == "with_agent" and handoff.group_name == "general", \
                (handoff.state, handoff.group_name)
            assert notes_of(service, handoff.id) == []
            assert agent_texts(service, cid) == []
            detail = await owner.get(conv(cid))
            assert detail["notes"] == []

            # The same calls with the token work (the token, not something else, was
            # missing): a note is saved.
            saved = await owner.post(conv(cid, "/notes"), {"text": "有令牌"})
            assert saved["note"]["text"] == "有令牌"
            assert notes_of(service, handoff.id) == ["有令牌"]
        finally:
            await close_if_open(owner, cid)
    assert handoffs_of(service, cid)[-1].state == "closed"


async def test_bad_input_is_refused(service: Service) -> None:
    async with agent_at_desk(service, "sec_input", "安全丙", ["general"]) as agent, \
            web_customer(service) as customer:
        cid = customer.conversation_id
        try:
            await open_handoff(customer)
            await agent.wait("assigned", lambda e: e["conversation"]["id"] == cid)
            handoff = handoffs_of(service, cid)[-1]

            # At most 2000 characters (a note of exactly 2000 is fine).
            for tail in ("/messages", "/notes"):
                status, answer = await agent.call("POST", conv(cid, tail), {"text": "长" * 2001})
                assert status == 400 and "2000" in answer["error"], (tail, status, answer)
            assert (await agent.post(conv(cid, "/notes"), {"text": "备" * 2000}))["note"]
            assert [len(n) for n in notes_of(service, handoff.id)] == [2000]
            assert agent_texts(service, cid) == []

            # Empty text, a body that is not JSON, JSON that is not an object, a status
            # that is none of the three.
            status, answer = await agent.call("POST", conv(cid, "/messages"), {"text": "  "})
            assert status == 400, answer
            cookie = session_cookie(agent)
            for data in ("not json", "{\"text\": ", "\xff\xfe"):
                status, answer, _ = await raw(service, "POST", conv(cid, "/messages"),
                                              cookie=cookie, csrf=agent.csrf,
                                              data=data.encode("latin-1"))
                assert status == 400 and "JSON" in answer["error"], (data, status, answer)
            status, answer, _ = await raw(service, "POST", "/desk/api/status", cookie=cookie,
                                          csrf=agent.csrf, data=b"[1, 2]")
            assert status == 400 and "object" in answer["error"], answer
            status, answer = await agent.call("POST", "/desk/api/status", {"status": "asleep"})
            assert status == 400, answer
            assert (await agent.get("/desk/api/me"))["agent"]["status"] == "online"

            # Unknown conversations: 404, whatever the call.
            unknown = "web:v-no-such-visitor"
            for method, path, body in calls(unknown):
                if "/conversations/" not in path or path.endswith("/assign"):
                    continue
                status, answer = await agent.call(method, path, body)
                assert status == 404, (method, path, status, answer)
            # Transfer to a group that does not exist.
            status, answer = await agent.call("POST", conv(cid, "/transfer"), {"group": "nope"})
            assert status == 400, answer
            assert handoffs_of(service, cid)[-1].state == "with_agent"
        finally:
            await close_if_open(agent, cid)


# --- who sees what ----------------------------------------------------------------------


async def test_agents_see_and_act_only_on_their_own_queues_and_chats(service: Service) -> None:
    add_agent(shop_url(service), "sec_boss", "主管甲", [], role="supervisor")
    async with agent_at_desk(service, "sec_gen", "综合甲", ["general"], capacity=1) as gen, \
            agent_at_desk(service, "sec_bill", "账务甲", ["billing"]) as billing, \
            logged_in(service, "sec_boss", "主管甲", [], role="supervisor") as boss, \
            web_customer(service) as first, web_customer(service) as second:
        assigned, queued = first.conversation_id, second.conversation_id
        try:
            await open_handoff(first)
            await gen.wait("assigned", lambda e: e["conversation"]["id"] == assigned)
            # The only general agent is full: the second one waits in "general".
            await open_handoff(second)
            waiting = await gen.wait("conversation", lambda e: e["conversation"]["id"]
                                     == queued and e["conversation"]["state"] == "queued")
            assert waiting["conversation"]["group"] == "general"
            both = (assigned, queued)

            # The billing agent sees neither: not in the state, not one by one.
            state = await billing.get("/desk/api/state")
            assert not {c["id"] for c in state["conversations"]} & set(both), state
            for cid in both:
                for path in (conv(cid), conv(cid, "/suggestions")):
                    status, answer = await billing.call("GET", path)
                    assert status == 403, (path, status, answer)
                # ... and can do nothing with them.
                for tail, body in (("/messages", {"text": "账务插话"}),
                                   ("/notes", {"text": "账务备注"}),
                                   ("/close", {}), ("/transfer", {"group": "billing"}),
                                   ("/transfer", {"agent": billing.agent["id"]}),
                                   ("/accept", {})):
                    status, answer = await billing.call("POST", conv(cid, tail), body)
                    assert status == 403, (cid, tail, status, answer)
            # An agent does not assign, not even to themself.
            status, answer = await gen.call("POST", conv(queued, "/assign"),
                                            {"agent": gen.agent["id"]})
            assert status == 403, answer

            # Nothing changed.
            now = {c["id"]: c for c in (await boss.get("/desk/api/state"))["conversations"]}
            assert now[assigned]["state"] == "with_agent"
            assert now[assigned]["agent"]["id"] == gen.agent["id"]
            assert now[queued]["state"] == "queued" and now[queued]["group"] == "general"
            assert now[queued]["agent"] is None and now[queued]["position"] == 1
            for cid in both:
                assert notes_of(service, handoffs_of(service, cid)[-1].id) == []
                assert agent_texts(service, cid) == []
            # The billing agent's live feed never mentioned them either.
            seen = {e.get("conversation_id") or (e.get("conversation") or {}).get("id")
                    for e in billing.events}
            assert not seen & set(both), billing.events

            # A supervisor sees everything ...
            assert set(both) <= set(now)
            for cid in both:
                detail = await boss.get(conv(cid))
                assert detail["conversation"]["id"] == cid
                assert "suggestions" in await boss.get(conv(cid, "/suggestions"))
            # ... assigns the waiting one ...
            answer = await boss.post(conv(queued, "/assign"), {"agent": gen.agent["id"]})
            assert answer["conversation"]["state"] == "with_agent"
            got = await gen.wait("assigned", lambda e: e["conversation"]["id"] == queued)
            assert got["conversation"]["agent"]["id"] == gen.agent["id"]
            assert handoffs_of(service, queued)[-1].agent_id == gen.agent["id"]
            # ... but does not write to a customer in another's chat: only its agent does.
            status, answer = await boss.call("POST", conv(assigned, "/messages"),
                                             {"text": "主管插话"})
            assert status == 403, answer
            assert agent_texts(service, assigned) == []
            sent = await gen.post(conv(assigned, "/messages"), {"text": "综合甲回复"})
            assert sent["delivered"] is True
            assert agent_texts(service, assigned) == ["综合甲回复"]
            # A supervisor may note and close.
            await boss.post(conv(assigned, "/notes"), {"text": "主管备注"})
            for cid in both:
                await boss.post(conv(cid, "/close"))
                handoff = handoffs_of(service, cid)[-1]
                assert (handoff.state, handoff.ended_by) == ("closed", "agent:sec_boss")
        finally:
            for cid in (assigned, queued):
                await close_if_open(boss, cid)


# --- logging in and out -----------------------------------------------------------------


async def test_login_failures_look_alike_and_are_throttled_per_username(
    service: Service,
) -> None:
    add_agent(shop_url(service), "sec_login", "登录甲", ["general"])
    add_agent(shop_url(service), "sec_locked", "登录乙", ["general"])

    client = from_address(service, "127.0.0.21")
    try:
        wrong = await client.call("POST", "/desk/api/login",
                                  {"username": "sec_login", "password": "wrong-password-1"})
        unknown = await client.call("POST", "/desk/api/login",
                                    {"username": "sec_nobody", "password": PASSWORD})
        assert wrong[0] == unknown[0] == 401, (wrong, unknown)
        assert wrong[1] == unknown[1] == {"error": "wrong username or password"}
        # A failure does not stop the right password.
        answer = await client.login("sec_login")
        assert answer["agent"]["username"] == "sec_login"
        await client.post("/desk/api/status", {"status": "offline"})
    finally:
        await client.close()

    # Five wrong passwords for one username, each from another address: the username
    # is locked, whatever the address and even with the right password.
    for n in range(5):
        attacker = from_address(service, f"127.0.0.{31 + n}")
        try:
            status, answer = await attacker.call(
                "POST", "/desk/api/login", {"username": "sec_locked", "password": f"guess-{n}-xx"})
            assert status == 401, (n, status, answer)
        finally:
            await attacker.close()
    owner = from_address(service, "127.0.0.36")
    try:
        status, answer = await owner.call("POST", "/desk/api/login",
                                          {"username": "SEC_locked ", "password": PASSWORD})
        assert status == 429, (status, answer)
        assert isinstance(answer["retry_after"], int) and 0 < answer["retry_after"] <= 15 * 60
        status, answer = await owner.call("POST", "/desk/api/login",
                                          {"username": "sec_locked", "password": PASSWORD})
        assert status == 429, (status, answer)
        assert owner.http.cookie_jar.filter_cookies(
            URL(service.desk_url + "/desk/api/me")).get("desk_session") is None
    finally:
        await owner.close()
    # Another username from those addresses is not affected by sec_locked's lock.
    other = from_address(service, "127.0.0.36")
    try:
        await other.login("sec_login")
        await other.post("/desk/api/status", {"status": "offline"})
    finally:
        await other.close()


async def test_session_cookie_is_http_only_strict_and_logout_ends_it(service: Service) -> None:
    add_agent(shop_url(service), "sec_cookie", "饼干甲", ["general"])
    async with aiohttp.ClientSession() as http, http.post(
        service.desk_url + "/desk/api/login",
        json={"username": "sec_cookie", "password": PASSWORD},
    ) as answer:
        assert answer.status == 200
        login = await answer.json()
        set_cookies = answer.headers.getall("Set-Cookie")
    session = [c for c in set_cookies if c.startswith("desk_session=")]
    assert len(session) == 1, set_cookies
    attributes = {part.strip().split("=", 1)[0].lower(): part.strip().partition("=")[2]
                  for part in session[0].split(";")[1:]}
    assert "httponly" in attributes, session[0]
    assert attributes.get("samesite", "").lower() == "strict", session[0]
    assert attributes.get("path") == "/desk", session[0]
    token = session[0].split(";")[0].split("=", 1)[1]
    assert len(token) >= 32 and token not in json.dumps(login)

    # The cookie is the session: with it, /me and the socket work.
    status, me, _ = await raw(service, "GET", "/desk/api/me", cookie=token)
    assert status == 200 and me["agent"]["username"] == "sec_cookie"
    assert me["csrf"] == login["csrf"]
    await assert_socket_answers(service, token)

    status, _, _ = await raw(service, "POST", "/desk/api/status", cookie=token,
                             csrf=login["csrf"], body={"status": "offline"})
    assert status == 200
    status, answer, headers = await raw(service, "POST", "/desk/api/logout", cookie=token,
                                        csrf=login["csrf"], body={})
    assert status == 200, answer
    # The old cookie is worth nothing now, on the API and on the socket.
    for method, path, body in calls("web:v-anything"):
        status, answer, _ = await raw(service, method, path, cookie=token,
                                      csrf=login["csrf"], body=body)
        assert status == 401, (method, path, status, answer)
    assert await socket_close_code(service, token, service.desk_url) == 4401


async def test_socket_wants_a_session_and_the_desks_own_origin(service: Service) -> None:
    async with logged_in(service, "sec_socket", "插座甲", ["general"]) as agent:
        cookie = session_cookie(agent)
        assert await socket_close_code(service, None, service.desk_url) == 4401
        assert await socket_close_code(service, "not-a-session", None) == 4401
        # Another site's page would send the agent's cookie along: refused.
        for origin in ("http://evil.example", "http://127.0.0.1.evil.example",
                       "http://127.0.0.1:1"):
            assert await socket_close_code(service, cookie, origin) == 4403, origin
        # The desk's own origin: live (answers a ping).
        await assert_socket_answers(service, cookie)


async def test_console_page_forbids_inline_script_and_framing(service: Service) -> None:
    async with aiohttp.ClientSession() as http, http.get(service.desk_url + "/desk/") as page:
        assert page.status == 200
        html = await page.text()
        headers = page.headers
    assert "data-testid=\"login-form\"" in html
    policy = {d.strip().split(" ", 1)[0]: d.strip().split(" ")[1:]
              for d in headers["Content-Security-Policy"].split(";") if d.strip()}
    scripts = policy.get("script-src") or policy.get("default-src")
    assert scripts == ["'self'"], headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
    assert "'unsafe-eval'" not in headers["Content-Security-Policy"]
    assert policy.get("frame-ancestors") == ["'none'"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    # The API's answers carry them too, and are never cached.
    status, _, api_headers = await raw(service, "GET", "/desk/api/me")
    assert status == 401
    assert api_headers["X-Frame-Options"] == "DENY"
    assert api_headers["Cache-Control"] == "no-store"
