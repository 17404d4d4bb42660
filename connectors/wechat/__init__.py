"""The wechat channel: input and output side by side (channel.py), and its parts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.wechat.channel import WeChatInput

__all__ = ["WeChatInput"]


def __getattr__(name: str) -> Any:
    # Loaded on first use (Rasa's `connectors.wechat.WeChatInput`): `bot` checks the
    # settings with connectors.wechat.modes without importing Rasa.
    if name == "WeChatInput":
        from connectors.wechat.channel import WeChatInput

        return WeChatInput
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
