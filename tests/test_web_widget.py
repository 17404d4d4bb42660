"""Our widget on the demo shop page, in headless Chromium (Debian's, driven by Playwright).

Real browser, real websocket, real bot: what a customer does and sees.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import threading
import time
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from connectors.web.identity import user_hash
from connectors.web.pages import DEMO_PAGE
from tests import chromium
from tests.conftest import HOST_SITE_ORIGIN, ROOT, WEB_IDENTITY_SECRET, Service
from tests.web_client import (
    append_bot_events,
    conversation_of,
    eventually,
    tracker,
    user_texts,
)

pytestmark = pytest.mark.slow

WAIT_MS = 90_000  # a bot turn on a loaded machine

# expect() has its own timeout (5 s), apart from the page's.
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    options = chromium.launch_options()  # skipped without Chromium (not in CI)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(**options)
        yield launched
        launched.close()


@contextmanager
def browser_tab(browser: Browser, **options: Any) -> Iterator[Page]:
    # A fresh profile per test: its own localStorage, i.e. a new visitor.
    context = browser.new_context(locale="zh-CN", **options)
    context.set_default_timeout(WAIT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with browser_tab(browser) as tab:
        yield tab


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """A host site on its own origin (on loopback: Chromium lets only a local page
    open the service's local socket), the one the services allow (HOST_SITE_ORIGIN)."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", urlsplit(HOST_SITE_ORIGIN).port or 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def open_widget(page: Page, service: Service) -> None:
    page.goto(service.url + "/")
    expect(page).to_have_title(re.compile("青玉商城"))
    expect(page.locator(".jc-root[data-ready=true]")).to_be_attached()
    page.locator(".jc-launcher").click()
    expect(page.locator(".jc-panel")).to_be_visible()


def ask(page: Page, text: str) -> None:
    page.locator(".jc-input").fill(text)
    page.locator(".jc-input").press("Enter")


def test_customer_asks_in_chinese_clicks_a_quick_reply_and_reloads(
    service: Service, page: Page
) -> None:
    open_widget(page, service)
    panel = page.locator(".jc-panel")
    expect(panel.locator(".jc-title")).to_have_text("青玉商城 · 在线客服")
    hot = panel.locator(".jc-hot-question")
    expect(hot.first).to_be_visible()
    expect(hot).to_contain_text(["运费怎么算", "我的订单到哪了"])

    # Record whether the typing indicator ever shows (it may be up for only ~0.1 s).
    page.evaluate(
        """() => {
        const typing = document.querySelector('.jc-typing');
        window.typingShown = false;
        new MutationObserver(() => { if (!typing.hidden) window.typingShown = true; })
          .observe(typing, {attributes: true});
        }"""
    )
    ask(page, "运费怎么算")
    expect(panel.locator(".jc-customer").last).to_have_text("运费怎么算")
    expect(panel.locator(".jc-hot")).to_be_hidden()
    expect(panel.locator(".jc-bot").last).to_contain_text("包邮")
    expect(panel.locator(".jc-typing")).to_be_hidden()
    assert page.evaluate("window.typingShown") is True

    ask(page, "你好")
    option = panel.locator(".jc-option", has_text="怎么退货")
    option.click()
    # The button's title is what the customer "said"; its payload went to the bot.
    expect(panel.locator(".jc-customer").last).to_have_text("怎么退货")
    expect(panel.locator(".jc-bot").last).to_contain_text("七天无理由退货")
    expect(panel.locator(".jc-option")).to_have_count(0)

    before = stored_token(page)
    page.reload()
    expect(page.locator(".jc-root[data-ready=true]")).to_be_attached()
    # The server renewed the token (sliding expiry); the widget keeps the new one.
    after = stored_token(page)
    assert after != before and conversation_of(after) == conversation_of(before)
    # The panel stays open across the reload, and shows the conversation so far.
    expect(panel).to_be_visible()
    expect(panel.locator(".jc-customer")).to_have_text(["运费怎么算", "你好", "怎么退货"])
    expect(panel.locator(".jc-bot").first).to_contain_text("包邮")
    expect(panel.locator(".jc-bot").last).to_contain_text("七天无理由退货")
    expect(panel.locator(".jc-hot")).to_be_hidden()


def test_english_page_gets_the_english_widget(service: Service, page: Page) -> None:
    open_widget(page, service)
    panel = page.locator(".jc-panel")
    expect(panel.locator(".jc-input")).to_have_attribute("placeholder", "请输入您的问题…")
    # The shop's own language switch sets <html lang>; the widget follows.
    page.get_by_role("button", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(panel.locator(".jc-title")).to_have_text("Jade Mart · Customer service")
    expect(panel.locator(".jc-input")).to_have_attribute("placeholder", "Type your question…")
    expect(panel.locator(".jc-send")).to_have_text("Send")
    expect(panel.locator(".jc-hot-title")).to_have_text("Popular questions")
    hot = panel.locator(".jc-hot-question", has_text="How much is shipping?")
    hot.click()
    expect(panel.locator(".jc-bot").last).to_contain_text("Shipping is free on orders of ¥99")


def test_unread_badge_agent_queue_and_satisfaction(service: Service, page: Page) -> None:
    open_widget(page, service)
    panel = page.locator(".jc-panel")
    ask(page, "运费怎么算")
    expect(panel.locator(".jc-bot").last).to_contain_text("包邮")
    token = page.evaluate(
        "Object.keys(localStorage).filter(k => k.startsWith('jade-chat:session:'))"
        ".map(k => localStorage.getItem(k))[0]"
    )
    conversation = conversation_of(token)
    page.locator(".jc-close").click()
    expect(panel).to_be_hidden()
    badge = page.locator(".jc-badge")
    expect(badge).to_be_hidden()

    # What the desk sends while the customer waits and when an agent answers.
    append_bot_events(
        service,
        conversation,
        [
            {"event": "bot", "text": "", "data": {"custom": {"type": "queue_position",
                                                            "position": 3, "wait_minutes": 2}}},
            {"event": "bot", "text": "", "data": {"custom": {"type": "agent_joined",
                                                            "agent": "小李"}}},
            {"event": "bot", "text": "您好，我是小李，请问有什么可以帮您？",
             "metadata": {"agent": "小李"}},
        ],
    )
    # The agent joining and their message; queue updates only change the status bar.
    expect(badge).to_have_text("2")
    page.locator(".jc-launcher").click()
    expect(badge).to_be_hidden()
    expect(panel.locator(".jc-agent")).to_have_text("人工客服 小李")
    expect(panel.locator(".jc-queue")).to_be_hidden()  # an agent took over
    expect(panel.locator(".jc-note").last).to_have_text("人工客服 小李 为您服务")
    expect(panel.locator(".jc-agent-msg").last).to_have_text("您好，我是小李，请问有什么可以帮您？")

    append_bot_events(
        service,
        conversation,
        [{"event": "bot", "text": "", "data": {"custom": {"type": "queue_position",
                                                         "position": 2, "wait_minutes": 1}}}],
    )
    expect(panel.locator(".jc-queue")).to_have_text("您前面还有 2 位，预计等待约 1 分钟")

    append_bot_events(
        service, conversation, [{"event": "bot", "data": {"custom": {"type": "satisfaction"}}}]
    )
    ratings = panel.locator(".jc-option")
    expect(ratings).to_have_text(["非常满意", "满意", "一般", "不满意", "非常不满意"])
    ratings.first.click()
    expect(panel.locator(".jc-customer").last).to_have_text("非常满意")
    expect(panel.locator(".jc-option", has_text="非常不满意")).to_have_count(0)
    # The score went to the bot; the transcript shows what the customer clicked.
    rated = eventually(
        lambda: [
            e
            for e in tracker(service, conversation)["events"]
            if e["event"] == "user" and e["text"].startswith("/rate")
        ]
    )
    assert rated[0]["text"] == '/rate{"score": 5}'
    assert rated[0]["metadata"]["display_text"] == "非常满意"


def stored_token(page: Page) -> str:
    return page.evaluate("localStorage.getItem('jade-chat:session:' + location.origin)")


def test_forged_stored_token_starts_a_new_conversation_with_a_note(
    service: Service, page: Page
) -> None:
    page.context.add_init_script(
        "localStorage.setItem('jade-chat:session:' + location.origin, 'forged.token.value')"
    )
    open_widget(page, service)
    panel = page.locator(".jc-panel")
    expect(panel.locator(".jc-note.jc-error")).to_have_text("您的会话已失效，已为您开始新的会话。")
    expect(panel.locator(".jc-hot-question").first).to_be_visible()
    token = stored_token(page)
    assert token != "forged.token.value"
    assert conversation_of(token).startswith("web:v-")


def test_host_site_login_with_good_and_bad_hmac(service: Service, browser: Browser) -> None:
    expires = int(time.time()) + 3600
    good = user_hash(WEB_IDENTITY_SECRET, "shopper-7", expires)
    expired = user_hash(WEB_IDENTITY_SECRET, "shopper-7", expires - 7200)
    for user_hash_given, until, works in [(good, expires, True), ("0" * 64, expires, False),
                                          (expired, expires - 7200, False)]:
        context = browser.new_context(locale="zh-CN")
        context.set_default_timeout(WAIT_MS)
        settings = {"user": {"id": "shopper-7", "hash": user_hash_given, "expires": until}}
        context.add_init_script(f"window.JadeChat = {json.dumps(settings)};")
        page = context.new_page()
        try:
            page.goto(service.url + "/")
            page.locator(".jc-launcher").click()
            panel = page.locator(".jc-panel")
            if works:
                expect(page.locator(".jc-root[data-ready=true]")).to_be_attached()
                ask(page, "运费怎么算")
                expect(panel.locator(".jc-bot").last).to_contain_text("包邮")
                assert conversation_of(stored_token(page)) == "web:u-shopper-7"
                assert user_texts(service, "web:u-shopper-7")[-1] == "运费怎么算"
            else:
                expect(panel.locator(".jc-note.jc-error")).to_have_text(
                    "无法验证您的登录信息，请刷新页面后重试。"
                )
                expect(page.locator(".jc-root[data-ready=true]")).to_have_count(0)
        finally:
            context.close()


# --- the demo page's "log in as" -------------------------------------------------------------

def conversation_now(page: Page) -> str:
    token = stored_token(page)
    return conversation_of(token) if token else ""


def demo_customer_balance(service: Service, user_id: str) -> str:
    """The balance the bot should say: from the shop database `bot run` seeded for
    the service (its var dir's shop.db), in the actions' own format."""
    from sqlalchemy import select

    from actions.shop import money
    from bot.shop import database
    from bot.shop.schema import Identity

    with database.session(f"sqlite:///{service.var_dir / 'shop.db'}") as session:
        bound = session.scalars(
            select(Identity).where(Identity.channel == "web", Identity.subject == user_id)
        ).one()
        return money(bound.customer.wallet_cents)


def test_demo_page_logs_in_as_a_demo_customer_and_out(service: Service, page: Page) -> None:
    balance = demo_customer_balance(service, "demo-en")
    open_widget(page, service)
    page.get_by_role("button", name="English").click()
    panel = page.locator(".jc-panel")
    control = page.locator("#demo-login")
    expect(control).to_be_visible()
    expect(control.locator("option")).to_have_text(
        ["Anonymous visitor", "Demo customer demo-zh (Chinese, gold)",
         "Demo customer demo-en (English, silver)"]
    )
    ask(page, "How much is shipping?")  # as an anonymous visitor first
    expect(panel.locator(".jc-bot").last).to_contain_text("Shipping is free")
    visitor = conversation_now(page)
    assert visitor.startswith("web:v-")

    control.select_option("demo-en")
    # The widget starts the demo customer's session: the host-site user path (HMAC).
    eventually(lambda: conversation_now(page) == "web:u-demo-en")
    expect(page.locator(".jc-root[data-ready=true]")).to_be_attached()
    expect(panel.locator(".jc-customer")).to_have_count(0)  # the visitor's chat is gone
    ask(page, "what's my balance")
    expect(panel.locator(".jc-bot").last).to_contain_text(balance)
    # Rasa saves the turn after sending its answer: wait for the stored message.
    said = eventually(lambda: [
        e for e in tracker(service, "web:u-demo-en")["events"] if e["event"] == "user"
    ])
    assert said[-1]["metadata"]["identity"] == {
        "channel": "web", "subject": "demo-en", "verified_by": "host_hmac", "customer": True,
    }

    # Still logged in after a reload, as on a shop that keeps its login in a cookie.
    page.reload()
    expect(page.locator(".jc-root[data-ready=true]")).to_be_attached()
    expect(control).to_have_value("demo-en")
    assert conversation_now(page) == "web:u-demo-en"
    expect(panel.locator(".jc-bot").last).to_contain_text(balance)

    control.select_option("")  # log out
    eventually(lambda: conversation_now(page).startswith("web:v-"))
    expect(page.locator(".jc-root[data-ready=true]")).to_be_attached()
    assert conversation_now(page) != visitor  # a new visitor, not the one before
    expect(panel.locator(".jc-msg")).to_have_count(0)  # nothing of demo-en's on the screen
    ask(page, "what's my balance")
    expect(panel.locator(".jc-bot").last).to_contain_text("To keep your account safe")
    expect(panel.locator(".jc-bot", has_text=balance)).to_have_count(0)


def test_demo_login_control_is_hidden_when_switched_off(
    scaled: list[Service], page: Page
) -> None:
    with page.expect_response(lambda r: r.url.endswith("/webhooks/web/demo-logins")) as asked:
        page.goto(scaled[0].url + "/")
    assert asked.value.status == 404
    expect(page.locator(".jc-root[data-ready=true]")).to_be_attached()
    expect(page.locator(".demo-login")).to_be_hidden()


# --- on a phone -------------------------------------------------------------------------------

# Chromium's mobile emulation of a common phone (iPhone 12-15 class): 390 x 844 CSS px.
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
}
SCREENSHOTS = ROOT / "bench" / "results" / "screenshots"
CONTROLS = [".jc-input", ".jc-send", ".jc-close"]
# A question per language, and what the bot's answer says.
SHIPPING = {
    "zh": ("运费怎么算", "包邮"),
    "en": ("How much is shipping?", "Shipping is free on orders of ¥99"),
}

# Where each element is in the visual viewport, i.e. on the customer's screen (the
# layout viewport, which position: fixed follows, can be wider), and whether it is the
# element a tap at its centre hits. The last match of each selector.
MEASURE = """selectors => {
  const view = window.visualViewport;
  const boxes = {};
  for (const selector of selectors) {
    const all = document.querySelectorAll(selector);
    const node = all[all.length - 1];
    if (!node) { boxes[selector] = null; continue; }
    const box = node.getBoundingClientRect();
    const hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
    boxes[selector] = {
      left: box.left - view.offsetLeft, right: box.right - view.offsetLeft,
      top: box.top - view.offsetTop, bottom: box.bottom - view.offsetTop,
      width: box.width, height: box.height, onTop: !!hit && node.contains(hit),
    };
  }
  return {view: {width: view.width, height: view.height, scale: view.scale}, boxes};
}"""


def off_screen(measured: dict[str, Any]) -> dict[str, Any]:
    view, slack = measured["view"], 0.5
    return {
        selector: box
        for selector, box in measured["boxes"].items()
        if box is None
        or not box["width"]
        or not box["onTop"]
        or box["left"] < -slack
        or box["top"] < -slack
        or box["right"] > view["width"] + slack
        or box["bottom"] > view["height"] + slack
    }


def assert_on_screen(page: Page, selectors: list[str]) -> dict[str, Any]:
    """Every element entirely inside the visible screen and not covered (given a
    moment: the widget follows the visual viewport's resize events)."""
    deadline = time.monotonic() + 10
    while True:
        measured = page.evaluate(MEASURE, selectors)
        missing = off_screen(measured)
        if not missing:
            return measured
        if time.monotonic() > deadline:
            raise AssertionError(f"not entirely on the screen {measured['view']}: {missing}")
        page.wait_for_timeout(200)


def page_width(page: Page) -> dict[str, float]:
    return page.evaluate(
        "({document: document.documentElement.scrollWidth, layout: window.innerWidth,"
        " screen: window.visualViewport.width})"
    )


def screenshot(page: Page, tmp_path: Path, name: str) -> None:
    # CSS pixels (390 x 844): a few tens of KB each, enough to judge the look.
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), scale="css")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, SCREENSHOTS / path.name)


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    with browser_tab(browser, **PHONE) as tab:
        yield tab


