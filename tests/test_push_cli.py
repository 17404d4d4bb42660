"""`bot push`: an operator (or a script) sends a customer a message now."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from tests.app_client import app_token, new_customer, poll
from tests.conftest import BOT, ROOT, Service, base_env, channel_env
from tests.fake_wechat import FakeWeChatAPI
from tests.http_recorder import Recorder

pytestmark = pytest.mark.slow


def bot_push(service: Service, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BOT, "push", *args],
        cwd=ROOT,
        env=base_env(BOT_VAR_DIR=str(service.var_dir), **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bot_push_reaches_an_app_customer_through_the_running_service(
    service: Service, wechat_api: FakeWeChatAPI, app_push: Recorder
) -> None:
    customer = new_customer()
    env = channel_env(wechat_api, app_push)
    done = bot_push(service, env, f"app:{customer}", "您的退款已到账")
    assert done.returncode == 0, done.stderr
    assert f"delivered to app:{customer}" in done.stdout
    answer = asyncio.run(poll(service.url, app_token(customer), since="0"))
    assert [m["message"]["text"] for m in answer.json()["messages"]] == ["您的退款已到账"]

    rich = bot_push(
        service, env, f"app:{customer}", "--json", '{"text": "还有问题吗？", "buttons": '
        '[{"title": "没有了", "payload": "/deny"}]}'
    )
    assert rich.returncode == 0, rich.stderr
    answer = asyncio.run(poll(service.url, app_token(customer), since="0"))
    assert answer.json()["messages"][-1]["message"]["buttons"][0]["title"] == "没有了"


def test_bot_push_says_clearly_what_went_wrong(
    service: Service, wechat_api: FakeWeChatAPI, app_push: Recorder, tmp_path
) -> None:
    env = channel_env(wechat_api, app_push)
    unknown = bot_push(service, env, "sms:+8613800000000", "hi")
    assert unknown.returncode == 1 and "no channel 'sms'" in unknown.stderr
    no_id = bot_push(service, env, "just-a-name", "hi")
    assert no_id.returncode == 1 and "<channel>:<subject>" in no_id.stderr
    bad_json = bot_push(service, env, "app:x", "--json", "{not json")
    assert bad_json.returncode == 1 and "--json is not valid JSON" in bad_json.stderr
    not_running = subprocess.run(
        [BOT, "push", "app:x", "hi"],
        cwd=ROOT,
        env=base_env(BOT_VAR_DIR=str(tmp_path / "var"), **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert not_running.returncode == 1 and "not running" in not_running.stderr


def test_a_plain_http_push_webhook_stops_the_channel_at_start(
    wechat_api: FakeWeChatAPI, app_push: Recorder, tmp_path
) -> None:
    """The signed calls (customer id, message preview) would cross the network in the clear."""
    from tests.conftest import SYSTEM_REDIS_URL

    env = {
        **channel_env(wechat_api, app_push),
        "APP_PUSH_WEBHOOK_URL": "http://push.example.com/push",
        "REDIS_URL": SYSTEM_REDIS_URL,
    }
    pushed_before = len(app_push.matching("/push"))
    refused = subprocess.run(
        [BOT, "push", "app:x", "hi"],
        cwd=ROOT,
        env=base_env(BOT_VAR_DIR=str(tmp_path / "var"), **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1, refused.stdout
    assert "push_webhook_url must be https" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(app_push.matching("/push")) == pushed_before
