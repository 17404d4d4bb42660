"""The agent desk: a Sanic app serving the console (/desk/), its JSON API
(/desk/api/, see API.md) and one WebSocket per agent (/desk/ws).

Views are thin: they check who is asking and what they may do, then call the
lifecycle (bot.desk.handoffs). Background tasks per instance: the event-pipe
consumer (customers' messages to agents), the live relay (feeds to the
consoles connected here), the clock (routing, queue positions, time-outs,
agents gone past their grace period) and the check that the agents connected
here are still active in SQL. Several instances share Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any, Dict, List, Tuple
from urllib.parse import unquote, urlparse

from redis import asyncio as aioredis
from sanic import Request, Sanic, response
from sanic.response import HTTPResponse

from bot import heap
from bot.desk import agents as people
from bot.desk import auth, records
from bot.desk import handoffs as ho
from bot.desk import state as st
from bot.desk.config import desk_config
from bot.desk.consumer import DeskConsumer
from bot.desk.phrases import phrases
from bot.desk.rasa import RasaClient, RasaError
from bot.desk.state import AgentState, Chat
from bot.events.stream import StreamConsumer
from bot.settings import get_settings
from bot.shop import database
from connectors.push import CUSTOMER_TYPING

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_TEXT = 2000
TICK_SECONDS = 1.0
STATUSES = ("online", "away", "offline")
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Customer text is data, never code: no inline script, nothing from elsewhere.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
}


def error(status: int, message: str, **extra: Any) -> HTTPResponse:
    return response.json({"error": message, **extra}, status=status)


def agent_view(agent: AgentState, load: int = 0) -> Dict[str, Any]:
    return {"id": agent.id, "username": agent.username, "name": agent.name,
            "role": agent.role, "groups": agent.groups, "capacity": agent.capacity,
            "status": agent.status, "load": load}


def can_see(agent: AgentState, chat: Chat) -> bool:
    return (agent.supervises or chat.agent_id == agent.id
            or (chat.state == "queued" and chat.group in agent.groups))


def can_act(agent: AgentState, chat: Chat) -> bool:
    return agent.supervises or chat.agent_id == agent.id


def create_app(name: str = "desk") -> Sanic:
    # Our own logging (bot.desk.__main__): Sanic's would silence loggers made before it.
    app = Sanic(name, configure_logging=False)
    app.config.WEBSOCKET_PING_INTERVAL = 20
    app.config.WEBSOCKET_PING_TIMEOUT = 20
    app.config.REQUEST_MAX_SIZE = 256 * 1024

    @app.listener("before_server_start")
    async def start(app: Sanic, _loop: Any) -> None:
        from bot.desk.transcript import TranscriptWriter
        from connectors.push import Push, load_channels

        settings = get_settings()
        app.ctx.settings = settings
        app.ctx.redis = aioredis.Redis.from_url(settings.redis_url or "redis://127.0.0.1:6379")
        app.ctx.database_url = settings.database_url
        rasa_url = os.environ.get("BOT_RASA_URL") or f"http://127.0.0.1:{settings.rasa_port}"
        app.ctx.rasa = RasaClient(rasa_url, settings.api_token or "")
        # Delivery only: the desk writes what it delivered into the transcript itself.
        push = Push(load_channels(settings.root / "credentials.yml"))
        transcript = TranscriptWriter(settings.tracker_db_url, app.ctx.redis)
        app.ctx.desk = ho.Desk(app.ctx.redis, settings.database_url, desk_config(), push,
                               app.ctx.rasa, phrases(), transcript)
        # agent id -> queues of the consoles connected to this instance
        app.ctx.live = {}
        # agent id -> those consoles' sockets (closed when SQL disables the agent)
        app.ctx.sockets = {}
        # agent id -> when SQL last said they are active
        app.ctx.active_checked = {}
        app.ctx.stopping = asyncio.Event()
        await sync_agents(app)
        rebuilt = await app.ctx.desk.reconcile()
        if rebuilt:
            logger.warning("desk: %s open handoffs were back in their queues from SQL", rebuilt)
        instance = os.environ.get("DESK_INSTANCE") or f"{socket.gethostname()}-{settings.desk_port}"
        consumer = StreamConsumer(app.ctx.redis, "desk", instance)
        app.ctx.tasks = [
            asyncio.create_task(DeskConsumer(app.ctx.desk, consumer).run(app.ctx.stopping)),
            asyncio.create_task(relay(app)),
            asyncio.create_task(clock(app)),
            asyncio.create_task(watch_active(app)),
        ]
        heap.freeze()  # the desk imports Rasa's stores: a large heap, long-lived

    @app.listener("after_server_stop")
    async def stop(app: Sanic, _loop: Any) -> None:
        app.ctx.stopping.set()
        for task in app.ctx.tasks:
            task.cancel()
        await asyncio.gather(*app.ctx.tasks, return_exceptions=True)
        await app.ctx.rasa.close()
        await app.ctx.redis.close()

    @app.middleware("response")
    async def headers(request: Request, resp: HTTPResponse) -> None:
        for key, value in _SECURITY_HEADERS.items():
            resp.headers.setdefault(key, value)
        if request.path.startswith("/desk/api/"):
            resp.headers["Cache-Control"] = "no-store"

    # --- who is asking ---

    async def current(request: Request, write: bool = False) -> Tuple[auth.Session, AgentState]:
        session = await auth.get_session(app.ctx.redis, request.cookies.get(auth.COOKIE))
        if session is None:
            raise Problem(401, "please log in")
        if write and not auth.csrf_ok(session, request.headers.get("x-csrf-token")):
            raise Problem(403, "missing or wrong X-CSRF-Token")
        agent = await st.get_agent(app.ctx.redis, session.agent_id)
        if agent is None or not await _still_active(app, session.agent_id):
            agent = await register(app, session.agent_id)
        if agent is None:  # disabled meanwhile (`bot agents disable`)
            await auth.end_session(app.ctx.redis, session.token)
            raise Problem(401, "please log in")
        return session, agent

    def body(request: Request) -> Dict[str, Any]:
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise Problem(400, "the body must be JSON") from None
        if not isinstance(data, dict):
            raise Problem(400, "the body must be a JSON object")
        return data

    def text_of(data: Dict[str, Any]) -> str:
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise Problem(400, "text is required")
        if len(text) > MAX_TEXT:
            raise Problem(400, f"at most {MAX_TEXT} characters")
        return text.strip()

    async def chat_for(conversation_id: str, agent: AgentState, act: bool = False) -> Chat:
        chat = await st.get_chat(app.ctx.redis, unquote(conversation_id))
        if chat is None:
            raise Problem(404, "no open handoff for this conversation")
        if not can_see(agent, chat) or (act and not can_act(agent, chat)):
            raise Problem(403, "not your conversation")
        return chat

    @app.exception(Problem)
    async def problem(request: Request, exc: Problem) -> HTTPResponse:
        return error(exc.status, str(exc))

    @app.exception(ho.DeskError)
    async def desk_error(request: Request, exc: ho.DeskError) -> HTTPResponse:
        if isinstance(exc, ho.Unreachable):
            return error(502, str(exc), code=exc.code, ticket_id=exc.ticket_id)
        return error(exc.status, str(exc))

    # --- pages ---

    @app.get("/desk/health")
    async def health(request: Request) -> HTTPResponse:
        return response.json({"ok": True})

    @app.get("/desk/")
    async def console(request: Request) -> HTTPResponse:
        return await response.file(STATIC / "console.html",
                                   headers={"Cache-Control": "no-cache"})

    app.static("/desk/static", str(STATIC), name="desk_static")

    # --- sessions ---

    @app.post("/desk/api/login")
    async def login(request: Request) -> HTTPResponse:
        data = body(request)
        username, password = data.get("username"), data.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise Problem(400, "username and password are required")
        address = request.remote_addr or request.ip or "?"
        wait = await auth.login_wait(app.ctx.redis, username, address)
        if wait:
            resp = error(429, "too many attempts; try again later", retry_after=wait)
            resp.headers["Retry-After"] = str(wait)
            return resp

        def check() -> AgentState | None:
            with database.session(app.ctx.database_url) as session:
                found = people.authenticate(session, username, password)
                return None if found is None else _agent_state(found)

        agent = await records.in_thread(check)
        if agent is None:
            await auth.login_failed(app.ctx.redis, username, address)
            await app.ctx.desk.audit(None, "desk.login_failed", None,
                                     username=username[:40], address=address)
            return error(401, "wrong username or password")
        await auth.login_succeeded(app.ctx.redis, username)
        await st.register_agent(app.ctx.redis, agent, app.ctx.desk.config.group_names)
        if agent.status == "offline":
            agent.status = "online"
            # A console of theirs still open from before may have missed queue events.
            await st.renew(app.ctx.redis, agent.id, status="online")
        session = await auth.create_session(app.ctx.redis, agent.id)
        await app.ctx.desk.audit(agent, "desk.login", None, address=address)
        resp = response.json({"agent": agent_view(agent), "csrf": session.csrf})
        resp.cookies[auth.COOKIE] = session.token
        cookie = resp.cookies[auth.COOKIE]
        cookie["httponly"] = True
        cookie["samesite"] = "Strict"
        cookie["path"] = "/desk"
        cookie["max-age"] = auth.SESSION_SECONDS
        if request.scheme == "https" or os.environ.get("DESK_SECURE_COOKIE") == "1":
            cookie["secure"] = True
        return resp

    @app.post("/desk/api/logout")
    async def logout(request: Request) -> HTTPResponse:
        session, agent = await current(request, write=True)
        await auth.end_session(app.ctx.redis, session.token)
        await app.ctx.desk.audit(agent, "desk.logout", None)
        resp = response.json({"ok": True})
        del resp.cookies[auth.COOKIE]
        return resp

    @app.get("/desk/api/me")
    async def me(request: Request) -> HTTPResponse:
        session, agent = await current(request)
        load = (await st.loads(app.ctx.redis, [agent.id])).get(agent.id, 0)
        return response.json({"agent": agent_view(agent, load), "csrf": session.csrf})

    @app.post("/desk/api/status")
    async def status(request: Request) -> HTTPResponse:
        _, agent = await current(request, write=True)
        wanted = body(request).get("status")
        if wanted not in STATUSES:
            raise Problem(400, f"status: one of {', '.join(STATUSES)}")
        # Back from offline: their consoles reload what they were not told meanwhile.
        await st.renew(app.ctx.redis, agent.id, status=wanted)
        agent.status = wanted
        await app.ctx.desk.audit(agent, "desk.status", None, status=wanted)
        await st.notify(app.ctx.redis, await st.supervisor_ids(app.ctx.redis),
                        {"type": "agent", "agent": agent_view(agent)})
        if wanted == "online":
            await app.ctx.desk.route()
        return response.json({"agent": agent_view(agent)})

    # --- what the agent sees ---

    @app.get("/desk/api/state")
    async def state(request: Request) -> HTTPResponse:
        _, agent = await current(request)
        r = app.ctx.redis
        # Following the feed from now (queue events included), then the feed
        # position: anything after it is replayed over the socket.
        await st.renew(r, agent.id, synced=True)
        last = await st.last_feed_id(r, agent.id)
        chats = [c for c in await st.all_chats(r) if can_see(agent, c)]
        positions: Dict[str, int] = {}
        for group in {c.group for c in chats if c.state == "queued"}:
            for index, cid in enumerate(await st.queue(r, group), start=1):
                positions[cid] = index
        conversations = [await ho.summary(r, c, positions.get(c.conversation_id))
                         for c in chats]
        everyone = await _all_agents(app)
        load = await st.loads(r, [a.id for a in everyone])
        return response.json({
            "last_event_id": last,
            "conversations": conversations,
            "agents": [agent_view(a, load.get(a.id, 0)) for a in everyone],
            "groups": app.ctx.desk.config.group_names,
            "me": agent_view(agent, load.get(agent.id, 0)),
        })

    @app.get("/desk/api/conversations/<conversation_id:str>")
    async def conversation(request: Request, conversation_id: str) -> HTTPResponse:
        _, agent = await current(request)
        cid = unquote(conversation_id)
        chat = await st.get_chat(app.ctx.redis, cid)
        if chat is not None and not can_see(agent, chat):
            raise Problem(403, "not your conversation")
        if chat is None and not await _may_read_closed(app, agent, cid):
            raise Problem(404, "no conversation you may see")
        try:
            tracker = await app.ctx.rasa.tracker(cid)
        except RasaError as failure:
            logger.warning("desk: transcript of %s: %s", cid, failure)
            raise Problem(503, "the transcript is not available right now") from None
        customer_id = chat.customer_id if chat else await _customer_of(app, cid)
        url = app.ctx.database_url
        profile = await records.in_thread(lambda: records.customer_profile(url, customer_id))
        previous = await records.in_thread(
            lambda: records.previous_handoffs(url, cid, customer_id))
        ids = [p["handoff_id"] for p in previous if p["id"] == cid][:5]
        # The customer's other channels, also where no person was involved.
        listed = {p["id"] for p in previous} | {cid}
        others = await records.in_thread(
            lambda: records.customer_conversations(url, customer_id))
        previous += [{"handoff_id": None, "id": other, "channel": other.split(":", 1)[0],
                      "requested_at": None, "ended_at": None, "state": "bot",
                      "reason": None, "group": None}
                     for other in others if other not in listed]
        notes = await records.in_thread(lambda: records.notes(url, ids))
        await app.ctx.desk.audit(agent, "desk.view", chat, conversation=cid)
        slots = {k: v for k, v in (tracker.get("slots") or {}).items()
                 if v not in (None, [], {}) and k != "session_started_metadata"}
        return response.json({
            "conversation": await ho.summary(app.ctx.redis, chat) if chat else None,
            "transcript": ho.transcript(tracker.get("events") or [])[-500:],
            "slots": slots,
            "profile": profile,
            "previous": [p for p in previous if not chat or p["handoff_id"] != chat.handoff_id],
            "notes": notes,
            "reason": chat.reason if chat else (previous[0]["reason"] if previous else None),
            "paused": bool(tracker.get("paused")),
        })

    @app.get("/desk/api/conversations/<conversation_id:str>/suggestions")
    async def suggestions(request: Request, conversation_id: str) -> HTTPResponse:
        _, agent = await current(request)
        chat = await chat_for(conversation_id, agent)
        if not chat.last_text:
            return response.json({"suggestions": []})
        try:
            parse = await app.ctx.rasa.parse(chat.last_text)
        except RasaError:
            return response.json({"suggestions": []})
        ranking = ((parse.get("response_selector") or {}).get("faq") or {}).get("ranking") or []
        found = []
        for item in ranking[:5]:
            key = item.get("intent_response_key") or ""
            name = f"utter_{key}"
            if not key or not app.ctx.desk.phrases.has(name):
                continue
            found.append({"key": key, "confidence": round(float(item.get("confidence", 0)), 3),
                          "text": app.ctx.desk.phrases.text(name, chat.language)})
            if len(found) == 3:
                break
        return response.json({"suggestions": found})

    @app.get("/desk/api/canned")
    async def canned(request: Request) -> HTTPResponse:
        _, agent = await current(request)
        return response.json({"canned": [
            {"shortcut": c.shortcut, "zh": c.zh.replace("{agent}", agent.name),
             "en": c.en.replace("{agent}", agent.name)}
            for c in app.ctx.desk.config.canned
        ]})

    # --- what the agent does ---

    @app.post("/desk/api/conversations/<conversation_id:str>/accept")
    async def accept(request: Request, conversation_id: str) -> HTTPResponse:
        _, agent = await current(request, write=True)
        chat = await chat_for(conversation_id, agent)
        chat = await app.ctx.desk.accept(chat.conversation_id, agent)
        return response.json({"conversation": await ho.summary(app.ctx.redis, chat)})

    @app.post("/desk/api/conversations/<conversation_id:str>/messages")
    async def reply(request: Request, conversation_id: str) -> HTTPResponse:
        _, agent = await current(request, write=True)
        text = text_of(body(request))
        chat = await chat_for(conversation_id, agent)
        if chat.agent_id != agent.id:
            raise Problem(403, "only the agent who has the conversation writes to the customer")
        line = await app.ctx.desk.reply(chat, agent, text)
        return response.json({"delivered": True, "line": line})

    @app.post("/desk/api/conversations/<conversation_id:str>/notes")
    async def note(request: Request, conversation_id: str) -> HTTPResponse:
        _, agent = await current(request, write=True)
        text = text_of(body(request))
        chat = await chat_for(conversation_id, agent, act=True)
        url = app.ctx.database_url
        saved = await records.in_thread(
            lambda: records.add_note(url, chat.handoff_id, agent.id, text))
        await app.ctx.desk.audit(agent, "desk.note", chat)
        await app.ctx.desk.tell(chat, {"type": "note", "conversation_id": chat.conversation_id,
                                       "note": saved})
        return response.json({"note": saved})

    @app.post("/desk/api/conversations/<conversation_id:str>/transfer")
    async def transfer(request: Request, conversation_id: str) -> HTTPResponse:
        _, agent = await current(request, write=True)
        data = body(request)
        chat = await chat_for(conversation_id, agent, act=True)
        if data.get("agent") is not None:
            target = await _target_agent(app, data.get("agent"))
            chat = await app.ctx.desk.assign(chat.conversation_id, target, agent)
        elif isinstance(data.get("group"), str):
            chat = await app.ctx.desk.transfer_to_group(chat.conversation_id, data["group"],
                                                        agent)
        else:
            raise Problem(400, "transfer to an agent (id) or a group (name)")
        current_chat = await st.get_chat(app.ctx.redis, chat.conversation_id) or chat
        return response.json({"conversation": await ho.summary(app.ctx.redis, current_chat)})

    @app.post("/desk/api/conversations/<conversation_id:str>/close")
    async def close(request: Request, conversation_id: str) -> HTTPResponse:
        _, agent = await current(request, write=True)
        chat = await chat_for(conversation_id, agent, act=True)
        await app.ctx.desk.close(chat.conversation_id, agent)
        return response.json({"closed": True})

    @app.post("/desk/api/conversations/<conversation_id:str>/assign")
    async def assign(request: Request, conversation_id: str) -> HTTPResponse:
        _, agent = await current(request, write=True)
        if not agent.supervises:
            raise Problem(403, "supervisors assign conversations")
        chat = await chat_for(conversation_id, agent)
        target = await _target_agent(app, body(request).get("agent"))
        chat = await app.ctx.desk.assign(chat.conversation_id, target, agent)
        return response.json({"conversation": await ho.summary(app.ctx.redis, chat)})

    # --- live ---

    @app.websocket("/desk/ws")
    async def live(request: Request, ws: Any) -> None:
        session = await auth.get_session(app.ctx.redis, request.cookies.get(auth.COOKIE))
        origin = request.headers.get("origin")
        if session is None or (origin and urlparse(origin).netloc != request.host):
            # Not logged in, or another site's page using the agent's cookie.
            await ws.close(code=4401 if session is None else 4403)
            return
        agent_id = session.agent_id
        r = app.ctx.redis
        inbox: asyncio.Queue[Tuple[str, str]] = asyncio.Queue()
        app.ctx.live.setdefault(agent_id, set()).add(inbox)
        app.ctx.sockets.setdefault(agent_id, set()).add(ws)
        # Back after a while: a resync goes into the feed before it is read, so a
        # console from before reloads what it was not told meanwhile (one without
        # a position has nothing from before: not for it).
        returned = await st.renew(r, agent_id, seen=True)
        sent = request.args.get("last_event_id") or ""
        presence = asyncio.create_task(
            _present(app, ws, session.token, agent_id, app.ctx.desk.config.grace_seconds))
        try:
            if sent:
                backlog = await st.feed_since(r, agent_id, sent)
                if backlog is None:
                    await ws.send(json.dumps({"type": "resync"}))
                    sent = await st.last_feed_id(r, agent_id)
                else:
                    for event_id, event in backlog:
                        await ws.send(json.dumps({"id": event_id, **event},
                                                 ensure_ascii=False))
                        sent = event_id
            sender = asyncio.create_task(
                _send_live(ws, inbox, sent, skip=returned if not sent else None))
            try:
                while True:
                    message = await ws.recv()
                    if message is None:
                        continue
                    await st.touch(r, agent_id)
                    if '"ping"' in str(message)[:40]:
                        await ws.send('{"type":"pong"}')
            finally:
                sender.cancel()
        finally:
            presence.cancel()
            app.ctx.live.get(agent_id, set()).discard(inbox)
            app.ctx.sockets.get(agent_id, set()).discard(ws)

    return app


class Problem(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _agent_state(agent: Any) -> AgentState:
    return AgentState(id=agent.id, username=agent.username, name=agent.display_name,
                      role=agent.role, groups=list(agent.groups or []),
                      capacity=agent.capacity)


ACTIVE_CHECK_SECONDS = 10.0
# Connected agents are checked a little more often than a check lasts, so their
# requests never need one of their own.
WATCH_SECONDS = ACTIVE_CHECK_SECONDS * 0.8


async def _still_active(app: Sanic, agent_id: int) -> bool:
    """Whether SQL still has the agent active (checked every few seconds), so a
    `bot agents disable` ends their sessions on every instance. Agents with a
    console here are checked all at once (`watch_active`): no query of their own."""
    checked = app.ctx.active_checked.get(agent_id)
    now = st.now()
    if checked is not None and now - checked < ACTIVE_CHECK_SECONDS:
        return True
    found = await records.in_thread(lambda: records.agent_by_id(app.ctx.database_url, agent_id))
    if found is None or not found.active:
        app.ctx.active_checked.pop(agent_id, None)
        return False
    app.ctx.active_checked[agent_id] = now
    return True


async def watch_active(app: Sanic) -> None:
    """Every few seconds, whether the agents with a console connected here are
    still active in SQL: one query for all of them (`check_connected`)."""
    while not app.ctx.stopping.is_set():
        await asyncio.sleep(WATCH_SECONDS)
        try:
            await check_connected(app)
        except asyncio.CancelledError:
            raise
        except Exception:  # SQL away for a moment: the next round checks again
            logger.exception("desk: checking agents still active failed")


async def check_connected(app: Sanic) -> None:
    """The sockets of agents disabled meanwhile close (4401: the console then asks
    them to log in, which fails); the others' requests need no check of their own."""
    connected = [a for a, socks in app.ctx.sockets.items() if socks]
    if not connected:
        return
    checked = st.now()
    url = app.ctx.database_url
    active = await records.in_thread(lambda: records.active_agent_ids(url, connected))
    for agent_id in connected:
        if agent_id in active:
            app.ctx.active_checked[agent_id] = checked
            continue
        app.ctx.active_checked.pop(agent_id, None)
        for ws in list(app.ctx.sockets.get(agent_id, ())):
            with contextlib.suppress(Exception):
                await ws.close(code=4401)