def open_demo(page: Page, service: Service, lang: str = "zh") -> None:
    """The demo shop, switched to `lang` with its own switch, widget ready."""
    page.goto(service.url + "/")
    expect(page.locator(".jc-root[data-ready=true]")).to_be_attached()
    if lang == "en":
        page.get_by_role("button", name="English").click()
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.locator(".jc-send")).to_have_text("Send")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_phone_chat_fills_the_visible_screen_and_answers(
    service: Service, phone: Page, lang: str, tmp_path: Path
) -> None:
    open_demo(phone, service, lang)
    # The shop page itself fits the phone, and the launcher is on the screen.
    assert page_width(phone) == {"document": 390, "layout": 390, "screen": 390}
    assert_on_screen(phone, [".jc-launcher"])
    screenshot(phone, tmp_path, f"phone-{lang}-page")

    phone.locator(".jc-launcher").tap()
    panel = phone.locator(".jc-panel")
    expect(panel).to_be_visible()
    measured = assert_on_screen(phone, [".jc-panel", ".jc-title", *CONTROLS])
    # The whole visible screen, as Intercom's and Chatwoot's widgets do on a phone.
    box = measured["boxes"][".jc-panel"]
    assert (box["left"], box["top"]) == (0, 0)
    assert (box["width"], box["height"]) == (390, 844)
    assert page_width(phone)["document"] <= 390
    # iOS zooms the page into an input whose text is smaller than 16 px.
    font_size = phone.locator(".jc-input").evaluate("i => getComputedStyle(i).fontSize")
    assert float(font_size.removesuffix("px")) >= 16
    expect(panel.locator(".jc-hot-question").first).to_be_visible()
    screenshot(phone, tmp_path, f"phone-{lang}-open")

    question, answer = SHIPPING[lang]
    phone.locator(".jc-input").tap()
    ask(phone, question)
    expect(panel.locator(".jc-customer").last).to_have_text(question)
    expect(panel.locator(".jc-bot").last).to_contain_text(answer)
    expect(panel.locator(".jc-typing")).to_be_hidden()
    assert_on_screen(phone, [".jc-bot", ".jc-customer", *CONTROLS])
    screenshot(phone, tmp_path, f"phone-{lang}-reply")

    # The on-screen keyboard takes the lower part of the screen: the input and the
    # answer stay in sight above it.
    phone.set_viewport_size({"width": 390, "height": 480})
    assert_on_screen(phone, [".jc-bot", *CONTROLS])
    phone.set_viewport_size(PHONE["viewport"])

    phone.locator(".jc-close").tap()
    expect(panel).to_be_hidden()
    assert_on_screen(phone, [".jc-launcher"])


