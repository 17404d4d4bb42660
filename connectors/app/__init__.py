"""The app channel: input and output side by side (channel.py), and its parts."""

from connectors.app.channel import AppInput

__all__ = ["AppInput"]
