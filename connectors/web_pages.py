"""The widget's files and the demo shop page, served by the Rasa server itself.

A host page embeds the widget with one tag:

    <script src="https://bot.example.com/webhooks/web/widget.js" defer></script>

widget.js loads widget.css and the vendored socket.io client from the same
place (static/socket.io.min.js: socket.io-client 4.8.4, MIT, see
static/socket.io.LICENSE).
"""

from __future__ import annotations

from pathlib import Path

from sanic import Blueprint, Sanic, response
from sanic.request import Request
from sanic.response import HTTPResponse

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEMO_PAGE = STATIC_DIR / "demo.html"


def add_static_routes(blueprint: Blueprint) -> None:
    """/webhooks/web/widget.js and /webhooks/web/static/* (Sanic handles ETag/304)."""
    blueprint.static(
        "/widget.js",
        str(STATIC_DIR / "widget.js"),
        name="web_widget_js",
        content_type="application/javascript; charset=utf-8",
    )
    blueprint.static("/static", str(STATIC_DIR), name="web_static")


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