HOSTILE_CSS = """
  * { letter-spacing: 3px; text-transform: uppercase; line-height: 3; }
  header, form { display: block; padding: 40px; }
  div { margin: 10px; }
  button, input { display: block; width: 100%; margin: 12px 0; font-size: 11px; }
"""


def test_phone_chat_stays_on_screen_on_a_page_wider_than_the_screen(
    service: Service, phone: Page
) -> None:
    open_demo(phone, service)
    # Content wider than the screen stretches the layout viewport, which position:
    # fixed follows, past the screen; and the host styles its own elements.
    phone.evaluate(
        """css => {
          document.body.insertAdjacentHTML('afterbegin',
            '<div style="width:1200px;height:40px;background:#ddd">wide banner</div>');
          const style = document.createElement('style');
          style.textContent = css;
          document.head.appendChild(style);
        }""",
        HOSTILE_CSS,
    )
    chat_on_a_page_wider_than_the_screen(phone)


@pytest.fixture
def desktop_only_shop(service: Service, tmp_path: Path) -> Iterator[str]:
    """The demo shop without <meta viewport>, on the shop's own origin: a phone lays it
    out 980 px wide and shows it zoomed out."""
    html = re.sub(r'<meta name="viewport"[^>]*>\s*', "", DEMO_PAGE.read_text(encoding="utf-8"))
    widget = "/webhooks/web/widget.js"
    html = html.replace(f'src="{widget}"', f'src="{service.url}{widget}"')
    assert "viewport" not in html and service.url in html
    (tmp_path / "index.html").write_text(html, encoding="utf-8")
    with serve_folder(tmp_path) as url:
        yield url


