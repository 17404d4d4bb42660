"""Handoff end to end on the other channels, with the real processes (`bot run`:
Rasa, actions, desk, embedded Redis, SQLite) and only WeChat's API servers faked:

- a WeChat follower (signed, in safe mode encrypted, webhook requests) reaches a
  person, talks, is asked on WeChat whether it was solved and for a score
  (numbered options, each question once) and rates the service by number;
- a follower outside WeChat's 48-hour window: the agent's reply is refused
  (45015), the conversation becomes a ticket and the bot has it again;
- an app customer (JWT, REST + WebSocket): replies on the socket, and while the
  app is offline in the outbox with a push notification; the survey and rating;
- a transfer from one agent to another;
- an agent whose console goes away: after the grace period the chat goes back
  to the front of the queue and another agent gets it.

Each test leaves no agent online and no handoff open (the service is shared).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Callable

import pytest
import pytest_asyncio
import redis

from bot.shop import database
from bot.shop.schema import Ticket
from tests.app_client import (
    AppSocket,
    app_token,
    expected_signature,
    new_customer,
    poll,
    say,
)
from tests.conftest import WECHAT_AES_KEY, WECHAT_TOKEN, Service
from tests.desk_client import DeskClient
from tests.fake_wechat import FakeWeChatAPI, WeChatCaller, message_xml, new_openid
from tests.http_recorder import Recorder
from tests.test_desk_handoff import agent_at_desk, handoffs_of, ratings_of, shop_url

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

WEBHOOK = "/webhooks/wechat/webhook"
WAIT = 60.0  # a bot turn, a desk tick, a delivery: generous on a loaded machine
GRACE_SECONDS = 4  # tests/data/desk.yml, which the test service reads


# --- waiting -------------------------------------------------------------------------------


async def until(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """The condition's first truthy value (polled); fails naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def event(agent: DeskClient, kind: str,
                where: Callable[[dict[str, Any]], bool] = lambda _: True) -> dict[str, Any]:
    """The first event of `kind` (matching `where`) the agent's socket received,
    whenever it came (unlike DeskClient.wait, nothing is consumed or skipped)."""

    def found() -> dict[str, Any] | None:
        return next((e for e in agent.events if e.get("type") == kind and where(e)), None)

    return await until(found, f"a {kind!r} event for {agent.agent.get('username')}")


def events_of(agent: DeskClient, kind: str, conversation_id: str) -> list[dict[str, Any]]:
    def about(e: dict[str, Any]) -> bool:
        named = (e.get("conversation_id"), (e.get("conversation") or {}).get("id"))
        return conversation_id in named

    return [e for e in agent.events if e.get("type") == kind and about(e)]


# --- a WeChat follower ---------------------------------------------------------------------


class Follower:
    """A WeChat follower as WeChat's servers present them: signed (in safe mode
    encrypted) XML POSTs to the webhook; what the bot or an agent sends outside a
    passive reply is what the fake API's customer-service endpoint received."""

    def __init__(self, service: Service, api: FakeWeChatAPI, safe: bool = False) -> None:
        self.caller = WeChatCaller(f"{service.url}{WEBHOOK}", WECHAT_TOKEN, WECHAT_AES_KEY)
        self.api = api
        self.safe = safe
        self.openid = new_openid()
        self.conversation_id = f"wechat:{self.openid}"

    def _post(self, text: str) -> Any:
        answer = self.caller.post(message_xml(self.openid, "text", Content=text), safe=self.safe)
        assert answer.status == 200, answer.body
        return answer

    async def ask(self, text: str) -> str:
        """The bot's answer: the passive reply, or (a slow turn) through the API."""
        seen = len(self.api.texts_to(self.openid))
        answer = await asyncio.to_thread(self._post, text)
        if answer.reply is not None:
            return str(answer.reply)
        assert answer.is_success, answer.body
        texts = await until(lambda: self.api.texts_to(self.openid)[seen:],
                            f"the bot's answer to {text!r}")
        return "\n".join(texts)

    async def send(self, text: str) -> None:
        """A message while a person has the chat: received, no reply from the bot."""
        answer = await asyncio.to_thread(self._post, text)
        assert answer.is_success, (answer.body, answer.reply)

    def texts(self) -> list[str]:
        return self.api.texts_to(self.openid)

    async def receives(self, containing: str) -> str:
        """The first customer-service message to this follower that contains `containing`."""
        return str(await until(
            lambda: next((t for t in self.texts() if containing in t), None),
            f"a customer-service message with {containing!r}"))


