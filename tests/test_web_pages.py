"""What the service serves for the web widget over plain HTTP."""

from __future__ import annotations

import urllib.request

import pytest

from tests.conftest import Service

pytestmark = pytest.mark.slow


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