def test_phone_chat_stays_on_screen_on_a_page_without_viewport_meta(
    desktop_only_shop: str, phone: Page
) -> None:
    phone.goto(desktop_only_shop)
    expect(phone.locator(".jc-root[data-ready=true]")).to_be_attached()
    chat_on_a_page_wider_than_the_screen(phone)


def chat_on_a_page_wider_than_the_screen(phone: Page) -> None:
    assert page_width(phone)["layout"] > 390, page_width(phone)  # the hostility took
    assert_on_screen(phone, [".jc-launcher"])
    phone.locator(".jc-launcher").tap()
    expect(phone.locator(".jc-panel")).to_be_visible()
    measured = assert_on_screen(phone, [".jc-panel", ".jc-title", *CONTROLS])
    boxes, scale = measured["boxes"], measured["view"]["scale"]
    # The host's rules don't reach in: the send button is beside the input, not under it.
    assert boxes[".jc-send"]["left"] >= boxes[".jc-input"]["right"]
    assert boxes[".jc-send"]["top"] < boxes[".jc-input"]["bottom"]
    # Readable and tappable at the page's zoom: 44 px high on the screen, not 18.
    assert boxes[".jc-input"]["height"] * scale >= 43
    ask(phone, "运费怎么算")
    expect(phone.locator(".jc-bot").last).to_contain_text("包邮")
    assert_on_screen(phone, [".jc-bot", *CONTROLS])
    phone.locator(".jc-close").tap()
    expect(phone.locator(".jc-panel")).to_be_hidden()
    assert_on_screen(phone, [".jc-launcher"])


