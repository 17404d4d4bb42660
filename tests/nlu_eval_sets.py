"""Evaluation messages for the NLU quality gate beyond the held-out examples.

Out of scope: a fixed sample of clinc150's out-of-scope queries, clinc150
queries of intents an online shop's customer service doesn't serve, and Chinese
messages written here. The `test` sample is the one our out-of-scope training
examples were written against (by topic, never copied); the `val` sample is
drawn from queries nobody here has read, to show how far that carries. Two
requests: held-out examples of two different requests joined with the
connectors customers use, and single requests that contain a comma or a
connector word (which must not be split).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
CLINC = ROOT.parent / "shared" / "data" / "clinc150" / "data_full.json"

# clinc150 intents no online shop's customer service answers (travel, kitchen,
# auto, work, utilities, small talk, banking products). Left out on purpose:
# order, order_status, balance, rewards_balance, transactions, card_declined,
# greeting/goodbye/thank_you/yes/no, are_you_a_bot, who_made_you... (a shop bot
# answers those, or they are chit-chat it handles).
NOT_A_SHOP = [
    "book_flight", "book_hotel", "car_rental", "flight_status", "lost_luggage",
    "travel_alert", "international_visa", "plug_type", "exchange_rate", "timezone",
    "recipe", "cook_time", "calories", "ingredient_substitution", "meal_suggestion",
    "nutrition_info", "tell_joke", "meaning_of_life", "fun_fact", "what_are_your_hobbies",
    "do_you_have_pets", "how_old_are_you", "oil_change_how", "tire_pressure", "jump_start",
    "mpg", "gas_type", "weather", "alarm", "timer", "calculator", "translate", "flip_coin",
    "roll_dice", "pto_request", "payday", "w2", "taxes", "rollover_401k", "meeting_schedule",
    "apr", "credit_score", "routing", "interest_rate", "direct_deposit", "play_music",
    "smart_home", "restaurant_reservation", "restaurant_reviews", "traffic", "directions",
]

ZH_OUT_OF_SCOPE = [
    "明天上海下雨吗", "帮我订一张去成都的高铁票", "北京到广州的机票多少钱", "红烧排骨怎么做",
    "一个鸡蛋多少卡路里", "帮我定个早上七点的闹钟", "给我讲个冷笑话", "你今年几岁了",
    "美元兑人民币汇率是多少", "信用卡年利率怎么算", "个人所得税怎么算", "公积金怎么提取",
    "帮我算一下123乘以456", "把这句话翻译成日语", "附近哪里有加油站", "车胎气压多少合适",
    "推荐几首好听的歌", "放一首周杰伦的歌", "明天开会几点开始", "帮我请三天年假",
    "今天股市行情怎么样", "银河系有多少颗星星", "怎么学好英语", "猫咪可以吃巧克力吗",
    "高考志愿怎么填", "去日本旅游要签证吗", "帮我查一下航班CA1234", "北京哪家火锅好吃",
    "帮我预订今晚的餐厅", "现在买房贷款划算吗", "怎么治感冒", "周末去哪玩好",
    "电脑蓝屏怎么办", "写一首关于秋天的诗", "孩子不爱写作业怎么办", "中国有多少个省",
]


# clinc150 "out-of-scope" queries that an online shop does serve (they are its
# requests, not out of scope for us).
SHOP_REQUESTS = {
    "i need to update my address", "request a refund on the car wax i bought yesterday",
}

ZH_OUT_OF_SCOPE_VAL = [
    "帮我查下明天杭州的天气", "去三亚的动车几点发车", "清蒸鱼要蒸几分钟", "一碗米饭多少热量",
    "帮我设个十分钟的倒计时", "说个脑筋急转弯", "欧元现在兑人民币多少", "信用卡逾期了会怎样",
    "社保断缴有影响吗", "帮我算下根号二", "这句话用韩语怎么说", "附近哪有停车场",
    "放点轻音乐", "周一的例会改到几点了", "帮我请个病假", "基金最近能买吗",
    "恐龙是怎么灭绝的", "怎么提高睡眠质量", "狗狗能吃葡萄吗", "出国留学要准备什么",
    "去泰国需要办签证吗", "明早的航班延误了吗", "成都哪家串串好吃", "帮我订个周六的包间",
    "车险怎么买划算", "发烧了要不要去医院", "五一去哪旅游人少", "手机内存满了怎么清理",
    "帮我写个请假条", "怎么教孩子学数学",
]


def out_of_scope_messages(
    split: str = "test", n_clinc_oos: int = 150, n_clinc_other: int = 150
) -> List[str]:
    data = json.loads(CLINC.read_text(encoding="utf-8"))
    rng = random.Random(20261128)
    oos = sorted(text for text, _ in data[f"oos_{split}"])
    other = sorted(text for text, label in data[split] if label in NOT_A_SHOP)
    sample = rng.sample(oos, min(n_clinc_oos, len(oos))) + rng.sample(other, n_clinc_other)
    chinese = ZH_OUT_OF_SCOPE if split == "test" else ZH_OUT_OF_SCOPE_VAL
    return [text for text in sample if text not in SHOP_REQUESTS] + chinese


# Requests: the intents that make the bot act (as LinearIntentClassifier's request_intents).
REQUEST_INTENTS = {
    "faq", "order_status", "cancel_order", "request_refund", "refund_status", "check_balance",
    "check_points", "account_info", "reset_password", "update_address", "leave_message",
    "human_handoff", "complain", "bot_challenge", "bind_account",
}
CONNECTORS = {
    "zh": ["{a}，另外{b}", "{a} 顺便问下{b}", "{a}。还有{b}", "{a}，再问一下{b}", "{a}！{b}"],
    "en": ["{a} and {b}", "{a}. also {b}", "{a}, btw {b}", "{a}? plus {b}", "{a}. {b}"],
}
# Not requests: a greeting or thanks around one request stays one request.
WRAPPERS = {
    "zh": ["你好，{a}", "{a}，谢谢", "亲，{a}", "在吗？{a}"],
    "en": ["hi, {a}", "{a}, thanks", "hello there. {a}", "{a}. thank you"],
}

Example = Tuple[str, str]  # (text, label: intent or faq/answer key)


def is_request(label: str) -> bool:
    return label.split("/")[0] in REQUEST_INTENTS


def two_request_messages(
    held_out: Dict[str, Sequence[Example]], per_language: int = 150
) -> List[Tuple[str, List[str]]]:
    """(message, expected labels in order): two requests joined, or one request with
    a greeting/thanks or with a comma of its own (expected: one label)."""
    rng = random.Random(7)
    out: List[Tuple[str, List[str]]] = []
    for language, examples in sorted(held_out.items()):
        requests = [(t.strip(), lab) for t, lab in examples if is_request(lab)]
        for _ in range(per_language):
            (a, la), (b, lb) = rng.sample(requests, 2)
            if la == lb:
                continue
            template = rng.choice(CONNECTORS[language])
            out.append((template.format(a=_rstrip(a), b=b), [la, lb]))
        for text, label in rng.sample(requests, min(per_language // 3, len(requests))):
            out.append((rng.choice(WRAPPERS[language]).format(a=_rstrip(text)), [label]))
        # Single requests as written that already hold a comma, a space or a connector.
        for text, label in examples:
            if is_request(label) and any(ch in text for ch in "，,。.？?！! "):
                out.append((text, [label]))
    return out


def _rstrip(text: str) -> str:
    return text.rstrip("。.!！?？~ ")


# Hand-written: what customers really send (expected requests in order; one label
# means the message must not be split).
HAND_WRITTEN: List[Tuple[str, List[str]]] = [
    ("查下订单 顺便问下运费", ["order_status", "faq/shipping_fee"]),
    ("我要退款，另外发票怎么开", ["request_refund", "faq/invoice"]),
    ("where is my parcel? also do you ship to Hong Kong", ["order_status", "faq/delivery_area"]),
    ("帮我取消订单，顺便问下优惠券怎么用", ["cancel_order", "faq/coupons"]),
    ("我的积分有多少 另外钱包余额还剩多少", ["check_points", "check_balance"]),
    ("改一下收货地址，还有运费怎么算", ["update_address", "faq/shipping_fee"]),
    ("can I cancel my order? also how do I get an invoice", ["cancel_order", "faq/invoice"]),
    ("how many points do I have and what's my wallet balance", ["check_points", "check_balance"]),
    ("I forgot my password. btw what are your opening hours", ["reset_password",
                                                                 "faq/business_hours"]),
    ("你们支持哪些付款方式？多久能发货？", ["faq/payment_methods", "faq/shipping_time"]),
    ("退款到账了吗？另外能开发票吗", ["refund_status", "faq/invoice"]),
    ("is this product genuine? and what's the warranty", ["faq/authenticity", "faq/warranty"]),
    ("你好，我的订单到哪了", ["order_status"]),
    ("hi there, where is my order", ["order_status"]),
    ("我的订单到哪了，三天了还没到", ["order_status"]),
    ("my order JM202411230456, where is it", ["order_status"]),
    ("退款怎么还没到账，都一个星期了", ["refund_status"]),
    ("I want a refund because the item arrived broken", ["request_refund"]),
    ("钱包还有多少钱", ["check_balance"]),
    ("谢谢，再见", []),
]
