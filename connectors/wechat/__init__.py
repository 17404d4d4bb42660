"""The wechat channel: input and output side by side (channel.py), and its parts."""

from connectors.wechat.channel import WeChatInput

__all__ = ["WeChatInput"]