async def register(app: Sanic, agent_id: int) -> AgentState | None:
    found = await records.in_thread(lambda: records.agent_by_id(app.ctx.database_url, agent_id))
    if found is None or not found.active:
        await st.unregister_agent(app.ctx.redis, agent_id, app.ctx.desk.config.group_names)
        return None
    agent = _agent_state(found)
    await st.register_agent(app.ctx.redis, agent, app.ctx.desk.config.group_names)
    return agent


async def sync_agents(app: Sanic) -> None:
    """Redis's agent registry as SQL has it (new agents, changed groups, disabled)."""
    found = await records.in_thread(lambda: records.active_agents(app.ctx.database_url))
    groups = app.ctx.desk.config.group_names
    active = set()
    for agent in found:
        await st.register_agent(app.ctx.redis, _agent_state(agent), groups)
        active.add(agent.id)
    for key in await app.ctx.redis.keys(st.agent_key("*")):
        agent_id = int(st.as_text(key).rsplit(":", 1)[1])
        if agent_id not in active:
            await st.unregister_agent(app.ctx.redis, agent_id, groups)


async def _all_agents(app: Sanic) -> List[AgentState]:
    keys = await app.ctx.redis.keys(st.agent_key("*"))
    ids = sorted(int(st.as_text(k).rsplit(":", 1)[1]) for k in keys)
    groups = set(app.ctx.desk.config.group_names)
    return [a for a in await st.get_agents(app.ctx.redis, ids)
            if set(a.groups) & groups or a.supervises]


