"""What a channel itself tells the customer (not the bot): limits, media the
bot can't read, trouble. Both languages; the customer's message picks one."""

from __future__ import annotations

from connectors.rich import language_of

NOTICES: dict[str, dict[str, str]] = {
    "too_fast": {
        "zh": "您发送得太快了，请稍等几秒再发。",
        "en": "You're sending messages too quickly; please wait a few seconds.",
    },
    "too_long": {
        "zh": "消息太长了（最多 {limit} 个字），请分几条发送。",
        "en": "That message is too long (at most {limit} characters); please split it up.",
    },
    "media_received": {
        "zh": "已收到您发送的{kind}。我暂时看不懂{kind}，回复“转人工”可以请人工客服查看。",
        "en": "Got your {kind}. I can't read it myself; reply \"human\" "
        "and a person will take a look.",
    },
    "trouble": {
        "zh": "抱歉，系统繁忙，请稍后再试。",
        "en": "Sorry, something went wrong on our side. Please try again in a moment.",
    },
}

MEDIA_NAMES = {
    "image": {"zh": "图片", "en": "image"},
    "video": {"zh": "视频", "en": "video"},
    "shortvideo": {"zh": "视频", "en": "video"},
    "voice": {"zh": "语音", "en": "voice message"},
    "location": {"zh": "位置", "en": "location"},
    "link": {"zh": "链接", "en": "link"},
    "file": {"zh": "文件", "en": "file"},
}


def notice(key: str, hint_text: str = "", language: str | None = None, **values: object) -> str:
    """NOTICES[key] in `language`, or in the language of `hint_text` (zh if none)."""
    lang = language or (language_of(hint_text) if hint_text else "zh")
    return NOTICES[key][lang].format(**values)


def media_notice(kind: str, language: str = "zh") -> str:
    name = MEDIA_NAMES.get(kind, {"zh": "消息", "en": "message"})[language]
    return notice("media_received", language=language, kind=name)
