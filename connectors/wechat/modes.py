"""The message-encryption mode, as chosen in WeChat's console (消息加解密方式).

- plain (明文模式): WeChat posts the message as is; only plain bodies are taken.
- compatible (兼容模式): a transition setting; plain and encrypted bodies are taken.
- safe (安全模式): only encrypted bodies (encrypt_type=aes, an <Encrypt> element
  under msg_signature) are taken. The query's `signature` covers only the
  timestamp and nonce, not the body, so accepting a plain body here would let
  anyone who saw one request's URL (a proxy's access log) post as any OpenID.

The mode is explicit; without a setting it follows the EncodingAESKey (safe
with one, plain without), so setting the key never leaves plain bodies open.
"""

from __future__ import annotations

from typing import Mapping

from connectors.wechat.inbound import Refused

PLAIN, COMPATIBLE, SAFE = "plain", "compatible", "safe"
MODES = (PLAIN, COMPATIBLE, SAFE)
# The console's own words work too.
_ALIASES = {
    "明文模式": PLAIN, "明文": PLAIN,
    "兼容模式": COMPATIBLE, "兼容": COMPATIBLE,
    "安全模式": SAFE, "安全": SAFE,
}


def encryption_mode(given: str | None, aes_key: str | None) -> str:
    """The mode to run in; ValueError (a startup error) if it can't work."""
    raw = (given or "").strip()
    if not raw:
        return SAFE if aes_key else PLAIN
    mode = _ALIASES.get(raw, raw.lower())
    if mode not in MODES:
        raise ValueError(
            "wechat encryption_mode (WECHAT_ENCRYPTION_MODE) must be plain, compatible or "
            f"safe (WeChat's 明文模式, 兼容模式, 安全模式), got {raw!r}"
        )
    if mode != PLAIN and not aes_key:
        raise ValueError(
            f"wechat encryption_mode {mode} needs the EncodingAESKey from WeChat's console: "
            "set WECHAT_ENCODING_AES_KEY (or WECHAT_ENCRYPTION_MODE=plain)"
        )
    return mode


def is_encrypted(args: Mapping[str, str]) -> bool:
    return args.get("encrypt_type") == "aes"


def check_mode(mode: str, args: Mapping[str, str]) -> None:
    """Refuse a request the mode doesn't take, before its body is read."""
    encrypted = is_encrypted(args)
    if mode == SAFE and not encrypted:
        raise Refused(
            403, "a plain message, but the channel is in safe mode: only encrypted "
            "messages (encrypt_type=aes) are accepted", code="plain_in_safe_mode",
        )
    if mode == PLAIN and encrypted:
        raise Refused(
            403, "an encrypted message, but the channel is in plain mode "
            "(WECHAT_ENCRYPTION_MODE)", code="encrypted_in_plain_mode",
        )