async def _target_agent(app: Sanic, value: Any) -> AgentState:
    try:
        agent_id = int(value)
    except (TypeError, ValueError):
        raise Problem(400, "agent must be an agent's id") from None
    target = await st.get_agent(app.ctx.redis, agent_id)
    if target is None:
        raise Problem(404, "no such agent")
    return target


async def _customer_of(app: Sanic, conversation_id: str) -> int | None:
    url = app.ctx.database_url
    previous = await records.in_thread(
        lambda: records.previous_handoffs(url, conversation_id, None, 1))
    found = None if not previous else await records.in_thread(
        lambda: _handoff_customer(url, previous[0]["handoff_id"]))
    return found or await records.in_thread(
        lambda: records.customer_of_conversation(url, conversation_id))


def _handoff_customer(url: str, handoff_id: int) -> int | None:
    from bot.shop.schema import Handoff

    with database.session(url) as session:
        found = session.get(Handoff, handoff_id)
        return found.customer_id if found else None


async def _may_read_closed(app: Sanic, agent: AgentState, conversation_id: str) -> bool:
    """A conversation without an open handoff: supervisors, the agents who had it,
    and agents who now serve the same customer."""
    if agent.supervises:
        return True
    url = app.ctx.database_url
    previous = await records.in_thread(
        lambda: records.previous_handoffs(url, conversation_id, None, 50))
    if not previous:
        return await _same_customer_as_mine(app, agent, conversation_id)
    from bot.shop.schema import Handoff

    def had_it() -> Tuple[bool, int | None]:
        with database.session(url) as session:
            rows = [session.get(Handoff, p["handoff_id"]) for p in previous]
            return (any(h is not None and h.agent_id == agent.id for h in rows),
                    next((h.customer_id for h in rows if h is not None and h.customer_id),
                         None))

    mine, customer_id = await records.in_thread(had_it)
    if mine:
        return True
    if customer_id:
        for chat in await st.get_chats(app.ctx.redis,
                                       await st.agent_chats(app.ctx.redis, agent.id)):
            if chat.customer_id == customer_id:
                return True
    return False


