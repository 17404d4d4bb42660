"""Messages to a customer's verified phone (one-time codes), through a pluggable sender.

`SMS_SENDER=log` (the default, for development and the demo) writes each
message to var/log/sms.log (readable by the service's user only; the number
masked), where `bot codes` shows them; a real SMS gateway is one more class
with `send`.
The texts are here rather than in domain.yml because they are SMS, not chat.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Dict, List, Protocol

from bot.privacy import mask_personal_data, mask_phone_number
from bot.settings import Settings

TEXTS: Dict[str, Dict[str, str]] = {
    "password_reset": {
        "zh": "【青玉商城】您的重置密码验证码是 {code}，{minutes} 分钟内有效。请勿告诉任何人，"
        "客服不会向您索要验证码。",
        "en": "[Jade Mart] Your password reset code is {code}, valid for {minutes} minutes. "
        "Never share it with anyone; our staff will never ask for it.",
    },
    "bind": {
        "zh": "【青玉商城】您正在把聊天账号关联到青玉商城账户，验证码 {code}，"
        "{minutes} 分钟内有效。如果不是您本人操作，请忽略本短信。",
        "en": "[Jade Mart] Your code to link a chat to your Jade Mart account is {code}, valid "
        "for {minutes} minutes. If this wasn't you, ignore this message.",
    },
}


class Sender(Protocol):
    def send(self, phone: str, text: str) -> None: ...


class LogSender:
    """Development sender: one JSON line per message in a private file.

    The number is masked (138****5678: enough to tell whose code it is), the
    text is kept readable: the code is what `bot codes` is for.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, phone: str, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({
            "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "to": mask_phone_number(phone), "text": mask_personal_data(text),
        }, ensure_ascii=False)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as file:
            file.write(line + "\n")

    def recent(self, count: int = 20) -> List[Dict[str, str]]:
        if not self.path.is_file():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()[-count:]
        return [json.loads(line) for line in lines if line.strip()]


def sender(settings: Settings) -> Sender:
    kind = os.environ.get("SMS_SENDER", "log")
    if kind == "log":
        return LogSender(settings.var_dir / "log" / "sms.log")
    raise ValueError(f"SMS_SENDER={kind!r}: only 'log' is built in")


def new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def code_hash(code: str, salt: str) -> str:
    """Codes are stored hashed; the salt (the row's purpose and subject) keeps one
    code's hash from matching another row's."""
    return hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()


def code_matches(code: str, salt: str, stored: str) -> bool:
    return hmac.compare_digest(code_hash(code, salt), stored)
