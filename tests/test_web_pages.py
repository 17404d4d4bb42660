"""What the service serves for the web widget over plain HTTP."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from connectors.web.identity import user_hash, verify_host_user
from tests.conftest import WEB_IDENTITY_SECRET, Service

pytestmark = pytest.mark.slow

DEMO_LOGINS = "/webhooks/web/demo-logins"


def test_demo_page_for_browsers_and_rasa_hello_for_the_rest(service: Service) -> None:
    page = urllib.request.Request(service.url + "/", headers={"Accept": "text/html"})
    with urllib.request.urlopen(page, timeout=30) as response:
        html = response.read().decode()
        assert response.headers["Content-Type"].startswith("text/html")
    assert "/webhooks/web/widget.js" in html and "青玉商城" in html
    with urllib.request.urlopen(service.url + "/", timeout=30) as response:
        assert response.read().decode().startswith("Hello from Rasa")
    for path, kind in [
        ("/webhooks/web/widget.js", "javascript"),
        ("/webhooks/web/static/widget.css", "text/css"),
        ("/webhooks/web/static/socket.io.min.js", "javascript"),
    ]:
        with urllib.request.urlopen(service.url + path, timeout=30) as response:
            assert kind in response.headers["Content-Type"], path
            assert len(response.read()) > 1000


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def json_of(body: bytes) -> Any:
    return json.loads(body)


def test_demo_login_route_signs_the_demo_customers_and_nobody_else(service: Service) -> None:
    status, headers, body = fetch(service.url + DEMO_LOGINS)
    assert status == 200 and json_of(body) == {"users": ["demo-zh", "demo-en"]}
    for user_id in ("demo-zh", "demo-en"):
        status, headers, body = fetch(f"{service.url}{DEMO_LOGINS}/{user_id}")
        assert status == 200
        assert headers["Cache-Control"] == "no-store"  # a credential: no cache keeps it
        signed = json_of(body)
        expires = signed["user_expires"]
        # 12 to 24 hours, the same for every page load within a 12-hour window.
        assert 12 * 3600 <= expires - time.time() <= 24 * 3600 and expires % (12 * 3600) == 0
        assert signed == {"user_id": user_id, "user_expires": expires,
                          "user_hash": user_hash(WEB_IDENTITY_SECRET, user_id, expires)}
        # What the web channel accepts as that host-site user.
        verified = verify_host_user(WEB_IDENTITY_SECRET, user_id, signed["user_hash"], expires)
        assert verified.subject == user_id
        assert WEB_IDENTITY_SECRET.encode() not in body
    # Any other id, however close, is not signed.
    for other in ["alice", "42", "demo-zh2", "DEMO-ZH", "u-demo-zh", "demo-zh%20", "demo%2Dzh%2F",
                  "..%2Fdemo-zh", "unbound", "app-demo-en", "demo-zh/x", "%E6%BC%94%E7%A4%BA"]:
        status, _, body = fetch(f"{service.url}{DEMO_LOGINS}/{other}")
        assert status in (400, 404), other
        assert b"user_hash" not in body and WEB_IDENTITY_SECRET.encode() not in body, other


def test_demo_login_route_is_404_when_switched_off(scaled: list[Service]) -> None:
    """The scaled pair runs with DEMO_LOGINS=0, as a real deployment would."""
    for instance in scaled:
        for path in (DEMO_LOGINS, f"{DEMO_LOGINS}/demo-zh", f"{DEMO_LOGINS}/demo-en"):
            status, _, body = fetch(instance.url + path)
            assert status == 404, path
            assert b"user_hash" not in body
        # The demo page itself is still there, its control hidden by that 404.
        page = urllib.request.Request(instance.url + "/", headers={"Accept": "text/html"})
        with urllib.request.urlopen(page, timeout=30) as response:
            assert DEMO_LOGINS in response.read().decode()
