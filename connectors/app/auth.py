"""Who an app request comes from: a JWT made by the app's own backend.

The app's backend signs a short-lived token for its logged-in customer
(`sub` = the customer id; `aud`, `iat` and `exp` required) with either a shared
secret (HS*) or its RSA private key (RS*, we hold only the public key). PyJWT
verifies it, restricted to the one configured algorithm: a token claiming
"none", or HS256 signed with our RS256 public key as the "secret" (algorithm
confusion), is refused before any key is used.

The audience is always checked (default `customer-service`): a token the
backend made for another of its services, with the same key, is not one for
us. The issuer is checked when configured. `exp - iat` may not exceed
`max_lifetime` (default an hour), so a leaked token is not good for a year.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from connectors.identity import Identity

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
RSA_ALGORITHMS = ("RS256", "RS384", "RS512")
DEFAULT_LEEWAY_SECONDS = 30.0
DEFAULT_AUDIENCE = "customer-service"
DEFAULT_MAX_LIFETIME_SECONDS = 3600.0
# Printable, no whitespace: the subject becomes part of Redis keys and the
# conversation id, and shows up in logs and the agent desk.
# Used with fullmatch: "$" would let a trailing newline through.
_SUBJECT = re.compile(r"[^\s\x00-\x1f\x7f\ud800-\udfff]{1,128}")


class BadToken(Exception):
    """The token was refused; the text says why (safe to show the app developer),
    `code` in a word (for logs: never anything from the token)."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Claims:
    subject: str
    expires_at: float
    identity: Identity


@dataclass(frozen=True)
class JwtVerifier:
    algorithm: str
    key: Any  # the HMAC secret (bytes) or an RSA public key
    issuer: str | None = None
    audience: str = DEFAULT_AUDIENCE
    leeway: float = DEFAULT_LEEWAY_SECONDS
    max_lifetime: float = DEFAULT_MAX_LIFETIME_SECONDS

    @classmethod
    def from_config(
        cls,
        algorithm: str | None,
        key: str,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float | None = None,
        max_lifetime: float | None = None,
    ) -> JwtVerifier:
        """Checks the configuration now, so a mistake stops the server at start
        with a clear message instead of refusing every customer later."""
        algorithm = (algorithm or "HS256").strip().upper()
        key = key.strip()
        if algorithm in HMAC_ALGORITHMS:
            if key.startswith("-----BEGIN"):
                raise ValueError(
                    f"jwt_key is a PEM key but jwt_algorithm is {algorithm}; "
                    "use RS256 for a public key"
                )
            secret = key.encode()
            # RFC 7518 §3.2: an HMAC key at least as long as the hash output.
            minimum = int(algorithm[2:]) // 8
            if len(secret) < minimum:
                raise ValueError(f"jwt_key is too short for {algorithm}: at least {minimum} bytes")
            loaded: Any = secret
        elif algorithm in RSA_ALGORITHMS:
            # Environment variables often carry PEM with literal "\n".
            pem = key.replace("\\n", "\n").encode()
            try:
                loaded = load_pem_public_key(pem)
            except ValueError as error:
                raise ValueError(
                    f"jwt_key must be the app backend's PEM public key for {algorithm}: {error}"
                ) from None
            if not isinstance(loaded, RSAPublicKey):
                raise ValueError(f"jwt_key is not an RSA public key, as {algorithm} needs")
        else:
            supported = ", ".join(HMAC_ALGORITHMS + RSA_ALGORITHMS)
            raise ValueError(f"jwt_algorithm {algorithm!r} is not supported ({supported})")
        max_lifetime = DEFAULT_MAX_LIFETIME_SECONDS if max_lifetime is None else max_lifetime
        if max_lifetime <= 0:
            raise ValueError(f"jwt_max_lifetime_seconds must be positive, got {max_lifetime}")
        return cls(
            algorithm,
            loaded,
            (issuer or "").strip() or None,
            (audience or "").strip() or DEFAULT_AUDIENCE,
            DEFAULT_LEEWAY_SECONDS if leeway is None else float(leeway),
            float(max_lifetime),
        )

    def verify(self, token: str) -> Claims:
        """The customer a token speaks for, or BadToken."""
        token = (token or "").strip()
        if not token:
            raise BadToken("missing token", "missing")
        # A JWT is ASCII: PyJWT would fail on a lone surrogate with an error of its own.
        if not token.isascii():
            raise BadToken("malformed token", "malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise BadToken("malformed token", "malformed") from None
        alg = header.get("alg")
        if alg != self.algorithm:
            # Echoed only when it looks like an algorithm's name: it is the sender's text.
            named = isinstance(alg, str) and len(alg) <= 16 and alg.isalnum()
            raise BadToken(
                f"token algorithm {alg!r} is not accepted; expected {self.algorithm}"
                if named else f"token algorithm is not accepted; expected {self.algorithm}",
                "algorithm",
            )
        required = ["exp", "iat", "sub", "aud"] + (["iss"] if self.issuer else [])
        options = {"require": required, "verify_aud": True}
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                options=options,
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
            )
        except jwt.ExpiredSignatureError:
            raise BadToken("token expired", "expired") from None
        except jwt.InvalidSignatureError:
            raise BadToken("bad token signature", "signature") from None
        except jwt.MissingRequiredClaimError as error:
            raise BadToken(f"token lacks the {error.claim!r} claim", "claims") from None
        except jwt.InvalidAudienceError:
            raise BadToken(f"token audience (aud) is not {self.audience!r}", "audience") from None
        except jwt.InvalidTokenError as error:
            raise BadToken(f"invalid token: {error}") from None
        # PyJWT has checked both are numbers and that iat is not in the future.
        lifetime = int(claims["exp"]) - int(claims["iat"])
        if lifetime > self.max_lifetime:
            raise BadToken(
                f"token lifetime (exp - iat) of {lifetime} s exceeds {self.max_lifetime:g} s",
                "lifetime",
            )
        subject = claims["sub"]
        if not isinstance(subject, str) or not _SUBJECT.fullmatch(subject):
            raise BadToken(
                "token subject must be 1–128 printable characters without spaces", "subject"
            )
        return Claims(
            subject,
            float(claims["exp"]),
            Identity("app", subject, "jwt", customer=True),
        )


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
