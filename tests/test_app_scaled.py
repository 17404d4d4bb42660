"""The app channel with two service instances sharing Redis and PostgreSQL:
a message handled by one instance, or pushed from another process (as the
desk does), reaches a WebSocket held by the other."""

from __future__ import annotations

import pytest

from tests.app_client import (
    AppSocket,
    app_token,
    expected_signature,
    new_customer,
    pushes_for,
    say,
)
from tests.conftest import SYSTEM_REDIS_URL, Service, push_from_outside
from tests.fake_wechat import FakeWeChatAPI
from tests.http_recorder import Recorder

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


async def test_replies_and_pushes_reach_a_socket_on_the_other_instance(
    scaled: list[Service], wechat_api: FakeWeChatAPI, app_push: Recorder
) -> None:
    first, second = scaled
    customer = new_customer()
    socket = await AppSocket.open(first.url, app_token(customer))
    try:
        answer = await say(second.url, customer, "运费怎么算")
        frames = await socket.messages(answer["replies"])
        assert [f["id"] for f in frames] == answer["reply_ids"]
        assert "包邮" in frames[0]["message"]["text"]

        agent_message = {
            "text": "您好，我是人工客服小李",
            "buttons": [{"title": "已解决", "payload": "/affirm"}],
            "agent": "小李",
        }
        with push_from_outside(SYSTEM_REDIS_URL, wechat_api, app_push) as push:
            await push.send(f"app:{customer}", agent_message)
        (frame,) = await socket.messages(1)
        assert frame["message"] == agent_message
    finally:
        await socket.close()
    # Online the whole time: no push notification.
    assert pushes_for(customer, app_push) == []


async def test_push_from_outside_to_an_offline_customer(
    scaled: list[Service], wechat_api: FakeWeChatAPI, app_push: Recorder
) -> None:
    customer = new_customer()
    with push_from_outside(SYSTEM_REDIS_URL, wechat_api, app_push) as push:
        await push.send(f"app:{customer}", {"text": "您的退款已到账"})
    # A process that pushes and exits has already called the webhook when send returns.
    (notification,) = pushes_for(customer, app_push)
    assert notification.headers["x-signature"] == expected_signature(notification.body)
    assert notification.json()["preview"] == "您的退款已到账"

    socket = await AppSocket.open(scaled[1].url, app_token(customer), since="0")
    try:
        (frame,) = await socket.messages(1)
        assert frame["id"] == notification.json()["message_id"]
        assert frame["message"] == {"text": "您的退款已到账"}
    finally:
        await socket.close()