async def _same_customer_as_mine(app: Sanic, agent: AgentState, conversation_id: str) -> bool:
    """Whether the conversation is another channel of a customer the agent serves now."""
    url = app.ctx.database_url
    for chat in await st.get_chats(app.ctx.redis, await st.agent_chats(app.ctx.redis, agent.id)):
        if chat.customer_id and conversation_id in await records.in_thread(
            lambda c=chat: records.customer_conversations(url, c.customer_id)
        ):
            return True
    return False


async def _present(app: Sanic, ws: Any, token: str, agent_id: int, grace: float) -> None:
    """While the socket is open the agent is there (a background tab pings slowly):
    touched well within the grace period, or an open console would count as gone.
    A session that ended (logout) closes the socket; an agent disabled in SQL is
    `watch_active`'s."""
    r = app.ctx.redis
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            await asyncio.sleep(max(0.5, min(15.0, grace / 4)))
            if await auth.get_session(r, token) is None:
                await ws.close(code=4401)
                return
            await st.touch(r, agent_id)


async def _send_live(ws: Any, inbox: asyncio.Queue[Tuple[str, str]], sent: str,
                     skip: str | None = None) -> None:
    last = st.split_id(sent) if sent else (0, 0)
    while True:
        event_id, body = await inbox.get()
        if not event_id:  # a passing hint (typing): not in the feed, no id
            await ws.send(body)
            continue
        if event_id == skip:
            continue
        position = st.split_id(event_id)
        if position <= last:
            continue  # already sent from the feed
        last = position
        await ws.send('{"id":"' + event_id + '",' + body[1:])


