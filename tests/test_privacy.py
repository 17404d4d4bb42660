"""Personal data masked in what the service logs (bot.privacy).

The masking function on each kind of personal data and on what it must leave
alone; the filter on log records; Rasa's own logging set-up in a real process
with the hook `bot run` installs; and the running service's var/log after
messages carrying a phone number.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bot.privacy import PersonalDataFilter, mask_personal_data, mask_phone_number
from tests.conftest import ROOT, WECHAT_AES_KEY, WECHAT_TOKEN, Service, base_env
from tests.fake_wechat import WeChatCaller, message_xml, new_openid

PHONE = "13812345678"
MASKED = "138****5678"


# --- the masking function ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Chinese mobile numbers, however written.
        (PHONE, MASKED),
        ("我的手机号是13812345678，谢谢", "我的手机号是138****5678，谢谢"),
        ("call 138 1234 5678 or 138-1234-5678", "call 138****5678 or 138****5678"),
        ("+86 138 1234 5678", "+86 138****5678"),
        ("+8613812345678 / 0086-13812345678 / 8613812345678",
         "+86138****5678 / 0086-138****5678 / 86138****5678"),
        ("１３８１２３４５６７８", "１３８****５６７８"),  # full-width digits
        ("user_13812345678", "user_138****5678"),
        # E-mail addresses.
        ("mail zhang.san@example.com.cn", "mail z***@example.com.cn"),
        ("QQ邮箱12345678@qq.com", "QQ邮箱1***@qq.com"),
        # Mainland ID card numbers: first 3 and last 4 kept.
        ("身份证11010519491231002X", "身份证110***********002X"),
        ("ID 110105 19491231 002x.", "ID 110***********002x."),
        ("430102200012310017", "430***********0017"),
        # Bank cards: the last 4 kept.
        ("卡号6222021234567890123。", "卡号***************0123。"),
        ("card 6222 0212 3456 7890", "card ************7890"),
        ("4111-1111-1111-1111", "************1111"),
        ("4222222222222", "*********2222"),  # 13 digits
        # Other numbers in international form.
        ("+44 7911 123456", "+********3456"),
        ("+1 202-555-0123", "+*******0123"),
    ],
)
def test_each_kind_of_personal_data_is_masked(text: str, expected: str) -> None:
    assert mask_personal_data(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "订单JM202611280001已发货",  # order number
        "order number 202611280001 please",  # the same, bare
        "退款单RF202611280001，工单TK202611280001",  # refund and ticket numbers
        "tracking 123456789012",  # 12 digits
        "SF1234567890123 YT9876543210987",  # carriers' numbers: letters + digits
        "金额 ¥1,234.56，退款 13812345678.50 元",  # amounts, even phone-shaped ones
        "confidence 0.9987654321012345",  # decimals
        "2026-11-28 13:45:12, 2026/11/28, 28 Nov 2026 22:44:13.649",  # dates and times
        "20261128134512 and 20261128134512123",  # compact timestamps
        "您的验证码是 123456，5 分钟内有效。",  # one-time codes
        "message 1795905862278-0 stays in the outbox",  # Redis stream id
        "uuid 123e4567-e89b-12d3-a456-426614174000, sha 9b74c9897bac770ffc029102a200c5de",
        "123456789012345678901234567890",  # too long for any of them (a payment id)
        "pid=7312, port=58259, 1024 MB, +8 items",
        "",
    ],
)
def test_what_a_log_reader_needs_is_left_alone(text: str) -> None:
    assert mask_personal_data(text) == text


def test_mixed_chinese_and_english_text() -> None:
    text = (
        "客户 zhang.san@example.com 说: my phone is +86 138-1234-5678, 订单JM202611280001 "
        "退款到卡 6222 0212 3456 7890，身份证 11010519491231002X，验证码 123456，共 ¥99.00"
    )
    assert mask_personal_data(text) == (
        "客户 z***@example.com 说: my phone is +86 138****5678, 订单JM202611280001 "
        "退款到卡 ************7890，身份证 110***********002X，验证码 123456，共 ¥99.00"
    )


def test_json_log_lines_stay_json_and_escaped_chinese_does_not_hide_a_number() -> None:
    # Rasa's structlog lines are JSON with Chinese as \\uXXXX escapes: 码 is
    # \\u7801, so the phone number's digits follow the escape's hex digits.
    event = {"event": "processor.message.parse", "parse_data_text": "我的号码13812345678",
             "entities": [{"value": "13812345678", "confidence": 0.9987654321012345}],
             "order": "JM202611280001", "note": "line\n13812345678"}
    line = json.dumps(event)
    assert "\\u7801138" in line
    masked = json.loads(mask_personal_data(line))
    assert masked == {**event, "parse_data_text": "我的号码138****5678",
                      "entities": [{"value": MASKED, "confidence": 0.9987654321012345}],
                      "note": "line\n138****5678"}


def test_colour_codes_do_not_hide_a_number() -> None:
    assert mask_personal_data("\x1b[35m13812345678\x1b[0m") == "\x1b[35m138****5678\x1b[0m"


def test_masking_twice_changes_nothing_more() -> None:
    text = "手机13812345678 卡6222021234567890123 z.s@example.com 11010519491231002X"
    once = mask_personal_data(text)
    assert mask_personal_data(once) == once


def test_a_phone_number_field_is_masked_like_the_actions_show_it() -> None:
    assert mask_phone_number("13812345678") == MASKED
    assert mask_phone_number("8613812345678") == MASKED
    assert mask_phone_number("12025550123") == "120****0123"  # the demo's US numbers
    assert mask_phone_number("12345") == "*****"


# --- the log filter --------------------------------------------------------------------


def _record(msg: object, *args: object, **kw: object) -> logging.LogRecord:
    kw.setdefault("exc_info", None)
    return logging.LogRecord("test", logging.INFO, __file__, 1, msg, args or None, **kw)  # type: ignore[arg-type]


def test_the_filter_masks_message_arguments_tracebacks_and_stacks() -> None:
    mask = PersonalDataFilter()
    record = _record("user %s said %r", "web:v-1", f"我的手机{PHONE}")
    assert mask.filter(record) is True
    assert record.getMessage() == f"user web:v-1 said '我的手机{MASKED}'"

    record = _record(ValueError(f"No registered action found for name '{PHONE}'."))
    mask.filter(record)
    assert record.getMessage() == f"No registered action found for name '{MASKED}'."

    try:
        raise RuntimeError(f"lookup of {PHONE} failed")
    except RuntimeError:
        record = _record("failed", exc_info=sys.exc_info(), sinfo=f"Stack: {PHONE}")
    mask.filter(record)
    rendered = logging.Formatter().format(record)
    assert PHONE not in rendered and f"RuntimeError: lookup of {MASKED} failed" in rendered
    assert record.stack_info == f"Stack: {MASKED}"


def test_the_filter_passes_a_broken_record_on_for_logging_to_report() -> None:
    record = _record("%d items", "many")
    assert PersonalDataFilter().filter(record) is True


# --- Rasa's logging, in a real process -------------------------------------------------

# What `bot run` starts Rasa with (bot.cli), then Rasa 3.6's own logging set-up in
# the order rasa.__main__.main and rasa.server run it, at debug level; then what
# the service logs: Rasa's structlog parse line, a channel's line, rasa_sdk's
# "action not found", an exception's traceback, Sanic's error logger, a crash.
_RASA_LOGGING = """
import logging, sys
import structlog
import rasa.utils.common, rasa.utils.io
from rasa.utils.log_utils import configure_structlog
from sanic import Sanic