def test_phone_chat_locks_the_page_behind_and_closing_restores_it(
    service: Service, phone: Page
) -> None:
    open_demo(phone, service)
    # A page long enough to scroll, with an inline style of its own on <html>.
    phone.evaluate(
        """() => {
          document.querySelector('main').insertAdjacentHTML('beforeend',
            '<div style="height:2000px"></div>');
          document.documentElement.style.overflowY = 'auto';
        }"""
    )
    page_styles = "[document.documentElement, document.body].map(n => n.getAttribute('style'))"
    before = phone.evaluate(page_styles)

    def scrolled_by_thumb() -> float:
        phone.mouse.move(195, 300)
        phone.mouse.wheel(0, 400)
        phone.wait_for_timeout(500)
        return phone.evaluate("window.scrollY")

    start = scrolled_by_thumb()
    assert start > 0

    phone.locator(".jc-launcher").tap()
    expect(phone.locator(".jc-panel")).to_be_visible()
    locked = phone.evaluate(
        "[document.documentElement, document.body].map(n => getComputedStyle(n).overflowY)"
    )
    assert locked == ["hidden", "hidden"]
    phone.mouse.move(195, 30)  # over the chat's header
    phone.mouse.wheel(0, 400)
    phone.wait_for_timeout(500)
    assert phone.evaluate("window.scrollY") == start

    phone.locator(".jc-close").tap()
    expect(phone.locator(".jc-panel")).to_be_hidden()
    # Exactly what the page had, where it was, and it scrolls again.
    assert phone.evaluate(page_styles) == before == ["overflow-y: auto;", None]
    assert phone.evaluate("window.scrollY") == start
    assert scrolled_by_thumb() > start


