import pytest

from bot.nlu.language import detect_language, message_language


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我的快递到哪了", "zh"),
        ("亲 退宽啥时候到账啊😡", "zh"),
        ("where is my parcel", "en"),
        ("Where's my order?? 😡", "en"),
        # Mixed text goes by the dominant script, counted in words.
        ("我的order到哪了", "zh"),
        ("我要refund", "zh"),
        ("can i get a 发票 for my order", "en"),
        ("where is my 订单", "en"),
        ("iPhone 15 的保修是几年", "zh"),
        # No words at all: no language (the conversation keeps its own).
        ("JM202411230456", None),  # an order number is a code, not English
        ("订单号JM202411230456", "zh"),
        ("202411230456", None),
        ("👍", None),
        ("", None),
        ("？？？", None),
    ],
)
def test_detect_language(text: str, expected: str | None) -> None:
    assert detect_language(text) == expected


def test_button_payloads_have_no_language() -> None:
    # A click on a button sends "/affirm": it mustn't switch a Chinese customer to English.
    assert message_language("/affirm") is None
    assert message_language("/human_handoff") is None
    assert message_language("好的") == "zh"