rasa.utils.common.configure_logging_and_warnings(logging.DEBUG, None, warn_only_once=True,
                                                 filter_repeated_logs=True)
rasa.utils.io.configure_colored_logging(logging.DEBUG)
configure_structlog(logging.DEBUG)
Sanic("rasa_server")  # configures Sanic's loggers, which don't propagate to the root
rasa.utils.common.update_sanic_log_level()

phone = sys.argv[1]
structlog.get_logger().debug("processor.message.parse", parse_data_text="我的手机号码" + phone,
                             parse_data_entities=[{"entity": "phone", "value": phone}])
logging.getLogger("connectors.web").info("web message of %s: %s", "web:v-1", "电话 " + phone)
from rasa_sdk.interfaces import ActionNotFoundException
logging.getLogger("rasa_sdk.endpoint").error(ActionNotFoundException(phone))
try:
    raise ValueError("no customer with phone " + phone)
except ValueError:
    logging.getLogger("actions.accounts").exception("look-up failed")
from sanic.log import error_logger
error_logger.error("Exception occurred while handling uri: /webhooks/app/messages?phone=%s", phone)
sys.stdout.flush()
raise RuntimeError("crashed on " + phone)
"""


def test_rasa_logging_as_the_service_runs_it_masks_a_phone_number(tmp_path: Path) -> None:
    from bot.cli import _MASK_LOGS

    log = tmp_path / "rasa.log"
    with log.open("wb") as out:  # as the supervisor gives a child its log file
        done = subprocess.run(
            [sys.executable, "-c", _MASK_LOGS + _RASA_LOGGING, PHONE],
            cwd=ROOT, env=base_env(LOG_LEVEL_LIBRARIES="ERROR"), stdout=out,
            stderr=subprocess.STDOUT, timeout=120,
        )
    text = log.read_text()
    assert done.returncode == 1, text
    assert PHONE not in text, text
    # coloredlogs' prefix, then structlog's JSON, still JSON after the masking.
    parse = next(json.loads(line[line.index("{"):])
                 for line in text.splitlines() if "processor.message.parse" in line)
    assert parse["parse_data_text"] == f"我的手机号码{MASKED}"
    assert parse["parse_data_entities"] == [{"entity": "phone", "value": MASKED}]
    for expected in (
        f"web message of web:v-1: 电话 {MASKED}",
        f"No registered action found for name '{MASKED}'.",
        f"ValueError: no customer with phone {MASKED}",
        f"/webhooks/app/messages?phone={MASKED}",
        f"crashed on {MASKED}",
    ):
        assert expected in text, text


def test_the_filter_costs_little_per_log_record(tmp_path: Path) -> None:
    """A typical record (no personal data) and one with a phone number, with and
    without the masking, through a formatter into a file; printed for the record."""
    script = textwrap.dedent("""
        import logging, sys, time
        from bot.privacy import install_log_masking
        handler = logging.FileHandler(sys.argv[1])
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s - %(message)s"))
        log = logging.getLogger("connectors.web")
        log.addHandler(handler); log.setLevel(logging.INFO); log.propagate = False
        def per_record(msg, arg, n=20000):
            best = 1e9
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(n):
                    log.info(msg, arg)
                best = min(best, (time.perf_counter() - start) / n)
            return best * 1e6
        cases = [("web socket %s disconnected", "x7Rk2"),
                 ("customer said: %s", "我的手机号是13812345678")]
        before = [per_record(*case) for case in cases]
        install_log_masking()
        after = [per_record(*case) for case in cases]
        print(" ".join(f"{b:.2f},{a:.2f}" for b, a in zip(before, after)))
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out.log")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=True)
    (plain_before, plain_after), (phone_before, phone_after) = (
        map(float, pair.split(",")) for pair in done.stdout.split()
    )
    print(f"µs per record: plain {plain_before:.2f} -> {plain_after:.2f}, "
          f"with a phone number {phone_before:.2f} -> {phone_after:.2f}")
    with (tmp_path / "out.log").open("rb") as out:
        out.seek(-200, 2)
        assert MASKED.encode() in out.read().splitlines()[-1]
    # Generous bounds (shared, busy machines): a few µs on a record that costs ~10.
    assert plain_after - plain_before < max(5.0, plain_before)
    assert phone_after - phone_before < max(40.0, 4 * phone_before)


