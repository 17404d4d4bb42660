"""The agent console (/desk/) in headless Chromium (Debian's, driven by Playwright),
against the real service (`bot run`: Rasa, actions, desk, embedded Redis, SQLite)
and a web customer on socket.io (tests/web_client.py).

What an agent does and sees: logs in through the form, a customer's request for a
person arrives live and opens with its transcript, replies (typed or canned) reach
the customer, the customer's lines arrive live, closing hands back to the bot
whose survey stores a rating; customer text is shown as text, never as markup;
a console whose socket dropped catches up on what it missed, once.

Every test leaves its agent offline and its handoff closed: the service is shared
with the whole session.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import AsyncIterator
from urllib.parse import unquote, urlparse

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Locator, Page, Request, async_playwright, expect

from bot.desk import agents as people
from bot.shop import database
from tests import chromium
from tests.conftest import Service, free_port
from tests.desk_client import PASSWORD, DeskClient, add_agent
from tests.test_desk_handoff import (
    agent_at_desk,
    bot_text,
    handoffs_of,
    ratings_of,
    send,
    shop_url,
    web_customer,
)
from tests.web_client import WebClient, texts

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

WAIT_MS = 60_000  # a bot turn on a loaded machine
expect.set_options(timeout=WAIT_MS)

# Before the console's own script: the sockets it opens (so a test can cut one and
# keep it from coming back for a while) and any Content-Security-Policy violation
# (customer text that became markup would try to run).
PAGE_TAPS = """
(() => {
  const Native = window.WebSocket;
  window.__deskSockets = [];
  window.__deskSocketBlocked = false;
  window.__cspViolations = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
  });
  function Tapped(url, protocols) {
    const blocked = window.__deskSocketBlocked;
    const target = blocked ? window.__deskSocketDeadEnd : url;
    const sock = protocols === undefined ? new Native(target) : new Native(target, protocols);
    window.__deskSockets.push({ url: String(url), blocked: blocked, sock: sock });
    return sock;
  }
  Tapped.prototype = Native.prototype;
  Object.assign(Tapped, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  window.WebSocket = Tapped;
})();
"""

XSS = ('<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
       '<a href="javascript:window.__xss=3">x</a>')
WITH_URL = "订单页面 https://example.com/orders/123?a=1 打不开"


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    options = chromium.launch_options(install=True)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(**options)
        try:
            yield launched
        finally:
            await launched.close()


def agent_id(service: Service, username: str) -> int:
    with database.session(shop_url(service)) as session:
        return people.find(session, username).id


async def force_offline(service: Service, username: str) -> None:
    """Through the API (a login puts an agent online; then offline, and out)."""
    client = DeskClient(service.desk_url)
    try:
        await client.login(username)
        await client.post("/desk/api/status", {"status": "offline"})
        await client.post("/desk/api/logout")
    finally:
        await client.close()


@dataclass
class Console:
    page: Page
    name: str
    errors: list[str] = field(default_factory=list)

    def testid(self, name: str) -> Locator:
        return self.page.get_by_test_id(name)

    @property
    def transcript(self) -> Locator:
        return self.page.get_by_test_id("transcript")

    def lines(self, role: str, text: str | None = None) -> Locator:
        found = self.transcript.locator(f'[data-testid="line"][data-role="{role}"]')
        return found.filter(has_text=text) if text is not None else found

    def my_item(self, cid: str) -> Locator:
        return self.page.locator(f'[data-testid="my-item"][data-conversation-id="{cid}"]')

    async def wait_open(self, cid: str) -> None:
        """The conversation is in my list and open in the centre pane."""
        await expect(self.my_item(cid)).to_be_visible()
        await expect(self.testid("conversation")).to_have_attribute(
            "data-conversation-id", cid)

    async def live(self) -> None:
        await expect(self.testid("connection")).to_have_attribute("data-state", "live")


@contextlib.asynccontextmanager
async def console(browser: Browser, service: Service, username: str,
                  name: str) -> AsyncIterator[Console]:
    """An agent (of "general") logged in through the console's form, its socket live;
    offline (the status select) and the page closed afterwards."""
    add_agent(shop_url(service), username, name, ["general"])
    context = await browser.new_context(locale="zh-CN")
    context.set_default_timeout(WAIT_MS)
    await context.add_init_script(PAGE_TAPS)
    page = await context.new_page()
    desk = Console(page, name)
    page.on("pageerror", lambda error: desk.errors.append(str(error)))
    offline = False
    try:
        await page.goto(service.desk_url + "/desk/")
        await expect(desk.testid("login-form")).to_be_visible()
        await desk.testid("login-username").fill(username)
        await desk.testid("login-password").fill(PASSWORD)
        await desk.testid("login-submit").click()
        await expect(desk.testid("me-name")).to_have_text(name)
        await desk.live()
        yield desk
        async with page.expect_response(
            lambda r: r.url.endswith("/desk/api/status") and r.request.method == "POST"
        ) as answer:
            await desk.testid("status").select_option("offline")
        response = await answer.value
        assert response.status == 200
        assert (await response.json())["agent"]["status"] == "offline"
        offline = True
    finally:
        await context.close()
        if not offline:
            await force_offline(service, username)
    assert not desk.errors, f"JavaScript errors on the console: {desk.errors}"


def supervisor(service: Service,
               username: str = "con_boss") -> contextlib.AbstractAsyncContextManager[DeskClient]:
    """A supervisor over the API (no groups: never routed a chat): sees every
    conversation, closes what a test left open; offline afterwards."""
    return agent_at_desk(service, username, "值班主管", [], role="supervisor", connect=False)


async def close_if_open(boss: DeskClient, cid: str) -> None:
    status, _ = await boss.call("POST", DeskClient.conv(cid, "/close"), {})
    assert status in (200, 404), status


async def ask_for_a_person(customer: WebClient) -> None:
    answer = texts(await customer.say("转人工"))
    assert answer, "the bot answers a request for a person"


# --- the whole way ----------------------------------------------------------------------


async def test_console_serves_a_customer_from_request_to_rating(
    service: Service, browser: Browser,
) -> None:
    async with supervisor(service) as boss, \
            console(browser, service, "con_full", "小玉") as desk, \
            web_customer(service) as customer:
        cid = customer.conversation_id
        page = desk.page
        try:
            # Whatever happens from here happens without a reload.
            await page.evaluate("() => { window.__sameDocument = 'yes'; }")
            await ask_for_a_person(customer)

            # The conversation arrives live, assigned to me, and opens by itself.
            await desk.wait_open(cid)
            await expect(desk.testid("queue-item")).to_have_count(0)
            # The transcript: what the customer said, with what NLU made of it.
            asked = desk.lines("customer", "转人工")
            await expect(asked).to_have_count(1)
            await expect(asked.get_by_test_id("intent-badge")).to_contain_text("human_handoff")
            await customer.wait("bot_uttered", bot_text("小玉"))  # told who joined

            # A typed reply reaches the customer and stays in the transcript once.
            reply = desk.testid("reply-input")
            await reply.fill("您好，我帮您看一下订单。")
            await desk.testid("reply-send").click()
            await expect(reply).to_have_value("")
            got = await customer.wait("bot_uttered", bot_text("我帮您看一下订单"))
            assert got["text"] == "您好，我帮您看一下订单。"
            mine = desk.lines("agent", "我帮您看一下订单")
            await expect(mine).to_have_count(1)
            await expect(mine).not_to_have_attribute("data-pending", "1")

            # The customer writes again: it appears live, with its intent.
            await send(customer, "我的订单三天了还没发货")
            again = desk.lines("customer", "我的订单三天了还没发货")
            await expect(again).to_have_count(1)
            await expect(again.get_by_test_id("intent-badge")).to_have_count(1)

            # Closing asks first; then the conversation leaves my list.
            await desk.testid("close-conversation").click()
            await expect(desk.testid("confirm-ok")).to_be_visible()
            await desk.testid("confirm-ok").click()
            await expect(desk.my_item(cid)).to_have_count(0)

            # The bot is back: solved? then a rating, stored with the handoff.
            survey = await customer.wait("bot_uttered", bot_text("解决"))
            assert [b["payload"] for b in survey.get("quick_replies") or survey.get("buttons")
                    or []] == ["/affirm", "/deny"]
            assert await customer.say("/affirm")
            assert texts(await customer.say('/rate{"score": 5}'))
            assert await page.evaluate("() => window.__sameDocument") == "yes"
        finally:
            await close_if_open(boss, cid)

    handoff = handoffs_of(service, cid)[-1]
    assert handoff.state == "closed" and handoff.ended_by == "agent:con_full"
    assert handoff.agent_id == agent_id(service, "con_full")
    assert handoff.first_response_at is not None
    rating = ratings_of(service, cid)[-1]
    assert (rating.handoff_id, rating.solved, rating.score) == (handoff.id, 1, 5)


# --- canned responses; customer text is text -------------------------------------------


async def assert_inert(desk: Console, line: Locator, text: str) -> None:
    await expect(line).to_have_count(1)
    await expect(line.locator(".bubble")).to_have_text(text, use_inner_text=True)
    page = desk.page
    # Nothing of it became markup: no element from it in the transcript or anywhere.
    assert await desk.transcript.locator("img, script, a, iframe, [onerror]").count() == 0
    assert await page.locator('img, [onerror], a[href^="javascript"], iframe').count() == 0
    scripts = await page.eval_on_selector_all("script", "s => s.map(e => e.src)")
    assert all(src.endswith("/desk/static/console.js") for src in scripts), scripts
    assert await page.evaluate("() => typeof window.__xss") == "undefined"
    assert await page.evaluate("() => window.__cspViolations") == []


async def test_canned_reply_and_customer_markup_shown_as_text(
    service: Service, browser: Browser,
) -> None:
    async with supervisor(service) as boss, \
            console(browser, service, "con_safe", "小安") as desk, \
            web_customer(service) as customer:
        cid = customer.conversation_id
        page = desk.page
        try:
            await ask_for_a_person(customer)
            await desk.wait_open(cid)

            # "/hel" lists the canned responses that match; choosing one inserts its
            # text in the customer's language, with my name.
            reply = desk.testid("reply-input")
            await reply.click()
            await reply.press_sequentially("/hel")
            canned = desk.testid("canned-list")
            await expect(canned).to_be_visible()
            hello = canned.locator('[data-testid="canned-item"][data-shortcut="hello"]')
            await expect(hello).to_have_count(1)
            await expect(hello).to_contain_text("您好，我是小安，很高兴为您服务。")
            await hello.click()
            await expect(reply).to_have_value("您好，我是小安，很高兴为您服务。")
            await expect(canned).to_be_hidden()
            # Nothing matches: the list says so and inserts nothing.
            await reply.fill("")
            await reply.press_sequentially("/zzz")
            await expect(canned).to_be_visible()
            await expect(canned.get_by_test_id("canned-item")).to_have_count(0)
            await reply.press("Escape")
            await expect(canned).to_be_hidden()
            await reply.fill("")
            await hello_again(desk)
            await customer.wait("bot_uttered", bot_text("我是小安"))

            # Markup from the customer is shown as the characters they typed.
            await send(customer, XSS)
            await assert_inert(desk, desk.lines("customer", "window.__xss=2"), XSS)
            # A web address is text too, not a link.
            await send(customer, WITH_URL)
            await assert_inert(desk, desk.lines("customer", "example.com"), WITH_URL)

            # The same from the stored transcript (a reloaded console).
            await page.reload()
            await desk.live()
            await desk.my_item(cid).click()
            await expect(desk.testid("conversation")).to_have_attribute(
                "data-conversation-id", cid)
            await assert_inert(desk, desk.lines("customer", "window.__xss=2"), XSS)
            await assert_inert(desk, desk.lines("customer", "example.com"), WITH_URL)
            # The list's preview of the last message is text as well.
            await expect(desk.my_item(cid)).to_contain_text("example.com")
        finally:
            await close_if_open(boss, cid)
    assert handoffs_of(service, cid)[-1].state == "closed"


async def hello_again(desk: Console) -> None:
    """The canned response by keyboard: "/hello", Enter picks it, Enter sends it."""
    reply = desk.testid("reply-input")
    await reply.press_sequentially("/hello")
    await expect(desk.testid("canned-list")).to_be_visible()
    await reply.press("Enter")
    await expect(reply).to_have_value("您好，我是小安，很高兴为您服务。")
    await reply.press("Enter")
    await expect(reply).to_have_value("")
    await expect(desk.lines("agent", "我是小安")).to_have_count(1)


# --- a dropped socket -------------------------------------------------------------------


async def test_console_misses_nothing_while_its_socket_is_down(
    service: Service, browser: Browser,
) -> None:
    async with supervisor(service) as boss, \
            console(browser, service, "con_flaky", "小稳") as desk, \
            web_customer(service) as customer:
        cid = customer.conversation_id
        page = desk.page
        # The supervisor's feed gets every line: the witness that the desk has them.
        await boss.connect()
        # What the console fetches to rebuild its view (a replay needs none of it).
        reloads: list[str] = []

        def on_request(request: Request) -> None:
            path = unquote(urlparse(request.url).path)
            if request.method == "GET" and path in ("/desk/api/state",
                                                    f"/desk/api/conversations/{cid}"):
                reloads.append(request.url)

        try:
            await ask_for_a_person(customer)
            await desk.wait_open(cid)
            await expect(desk.lines("customer", "转人工")).to_have_count(1)
            opened = await page.evaluate("() => window.__deskSockets.length")
            assert opened == 1

            # Cut the socket, and keep the console from reconnecting for now.
            page.on("request", on_request)
            await page.evaluate(
                """port => {
                  window.__deskSocketDeadEnd = 'ws://127.0.0.1:' + port + '/desk/ws';
                  window.__deskSocketBlocked = true;
                  window.__deskSockets[0].sock.close();
                }""", free_port())
            await expect(desk.testid("connection")).to_have_attribute(
                "data-state", "reconnecting")

            # Meanwhile the customer writes twice; the desk has both lines.
            missed = ["断线时第一句：快递到哪了", "断线时第二句：请尽快回复"]
            for text in missed:
                await send(customer, text)
            for text in missed:
                await boss.wait("line", lambda e, t=text: e["conversation_id"] == cid
                                and e["line"]["text"] == t)
            for text in missed:
                assert await desk.lines("customer", text).count() == 0

            # Back: the console reconnects and gets what it missed from its feed.
            await page.evaluate("() => { window.__deskSocketBlocked = false; }")
            await reconnect(desk)
            for text in missed:
                await expect(desk.lines("customer", text)).to_have_count(1)
            sockets = await page.evaluate(
                "() => window.__deskSockets.filter(s => !s.blocked).map(s => s.url)")
            assert len(sockets) == 2 and "last_event_id=" in sockets[1], sockets
            # Replayed, not reloaded.
            assert reloads == [], reloads

            # A line after the reconnect arrives live; by then a replayed duplicate
            # would have arrived too.
            await send(customer, "重连后第三句")
            await expect(desk.lines("customer", "重连后第三句")).to_have_count(1)
            for text in missed:
                await expect(desk.lines("customer", text)).to_have_count(1)
            shown = await desk.lines("customer").all_inner_texts()
            order = [next(i for i, s in enumerate(shown) if t in s)
                     for t in [*missed, "重连后第三句"]]
            assert order == sorted(order), shown
        finally:
            await close_if_open(boss, cid)
    assert handoffs_of(service, cid)[-1].state == "closed"


async def reconnect(desk: Console) -> None:
    """Tell the console the network is back (as the browser does) until it is live:
    a connection attempt of the blocked time may still be on its way out."""
    page = desk.page
    for _ in range(120):
        await page.evaluate("() => window.dispatchEvent(new Event('online'))")
        with contextlib.suppress(AssertionError):
            await expect(desk.testid("connection")).to_have_attribute(
                "data-state", "live", timeout=500)
            return
    await desk.live()
