"""Who a web widget client is: server-signed session tokens and the host site's HMAC.

- An anonymous visitor gets a session token: a JWT (HS256 = HMAC-SHA256, signed
  with `visitor_secret`) over a random visitor id and its issue time. The
  widget stores it and presents it again after a reload; it is only as good as
  its signature. Tokens slide: one lives `max_age_days` (30) from its issue,
  and every resume issues a fresh one, so a visitor who comes back within that
  time keeps the conversation for good, and one who doesn't loses a token
  that no longer opens anything. The older token stays valid until its own
  expiry (the tokens are stateless; a second tab may still hold it); changing
  `visitor_secret` revokes them all.
- A logged-in user of the host site comes with `user_id`, `user_expires` (a
  Unix time) and `user_hash`, the hex HMAC-SHA256 of "<user_id>:<user_expires>"
  that the host site's backend made with the shared `identity_secret`
  (Intercom's and Chatwoot's identity verification, with an expiry). Past
  `user_expires` the hash is refused, so one that leaked (a log, a cached
  page) is not a credential forever. The old form, the HMAC of the user id
  alone, never expires, so it is refused unless `allow_hash_without_expiry`.
  Their session token names the user, but the token alone never resumes a
  user's conversation: that needs the HMAC again, so a shared computer whose
  host site logged out doesn't show the previous user's chat.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from connectors.identity import Identity

CHANNEL = "web"
# The audience keeps these tokens apart from any other JWT signed with the same key.
_AUDIENCE = "jade-web-session"
_ALGORITHM = "HS256"
# Patterns are used with fullmatch: "$" would let a trailing newline through.
_VISITOR_ID = re.compile(r"[0-9a-f]{32}")
# Host-site user ids: letters (any script), digits and the usual id punctuation;
# nothing that would need escaping in a conversation-id URL (/conversations/<id>/…).
_USER_ID = re.compile(r"[\w.@+\-]{1,128}")
DEFAULT_TOKEN_DAYS = 30
MIN_SECRET_BYTES = 32


class IdentityRefused(Exception):
    """The client's proof of identity did not check out; the text says why."""


@dataclass(frozen=True)
class WebSession:
    """A socket's verified session: what user_uttered must match and whose messages they are."""

    session_id: str  # the token the client was given in session_confirm
    identity: Identity

    @property
    def conversation_id(self) -> str:
        return self.identity.conversation_id


def visitor_identity(visitor_id: str) -> Identity:
    return Identity(CHANNEL, f"v-{visitor_id}", "visitor_token", customer=False)


def user_identity(user_id: str) -> Identity:
    # The subject is the host site's own user id, as the shop binds it to an account
    # (identities: channel "web", subject "demo-zh"); the conversation is "web:u-<id>".
    return Identity(
        CHANNEL, user_id, "host_hmac", customer=True, conversation_subject=f"u-{user_id}"
    )