# --- an app customer -----------------------------------------------------------------------


class AppCustomer:
    """A logged-in app customer: REST to send, the WebSocket to receive (every
    frame kept, so a later wait can find an earlier one)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.id = new_customer()
        self.conversation_id = f"app:{self.id}"
        self.socket: AppSocket | None = None
        self.frames: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, since: str | None = None) -> None:
        self.socket = await AppSocket.open(self.service.url, app_token(self.id), since=since)
        self._reader = asyncio.create_task(self._read(self.socket))

    async def _read(self, socket: AppSocket) -> None:
        try:
            while True:
                frame = await socket.next_frame(timeout=3600)
                if frame.get("type") == "message":
                    self.frames.append(frame)
        except Exception:  # closed
            return

    async def disconnect(self) -> None:
        if self.socket is not None:
            await self.socket.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        self.socket, self._reader = None, None

    async def say(self, text: str) -> dict[str, Any]:
        return await say(self.service.url, self.id, text)

    def texts(self) -> list[str]:
        return [f["message"].get("text") or "" for f in self.frames]

    async def receives(self, containing: str) -> dict[str, Any]:
        """The first frame on the socket whose text contains `containing`."""
        return dict(await until(
            lambda: next((f for f in self.frames
                          if containing in (f["message"].get("text") or "")), None),
            f"an app frame with {containing!r}"))


def embedded_redis(service: Service) -> redis.Redis:
    return redis.Redis.from_url((service.var_dir / "run" / "redis_url").read_text().strip())


def app_online(service: Service, customer: str) -> bool:
    """What the outbox reads before deciding on a push notification."""
    client = embedded_redis(service)
    try:
        return bool(client.zcount(f"app:presence:{customer}", time.time(), "+inf"))
    finally:
        client.close()


# --- the service ---------------------------------------------------------------------------


def tracker_of(service: Service, conversation_id: str) -> dict[str, Any]:
    return dict(service.get(f"/conversations/{conversation_id}/tracker"))


def open_conversations(service: Service) -> list[str]:
    """Conversations with a handoff the desk still holds (queued or with an agent)."""
    client = embedded_redis(service)
    try:
        return sorted(m.decode() for m in client.smembers("desk:chats"))
    finally:
        client.close()


@pytest_asyncio.fixture(autouse=True)
async def leaves_the_desk_clean(service: Service) -> AsyncIterator[None]:
    """A test that fails half-way must not leave a handoff open for the tests after
    it (the service is shared): a supervisor closes what it left, and it fails."""
    before = set(open_conversations(service))
    yield
    left = [c for c in open_conversations(service) if c not in before]
    if not left:
        return
    async with agent_at_desk(service, "channels_cleanup", "清场", [], role="supervisor") as boss:
        for cid in left:
            await boss.call("POST", DeskClient.conv(cid, "/assign"), {"agent": boss.agent["id"]})
            await boss.call("POST", DeskClient.conv(cid, "/close"))
    raise AssertionError(f"the test left handoffs open (closed now): {left}")


# --- 1. WeChat, end to end -----------------------------------------------------------------


async def test_wechat_follower_reaches_a_person_and_rates_the_service_by_number(
    service: Service, wechat_api: FakeWeChatAPI
) -> None:
    follower = Follower(service, wechat_api, safe=True)
    cid = follower.conversation_id
    async with agent_at_desk(service, "wx_mei", "小梅", ["general"]) as agent:
        answer = await follower.ask("转人工")
        assert "人工" in answer, answer

        assigned = await event(agent, "assigned", lambda e: e["conversation"]["id"] == cid)
        conversation = assigned["conversation"]
        assert (conversation["channel"], conversation["state"]) == ("wechat", "with_agent")
        assert conversation["agent"]["name"] == "小梅" and conversation["language"] == "zh"
        # Told who joined, through the customer-service message API.
        joined = await follower.receives("小梅")
        assert "已接入" in joined

        # The follower writes: WeChat hears "success" (no bot reply), the agent a line.
        await until(lambda: [e for e in tracker_of(service, cid)["events"]
                             if e["event"] == "bot" and "小梅" in (e.get("text") or "")],
                    "the joined line in the transcript")
        await follower.send("我的快递三天没动了")
        line = await event(agent, "line", lambda e: e["conversation_id"] == cid
                           and e["line"]["role"] == "customer")
        assert line["line"]["text"] == "我的快递三天没动了"

        # The agent's reply reaches the follower through WeChat's customer-service API.
        before = len(wechat_api.delivered)
        sent = await agent.post(DeskClient.conv(cid, "/messages"),
                                {"text": "您好，我帮您查一下物流。"})
        assert sent["delivered"] is True
        calls = [m for m in wechat_api.delivered[before:] if m.get("touser") == follower.openid]
        assert calls == [{"touser": follower.openid, "msgtype": "text",
                          "text": {"content": "您好，我帮您查一下物流。"}}]
        # In the transcript after the follower's line: the agent's, naming them; no bot's.
        events = tracker_of(service, cid)["events"]
        said = max(i for i, e in enumerate(events)
                   if e["event"] == "user" and e["text"] == "我的快递三天没动了")
        after = [e for e in events[said:] if e["event"] == "bot"]
        assert [(e["text"], e["metadata"]["agent"]["name"]) for e in after] == [
            ("您好，我帮您查一下物流。", "小梅")]

        # The agent closes: the bot asks, through the API, whether it was solved.
        await agent.post(DeskClient.conv(cid, "/close"))
        removed = await event(agent, "conversation_removed", lambda e: e["conversation_id"] == cid)
        assert removed["why"] == "closed"
        question = await follower.receives("解决了吗")
        assert "1. 解决了\n2. 没解决" in question and "回复数字即可选择" in question, question

        # "1": solved. The score question comes once, its options numbered by score.
        rating_question = await follower.ask("1")
        assert rating_question.count("请为本次服务打个分吧") == 1, rating_question
        assert "请为本次服务打分" not in rating_question, rating_question  # no second question
        options = "1. 非常不满意\n2. 不满意\n3. 一般\n4. 满意\n5. 非常满意"
        assert rating_question.count(options) == 1, rating_question
        assert rating_question.count("回复数字即可选择") == 1, rating_question

        # "5" is five points.
        thanks = await follower.ask("5")
        assert "5 分" in thanks, thanks

    # The "solved?" question reached the follower once, not twice.
    assert len([t for t in follower.texts() if "解决了吗" in t]) == 1, follower.texts()
    [handoff] = handoffs_of(service, cid)
    assert (handoff.channel, handoff.state, handoff.ended_by) == ("wechat", "closed",
                                                                 "agent:wx_mei")
    assert handoff.first_response_at is not None
    [rating] = ratings_of(service, cid)
    assert (rating.solved, rating.score, rating.handoff_id) == (1, 5, handoff.id)
    assert cid not in open_conversations(service)


# --- 2. WeChat, outside the 48-hour window -------------------------------------------------


async def test_wechat_45015_turns_the_conversation_into_a_ticket_and_the_bot_is_back(
    service: Service, wechat_api: FakeWeChatAPI
) -> None:
    follower = Follower(service, wechat_api)  # plain mode
    cid = follower.conversation_id
    async with agent_at_desk(service, "wx_tao", "小陶", ["general"]) as agent:
        await follower.ask("转人工")
        await event(agent, "assigned", lambda e: e["conversation"]["id"] == cid)
        await follower.receives("小陶")

        # 48 hours later (as far as WeChat is concerned): it refuses messages to them.
        wechat_api.refuse_messages_to(follower.openid)
        try:
            status, answer = await agent.call("POST", DeskClient.conv(cid, "/messages"),
                                              {"text": "您好，还在吗？"})
            assert status == 502, answer
            assert answer["code"] == "45015" and answer["ticket_id"], answer
            ticket_id = answer["ticket_id"]

            failed = await event(agent, "delivery_failed", lambda e: e["conversation_id"] == cid)
            assert (failed["code"], failed["ticket_id"]) == ("45015", ticket_id)
            removed = await event(agent, "conversation_removed",
                                  lambda e: e["conversation_id"] == cid)
            assert removed["why"] == "ticket"
            assert "您好，还在吗？" not in follower.texts()
        finally:
            # The follower writes again, which reopens WeChat's window.
            wechat_api.accept_messages_to(follower.openid)

        [handoff] = handoffs_of(service, cid)
        assert (handoff.state, handoff.ticket_id) == ("message_left", ticket_id)
        assert handoff.ended_by == "agent:wx_tao"
        with database.session(shop_url(service)) as session:
            ticket = session.get(Ticket, ticket_id)
            assert ticket is not None
            assert (ticket.conversation_id, ticket.channel, ticket.status) == (
                cid, "wechat", "open")
            assert "您好，还在吗？" in ticket.message and "45015" in ticket.message
        assert cid not in open_conversations(service)
        state = await agent.get("/desk/api/state")
        assert cid not in [c["id"] for c in state["conversations"]]

        # No longer paused: the bot answers the follower's next message.
        assert tracker_of(service, cid)["paused"] is False
        assert "包邮" in await follower.ask("运费怎么算")


# --- 3. the app, end to end ----------------------------------------------------------------


async def test_app_customer_reaches_a_person_online_and_offline_and_rates_the_service(
    service: Service, app_push: Recorder
) -> None:
    customer = AppCustomer(service)
    cid = customer.conversation_id
    await customer.connect()
    try:
        async with agent_at_desk(service, "app_yun", "小云", ["general"]) as agent:
            asked = await customer.say("转人工")
            assert asked["replies"] >= 1
            assert "人工" in (await customer.receives("人工"))["message"]["text"]

            assigned = await event(agent, "assigned", lambda e: e["conversation"]["id"] == cid)
            assert assigned["conversation"]["channel"] == "app"
            await customer.receives("小云")

            # While the person has it, the bot does not answer: no replies.
            quiet = await customer.say("我要改收货地址")
            assert quiet["replies"] == 0, quiet
            line = await event(agent, "line", lambda e: e["conversation_id"] == cid
                               and e["line"]["role"] == "customer")
            assert line["line"]["text"] == "我要改收货地址"

            # The agent's reply arrives on the app's socket, live; no push notification.
            await agent.post(DeskClient.conv(cid, "/messages"), {"text": "好的，新地址是哪里？"})
            live = await customer.receives("好的，新地址是哪里？")
            assert live["message"]["text"] == "好的，新地址是哪里？"
            pushed = [r.json()["message_id"] for r in app_push.matching("/push")
                      if r.json()["customer_id"] == customer.id]
            assert live["id"] not in pushed

            # The app goes offline: the next reply waits in the outbox, and the
            # app's push service hears of it (signed).
            last_seen = customer.frames[-1]["id"]
            await customer.disconnect()
            await until(lambda: not app_online(service, customer.id), "the app to be offline")
            pushes_before = len(app_push.matching("/push"))
            await agent.post(DeskClient.conv(cid, "/messages"), {"text": "地址已经帮您改好了。"})
            push = await until(
                lambda: next((r for r in app_push.matching("/push")[pushes_before:]
                              if r.json()["customer_id"] == customer.id), None),
                "the push notification")
            body = push.json()
            assert push.headers["x-signature"] == expected_signature(push.body)
            assert (body["conversation_id"], body["preview"]) == (cid, "地址已经帮您改好了。")
            waiting = (await poll(service.url, app_token(customer.id), since=last_seen)).json()
            assert [m["message"]["text"] for m in waiting["messages"]] == ["地址已经帮您改好了。"]
            assert [m["id"] for m in waiting["messages"]] == [body["message_id"]]

            # Back online from the last id seen: the missed reply first.
            await customer.connect(since=last_seen)
            missed = await customer.receives("地址已经帮您改好了。")
            assert missed["id"] == body["message_id"]

            # The agent closes: the survey, as buttons the app renders.
            await agent.post(DeskClient.conv(cid, "/close"))
            survey = await customer.receives("解决了吗")
            assert [b["payload"] for b in survey["message"]["buttons"]] == ["/affirm", "/deny"]

        solved = await customer.say("解决了")
        assert solved["replies"] >= 1
        question = await customer.receives("打个分")
        assert question["message"]["custom"] == {"type": "satisfaction", "language": "zh"}
        scored = await customer.say('/rate{"score": 4}')
        assert scored["replies"] >= 1
        await customer.receives("4 分")
    finally:
        await customer.disconnect()

    [handoff] = handoffs_of(service, cid)
    assert (handoff.channel, handoff.state, handoff.ended_by) == ("app", "closed",
                                                                 "agent:app_yun")
    [rating] = ratings_of(service, cid)
    assert (rating.solved, rating.score, rating.handoff_id) == (1, 4, handoff.id)
    assert cid not in open_conversations(service)


# --- 4. a transfer -------------------------------------------------------------------------


async def test_an_agent_transfers_the_chat_to_a_colleague_who_answers_and_closes(
    service: Service, wechat_api: FakeWeChatAPI
) -> None:
    follower = Follower(service, wechat_api)
    cid = follower.conversation_id
    async with agent_at_desk(service, "tr_an", "安安", ["general"]) as first:
        await follower.ask("转人工")
        await event(first, "assigned", lambda e: e["conversation"]["id"] == cid)
        await follower.receives("安安")
        # The colleague comes online after the chat was given (routing chose the first).
        async with agent_at_desk(service, "tr_bo", "波波", ["general"]) as second:
            colleague = second.agent["id"]
            moved = await first.post(DeskClient.conv(cid, "/transfer"), {"agent": colleague})
            assert moved["conversation"]["agent"] == {"id": colleague, "name": "波波"}

            assigned = await event(second, "assigned", lambda e: e["conversation"]["id"] == cid)
            assert assigned["conversation"]["state"] == "with_agent"
            removed = await event(first, "conversation_removed",
                                  lambda e: e["conversation_id"] == cid)
            assert removed["why"] == "assigned"
            told = await follower.receives("已为您转接给客服 波波")
            assert "接下来由 波波 为您服务" in told

            # Only the agent who has it writes to the customer now.
            status, _ = await first.call("POST", DeskClient.conv(cid, "/messages"),
                                         {"text": "我还在"})
            assert status == 403
            assert "我还在" not in follower.texts()

            before = len(wechat_api.delivered)
            await second.post(DeskClient.conv(cid, "/messages"),
                              {"text": "我是波波，接着为您处理。"})
            calls = [m for m in wechat_api.delivered[before:] if m.get("touser") == follower.openid]
            assert [m["text"]["content"] for m in calls] == ["我是波波，接着为您处理。"]

            # The first agent's close is refused; the second's ends it.
            status, _ = await first.call("POST", DeskClient.conv(cid, "/close"))
            assert status == 403
            await second.post(DeskClient.conv(cid, "/close"))
            closed = await event(second, "conversation_removed",
                                 lambda e: e["conversation_id"] == cid)
            assert closed["why"] == "closed"
            await follower.receives("解决了吗")

    [handoff] = handoffs_of(service, cid)
    assert (handoff.state, handoff.ended_by, handoff.transfers) == ("closed", "agent:tr_bo", 1)
    assert handoff.agent_id == colleague
    assert cid not in open_conversations(service)


# --- 5. an agent gone: back to the front of the queue ---------------------------------------


async def test_a_chat_whose_agent_is_gone_goes_back_to_the_front_and_to_another_agent(
    service: Service, wechat_api: FakeWeChatAPI
) -> None:
    customer = AppCustomer(service)  # the chat whose agent goes
    cid = customer.conversation_id
    busy, waiting = Follower(service, wechat_api), Follower(service, wechat_api)
    await customer.connect()
    try:
        async with agent_at_desk(service, "rq_ai", "艾艾", ["general"], capacity=1) as gone:
            await customer.say("转人工")
            await event(gone, "assigned", lambda e: e["conversation"]["id"] == cid)
            await customer.receives("艾艾")
            async with agent_at_desk(service, "rq_bei", "贝贝", ["general"],
                                     capacity=1) as other:
                # B (online) takes the next chat and is full; a third customer waits.
                await busy.ask("转人工")
                await event(other, "assigned",
                            lambda e: e["conversation"]["id"] == busy.conversation_id)
                await waiting.ask("转人工")
                await event(other, "conversation", lambda e: e["conversation"]["id"]
                            == waiting.conversation_id and e["conversation"]["position"] == 1)

                # A's console closes, and A sends nothing more.
                await gone.disconnect()
                closed_at = time.monotonic()

                # Within the grace period nothing changes: A could still come back.
                await asyncio.sleep(1)
                mine = (await gone.get("/desk/api/state"))["conversations"]
                assert [(c["id"], c["state"], c["agent"]["name"]) for c in mine
                        if c["id"] == cid] == [(cid, "with_agent", "艾艾")]

                # After it: back in the queue, in front of the customer who was waiting.
                requeued = await event(other, "conversation", lambda e: e["conversation"]["id"]
                                       == cid and e["conversation"]["state"] == "queued")
                assert time.monotonic() - closed_at >= GRACE_SECONDS / 2
                assert requeued["conversation"]["position"] == 1
                assert requeued["conversation"]["agent"] is None
                await customer.receives("刚才的客服有事离开了")
                queue = {c["id"]: c["position"] for c in
                         (await other.get("/desk/api/state"))["conversations"]
                         if c["state"] == "queued"}
                assert queue == {cid: 1, waiting.conversation_id: 2}

                # B frees a place: B gets the requeued chat first, not the one that waited.
                await other.post(DeskClient.conv(busy.conversation_id, "/close"))
                assigned = await event(other, "assigned", lambda e: e["conversation"]["id"]
                                       in (cid, waiting.conversation_id))
                assert assigned["conversation"]["id"] == cid
                assert assigned["conversation"]["agent"]["name"] == "贝贝"
                # The customer heard that their agent left, then who took over.
                await customer.receives("人工客服 贝贝 已接入")
                texts = customer.texts()
                left = next(i for i, t in enumerate(texts) if "刚才的客服有事离开了" in t)
                joined = next(i for i, t in enumerate(texts) if "贝贝" in t)
                assert left < joined, texts

                await other.post(DeskClient.conv(cid, "/messages"), {"text": "我是贝贝，您请说。"})
                await customer.receives("我是贝贝，您请说。")
                await other.post(DeskClient.conv(cid, "/close"))
                await customer.receives("解决了吗")
                # The one who waited is next.
                await event(other, "assigned",
                            lambda e: e["conversation"]["id"] == waiting.conversation_id)
                await other.post(DeskClient.conv(waiting.conversation_id, "/close"))

            # A, reconnecting with the last event id seen (once nobody waits, so that
            # A, present again, gets nothing new), learns the chat went away.
            await gone.connect(last_event_id=gone.last_event_id)
            away = await event(gone, "conversation_removed",
                               lambda e: e["conversation_id"] == cid)
            assert away["why"] == "requeued"
    finally:
        await customer.disconnect()

    [handoff] = handoffs_of(service, cid)
    assert (handoff.state, handoff.ended_by, handoff.transfers) == ("closed", "agent:rq_bei", 0)
    for follower in (busy, waiting):
        [other_handoff] = handoffs_of(service, follower.conversation_id)
        assert (other_handoff.state, other_handoff.ended_by) == ("closed", "agent:rq_bei")
    left_open = set(open_conversations(service))
    assert not left_open & {cid, busy.conversation_id, waiting.conversation_id}
