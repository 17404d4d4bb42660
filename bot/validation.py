"""`bot validate`: Rasa's data validation, knowing what our code uses.

`rasa data validate --fail-on-warnings` warns about every response no story or
rule names, but our custom actions (`dispatcher.utter_message(response=…)`)
and the dialogue policy (the core fallback, "we can pick this up any time"…)
send responses too, so it fails on a correct project. This runs the same
checks and accepts exactly those warnings: for responses that the code in
`actions/` or the agent desk (`bot/desk/`, which speaks to waiting customers)
names, or that config.yml's policies are set to use. Likewise an intent with
no NLU examples is accepted only when the desk's code names it: the desk
triggers it (Rasa's trigger_intent), no customer types it. Every other warning
fails, as with `--fail-on-warnings`.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

_UNUSED = re.compile(r"The utterance '(?P<name>[^']+)' is not used in any story or rule")
_RESPONSE_LITERAL = re.compile(r"""["'](utter_[A-Za-z0-9_/]+)["']""")
_NO_EXAMPLES = re.compile(
    r"The intent '(?P<name>[^']+)' is listed in the domain file, but is not found in the NLU"
)
_NAME_LITERAL = re.compile(r"""["']([a-z][a-z0-9_]*)["']""")
# Code that sends responses by name besides the custom actions.
SPEAKING_CODE = ("actions", "bot/desk")
# Rasa checks the domain's retrieval intent against itself: every bot with a
# ResponseSelector-style FAQ gets it; it is not a problem in the data.
KNOWN_FALSE_POSITIVES = (
    "The following duplicated intents have been found across multiple domain files: faq",
)


@dataclass
class Report:
    ok: bool
    problems: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    # Intents with no NLU examples that the desk triggers.
    triggered: list[str] = field(default_factory=list)


def responses_in_code(actions_dir: Path) -> set[str]:
    """Response names written in the source of a directory (the custom actions)."""
    names: set[str] = set()
    for path in sorted(actions_dir.glob("*.py")):
        names.update(_RESPONSE_LITERAL.findall(path.read_text(encoding="utf-8")))
    return names


def intents_triggered(desk_dir: Path) -> set[str]:
    """Names written as string literals in the desk's source: the intents it may
    trigger are among them."""
    names: set[str] = set()
    for path in sorted(desk_dir.glob("*.py")):
        names.update(_NAME_LITERAL.findall(path.read_text(encoding="utf-8")))
    return names


def responses_in_policies(config: dict[str, Any]) -> set[str]:
    """Response names config.yml's policies use (their *_action settings and the
    dialogue policy's answers to stop intents), with the policies' defaults."""
    from rasa.shared.utils.common import class_from_module_path

    names: set[str] = set()
    for policy in config.get("policies") or []:
        settings: dict[str, Any] = dict(policy)
        name = str(settings.pop("name", ""))
        if "." in name:
            cls = class_from_module_path(name)
            settings = {**cls.get_default_config(), **settings}
        for key, value in settings.items():
            if key.endswith(("_action", "_action_name")) and isinstance(value, str):
                names.add(value)
            elif key == "stop_intents" and isinstance(value, dict):
                names.update(str(v) for v in value.values())
    return {n for n in names if n.startswith("utter_")}


def responses_in_forms(domain: dict[str, Any]) -> set[str]:
    """The questions forms ask by themselves: utter_ask_<slot> and
    utter_ask_<form>_<slot> (Rasa's FormAction)."""
    names: set[str] = set()
    for form, spec in (domain.get("forms") or {}).items():
        for slot in (spec or {}).get("required_slots") or []:
            names.update({f"utter_ask_{slot}", f"utter_ask_{form}_{slot}"})
    return names


def validate(root: Path) -> Report:
    from rasa.shared.importers.importer import TrainingDataImporter
    from rasa.shared.utils.io import read_config_file
    from rasa.validator import Validator

    config_path = root / "config.yml"
    importer = TrainingDataImporter.load_from_config(
        str(config_path), str(root / "domain.yml"), [str(root / "data")]
    )
    used = (
        set().union(*(responses_in_code(root / part) for part in SPEAKING_CODE))
        | responses_in_policies(read_config_file(str(config_path)))
        | responses_in_forms(read_config_file(str(root / "domain.yml")))
    )
    from rasa.utils.common import EXPECTED_WARNINGS

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # The warnings Rasa's own CLI filters out as noise.
        for category, pattern in EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", pattern, category)
        validator = Validator.from_importer(importer)
        ok = all(
            [
                validator.verify_domain_validity(),
                validator.verify_actions_in_stories_rules(),
                validator.verify_forms_in_stories_rules(),
                validator.verify_form_slots(),
                validator.verify_slot_mappings(),
                # Warnings are judged below, one by one.
                validator.verify_nlu(ignore_warnings=True),
                validator.verify_story_structure(ignore_warnings=False),
            ]
        )
        validator.warn_if_config_mandatory_keys_are_not_set()
    triggered = intents_triggered(root / "bot" / "desk")
    report = Report(ok)
    for message in _messages(caught):
        unused = _UNUSED.search(message)
        no_examples = _NO_EXAMPLES.search(message)
        if unused and unused.group("name") in used:
            report.accepted.append(unused.group("name"))
        elif no_examples and no_examples.group("name") in triggered:
            report.triggered.append(no_examples.group("name"))
        elif not any(known in message for known in KNOWN_FALSE_POSITIVES):
            report.problems.append(message)
    report.ok = report.ok and not report.problems
    return report


def _messages(caught: Iterable[warnings.WarningMessage]) -> list[str]:
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, UserWarning) and not issubclass(w.category, DeprecationWarning)
    ]
