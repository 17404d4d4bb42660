"""The app channel's JWT verification and configuration, without a server.

The running service uses HS256 (tests/test_app.py); RS256 and the attacks on
algorithm choice are checked here on the channel's own verifier.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from connectors.app.auth import BadToken, JwtVerifier, bearer_token
from connectors.app.channel import AppInput
from connectors.app.outbox import BadCursor, check_since

# Long enough for HS512 too (64 bytes), so the wrong-algorithm test is about the algorithm.
SECRET = "an-hmac-shared-secret-" + "0123456789abcdef" * 3
NOW = int(time.time())  # when the module was collected: the parameters use it
YEAR = 365 * 86400


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[Any, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public_pem


def claims(**extra: Any) -> dict[str, Any]:
    """A good token's claims; a claim given as None is left out."""
    now = int(time.time())
    found = {"sub": "c-1001", "aud": "customer-service", "iat": now, "exp": now + 600, **extra}
    return {k: v for k, v in found.items() if v is not None}


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_hs256_good_token_names_the_customer() -> None:
    verifier = JwtVerifier.from_config("HS256", SECRET)
    found = verifier.verify(jwt.encode(claims(), SECRET, algorithm="HS256"))
    assert found.subject == "c-1001"
    assert found.identity.conversation_id == "app:c-1001"
    assert found.identity.metadata()["identity"] == {
        "channel": "app",
        "subject": "c-1001",
        "verified_by": "jwt",
        "customer": True,
    }


def test_rs256_good_token(rsa_keys: tuple[Any, str]) -> None:
    private, public_pem = rsa_keys
    verifier = JwtVerifier.from_config("RS256", public_pem)
    assert verifier.verify(jwt.encode(claims(), private, algorithm="RS256")).subject == "c-1001"


def test_rs256_public_key_with_escaped_newlines_from_an_env_var(rsa_keys: tuple[Any, str]) -> None:
    private, public_pem = rsa_keys
    verifier = JwtVerifier.from_config("RS256", public_pem.replace("\n", "\\n"))
    assert verifier.verify(jwt.encode(claims(), private, algorithm="RS256")).subject == "c-1001"


def test_rs256_token_signed_by_another_key_is_refused(rsa_keys: tuple[Any, str]) -> None:
    _, public_pem = rsa_keys
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    verifier = JwtVerifier.from_config("RS256", public_pem)
    with pytest.raises(BadToken, match="signature"):
        verifier.verify(jwt.encode(claims(), other, algorithm="RS256"))


def test_hs256_token_made_with_the_rs256_public_key_is_refused(rsa_keys: tuple[Any, str]) -> None:
    """Algorithm confusion: the public key is public, so anyone could sign with it."""
    _, public_pem = rsa_keys
    verifier = JwtVerifier.from_config("RS256", public_pem)
    # PyJWT itself won't sign HS256 with a PEM key; build the token by hand.
    import hashlib
    import hmac

    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(claims())}"
    mac = hmac.new(public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    forged = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    with pytest.raises(BadToken, match="'HS256' is not accepted; expected RS256"):
        verifier.verify(forged)


def test_alg_none_is_refused() -> None:
    verifier = JwtVerifier.from_config("HS256", SECRET)
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}."
    with pytest.raises(BadToken, match="'none' is not accepted"):
        verifier.verify(unsigned)
    # Whatever the case of "none".
    unsigned = f"{b64({'alg': 'None'})}.{b64(claims())}."
    with pytest.raises(BadToken, match="not accepted"):
        verifier.verify(unsigned)


def test_other_algorithm_with_the_right_secret_is_refused() -> None:
    verifier = JwtVerifier.from_config("HS256", SECRET)
    with pytest.raises(BadToken, match="'HS512' is not accepted"):
        verifier.verify(jwt.encode(claims(), SECRET, algorithm="HS512"))


def test_es256_token_is_refused_by_an_rs256_verifier(rsa_keys: tuple[Any, str]) -> None:
    _, public_pem = rsa_keys
    verifier = JwtVerifier.from_config("RS256", public_pem)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(BadToken, match="'ES256' is not accepted"):
        verifier.verify(jwt.encode(claims(), ec_key, algorithm="ES256"))


