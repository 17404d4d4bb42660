"""The web channel: input and output side by side (channel.py), and its parts."""

from connectors.web.channel import WebInput

__all__ = ["WebInput"]
