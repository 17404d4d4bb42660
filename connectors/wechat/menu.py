"""`bot wechat-menu`: publish the Official Account's custom menu from YAML.

The YAML is WeChat's menu/create JSON written as YAML (see wechat_menu.yml).
It is checked against WeChat's rules before anything is sent, and every
`click` key must be in credentials.yml's `menu_intents`, or the bot would
not know what the customer clicked.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import yaml
from wechatpy.exceptions import WeChatClientException

from connectors.push import read_credentials
from connectors.wechat.api import SharedTokenClient, WeChatAPI
from connectors.wechat.channel import WeChatConfig

CREDENTIALS_KEY = "connectors.wechat.WeChatInput"
# WeChat's limits, in UTF-8 bytes (a Chinese character is 3).
TOP_NAME_BYTES, SUB_NAME_BYTES, KEY_BYTES, URL_BYTES = 16, 60, 128, 1024
MAX_TOP, MAX_SUB = 3, 5
# Button types and the fields each needs.
NEEDS: dict[str, tuple[str, ...]] = {
    "click": ("key",),
    "view": ("url",),
    "miniprogram": ("url", "appid", "pagepath"),
    "scancode_push": ("key",),
    "scancode_waitmsg": ("key",),
    "pic_sysphoto": ("key",),
    "pic_photo_or_album": ("key",),
    "pic_weixin": ("key",),
    "location_select": ("key",),
    "media_id": ("media_id",),
    "article_id": ("article_id",),
    "article_view_limited": ("article_id",),
}


class MenuError(Exception):
    """The menu was not published; the text says why."""


def load_menu(path: Path) -> dict[str, Any]:
    try:
        menu = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MenuError(f"{path} not found") from None
    except yaml.YAMLError as error:
        raise MenuError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(menu, dict):
        raise MenuError(f"{path}: expected a mapping with a `button` list")
    return menu


def _bytes(value: Any) -> int:
    return len(str(value).encode())


def check_button(
    button: Any, where: str, name_limit: int, menu_intents: dict[str, str]
) -> list[str]:
    if not isinstance(button, dict):
        return [f"{where}: expected a mapping with name and type"]
    problems = []
    name = button.get("name")
    if not name or not isinstance(name, str):
        problems.append(f"{where}: `name` is missing")
    elif _bytes(name) > name_limit:
        problems.append(f"{where} {name!r}: name longer than {name_limit} bytes")
    where = f"{where} {name!r}" if name else where
    kind = button.get("type")
    if kind not in NEEDS:
        problems.append(f"{where}: type must be one of {', '.join(NEEDS)}, got {kind!r}")
        return problems
    problems += [f"{where}: `{need}` is missing" for need in NEEDS[kind] if not button.get(need)]
    key, url = button.get("key"), button.get("url")
    if key and _bytes(key) > KEY_BYTES:
        problems.append(f"{where}: key longer than {KEY_BYTES} bytes")
    if kind == "click" and key and key not in menu_intents:
        problems.append(
            f"{where}: key {key!r} is not in credentials.yml menu_intents, "
            "so the bot would not know what it means"
        )
    if url and (not str(url).startswith(("http://", "https://")) or _bytes(url) > URL_BYTES):
        problems.append(f"{where}: url must be http(s) and at most {URL_BYTES} bytes")
    return problems


def check_menu(menu: dict[str, Any], menu_intents: dict[str, str]) -> list[str]:
    """Every problem in the menu, for one clear error."""
    buttons = menu.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_TOP:
        return [f"`button` must be a list of 1 to {MAX_TOP} buttons"]
    problems = []
    for i, button in enumerate(buttons, 1):
        subs = button.get("sub_button") if isinstance(button, dict) else None
        if subs is None:
            problems += check_button(button, f"button {i}", TOP_NAME_BYTES, menu_intents)
            continue
        name = button.get("name")
        if not name or _bytes(name) > TOP_NAME_BYTES:
            problems.append(f"button {i}: name missing or longer than {TOP_NAME_BYTES} bytes")
        if not isinstance(subs, list) or not 1 <= len(subs) <= MAX_SUB:
            problems.append(f"button {i}: sub_button must be a list of 1 to {MAX_SUB} buttons")
            continue
        for j, sub in enumerate(subs, 1):
            problems += check_button(sub, f"button {i}.{j}", SUB_NAME_BYTES, menu_intents)
    return problems


def publish_menu(menu_file: Path, credentials_file: Path, check_only: bool = False) -> str:
    """Check, then publish the menu; returns what was done, raises MenuError."""
    menu = load_menu(menu_file)
    block = read_credentials(credentials_file).get(CREDENTIALS_KEY)
    if block is None:
        raise MenuError(f"{credentials_file} has no {CREDENTIALS_KEY} section")
    try:
        config = WeChatConfig.from_credentials(block)
    except ValueError as error:
        raise MenuError(str(error)) from None
    problems = check_menu(menu, config.menu_intents)
    if problems:
        raise MenuError(f"{menu_file} has problems:\n  " + "\n  ".join(problems))
    count = len(menu["button"])
    if check_only:
        return f"{menu_file}: {count} top-level buttons, OK"
    if config.missing:
        raise MenuError(config.off_reason)
    api = WeChatAPI(config.app_id, config.app_secret, config.api_base_url)
    note = ""
    if not os.environ.get("REDIS_URL"):
        # No shared token cache: fetch one of our own. A running service notices
        # its cached token was retired and fetches anew (connectors.wechat.api).
        api.use_client(
            SharedTokenClient(config.app_id, config.app_secret, config.api_base_url, None)
        )
        note = " (REDIS_URL unset: used a fresh access_token)"
    try:
        asyncio.run(api.create_menu(menu))
    except WeChatClientException as error:
        if error.errcode is None:  # an HTTP error, not a WeChat answer
            status = getattr(error.response, "status_code", "?")
            raise MenuError(f"WeChat's API answered HTTP {status}") from None
        raise MenuError(f"WeChat refused the menu: {error.errcode} {error.errmsg}") from None
    except Exception as error:  # network, Redis: say which, no traceback
        raise MenuError(f"could not publish the menu: {type(error).__name__}: {error}") from None
    return f"published {menu_file} ({count} top-level buttons) to app {config.app_id}{note}"