def test_expired_token_is_refused_after_the_leeway() -> None:
    verifier = JwtVerifier.from_config("HS256", SECRET, leeway=5)
    just_expired = jwt.encode(claims(exp=int(time.time()) - 2), SECRET, algorithm="HS256")
    assert verifier.verify(just_expired).subject == "c-1001"  # within the leeway
    expired = jwt.encode(claims(exp=int(time.time()) - 60), SECRET, algorithm="HS256")
    with pytest.raises(BadToken, match="token expired"):
        verifier.verify(expired)


def test_forged_token_is_refused() -> None:
    verifier = JwtVerifier.from_config("HS256", SECRET)
    forged = jwt.encode(claims(), "someone-elses-secret-also-32-bytes-long", algorithm="HS256")
    with pytest.raises(BadToken, match="bad token signature"):
        verifier.verify(forged)
    # A good token whose payload was swapped for another customer's.
    header, _, signature = jwt.encode(claims(), SECRET, algorithm="HS256").split(".")
    tampered = f"{header}.{b64(claims(sub='c-2002'))}.{signature}"
    with pytest.raises(BadToken, match="bad token signature"):
        verifier.verify(tampered)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (claims(exp=None), "'exp'"),
        (claims(iat=None), "'iat'"),
        (claims(sub=None), "'sub'"),
        (claims(aud=None), "'aud'"),
        (claims(sub=""), "sub"),
        (claims(sub="has space"), "subject"),
        (claims(sub="x" * 129), "subject"),
        # "$" matched before a final newline: "abc\n" would have been another customer.
        (claims(sub="abc\n"), "subject"),
        (claims(sub="abc\r\n"), "subject"),
        (claims(nbf=int(time.time()) + 3600), "yet"),
        (claims(aud="the-shops-own-api"), "audience"),
        (claims(aud=["the-shops-own-api", "another"]), "audience"),
        # A backdated iat can't make a year-long token look short, nor a future one.
        (claims(exp=NOW + YEAR), "lifetime"),
        (claims(iat=NOW - 3000, exp=NOW + 601), "lifetime"),
        (claims(iat=NOW + YEAR, exp=NOW + YEAR + 60), "iat"),
    ],
)
def test_tokens_without_what_we_need_are_refused(payload: dict[str, Any], reason: str) -> None:
    verifier = JwtVerifier.from_config("HS256", SECRET)
    with pytest.raises(BadToken, match=reason):
        verifier.verify(jwt.encode(payload, SECRET, algorithm="HS256"))


def test_audience_and_lifetime_limits_that_pass() -> None:
    verifier = JwtVerifier.from_config("HS256", SECRET)
    now = int(time.time())
    exactly_an_hour = claims(iat=now, exp=now + 3600)
    assert verifier.verify(jwt.encode(exactly_an_hour, SECRET, algorithm="HS256"))
    among_others = claims(aud=["the-shops-own-api", "customer-service"])
    assert verifier.verify(jwt.encode(among_others, SECRET, algorithm="HS256"))
    # A configured audience and maximum lifetime replace the defaults.
    strict = JwtVerifier.from_config("HS256", SECRET, audience="support", max_lifetime=300)
    with pytest.raises(BadToken, match="audience"):
        strict.verify(jwt.encode(claims(), SECRET, algorithm="HS256"))
    with pytest.raises(BadToken, match="exceeds 300 s"):
        strict.verify(jwt.encode(claims(aud="support"), SECRET, algorithm="HS256"))
    assert strict.verify(jwt.encode(claims(aud="support", exp=now + 300), SECRET, "HS256"))
    with pytest.raises(ValueError, match="jwt_max_lifetime_seconds"):
        AppInput.from_credentials({"jwt_key": SECRET, "jwt_max_lifetime_seconds": 0})


@pytest.mark.parametrize("token", ["", "   ", "not-a-jwt", "a.b.c", "Bearer x.y.z"])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(BadToken):
        JwtVerifier.from_config("HS256", SECRET).verify(token)


def test_issuer_and_audience_when_configured() -> None:
    verifier = JwtVerifier.from_config("HS256", SECRET, issuer="shop-app", audience="support")
    good = jwt.encode(claims(iss="shop-app", aud="support"), SECRET, algorithm="HS256")
    assert verifier.verify(good).subject == "c-1001"
    for bad in (claims(aud="support"), claims(iss="other", aud="support"), claims(iss="shop-app")):
        with pytest.raises(BadToken):
            verifier.verify(jwt.encode(bad, SECRET, algorithm="HS256"))
    with pytest.raises(BadToken, match="'iss'"):
        verifier.verify(jwt.encode(claims(aud="support"), SECRET, algorithm="HS256"))