# --- stock rasa-webchat against our channel ---------------------------------------------------

RASA_WEBCHAT = "rasa-webchat@1.0.1"
RASA_WEBCHAT_SHA512 = (
    "Ld1zVJvTAaTrs6A5p8t70agNNrKYRyXlvqXZRgBoDvKKUXbA0jhJKECi5bdPGlaR6jsmqWtVylHS+YqIqo0x8w=="
)


@pytest.fixture(scope="module")
def rasa_webchat(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rasa-webchat's standalone bundle from the npm registry (Apache-2.0; not committed,
    fetched once into pytest's cache and checked against the registry's sha512)."""
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("rasa-webchat") if cache else tmp_path_factory.mktemp("rasa-webchat")
    bundle = folder / "webchat.js"
    if not bundle.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: can't fetch rasa-webchat")
        done = subprocess.run(
            [npm, "pack", RASA_WEBCHAT, "--pack-destination", str(folder)],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode != 0:
            pytest.skip(f"npm pack {RASA_WEBCHAT} failed: {done.stderr[-500:]}")
        tarball = folder / done.stdout.strip().splitlines()[-1]
        digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
        assert digest == RASA_WEBCHAT_SHA512, "rasa-webchat's tarball is not the pinned one"
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/lib/index.js")
            assert member is not None
            bundle.write_bytes(member.read())
    return bundle


@pytest.fixture
def host_site(rasa_webchat: Path, service: Service, tmp_path: Path) -> Iterator[str]:
    """A page on another origin that embeds stock rasa-webchat, configured for our service."""
    (tmp_path / "webchat.js").write_bytes(rasa_webchat.read_bytes())
    config = {
        "selector": "#webchat",
        "socketUrl": service.url,
        "socketPath": "/socket.io/",
        "customData": {"language": "zh"},
        "params": {"storage": "local"},
    }
    (tmp_path / "index.html").write_text(
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"></head><body>'
        '<div id="webchat"></div><script src="webchat.js"></script>'
        f"<script>WebChat.default({json.dumps(config)}, null);</script></body></html>",
        encoding="utf-8",
    )
    with serve_folder(tmp_path) as url:
        yield url


def test_stock_rasa_webchat_works_unchanged(host_site: str, page: Page, service: Service) -> None:
    page.goto(host_site)
    page.locator(".rw-launcher").click()
    page.locator(".rw-new-message").fill("运费怎么算")
    page.locator(".rw-new-message").press("Enter")
    expect(page.locator(".rw-response").last).to_contain_text("包邮")
    page.locator(".rw-new-message").fill("你好")
    page.locator(".rw-new-message").press("Enter")
    page.locator(".rw-reply", has_text="怎么退货").click()  # our quick_replies, its buttons
    expect(page.locator(".rw-response").last).to_contain_text("七天无理由退货")

    def session_id() -> str:
        stored = page.evaluate("localStorage.getItem('chat_session')")
        return json.loads(stored)["session_id"]

    token = session_id()
    conversation = conversation_of(token)
    assert user_texts(service, conversation) == ["运费怎么算", "你好", "你们的退货政策是什么"]
    page.reload()
    expect(page.locator(".rw-launcher")).to_be_visible()
    if not page.locator(".rw-new-message").is_visible():  # it may remember being open
        page.locator(".rw-launcher").click()
    expect(page.locator(".rw-response").first).to_contain_text("包邮")
    # It resumed the same session (webchat drops its copy when the server confirms another).
    page.locator(".rw-new-message").fill("怎么开发票")
    page.locator(".rw-new-message").press("Enter")
    expect(page.locator(".rw-response").last).to_contain_text("发票")
    # Renewed on resume (sliding tokens), for the same conversation.
    assert session_id() != token and conversation_of(session_id()) == conversation
    assert user_texts(service, conversation)[-1] == "怎么开发票"
