"""The admin token of Rasa's HTTP API, checked in constant time, also from a header.

Rasa 3.6 (`rasa.server.requires_auth`) takes the token from `?token=` only and
compares it with `==`, whose running time tells a patient attacker how much of
a guess was right. `install()` replaces that decorator before Rasa builds its
app (bot.cli's launcher calls it), so every route of the API:

- takes the token from `Authorization: Bearer <token>` or, as before, `?token=`
  (the desk and `bot push` still send it that way, over loopback);
- compares it with `hmac.compare_digest`;
- otherwise behaves as Rasa's: JWT when configured, 401 without a token.
"""

from __future__ import annotations

import hmac
from functools import wraps
from http import HTTPStatus
from inspect import isawaitable
from typing import Any, Callable

_installed = False


def provided_tokens(request: Any) -> list[str]:
    """What the request offers as the admin token: the header's, the query's."""
    found: list[str] = []
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        found.append(value.strip())
    query = request.args.get("token")
    if query:
        found.append(query)
    return found


def check_admin_token(request: Any, token: str) -> bool:
    """Constant time for each offered token (at most two)."""
    expected = token.encode()
    # Sanic decodes header bytes that aren't UTF-8 as surrogates: keep them as bytes
    # (a refusal), not an encoding error (a 500).
    matches = [hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected)
               for given in provided_tokens(request)]
    return any(matches)


def requires_auth(app: Any, token: str | None = None) -> Callable[[Any], Any]:
    """`rasa.server.requires_auth` with the admin token checked as described above."""
    import rasa.server

    stock = _stock_requires_auth(app, None)  # its JWT path, and "no auth configured"

    def decorator(f: Any) -> Any:
        fallback = stock(f)

        @wraps(f)
        async def decorated(request: Any, *args: Any, **kwargs: Any) -> Any:
            if token is not None and check_admin_token(request, token):
                result = f(request, *args, **kwargs)
                return await result if isawaitable(result) else result
            if token is not None and not app.config.get("USE_JWT"):
                # Rasa's own answer; the stock decorator, given no token, would let it through.
                raise rasa.server.ErrorResponse(
                    HTTPStatus.UNAUTHORIZED,
                    "NotAuthenticated",
                    "User is not authenticated.",
                    help_url=rasa.server._docs(
                        "/user-guide/configuring-http-api/#security-considerations"
                    ),
                )
            return await fallback(request, *args, **kwargs)

        return decorated

    return decorator


_stock_requires_auth: Callable[..., Any]


def install() -> None:
    """Before `rasa.server.create_app` runs: it looks the decorator up when called."""
    global _installed, _stock_requires_auth
    if _installed:
        return
    import rasa.server

    _stock_requires_auth = rasa.server.requires_auth
    rasa.server.requires_auth = requires_auth
    _installed = True