@pytest.mark.parametrize(
    ("algorithm", "key", "message"),
    [
        ("HS256", "short", "too short"),
        ("HS512", "x" * 40, "at least 64 bytes"),
        ("none", SECRET, "not supported"),
        ("ES256", SECRET, "not supported"),
        ("RS256", SECRET, "PEM public key"),
    ],
)
def test_bad_configuration_stops_the_channel_at_start(
    algorithm: str, key: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        JwtVerifier.from_config(algorithm, key)


def test_hs256_refuses_a_pem_key_as_its_secret(rsa_keys: tuple[Any, str]) -> None:
    with pytest.raises(ValueError, match="use RS256"):
        JwtVerifier.from_config("HS256", rsa_keys[1])


def test_from_credentials() -> None:
    off = AppInput.from_credentials({"jwt_algorithm": "HS256", "jwt_key": ""})
    assert off.verifier is None and off.get_output_channel() is None
    on = AppInput.from_credentials(
        {
            "jwt_algorithm": "",  # unset: HS256
            "jwt_key": SECRET,
            "push_webhook_url": "http://127.0.0.1:9/push",
            "push_webhook_secret": "s",
            "max_message_chars": 50,
        }
    )
    assert on.verifier is not None and on.verifier.algorithm == "HS256"
    assert on.limits.max_message_chars == 50
    assert on.get_output_channel() is not None
    with pytest.raises(ValueError, match="push_webhook_secret"):
        AppInput.from_credentials({"jwt_key": SECRET, "push_webhook_url": "http://x/push"})
    with pytest.raises(ValueError, match="keepalive_seconds"):
        AppInput.from_credentials({"jwt_key": SECRET, "keepalive_seconds": "soon"})


@pytest.mark.parametrize(
    "url",
    [
        "http://push.example.com/push",  # the signature and previews in the clear
        "http://localhost.example.com/push",
        "http://127.0.0.1@push.example.com/push",  # userinfo, then the real host
        "ftp://push.example.com/push",
        "push.example.com/push",
        "https:///push",
    ],
)
def test_push_webhook_must_be_https(url: str) -> None:
    settings = {"jwt_key": SECRET, "push_webhook_url": url, "push_webhook_secret": "s"}
    with pytest.raises(ValueError, match="push_webhook_url must be"):
        AppInput.from_credentials(settings)


@pytest.mark.parametrize(
    ("url", "allow_http"),
    [
        ("https://push.example.com/push", ""),
        ("http://127.0.0.1:8080/push", ""),
        ("http://localhost:8080/push", ""),
        ("http://[::1]:8080/push", ""),
        ("http://push-relay:8080/push", "1"),  # an explicit choice (a private network)
    ],
)
def test_push_webhook_urls_allowed(url: str, allow_http: str) -> None:
    channel = AppInput.from_credentials(
        {
            "jwt_key": SECRET,
            "push_webhook_url": url,
            "push_webhook_secret": "s",
            "push_webhook_allow_http": allow_http,
        }
    )
    assert channel.outbox.config.push_webhook_url == url


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer abc") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


def test_since_cursor() -> None:
    assert check_since(None) == "0"
    assert check_since("1700000000000-3") == "1700000000000-3"
    # "1-0\n": "$" matched before a final newline; "١٢": \d is any script's digits.
    for bad in ("-", "+", "$", ">", "(1-0", "1-0-0", "abc", "1" * 30, "1-0\n", "12\n", "١٢"):
        with pytest.raises(BadCursor):
            check_since(bad)


@pytest.mark.asyncio
async def test_channel_off_answers_503_over_http_and_websocket() -> None:
    """No jwt_key: the routes exist and say so, rather than 404 or a crash."""
    import httpx
    import websockets

    from tests.app_client import serve_channel

    channel = AppInput.from_credentials({"jwt_algorithm": "HS256", "jwt_key": ""})

    async def never(message: Any) -> None:
        raise AssertionError("nothing may be processed")

    async with serve_channel(channel, never) as url:
        token = jwt.encode(claims(), SECRET, algorithm="HS256")
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"{url}/webhooks/app/messages",
                json={"text": "hi"},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert answer.status_code == 503
        assert answer.json()["error"] == "channel_off"
        ws_base = url.replace("http://", "ws://")
        async with websockets.connect(f"{ws_base}/webhooks/app/ws") as ws:
            assert json.loads(await ws.recv())["error"] == "channel_off"
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4503
