"""bot.tracker_states: the kept states are Rasa's, each caller gets its own."""

from __future__ import annotations

import pytest
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, SlotSet
from rasa.shared.core.trackers import DialogueStateTracker

from bot import tracker_states
from tests.test_tracker_copy import CONVERSATIONS, ROOT, said


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(str(ROOT / "domain.yml"))

FLAGS = [
    {},
    {"omit_unset_slots": True},
    {"ignore_rule_only_turns": True, "rule_only_data": {"slots": ["requested_slot"],
                                                        "loops": ["order_form"]}},
]


def rasas(tracker: DialogueStateTracker, domain: Domain, **flags: object) -> list:
    return tracker_states._rasa_past_states(tracker, domain, **flags)


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_the_states_are_rasas_for_every_flag(domain: Domain, name: str) -> None:
    tracker = DialogueStateTracker.from_events("cust-1", CONVERSATIONS[name], domain.slots)
    for flags in FLAGS:
        first = tracker_states.past_states(tracker, domain, **flags)
        again = tracker_states.past_states(tracker, domain, **flags)
        assert first == again == rasas(tracker, domain, **flags)


def test_a_caller_editing_its_states_leaves_the_next_callers(domain: Domain) -> None:
    tracker = DialogueStateTracker.from_events(
        "cust-2", CONVERSATIONS["form, rejected, interrupted, resumed"], domain.slots)
    states = tracker_states.past_states(tracker, domain)
    # What Rasa's featurizer does to the last user state (_choose_last_user_input).
    last_user = next(s for s in reversed(states) if "user" in s)
    last_user["user"].pop("intent", None)
    states.append({"prev_action": {"action_name": "made_up"}})
    assert tracker_states.past_states(tracker, domain) == rasas(tracker, domain)


def test_new_events_are_described(domain: Domain) -> None:
    tracker = DialogueStateTracker.from_events(
        "cust-3", CONVERSATIONS["restarted mid-form"], domain.slots)
    before = tracker_states.past_states(tracker, domain)
    tracker.update(ActionExecuted("utter_refund_status"))
    tracker.update(SlotSet("order_id", "12345678"))
    tracker.update(ActionExecuted("action_listen"))
    tracker.update(said("thanks", "thank"))
    after = tracker_states.past_states(tracker, domain)
    assert after != before
    assert after == rasas(tracker, domain)


def test_installed_when_rasa_loads_our_policies() -> None:
    import bot.policies  # noqa: F401  (installs the fixes, as the model load does)

    assert DialogueStateTracker.past_states is tracker_states.past_states
