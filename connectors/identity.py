"""Who a conversation belongs to, as the channels establish it.

A conversation id is `<channel>:<subject>`, where the subject comes from a
verified source only (a signed WeChat request's OpenID, a server-signed
visitor token or the host site's HMAC, an app JWT's subject). Clients never
pick it. The channel prefix is also how `connectors.push` finds the channel
that can reach the customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SEPARATOR = ":"


class BadConversationId(ValueError):
    pass


@dataclass(frozen=True)
class Identity:
    channel: str  # "wechat", "web", "app"
    # Who, as the shop's account bindings name them (channel, subject): OpenID,
    # visitor ("v-…") or host-site user id, app customer id.
    subject: str
    verified_by: str  # how we know: "wechat_signature", "visitor_token", "host_hmac", "jwt"
    # True when the host site or app vouched for a customer account (not an anonymous visitor).
    customer: bool = False
    # The conversation id's subject where it isn't `subject`: the web channel keeps its
    # users' conversations ("u-<user id>") apart from its visitors' ("v-<random>").
    conversation_subject: str = ""

    @property
    def conversation_id(self) -> str:
        return conversation_id(self.channel, self.conversation_subject or self.subject)

    def metadata(self, **extra: Any) -> dict[str, Any]:
        """What goes into the user message's metadata, for actions and agents (the
        conversation id is the tracker's own sender id)."""
        identity = {
            "channel": self.channel,
            "subject": self.subject,
            "verified_by": self.verified_by,
            "customer": self.customer,
        }
        return {"channel": self.channel, "identity": identity, **extra}


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
