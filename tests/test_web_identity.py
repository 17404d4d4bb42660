"""Who a web client is: session tokens and the host site's HMAC. No server needed
(the same refusals over real sockets are in test_web_socket.py)."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from connectors.web.identity import (
    DEFAULT_TOKEN_DAYS,
    HostClaim,
    IdentityRefused,
    SessionTokens,
    host_user_claim,
    user_hash,
    verify_host_user,
)
from tests.web_client import forge

SECRET = "unit-test-visitor-secret-0123456789abcdef"
IDENTITY_SECRET = "unit-test-identity-secret"


def test_new_visitor_token_verifies_to_the_same_conversation() -> None:
    tokens = SessionTokens(SECRET)
    session = tokens.new_visitor()
    assert session.conversation_id.startswith("web:v-")
    resumed = tokens.resume_visitor(session.session_id)
    assert resumed is not None
    assert resumed.conversation_id == session.conversation_id
    assert tokens.subject_of(resumed.session_id) == tokens.subject_of(session.session_id)
    assert resumed.identity.verified_by == "visitor_token"
    assert resumed.identity.customer is False


def test_visitors_get_different_conversations() -> None:
    tokens = SessionTokens(SECRET)
    assert tokens.new_visitor().conversation_id != tokens.new_visitor().conversation_id


@pytest.mark.parametrize(
    "make_token",
    [
        # Another server's secret.
        lambda t: SessionTokens("some-other-secret-0123456789abcdefghij").new_visitor().session_id,
        # Someone else's visitor id, old signature.
        lambda t: forge(t, "v-" + "0" * 32),
        # The signature cut off, or swapped for "none".
        lambda t: t.rsplit(".", 1)[0] + ".",
        lambda t: jwt.encode({"sub": "v-" + "1" * 32, "iat": int(time.time())}, None, "none"),
        # Right secret, wrong audience (e.g. another service's JWT) or a made-up subject.
        lambda t: jwt.encode({"sub": "v-" + "1" * 32, "iat": int(time.time())}, SECRET, "HS256"),
        lambda t: jwt.encode(
            {"sub": "admin", "iat": int(time.time()), "aud": "jade-web-session"}, SECRET, "HS256"
        ),
        lambda t: "web:v-" + "1" * 32,
        lambda t: 12345,
        lambda t: "x" * 5000,
    ],
    ids=[
        "other-secret",
        "tampered-subject",
        "no-signature",
        "alg-none",
        "no-audience",
        "bad-subject",
        "raw-conversation-id",
        "not-a-string",
        "huge",
    ],
)
def test_forged_tokens_are_refused(make_token) -> None:  # type: ignore[no-untyped-def]
    tokens = SessionTokens(SECRET)
    forged = make_token(tokens.new_visitor().session_id)
    with pytest.raises(IdentityRefused):
        tokens.resume_visitor(forged)


def test_expired_token_is_refused() -> None:
    old = SessionTokens(SECRET)
    token = old.new_visitor().session_id
    assert SessionTokens(SECRET, max_age_days=1).resume_visitor(token) is not None
    with pytest.raises(IdentityRefused, match="expired"):
        SessionTokens(SECRET, max_age_days=-1).resume_visitor(token)


def test_tokens_slide_a_resume_renews_and_the_old_one_lives_its_own_life(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A visitor token lives 30 days from its issue (it lived 365 and was never
    renewed); each resume issues a fresh one, so a visitor who comes back every
    few weeks keeps the conversation; the old token works until its own end."""
    assert DEFAULT_TOKEN_DAYS == 30
    tokens = SessionTokens(SECRET)
    day = 86400
    # Our clock only (PyJWT refuses an iat in its own future): a year ago onwards.
    clock = [time.time() - 380 * day]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    first = tokens.new_visitor()
    token = first.session_id
    for _ in range(12):  # a year of visits, 29 days apart
        clock[0] += 29 * day
        resumed = tokens.resume_visitor(token)
        assert resumed is not None and resumed.conversation_id == first.conversation_id
        assert resumed.session_id != token
        assert jwt.decode(resumed.session_id, options={"verify_signature": False})["iat"] == int(
            clock[0]
        )
        previous, token = token, resumed.session_id
    # The one before the last renewal is still good for the rest of its own 30 days …
    assert tokens.resume_visitor(previous) is not None
    clock[0] += 2 * day  # … and not after: 31 days since it was issued
    with pytest.raises(IdentityRefused, match="expired"):
        tokens.resume_visitor(previous)
    clock[0] += 27 * day  # the newest: 29 days old, fine; 31 days: gone
    assert tokens.resume_visitor(token) is not None
    clock[0] += 2 * day
    with pytest.raises(IdentityRefused, match="expired"):
        tokens.resume_visitor(token)