# --- the running service ---------------------------------------------------------------


def _post(url: str, body: dict[str, object]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_running_service_leaves_no_phone_number_in_var_log(service: Service) -> None:
    log_dir = service.var_dir / "log"
    # Ordinary messages: at the default level nothing of them should be logged at all.
    service.say("privacy-1", f"我的手机号是{PHONE}，邮箱 zhang.san@example.com")
    service.say("privacy-1", f"my card is 6222 0212 3456 7890 and my phone +86 {PHONE}")
    # Messages that could reach the logs at the default level. Rasa logged a message
    # its REST channel couldn't process with its text (rest.message.received.failure);
    # the channel now refuses it first, with a reason that quotes nothing of it.
    with pytest.raises(urllib.error.HTTPError) as refused:
        service.post("/webhooks/rest/webhook", {"sender": "privacy-2", "message": [PHONE]})
    assert refused.value.code == 400
    # A WeChat menu key the channel doesn't know is logged (a warning, with the key).
    caller = WeChatCaller(f"{service.url}/webhooks/wechat/webhook", WECHAT_TOKEN, WECHAT_AES_KEY)
    click = message_xml(new_openid(), "event", Event="CLICK", EventKey=f"menu {PHONE}")
    clicked = caller.post(click)
    assert clicked.is_success, clicked
    # The action server: a call for an action it doesn't know names it in an error.
    actions_log = (log_dir / "actions.log").read_text()
    port = re.search(r"up and running on http://[\d.]+:(\d+)", actions_log)
    assert port, actions_log
    status, _ = _post(f"http://127.0.0.1:{port.group(1)}/webhook",
                      {"next_action": f"call_{PHONE}", "version": "3.6.21", "tracker": {}})
    assert status == 404

    logs = {path.name: path.read_text(errors="replace") for path in log_dir.glob("*.log")}
    assert {"rasa.log", "actions.log"} <= set(logs)
    for name, text in logs.items():
        assert PHONE not in text, f"{name}: {text[-3000:]}"
        assert "zhang.san@" not in text and "6222 0212 3456 7890" not in text, name
    # The masked forms are there: the masking ran in both servers.
    assert MASKED in logs["rasa.log"], logs["rasa.log"][-3000:]
    assert f"call_{MASKED}" in logs["actions.log"], logs["actions.log"][-3000:]
