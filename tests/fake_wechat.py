"""A stand-in for WeChat's API servers (api.weixin.qq.com), on loopback.

The connector's `api_base_url` points here in tests. It issues access
tokens, accepts customer-service messages and menus, records everything, and
can be told to fail the next calls with a WeChat error code.
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict, deque
from typing import Any

from tests.http_recorder import Recorded, Recorder

APP_ID = "wx5e6b2c0f3a1d7e90"
APP_SECRET = "test-wechat-app-secret"


class FakeWeChatAPI:
    def __init__(self) -> None:
        self._tokens = itertools.count(1)
        self._failures: dict[str, deque[tuple[int, str]]] = defaultdict(deque)
        self._lock = threading.Lock()
        self.issued: list[str] = []
        self.recorder = Recorder(self._route)

    @property
    def base_url(self) -> str:
        """What the connector's api_base_url is set to."""
        return f"{self.recorder.url}/cgi-bin/"

    def start(self) -> FakeWeChatAPI:
        self.recorder.start()
        return self

    def stop(self) -> None:
        self.recorder.stop()

    def fail_next(self, path: str, errcode: int, errmsg: str, times: int = 1) -> None:
        """Make the next `times` calls to `path` (e.g. "/cgi-bin/message/custom/send") fail."""
        with self._lock:
            self._failures[path].extend([(errcode, errmsg)] * times)

    def sent_messages(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.recorder.matching("/cgi-bin/message/custom/send")]

    def _route(self, request: Recorded) -> tuple[int, Any]:
        with self._lock:
            failures = self._failures.get(request.path)
            if failures:
                errcode, errmsg = failures.popleft()
                return 200, {"errcode": errcode, "errmsg": errmsg}
        if request.path == "/cgi-bin/token":
            if request.query.get("appid") != APP_ID or request.query.get("secret") != APP_SECRET:
                return 200, {"errcode": 40013, "errmsg": "invalid appid"}
            token = f"ACCESS_TOKEN_{next(self._tokens)}"
            with self._lock:
                self.issued.append(token)
            return 200, {"access_token": token, "expires_in": 7200}
        token = request.query.get("access_token")
        if token not in self.issued:
            return 200, {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}
        return 200, {"errcode": 0, "errmsg": "ok"}