def test_a_user_token_alone_resumes_nothing() -> None:
    tokens = SessionTokens(SECRET)
    host_user = verify_host_user(
        IDENTITY_SECRET, "42", user_hash(IDENTITY_SECRET, "42", 4_000_000_000), 4_000_000_000
    )
    user = tokens.for_user(host_user)
    assert user.conversation_id == "web:u-42"
    assert tokens.resume_visitor(user.session_id) is None


def test_signing_needs_a_secret() -> None:
    for weak in ("", "short-secret"):
        with pytest.raises(ValueError, match="at least 32 bytes"):
            SessionTokens(weak)


def test_host_hmac() -> None:
    until = int(time.time()) + 3600
    good = user_hash(IDENTITY_SECRET, "alice@example.com", until)
    identity = verify_host_user(IDENTITY_SECRET, "alice@example.com", good, until)
    assert identity.conversation_id == "web:u-alice@example.com"
    assert identity.verified_by == "host_hmac" and identity.customer
    # Numeric ids and expiries from the host site, upper-case hex: same user.
    assert verify_host_user(
        IDENTITY_SECRET, 42, user_hash(IDENTITY_SECRET, "42", until).upper(), str(until)
    )
    for user_id, given, why in [
        ("alice@example.com", user_hash(IDENTITY_SECRET, "bob@example.com", until),
         "does not match"),
        ("alice@example.com", user_hash("wrong-secret", "alice@example.com", until),
         "does not match"),
        ("alice@example.com", "", "missing"),
        ("alice@example.com", None, "missing"),
        ("../../etc", user_hash(IDENTITY_SECRET, "../../etc", until), "user_id"),
        ("a" * 129, user_hash(IDENTITY_SECRET, "a" * 129, until), "user_id"),
        (None, good, "user_id"),
    ]:
        with pytest.raises(IdentityRefused, match=why):
            verify_host_user(IDENTITY_SECRET, user_id, given, until)
    with pytest.raises(IdentityRefused, match="identity_secret"):
        verify_host_user("", "alice@example.com", good, until)


def test_host_hmac_expires() -> None:
    """A user_hash signs the user id and its expiry; past it, or with the expiry
    moved, or without one (the old form, which never expired), it is refused."""
    now = time.time()
    past, soon = int(now) - 1, int(now) + 60
    expired = user_hash(IDENTITY_SECRET, "alice", past)
    with pytest.raises(IdentityRefused, match="expired"):
        verify_host_user(IDENTITY_SECRET, "alice", expired, past)
    # Moving the expiry of a leaked hash breaks it.
    for moved in (soon, str(soon), past + 86400 * 365):
        with pytest.raises(IdentityRefused, match="does not match"):
            verify_host_user(IDENTITY_SECRET, "alice", expired, moved)
    assert verify_host_user(IDENTITY_SECRET, "alice", user_hash(IDENTITY_SECRET, "alice", soon),
                            soon)
    with pytest.raises(IdentityRefused, match="expired"):
        verify_host_user(IDENTITY_SECRET, "alice", user_hash(IDENTITY_SECRET, "alice", soon),
                         soon, now=soon)
    # The old form: no expiry, refused unless the deployment still allows it.
    old = user_hash(IDENTITY_SECRET, "alice")
    with pytest.raises(IdentityRefused, match="user_expires is missing"):
        verify_host_user(IDENTITY_SECRET, "alice", old)
    assert verify_host_user(IDENTITY_SECRET, "alice", old, allow_without_expiry=True)
    # Neither form passes for the other: user ids have no ':'.
    with pytest.raises(IdentityRefused, match="does not match"):
        verify_host_user(IDENTITY_SECRET, "alice", old, soon, allow_without_expiry=True)
    with pytest.raises(IdentityRefused, match="user_id"):
        verify_host_user(IDENTITY_SECRET, f"alice:{soon}",
                         user_hash(IDENTITY_SECRET, "alice", soon), allow_without_expiry=True)
    for garbage in ("soon", "-5", "1.5", "１２３", 1.5, True, [soon], 10**13, "9" * 13):
        with pytest.raises(IdentityRefused, match="user_expires"):
            verify_host_user(IDENTITY_SECRET, "alice", expired, garbage)


