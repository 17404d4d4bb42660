"""Rasa's REST channel, for trusted callers only.

The stock REST channel lets the caller name any `sender`, i.e. speak as any
customer. Here it answers only requests that carry the service's API token
(`?token=` or `Authorization: Bearer`), so it serves tests, benchmarks and
server-side integrations; customers come through wechat, web or app.
"""

from __future__ import annotations

import hmac
from typing import Any, Awaitable, Callable

from rasa.core.channels.channel import UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse


class TokenRestInput(RestInput):
    def __init__(self, token: str | None) -> None:
        self.token = token or None

    @classmethod
    def name(cls) -> str:
        return "rest"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> TokenRestInput:
        return cls((credentials or {}).get("token"))

    def _authorized(self, request: Request) -> bool:
        if not self.token:
            return False
        given = request.args.get("token") or ""
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            given = header[len("Bearer ") :]
        return hmac.compare_digest(given.encode(), self.token.encode())

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        blueprint = super().blueprint(on_new_message)

        @blueprint.middleware("request")
        async def require_token(request: Request) -> HTTPResponse | None:
            if request.method == "POST" and not self._authorized(request):
                return response.json(
                    {"error": "the REST channel needs the service API token"}, status=401
                )
            return None

        return blueprint
