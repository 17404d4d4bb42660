"""The widget's files and the demo shop page, served by the Rasa server itself.

A host page embeds the widget with one tag:

    <script src="https://bot.example.com/webhooks/web/widget.js" defer></script>

widget.js loads widget.css and the vendored socket.io client from the same
place (static/socket.io.min.js: socket.io-client 4.8.4, MIT, see
static/socket.io.LICENSE).

The demo page can log in as a demo customer the way a host site does: its
"backend" (the demo-logins routes below) gives the page a user id, an expiry
and their user_hash, and the page hands them to the widget (JadeChat.login).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sanic import Blueprint, Sanic, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors.web.identity import user_hash

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEMO_PAGE = STATIC_DIR / "demo.html"

# The host-site user ids of the demo customers (bot/shop/demo.py binds them to
# accounts; a test keeps the two lists equal). The only ids the demo page's
# backend ever signs.
DEMO_USER_IDS: tuple[str, ...] = ("demo-zh", "demo-en")
# A demo login's signature lives 12 to 24 hours: all asked for within one
# 12-hour window get the same one, so a page that renews its saved login on
# each load (demo.html) finds it unchanged and doesn't restart the chat.
DEMO_LOGIN_WINDOW_SECONDS = 12 * 3600
# A user_hash is a credential: no cache keeps it.
_NO_STORE = {"Cache-Control": "no-store"}

_ON = {"1", "true", "yes", "on"}
_OFF = {"0", "false", "no", "off"}


def parse_switch(value: Any, default: bool = True) -> bool:
    """credentials.yml's on/off values (`bot run` passes DEMO_LOGINS as 1 or 0; empty:
    the default)."""
    if isinstance(value, bool):
        return value
    text = "" if value is None else str(value).strip().lower()
    if not text:
        return default
    if text in _ON | _OFF:
        return text in _ON
    raise ValueError(f"expected 1 or 0 (on or off), got {value!r}")


def add_static_routes(blueprint: Blueprint) -> None:
    """/webhooks/web/widget.js and /webhooks/web/static/* (Sanic handles ETag/304)."""
    blueprint.static(
        "/widget.js",
        str(STATIC_DIR / "widget.js"),
        name="web_widget_js",
        content_type="application/javascript; charset=utf-8",
    )
    blueprint.static("/static", str(STATIC_DIR), name="web_static")


def add_demo_login_routes(blueprint: Blueprint, identity_secret: str) -> None:
    """The demo page's stand-in for a host site's backend, which tells its page the
    logged-in user's id and user_hash. Registered only while demo logins are on
    (otherwise these paths are 404 like any unknown one):

        GET /webhooks/web/demo-logins            {"users": ["demo-zh", "demo-en"]}
        GET /webhooks/web/demo-logins/<user id>  {"user_id", "user_expires", "user_hash"};
                                                 404 for any id that isn't a demo customer's
    """

    @blueprint.route("/demo-logins", methods=["GET"])
    async def demo_logins(_: Request) -> HTTPResponse:
        return response.json({"users": list(DEMO_USER_IDS)}, headers=_NO_STORE)

    @blueprint.route("/demo-logins/<user_id>", methods=["GET"])
    async def demo_login(_: Request, user_id: str) -> HTTPResponse:
        # Exactly the fixed ids: signing anything else would let anyone be any user.
        if user_id not in DEMO_USER_IDS:
            return response.json({"error": "not a demo customer"}, status=404)
        expires = demo_login_expiry()
        return response.json(
            {
                "user_id": user_id,
                "user_expires": expires,
                "user_hash": user_hash(identity_secret, user_id, expires),
            },
            headers=_NO_STORE,
        )


def demo_login_expiry(now: float | None = None) -> int:
    """The end of the next 12-hour window: 12 to 24 hours from now."""
    window = DEMO_LOGIN_WINDOW_SECONDS
    return (int(time.time() if now is None else now) // window + 2) * window


def wants_demo_page(request: Request) -> bool:
    return (
        request.method == "GET"
        and request.path == "/"
        and "text/html" in request.headers.get("accept", "")
    )


def serve_demo_page_at_root(app: Sanic) -> None:
    """Browsers asking for / get the demo shop page; everything else (health checks,
    scripts expecting "Hello from Rasa") still gets Rasa's own answer. Rasa
    already owns the / route, hence a middleware rather than a second route."""

    async def demo_page(request: Request) -> HTTPResponse | None:
        if wants_demo_page(request):
            return await response.file(
                DEMO_PAGE,
                mime_type="text/html; charset=utf-8",
                headers={"Cache-Control": "no-cache"},
            )
        return None

    app.register_middleware(demo_page, "request")