def test_host_user_claim() -> None:
    assert host_user_claim(None) is None
    assert host_user_claim({"session_id": "x"}) is None
    assert host_user_claim({"user_id": "1", "user_hash": "ab"}) == HostClaim("1", "ab")
    assert host_user_claim({"user_hash": "ab", "user_expires": 5}) == HostClaim(None, "ab", 5)


def test_a_host_user_is_their_own_id_to_the_shop_in_a_conversation_of_their_own() -> None:
    """The shop binds accounts to the host site's user id (identities: "web",
    "demo-zh"); the conversation stays "web:u-<id>", apart from visitors'."""
    user = verify_host_user(IDENTITY_SECRET, "demo-zh", user_hash(IDENTITY_SECRET, "demo-zh"),
                            allow_without_expiry=True)
    assert user.subject == "demo-zh"
    assert user.conversation_id == "web:u-demo-zh"
    assert user.metadata()["identity"] == {
        "channel": "web", "subject": "demo-zh", "verified_by": "host_hmac", "customer": True,
    }
    tokens = SessionTokens(SECRET)
    session = tokens.for_user(user)
    assert tokens.subject_of(session.session_id) == "u-demo-zh"
    assert tokens.resume_visitor(session.session_id) is None


def test_demo_logins_sign_exactly_the_demo_customers_web_ids() -> None:
    from bot.shop.demo import DEMO_CUSTOMERS
    from connectors.web.pages import DEMO_USER_IDS

    bound = tuple(c.identities["web"] for c in DEMO_CUSTOMERS if "web" in c.identities)
    assert DEMO_USER_IDS == bound == ("demo-zh", "demo-en")


def test_demo_logins_switch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """On unless switched off, in credentials.yml's values and in the settings; with
    them on and no WEB_IDENTITY_SECRET, `bot run` gives Rasa one kept under var/."""
    from bot import settings
    from bot.cli import channel_env
    from connectors.web.channel import WebInput

    assert WebInput.from_credentials({}).demo_logins is True
    for value, on in [("", True), ("1", True), ("on", True), ("0", False), ("off", False),
                      ("false", False), (False, False)]:
        assert WebInput.from_credentials({"demo_logins": value}).demo_logins is on, value
    with pytest.raises(ValueError, match="1 or 0"):
        WebInput.from_credentials({"demo_logins": "maybe"})

    monkeypatch.setenv("BOT_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("WEB_IDENTITY_SECRET", raising=False)
    try:
        for value, on in [("", True), ("0", False), ("1", True)]:
            monkeypatch.setenv("DEMO_LOGINS", value)
            settings.get_settings.cache_clear()
            assert settings.get_settings().demo_logins is on
            env = channel_env(settings.get_settings(), "token")
            assert env["DEMO_LOGINS"] == ("1" if on else "0")
            if on:
                stored = (tmp_path / "web_identity_secret").read_text().strip()
                assert env["WEB_IDENTITY_SECRET"] == stored and len(stored) >= 32
            else:
                assert env["WEB_IDENTITY_SECRET"] == ""  # host-user logins stay off
        monkeypatch.setenv("WEB_IDENTITY_SECRET", "the-host-sites-own-secret")
        settings.get_settings.cache_clear()
        env = channel_env(settings.get_settings(), "token")
        assert env["WEB_IDENTITY_SECRET"] == "the-host-sites-own-secret"
        monkeypatch.setenv("DEMO_LOGINS", "maybe")
        settings.get_settings.cache_clear()
        with pytest.raises(SystemExit, match="DEMO_LOGINS"):
            settings.get_settings()
    finally:
        monkeypatch.undo()
        settings.get_settings.cache_clear()