class SessionTokens:
    """Issues and checks the session tokens given in session_confirm."""

    def __init__(self, secret: str, max_age_days: float = DEFAULT_TOKEN_DAYS) -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            # RFC 7518 §3.2: an HS256 key at least as long as the hash.
            raise ValueError(
                f"the web channel's visitor_secret must be at least {MIN_SECRET_BYTES} bytes "
                "(unset WEB_VISITOR_SECRET and `bot run` generates one)"
            )
        self._secret = secret
        self._max_age = max_age_days * 86400

    def _sign(self, subject: str) -> str:
        # jti: a renewed token differs from the one it replaces even within a second.
        claims = {"sub": subject, "iat": int(time.time()), "aud": _AUDIENCE,
                  "jti": secrets.token_urlsafe(8)}
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def new_visitor(self) -> WebSession:
        identity = visitor_identity(secrets.token_hex(16))
        return WebSession(self._sign(identity.subject), identity)

    def for_user(self, identity: Identity) -> WebSession:
        # Signed as "u-<user id>", so a token can't pass for a visitor's.
        return WebSession(self._sign(identity.conversation_subject or identity.subject), identity)

    def subject_of(self, token: Any) -> str:
        """The verified subject ("v-…" or "u-…") of a token; raises IdentityRefused."""
        # A JWT is ASCII; PyJWT fails on a lone surrogate with an error of its own.
        if not isinstance(token, str) or not token or len(token) > 1024 or not token.isascii():
            raise IdentityRefused("the session token is not a token")
        try:
            # PyJWT compares signatures with hmac.compare_digest.
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                audience=_AUDIENCE,
                options={"require": ["sub", "iat", "aud"]},
            )
        except jwt.PyJWTError as error:
            raise IdentityRefused(f"the session token does not verify: {error}") from None
        if time.time() - float(claims["iat"]) > self._max_age:
            raise IdentityRefused("the session token has expired")
        subject = str(claims["sub"])
        kind, _, rest = subject.partition("-")
        if (kind == "v" and _VISITOR_ID.fullmatch(rest)) or (
            kind == "u" and _USER_ID.fullmatch(rest)
        ):
            return subject
        raise IdentityRefused("the session token names no visitor or user")

    def resume_visitor(self, token: Any) -> WebSession | None:
        """The visitor session a token proves, with a fresh token (sliding expiry);
        None for a (valid) user token, which can't resume anything by itself;
        IdentityRefused for a bad or expired token."""
        subject = self.subject_of(token)
        if not subject.startswith("v-"):
            return None
        return WebSession(self._sign(subject), visitor_identity(subject[2:]))


def user_hash(identity_secret: str, user_id: str, expires: int | None = None) -> str:
    """What the host site's backend computes: hex HMAC-SHA256(identity_secret,
    "<user_id>:<expires>"), expires a Unix time in seconds; without `expires`, the
    old form HMAC-SHA256(identity_secret, user_id). A user id has no ':', so
    neither form can pass for the other."""
    message = user_id if expires is None else f"{user_id}:{expires}"
    return hmac.new(identity_secret.encode(), message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class HostClaim:
    """What a client says about its host-site user; nothing in it is checked yet."""

    user_id: Any
    user_hash: Any
    expires: Any = None


def _expiry(value: Any) -> int | None:
    """user_expires as whole seconds; raises IdentityRefused if it is no such number."""
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**12:
        return value
    raise IdentityRefused("user_expires must be a Unix time in whole seconds")


def verify_host_user(
    identity_secret: str,
    user_id: Any,
    given_hash: Any,
    expires: Any = None,
    allow_without_expiry: bool = False,
    now: float | None = None,
) -> Identity:
    """The host site's user, if their HMAC checks out and has not expired; raises
    IdentityRefused."""
    if not identity_secret:
        raise IdentityRefused("this service does not verify host-site users (no identity_secret)")
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)  # host sites often have numeric ids
    if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
        raise IdentityRefused("user_id must be 1–128 letters, digits or . @ + - _")
    if not isinstance(given_hash, str) or not given_hash:
        raise IdentityRefused("user_hash is missing")
    if not given_hash.isascii():  # compare_digest takes ASCII strings only
        raise IdentityRefused("user_hash does not match user_id")
    until = _expiry(expires)
    if until is None and not allow_without_expiry:
        raise IdentityRefused(
            'user_expires is missing: user_hash must sign "<user_id>:<user_expires>"'
        )
    expected = user_hash(identity_secret, user_id, until)
    # Checked before the expiry: only a genuine claim learns that it expired.
    if not hmac.compare_digest(expected.encode(), given_hash.strip().lower().encode()):
        raise IdentityRefused("user_hash does not match user_id")
    if until is not None and until <= (time.time() if now is None else now):
        raise IdentityRefused("user_hash has expired (user_expires is past)")
    return user_identity(user_id)


def host_user_claim(data: Any) -> HostClaim | None:
    """What the client claims about its host-site user, if it claims to be one."""
    if not isinstance(data, dict):
        return None
    if data.get("user_id") is None and data.get("user_hash") is None:
        return None
    return HostClaim(data.get("user_id"), data.get("user_hash"), data.get("user_expires"))
