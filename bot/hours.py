"""Business hours from business_hours.yml: when people answer chats.

Weekly ranges in the configured timezone (Asia/Shanghai by default), public
holidays closed all day, and dates with hours of their own. Read once, checked
on load (a bad file is a clear error at start, not a wrong answer later).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Tuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Range = Tuple[dt.time, dt.time | None]  # end None: midnight at the end of the day
LOOK_AHEAD_DAYS = 31


class BadBusinessHours(ValueError):
    pass


def _ranges(value: Any, where: str) -> List[Range]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadBusinessHours(f"{where}: expected a list of \"HH:MM-HH:MM\", got {value!r}")
    out: List[Range] = []
    for item in value:
        try:
            start_text, end_text = str(item).split("-")
            start = dt.time.fromisoformat(start_text.strip())
            end = None if end_text.strip() == "24:00" else dt.time.fromisoformat(end_text.strip())
        except ValueError:
            raise BadBusinessHours(f"{where}: {item!r} is not \"HH:MM-HH:MM\"") from None
        if end is not None and end <= start:
            raise BadBusinessHours(f"{where}: {item!r} ends before it starts")
        out.append((start, end))
    return sorted(out)


def _date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise BadBusinessHours(f"{where}: {value!r} is not a YYYY-MM-DD date") from None


@dataclass(frozen=True)
class BusinessHours:
    timezone: ZoneInfo
    weekly: Dict[int, List[Range]]
    holidays: FrozenSet[dt.date] = frozenset()
    special: Dict[dt.date, List[Range]] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: Path) -> BusinessHours:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise BadBusinessHours(f"{path}: {error}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Dict[str, Any], where: str = "business hours") -> BusinessHours:
        try:
            zone = ZoneInfo(str(data.get("timezone") or "Asia/Shanghai"))
        except (ZoneInfoNotFoundError, ValueError):
            raise BadBusinessHours(f"{where}: unknown timezone {data.get('timezone')!r}") from None
        weekly_data = data.get("weekly") or {}
        unknown = set(weekly_data) - set(DAYS)
        if unknown:
            raise BadBusinessHours(f"{where}: unknown weekdays {sorted(unknown)} (use {DAYS})")
        weekly = {
            index: _ranges(weekly_data.get(day), f"{where}: weekly.{day}")
            for index, day in enumerate(DAYS)
        }
        holidays = frozenset(
            _date(day, f"{where}: holidays") for day in data.get("holidays") or []
        )
        special = {
            _date(day, f"{where}: special"): _ranges(hours, f"{where}: special.{day}")
            for day, hours in (data.get("special") or {}).items()
        }
        return cls(zone, weekly, holidays, special)

    def _hours_on(self, day: dt.date) -> List[Range]:
        if day in self.special:
            return self.special[day]
        if day in self.holidays:
            return []
        return self.weekly.get(day.weekday(), [])

    def _periods(self, day: dt.date) -> List[Tuple[dt.datetime, dt.datetime]]:
        midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), self.timezone)
        return [
            (
                dt.datetime.combine(day, start, self.timezone),
                dt.datetime.combine(day, end, self.timezone) if end else midnight,
            )
            for start, end in self._hours_on(day)
        ]

    def is_open(self, at: dt.datetime) -> bool:
        local = at.astimezone(self.timezone)
        return any(start <= local < end for start, end in self._periods(local.date()))

    def next_opening(self, at: dt.datetime) -> dt.datetime | None:
        """When people answer next (`at` itself when open now); None if not within a month."""
        local = at.astimezone(self.timezone)
        for offset in range(LOOK_AHEAD_DAYS):
            for start, end in self._periods(local.date() + dt.timedelta(days=offset)):
                if local < end:
                    return max(start, local)
        return None

    def closes_at(self, at: dt.datetime) -> dt.datetime | None:
        """When the current opening period ends; None when closed now."""
        local = at.astimezone(self.timezone)
        for start, end in self._periods(local.date()):
            if start <= local < end:
                return end
        return None

    def add_working_time(self, at: dt.datetime, duration: dt.timedelta) -> dt.datetime | None:
        """When `duration` of opening hours will have passed from `at` (the time a
        promise like "within 4 working hours" runs out); None if not within a month."""
        start = self.next_opening(at)
        left = duration
        while start is not None:
            end = self.closes_at(start)
            if end is None:  # an empty period (a range of zero length)
                start = self.next_opening(start + dt.timedelta(minutes=1))
                continue
            if start + left <= end:
                return start + left
            left -= end - start
            start = self.next_opening(end)
        return None


def load(root: Path) -> BusinessHours:
    return BusinessHours.from_file(root / "business_hours.yml")


def configured() -> BusinessHours:
    """The business hours the service runs with (BUSINESS_HOURS_FILE, else the
    project's business_hours.yml)."""
    from bot.settings import get_settings

    return BusinessHours.from_file(get_settings().business_hours_file)
