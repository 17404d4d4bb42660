"""Business hours (bot/hours.py, business_hours.yml)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bot.hours import BadBusinessHours, BusinessHours, load

ROOT = Path(__file__).resolve().parent.parent
UTC = dt.timezone.utc
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
HOURS = BusinessHours.from_dict({
    "timezone": "Asia/Shanghai",
    "weekly": {
        "mon": ["09:00-12:00", "13:00-18:00"],
        "tue": ["09:00-18:00"], "wed": ["09:00-18:00"], "thu": ["09:00-18:00"],
        "fri": ["09:00-18:00"], "sat": ["10:00-24:00"],
    },
    "holidays": ["2027-02-08"],  # a Monday
    "special": {"2027-02-05": ["09:00-15:00"]},  # a Friday
})


def local(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("at", "open_"),
    [
        ("2027-02-01 09:00", True),   # Monday, opening minute
        ("2027-02-01 08:59", False),
        ("2027-02-01 12:30", False),  # lunch break
        ("2027-02-01 17:59", True),
        ("2027-02-01 18:00", False),  # closing minute is closed
        ("2027-02-06 23:59", True),   # Saturday until midnight
        ("2027-02-07 12:00", False),  # Sunday: not listed, closed
        ("2027-02-08 10:00", False),  # holiday
        ("2027-02-05 14:00", True),   # special hours
        ("2027-02-05 16:00", False),
    ],
)
def test_open_or_closed(at: str, open_: bool) -> None:
    assert HOURS.is_open(local(at)) is open_


def test_times_in_any_timezone_are_read_in_the_shops() -> None:
    # 02:00 UTC is 10:00 in Shanghai, a Tuesday.
    assert HOURS.is_open(dt.datetime(2027, 2, 2, 2, 0, tzinfo=UTC))
    assert not HOURS.is_open(dt.datetime(2027, 2, 2, 11, 0, tzinfo=UTC))  # 19:00 there


def test_next_opening_and_closing() -> None:
    assert HOURS.next_opening(local("2027-02-01 12:30")) == local("2027-02-01 13:00")
    assert HOURS.closes_at(local("2027-02-01 13:30")) == local("2027-02-01 18:00")
    assert HOURS.closes_at(local("2027-02-01 12:30")) is None
    # Friday's short day, then Saturday; Sunday and the Monday holiday are skipped.
    assert HOURS.next_opening(local("2027-02-05 15:00")) == local("2027-02-06 10:00")
    assert HOURS.next_opening(local("2027-02-07 09:00")) == local("2027-02-09 09:00")
    assert HOURS.next_opening(local("2027-02-01 10:00")) == local("2027-02-01 10:00")


def test_never_open_has_no_next_opening() -> None:
    closed = BusinessHours.from_dict({"weekly": {}})
    assert closed.next_opening(local("2027-02-01 10:00")) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"weekly": {"monday": ["09:00-18:00"]}}, "unknown weekdays"),
        ({"weekly": {"mon": ["9-18"]}}, "is not"),
        ({"weekly": {"mon": ["18:00-09:00"]}}, "ends before it starts"),
        ({"weekly": {"mon": "09:00-18:00"}}, "expected a list"),
        ({"holidays": ["next friday"]}, "YYYY-MM-DD"),
    ],
)
def test_a_bad_file_is_a_clear_error(data: dict, message: str) -> None:
    with pytest.raises(BadBusinessHours, match=message):
        BusinessHours.from_dict(data)


def test_the_shipped_hours_match_the_faq_answer() -> None:
    """09:00–21:00 Beijing time every day (utter_faq/business_hours says so)."""
    hours = load(ROOT)
    for day in range(1, 8):
        assert hours.is_open(local(f"2027-03-0{day} 09:00"))
        assert hours.is_open(local(f"2027-03-0{day} 20:59"))
        assert not hours.is_open(local(f"2027-03-0{day} 21:00"))
    assert "09:00–21:00" in (ROOT / "domain.yml").read_text(encoding="utf-8")


def test_bot_run_refuses_a_bad_file_before_starting_anything(tmp_path: Path) -> None:
    import shutil
    import subprocess

    from tests.conftest import BOT, base_env

    root = tmp_path / "project"
    root.mkdir()
    for name in ("config.yml", "domain.yml", "credentials.yml", "endpoints.yml"):
        shutil.copy(ROOT / name, root / name)
    (root / "business_hours.yml").write_text("weekly:\n  mon: ['18:00-09:00']\n")
    result = subprocess.run(
        [BOT, "run", "--no-train"], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=base_env(BOT_ROOT=str(root), BOT_VAR_DIR=str(tmp_path / "var")),
    )
    assert result.returncode == 1
    assert "ends before it starts" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("at", "hours", "expected"),
    [
        ("2027-02-02 10:00", 4, "2027-02-02 14:00"),  # inside one day
        ("2027-02-01 10:00", 4, "2027-02-01 15:00"),  # over Monday's lunch break
        ("2027-02-02 16:00", 4, "2027-02-03 11:00"),  # into the next morning
        ("2027-02-02 20:00", 4, "2027-02-03 13:00"),  # asked after closing
        ("2027-02-05 14:00", 4, "2027-02-06 13:00"),  # short Friday, then Saturday
        ("2027-02-06 23:00", 2, "2027-02-09 10:00"),  # Sunday and the holiday skipped
    ],
)
def test_working_time_runs_only_while_open(at: str, hours: int, expected: str) -> None:
    assert HOURS.add_working_time(local(at), dt.timedelta(hours=hours)) == local(expected)


def test_never_open_has_no_working_time() -> None:
    never = BusinessHours.from_dict({"timezone": "Asia/Shanghai", "weekly": {}})
    assert never.add_working_time(local("2027-02-02 10:00"), dt.timedelta(hours=1)) is None
