"""Skeleton: being built (issue 3)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint


class AppInput(InputChannel):
    @classmethod
    def name(cls) -> str:
        return "app"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> AppInput:
        return cls()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        return Blueprint("app_channel", __name__)
