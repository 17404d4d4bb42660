"""A local HTTP server that records what it is sent: the stand-in for the
outside world we can't reach (WeChat's API servers, an app's push service).

Each request is recorded; the answer comes from a route function that tests
may replace (e.g. to make WeChat answer errcode 45015 once).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


# (request) -> (status, json body)
Route = Callable[[Recorded], "tuple[int, Any]"]


@dataclass
class Recorder:
    route: Route
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Recorder:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Recorded(
                    self.command,
                    parts.path,
                    {k: v[-1] for k, v in parse_qs(parts.query).items()},
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                with recorder._lock:
                    recorder.requests.append(request)
                status, body = recorder.route(request)
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def matching(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(
        self, path: str, count: int = 1, timeout: float = 30.0, since: int = 0
    ) -> list[Recorded]:
        """The requests to `path` (after the first `since` of them), once there are `count`."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.matching(path)[since:]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)