async def relay(app: Sanic) -> None:
    """Feed announcements (pub/sub) to the consoles connected to this instance."""
    while not app.ctx.stopping.is_set():
        pubsub = app.ctx.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(st.LIVE, CUSTOMER_TYPING)
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if st.as_text(message["channel"]) == CUSTOMER_TYPING:
                    await _typing(app, st.as_text(message["data"]))
                    continue
                agent_id, event_id, body = st.parse_announcement(st.as_text(message["data"]))
                for inbox in app.ctx.live.get(agent_id, ()):
                    inbox.put_nowait((event_id, body))
        except asyncio.CancelledError:
            raise
        except Exception:  # Redis went away: consoles catch up from their feeds later
            logger.exception("desk: live relay lost Redis; retrying")
            await asyncio.sleep(1)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.close()


async def _typing(app: Sanic, conversation_id: str) -> None:
    """A customer types: the consoles here of the agent who has the conversation."""
    if not any(app.ctx.live.values()):
        return
    agent = await app.ctx.redis.hget(st.chat_key(conversation_id), "agent_id")
    agent_id = int(st.as_text(agent)) if agent else 0
    body = json.dumps({"type": "typing", "conversation_id": conversation_id},
                      ensure_ascii=False)
    for inbox in app.ctx.live.get(agent_id, ()):
        inbox.put_nowait(("", body))


async def clock(app: Sanic) -> None:
    """Routing, queue positions, time-outs and grace periods, about every second.
    Several instances may run it; the lock makes their changes one at a time."""
    while not app.ctx.stopping.is_set():
        try:
            await app.ctx.desk.route()
            await app.ctx.desk.tick()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("desk: clock tick failed")
        await asyncio.sleep(TICK_SECONDS)
