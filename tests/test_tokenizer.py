from rasa.shared.nlu.training_data.message import Message

from bot.nlu.tokenizer import MixedTokenizer, _init_jieba, split_mixed

_init_jieba(None)


def texts(text: str) -> list[str]:
    return [t.text for t in split_mixed(text)]


def test_chinese_is_segmented_by_jieba() -> None:
    tokens = texts("我想查一下物流信息")
    assert "".join(tokens) == "我想查一下物流信息"
    assert "物流" in tokens and len(tokens) >= 3


def test_latin_runs_stay_words_inside_chinese() -> None:
    # Rasa issue #7910: jieba alone splits or glues Latin words in mixed text.
    assert texts("我的order到哪了") == ["我", "的", "order", "到", "哪", "了"]
    assert texts("iPhone15的保修几年") == ["iPhone15", "的", "保修", "几年"]


def test_shop_vocabulary_stays_whole() -> None:
    assert "青玉钱包" in texts("青玉钱包余额多少")
    assert "转人工" in texts("帮我转人工")


def test_emoji_are_tokens_and_punctuation_is_not() -> None:
    assert texts("太差了😡😡!!")[-2:] == ["😡", "😡"]
    assert "!" not in "".join(texts("太差了😡😡!!"))


def test_offsets_point_into_the_original_text() -> None:
    text = "亲，订单JM202411230456 where？"
    for token in split_mixed(text):
        assert text[token.start : token.end] == token.text


def test_numbers_are_featurized_by_shape() -> None:
    tokens = split_mixed("JM202411230456 13812345678 ¥59.9")
    assert [t.lemma for t in tokens] == ["jm000000000000", "00000000000", "00.0"]
    assert [t.text for t in tokens] == ["JM202411230456", "13812345678", "59.9"]


def test_english_contractions_and_british_spelling() -> None:
    assert texts("where's my parcel, it's cancelled") == [
        "where's",
        "my",
        "parcel",
        "it's",
        "cancelled",
    ]


def test_component_tokenizes_rasa_messages() -> None:
    tokenizer = MixedTokenizer(MixedTokenizer.get_default_config())
    message = Message({"text": "我要refund 🙏"})
    tokenizer.process([message])
    assert [t.text for t in message.get("text_tokens")] == ["我要", "refund", "🙏"]
