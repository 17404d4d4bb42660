"""The key a client gives a message so that sending it again is safe.

REST callers (`message_id`), the web widget (`message_id` in user_uttered)
and apps (`client_message_id`) may resend a message whose answer they did not
get. The channels check the key's shape and pass it in the message's metadata
under REPEAT_KEY; bot.repeated_messages does not run a stored turn again.
"""

from __future__ import annotations

import re
from typing import Any

# What bot.repeated_messages looks for in a user message's metadata.
REPEAT_KEY = "client_message_id"
# Used with fullmatch: "$" would let a trailing newline through.
_RETRY_KEY = re.compile(r"[A-Za-z0-9_.-]{1,100}")
RETRY_KEY_RULE = "1 to 100 characters of A-Z a-z 0-9 _ . -"


def is_retry_key(value: Any) -> bool:
    return isinstance(value, str) and _RETRY_KEY.fullmatch(value) is not None
