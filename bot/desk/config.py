"""desk.yml: routing, priorities, direct handoffs, limits and canned answers, read once."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Sequence, Tuple

import yaml

from bot.settings import get_settings
from bot.shop.schema import LEVELS


class BadDeskConfig(ValueError):
    """desk.yml says something the desk can't use; the text says what and where."""


@dataclass(frozen=True)
class Canned:
    shortcut: str
    zh: str
    en: str


@dataclass(frozen=True)
class DirectRule:
    """Members of `levels` asking about one of `intents` go straight to a person."""

    levels: FrozenSet[str]
    intents: FrozenSet[str]

    def matches(self, level: str | None, intent: str | None) -> bool:
        return level in self.levels and intent in self.intents


@dataclass(frozen=True)
class DeskConfig:
    # group -> the intents that route to it
    groups: Dict[str, List[str]]
    default_group: str
    complaint_priority: int = 1
    vip_levels: Sequence[str] = ("gold", "platinum")
    vip_priority: int = 2
    max_wait_seconds: float = 15 * 60
    position_update_seconds: float = 30
    grace_seconds: float = 60
    default_handle_seconds: float = 5 * 60
    canned: List[Canned] = field(default_factory=list)
    direct: Tuple[DirectRule, ...] = ()

    @property
    def group_names(self) -> List[str]:
        return sorted(self.groups)

    def group_for(self, intent: str | None) -> str:
        for group, intents in self.groups.items():
            if intent in intents:
                return group
        return self.default_group

    def priority_for(self, reason: str, level: str | None) -> int:
        priority = self.complaint_priority if reason == "complaint" else 0
        if level in self.vip_levels:
            priority += self.vip_priority
        return priority

    def direct_for(self, level: str | None, intent: str | None) -> bool:
        """Whether a member of `level` asking about `intent` goes straight to a person."""
        return bool(level and intent) and any(r.matches(level, intent) for r in self.direct)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], where: str = "desk.yml") -> DeskConfig:
        groups_raw = data.get("groups") or {}
        if not isinstance(groups_raw, dict) or not groups_raw:
            raise BadDeskConfig(f"{where}: `groups` must map group names to lists of intents")
        groups = {str(g): [str(i) for i in (v or [])] for g, v in groups_raw.items()}
        default = str(data.get("default_group") or "general")
        groups.setdefault(default, [])
        priority = data.get("priority") or {}
        limits = data.get("limits") or {}
        canned = []
        for item in data.get("canned") or []:
            if not isinstance(item, dict) or not {"shortcut", "zh", "en"} <= item.keys():
                raise BadDeskConfig(f"{where}: each canned answer needs shortcut, zh and en")
            canned.append(Canned(str(item["shortcut"]), str(item["zh"]), str(item["en"])))
        direct = _direct_rules(data.get("direct"), where)
        try:
            return cls(
                groups=groups,
                default_group=default,
                complaint_priority=int(priority.get("complaint", 1)),
                vip_levels=tuple(priority.get("vip_levels") or ()),
                vip_priority=int(priority.get("vip", 2)),
                max_wait_seconds=float(limits.get("max_wait_minutes", 15)) * 60,
                position_update_seconds=float(limits.get("position_update_seconds", 30)),
                grace_seconds=float(limits.get("grace_seconds", 60)),
                default_handle_seconds=float(limits.get("default_handle_minutes", 5)) * 60,
                canned=canned,
                direct=direct,
            )
        except (TypeError, ValueError) as error:
            raise BadDeskConfig(f"{where}: {error}") from None

    @classmethod
    def from_file(cls, path: Path) -> DeskConfig:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise BadDeskConfig(f"{path}: {error}") from None
        return cls.from_dict(data, str(path))


DIRECT_KEYS = {"levels", "intents"}


def _direct_rules(raw: Any, where: str) -> Tuple[DirectRule, ...]:
    """`direct:` as rules; a typo here would silently hand nobody over, so anything
    unexpected is an error."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BadDeskConfig(f"{where}: `direct` must be a list of rules "
                            "(each with `levels` and `intents`)")
    rules = []
    for number, item in enumerate(raw, start=1):
        at = f"{where}: direct rule {number}"
        if not isinstance(item, dict):
            raise BadDeskConfig(f"{at} must be a mapping with `levels` and `intents`")
        unknown = sorted(str(key) for key in item.keys() - DIRECT_KEYS)
        if unknown:
            raise BadDeskConfig(f"{at}: unknown key(s) {', '.join(unknown)} "
                                "(a rule has `levels` and `intents`)")
        missing = sorted(DIRECT_KEYS - item.keys())
        if missing:
            raise BadDeskConfig(f"{at}: missing {', '.join(missing)}")
        levels = _names(item["levels"], f"{at}: `levels`")
        unknown_levels = sorted(levels - set(LEVELS))
        if unknown_levels:
            raise BadDeskConfig(f"{at}: unknown level(s) {', '.join(unknown_levels)} "
                                f"(member levels are {', '.join(LEVELS)})")
        rules.append(DirectRule(levels, _names(item["intents"], f"{at}: `intents`")))
    return tuple(rules)


def _names(raw: Any, what: str) -> FrozenSet[str]:
    if not isinstance(raw, list) or not raw or not all(
        isinstance(name, str) and name.strip() for name in raw
    ):
        raise BadDeskConfig(f"{what} must be a non-empty list of names")
    return frozenset(name.strip() for name in raw)


@lru_cache(maxsize=1)
def desk_config() -> DeskConfig:
    return DeskConfig.from_file(get_settings().desk_file)
