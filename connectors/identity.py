"""Who a conversation belongs to, as the channels establish it.

A conversation id is `<channel>:<subject>`, where the subject comes from a
verified source only (a signed WeChat request's OpenID, a server-signed
visitor token or the host site's HMAC, an app JWT's subject). Clients never
pick it. The channel prefix is also how `connectors.push` finds the channel
that can reach the customer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SEPARATOR = ":"


class BadConversationId(ValueError):
    pass


@dataclass(frozen=True)
class Identity:
    channel: str  # "wechat", "web", "app"
    subject: str  # OpenID, visitor/user id, app customer id
    verified_by: str  # how we know: "wechat_signature", "visitor_token", "host_hmac", "jwt"
    # True when the host site or app vouched for a customer account (not an anonymous visitor).
    customer: bool = False

    @property
    def conversation_id(self) -> str:
        return conversation_id(self.channel, self.subject)

    def metadata(self, **extra: Any) -> dict[str, Any]:
        """What goes into the user message's metadata, for actions and agents."""
        return {"channel": self.channel, "identity": asdict(self), **extra}


def conversation_id(channel: str, subject: str) -> str:
    if not channel or SEPARATOR in channel:
        raise BadConversationId(f"bad channel name {channel!r}")
    if not subject:
        raise BadConversationId("empty subject")
    return f"{channel}{SEPARATOR}{subject}"


def split_conversation_id(value: str) -> tuple[str, str]:
    """`"web:v-123"` → `("web", "v-123")`."""
    channel, sep, subject = value.partition(SEPARATOR)
    if not sep or not channel or not subject:
        raise BadConversationId(f"{value!r} is not <channel>:<subject>")
    return channel, subject
