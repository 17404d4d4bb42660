"""Ids a stranger sends, as the channels' patterns judge them.

The patterns used to be `^…$` with re.match, and "$" also matches before a
final newline: "alice\n" passed as a user id (another conversation than
"alice's", with a newline in its id). Each id pattern in connectors/ is now
used with fullmatch; the app's are covered in tests/test_app_auth.py.
"""

from __future__ import annotations

import time

import pytest

from connectors.web.identity import IdentityRefused, user_hash, verify_host_user
from connectors.wechat.inbound import Refused, sign, verify_url

SECRET = "host-site-identity-secret-0123456789abcdef"


def test_host_user_id_with_a_trailing_newline_is_refused() -> None:
    # A genuine HMAC of "alice\n": the host site signed what it was given.
    for user_id in ("alice\n", "alice\r\n", "\nalice"):
        with pytest.raises(IdentityRefused, match="user_id must be"):
            verify_host_user(SECRET, user_id, user_hash(SECRET, user_id))


def test_wechat_timestamp_with_a_trailing_newline_is_refused() -> None:
    now = time.time()
    token = "wechat-token"
    timestamp, nonce = f"{int(now)}\n", "nonce-1"
    args = {
        "timestamp": timestamp,
        "nonce": nonce,
        "signature": sign(token, timestamp, nonce),  # signed over the newline too
        "echostr": "echo",
    }
    with pytest.raises(Refused, match="timestamp"):
        verify_url(args, token, now)
    good = {**args, "timestamp": str(int(now)), "signature": sign(token, str(int(now)), nonce)}
    assert verify_url(good, token, now) == "echo"
