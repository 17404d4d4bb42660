"""Handoff by rule (desk.yml `direct`), the parts without servers: the desk file's
rules, the dialogue policy's decision, the handoff's reason and the session start
that sets `member_level`. End to end: tests/test_direct_handoff_service.py."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    ConversationPaused,
    Event,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.desk import config as desk
from bot.desk.config import BadDeskConfig, DeskConfig
from bot.policies.dialogue import DialoguePolicy
from bot.policies.turn import read_turn
from tests.conftest import ROOT

BASE: Dict[str, Any] = {"groups": {"billing": ["request_refund"]}}
RULES = DeskConfig.from_file(ROOT / "tests" / "data" / "desk.yml")


# --- desk.yml -------------------------------------------------------------------------


def test_the_projects_desk_files_name_platinum_refunds() -> None:
    for path in (ROOT / "desk.yml", ROOT / "tests" / "data" / "desk.yml"):
        rules = DeskConfig.from_file(path)
        assert rules.direct_for("platinum", "request_refund"), path
        assert rules.direct_for("platinum", "cancel_order"), path
        assert not rules.direct_for("gold", "request_refund"), path
        assert not rules.direct_for("platinum", "greet"), path


def test_direct_rules_match_level_and_intent_of_the_same_rule() -> None:
    rules = DeskConfig.from_dict({**BASE, "direct": [
        {"levels": ["platinum"], "intents": ["request_refund", "complain"]},
        {"levels": ["gold", "platinum"], "intents": ["cancel_order"]},
    ]})
    assert rules.direct_for("platinum", "complain")
    assert rules.direct_for("gold", "cancel_order")
    assert not rules.direct_for("gold", "request_refund")  # not the same rule
    assert not rules.direct_for(None, "request_refund")
    assert not rules.direct_for("", "request_refund")
    assert not rules.direct_for("platinum", None)


def test_no_direct_section_hands_nobody_over() -> None:
    rules = DeskConfig.from_dict(BASE)
    assert rules.direct == ()
    assert not rules.direct_for("platinum", "request_refund")
    assert DeskConfig.from_dict({**BASE, "direct": []}).direct == ()


@pytest.mark.parametrize(
    ("direct", "says"),
    [
        ({"levels": ["platinum"]}, "`direct` must be a list"),
        (["platinum"], "direct rule 1 must be a mapping"),
        ([{"levels": ["platinum"], "intents": ["x"], "intent": ["y"]}], "unknown key(s) intent"),
        ([{"levels": ["platinum"]}], "direct rule 1: missing intents"),
        ([{"levels": "platinum", "intents": ["x"]}], "`levels` must be a non-empty list"),
        ([{"levels": [], "intents": ["x"]}], "`levels` must be a non-empty list"),
        ([{"levels": ["platinum"], "intents": [1]}], "`intents` must be a non-empty list"),
        ([{"levels": ["platinum"], "intents": ["x"]},
          {"levels": ["platinium"], "intents": ["x"]}],
         "direct rule 2: unknown level(s) platinium"),
    ],
)
def test_a_direct_section_the_desk_cant_use_is_an_error_saying_where(
    direct: Any, says: str
) -> None:
    with pytest.raises(BadDeskConfig) as error:
        DeskConfig.from_dict({**BASE, "direct": direct}, "desk.yml")
    assert str(error.value).startswith("desk.yml: ") and says in str(error.value)


# --- the dialogue policy's decision -----------------------------------------------------


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(str(ROOT / "domain.yml"))


@pytest.fixture
def policy(monkeypatch: pytest.MonkeyPatch) -> DialoguePolicy:
    """The policy untrained (no rules of its own), reading tests/data/desk.yml."""
    import bot.policies.dialogue as dialogue

    monkeypatch.setattr(dialogue, "desk_config", lambda: RULES)
    return DialoguePolicy.create(
        DialoguePolicy.get_default_config(),
        LocalModelStorage(Path(tempfile.mkdtemp())),
        Resource("dialogue"),
        ExecutionContext(GraphSchema({}), "test"),
    )


def user(intent: str, text: str = "…", **entities: str) -> UserUttered:
    return UserUttered(
        text, intent={"name": intent, "confidence": 0.9},
        entities=[{"entity": k, "value": v, "start": 0, "end": 1} for k, v in entities.items()],
    )


def session(level: str | None, *events: Event) -> List[Event]:
    start: List[Event] = [ActionExecuted("action_session_start"), SessionStarted()]
    if level:
        start.append(SlotSet("member_level", level))
    return [*start, ActionExecuted("action_listen"), *events]


def decide(policy: DialoguePolicy, domain: Domain, events: List[Event]) -> str | None:
    """The action the policy's direct rule predicts, or None when it leaves the turn."""
    tracker = DialogueStateTracker.from_events("t", events, domain.slots)
    found = policy._direct_handoff(tracker, domain, read_turn(tracker))
    if found is None:
        return None
    assert found.max_confidence == 1.0 and found.is_no_user_prediction
    return domain.action_names_or_texts[found.max_confidence_index]


def test_a_platinum_members_refund_goes_straight_to_a_person(
    policy: DialoguePolicy, domain: Domain
) -> None:
    events = session("platinum", user("request_refund"))
    tracker = DialogueStateTracker.from_events("t", events, domain.slots)
    prediction = policy.predict_action_probabilities(tracker, domain)
    assert domain.action_names_or_texts[prediction.max_confidence_index] == "action_handoff"
    assert prediction.max_confidence == 1.0
    assert prediction.optional_events == []  # no form to leave


@pytest.mark.parametrize(
    ("level", "intent"),
    [("platinum", "greet"), ("platinum", "faq"), ("gold", "request_refund"),
     (None, "request_refund"), ("platinum", "human_handoff")],
)
def test_other_members_and_other_tasks_get_the_bot(
    policy: DialoguePolicy, domain: Domain, level: str | None, intent: str
) -> None:
    assert decide(policy, domain, session(level, user(intent))) is None


def test_once_a_session_then_the_bot_carries_on(policy: DialoguePolicy, domain: Domain) -> None:
    first = session("platinum", user("request_refund"), ActionExecuted("action_handoff"),
                    SlotSet("handoff_outcome", "connecting"), ConversationPaused())
    # Handed over and back (the agent closed): the next refund is the bot's.
    back = [*first[:-1], ActionExecuted("action_listen"), user("cancel_order")]
    assert decide(policy, domain, back) is None
    # A new session may go to a person again.
    later = [*first, *session("platinum", user("cancel_order"))]
    assert decide(policy, domain, later) == "action_handoff"


def test_a_handoff_nobody_could_take_isnt_tried_again_on_its_replayed_message(
    policy: DialoguePolicy, domain: Domain
) -> None:
    """No agent: action_handoff takes the message back and replays it (as
    actions/dialogue.py does); the replayed message is the bot's."""
    from rasa.shared.core.events import UserUtteranceReverted

    events = session("platinum", user("request_refund"), ActionExecuted("action_handoff"),
                     UserUtteranceReverted(), SlotSet("handoff_outcome", "no_agent"),
                     ActionExecuted("action_listen"), user("request_refund"))
    assert decide(policy, domain, events) is None


def test_only_as_the_turns_first_step_and_never_while_paused(
    policy: DialoguePolicy, domain: Domain
) -> None:
    later_step = session("platinum", user("request_refund"), ActionExecuted("order_form"))
    assert decide(policy, domain, later_step) is None
    paused = session("platinum", ConversationPaused(), user("request_refund"))
    assert decide(policy, domain, paused) is None


def test_inside_a_form_a_new_request_leaves_it_an_answer_doesnt(
    policy: DialoguePolicy, domain: Domain
) -> None:
    asking = [ActionExecuted("order_form"), ActiveLoop("order_form"),
              SlotSet("requested_slot", "order_id"), ActionExecuted("action_listen")]
    new_request = session("platinum", *asking, user("cancel_order"))
    tracker = DialogueStateTracker.from_events("t", new_request, domain.slots)
    found = policy._direct_handoff(tracker, domain, read_turn(tracker))
    assert found is not None
    assert domain.action_names_or_texts[found.max_confidence_index] == "action_handoff"
    assert found.optional_events == [ActiveLoop(None), SlotSet("requested_slot", None)]
    # "JM… please cancel it" answers the form's question: the form takes it.
    answer = session("platinum", *asking, user("cancel_order", order_id="JM202411230456"),
                     SlotSet("order_id", "JM202411230456"))
    assert decide(policy, domain, answer) is None


def test_a_desk_file_that_cant_be_read_hands_nobody_over(
    policy: DialoguePolicy, domain: Domain, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.policies.dialogue as dialogue

    def broken() -> DeskConfig:
        raise BadDeskConfig("desk.yml: broken")

    monkeypatch.setattr(dialogue, "desk_config", broken)
    assert decide(policy, domain, session("platinum", user("request_refund"))) is None


def test_the_rules_are_read_once(
    policy: DialoguePolicy, domain: Domain, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.policies.dialogue as dialogue

    reads: List[int] = []

    def counted() -> DeskConfig:
        reads.append(1)
        return RULES

    monkeypatch.setattr(dialogue, "desk_config", counted)
    for _ in range(3):
        assert decide(policy, domain, session("platinum", user("request_refund")))
    assert len(reads) == 1


# --- the handoff's reason ---------------------------------------------------------------


def sdk_tracker(intent: str, level: str | None, latest_action: str = "action_listen",
                events: List[Dict[str, Any]] | None = None) -> Tracker:
    return Tracker(
        sender_id="web:u-someone", slots={"language": "zh", "member_level": level},
        latest_message={"intent": {"name": intent}, "text": "…"}, events=events or [],
        paused=False, followup_action=None, active_loop={}, latest_action_name=latest_action,
    )


@pytest.fixture
def handoff_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    import actions.handoff as handoff

    monkeypatch.setattr(handoff, "desk_config", lambda: RULES)


@pytest.mark.usefixtures("handoff_rules")
def test_the_reason_is_vip_when_a_direct_rule_sent_the_customer() -> None:
    from actions.handoff import reason_of

    assert reason_of(sdk_tracker("request_refund", "platinum"), False) == "vip"
    assert reason_of(sdk_tracker("request_refund", "gold"), False) == "asked"
    assert reason_of(sdk_tracker("human_handoff", "platinum"), False) == "asked"
    # Not the turn's first step: not the rule's doing.
    assert reason_of(sdk_tracker("request_refund", "platinum", "order_form"), False) == "asked"
    assert reason_of(sdk_tracker("request_refund", "platinum"), True) == "misunderstood"
    # A complaint keeps its reason (its own priority and apology), whoever complains.
    assert reason_of(sdk_tracker("complain", "platinum"), False) == "complaint"


@pytest.mark.usefixtures("handoff_rules")
def test_a_direct_handoff_nobody_can_take_hands_the_message_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import actions.handoff as handoff
    from bot.desk import handoffs

    async def nobody(*args: Any, **kwargs: Any) -> handoffs.Outcome:
        return handoffs.Outcome("no_agent")

    def unknown() -> Any:
        raise RuntimeError("no database in this test")

    monkeypatch.setattr(handoffs, "request", nobody)
    monkeypatch.setattr(handoff, "shop_session", unknown)
    message = {"event": "user", "text": "我要退款", "timestamp": 1.0,
               "parse_data": {"intent": {"name": "request_refund"}}, "metadata": {}}
    events = [{"event": "action", "name": "action_listen"}, message]
    dispatcher = CollectingDispatcher()
    returned = asyncio.run(handoff.hand_off(
        dispatcher, sdk_tracker("request_refund", "platinum", events=events)))
    assert dispatcher.messages == []  # they didn't ask for a person: nothing to say
    assert [e["event"] for e in returned] == ["rewind", "slot", "action", "user"]
    assert returned[1]["name"] == "handoff_outcome" and returned[1]["value"] == "no_agent"
    assert returned[3]["text"] == "我要退款"
    assert returned[3]["metadata"]["dialogue"] == {"replayed": True}
    # Someone who asked for a person is told nobody is there.
    asked = CollectingDispatcher()
    returned = asyncio.run(handoff.hand_off(
        asked, sdk_tracker("human_handoff", "platinum", events=events)))
    assert [m["response"] for m in asked.messages] == ["utter_handoff_no_agent"]
    assert [e["event"] for e in returned] == ["slot"]


# --- session start ----------------------------------------------------------------------


def start_tracker(metadata: Dict[str, Any] | None, previous: List[Dict[str, Any]]) -> Tracker:
    return Tracker(
        sender_id="web:u-someone",
        slots={"session_started_metadata": metadata, "language": "en",
               "member_level": "platinum"},
        latest_message={}, events=previous, paused=False, followup_action=None,
        active_loop={}, latest_action_name="action_listen",
    )


PREVIOUS = [
    {"event": "action", "name": "action_session_start"},
    {"event": "session_started"},
    {"event": "slot", "name": "language", "value": "en", "timestamp": 1.0},
    {"event": "slot", "name": "member_level", "value": "platinum", "timestamp": 1.0},
    {"event": "action", "name": "action_listen"},
    {"event": "user", "text": "hi", "timestamp": 2.0,
     "metadata": {"identity": {"channel": "web", "subject": "older"}}},
]
CARRY_OVER = {"session_config": {"carry_over_slots_to_new_session": True}}


@pytest.fixture
def levels(monkeypatch: pytest.MonkeyPatch) -> Iterator[List[Any]]:
    """Who the session start looked up; `fail` makes the database fail."""
    import actions.session as session_actions
    from actions.shop import member_level

    asked: List[Any] = []

    def level_of(identity: Any) -> Dict[str, Any]:
        asked.append(identity)
        if identity == ("web", "fail"):
            raise OSError("the database is away")

        class Customer:
            level = "platinum" if identity == ("web", "vip") else "regular"

        return member_level(Customer() if identity != ("web", "nobody") else None)

    monkeypatch.setattr(session_actions.ActionSessionStart, "level_of", staticmethod(level_of))
    yield asked


def run_start(tracker: Tracker, domain: Dict[str, Any] = CARRY_OVER) -> List[Dict[str, Any]]:
    from actions.session import ActionSessionStart

    return asyncio.run(ActionSessionStart().run(CollectingDispatcher(), tracker, domain))


def test_session_start_does_what_rasas_does_and_sets_the_level(levels: List[Any]) -> None:
    metadata = {"channel": "web", "identity": {"channel": "web", "subject": "vip"}}
    events = run_start(start_tracker(metadata, PREVIOUS))
    assert events[0]["event"] == "session_started"
    assert events[-1] == {**events[-1], "event": "action", "name": "action_listen"}
    slots = [(e["name"], e["value"]) for e in events if e["event"] == "slot"]
    # Carried over as Rasa does (the level only from the fresh look-up), then the level.
    assert slots == [("language", "en"), ("member_level", "platinum")]
    assert levels == [("web", "vip")]  # the session's first message, not an older one


def test_session_start_without_metadata_uses_the_latest_message(levels: List[Any]) -> None:
    run_start(start_tracker(None, PREVIOUS))
    assert levels == [("web", "older")]


def test_session_start_clears_the_level_of_nobody_verified(levels: List[Any]) -> None:
    metadata = {"identity": {"channel": "web", "subject": "nobody"}}
    events = run_start(start_tracker(metadata, PREVIOUS))
    assert ("member_level", None) in [(e["name"], e["value"]) for e in events
                                      if e["event"] == "slot"]


def test_session_start_survives_a_failing_database_without_a_level(levels: List[Any]) -> None:
    metadata = {"identity": {"channel": "web", "subject": "fail"}}
    events = run_start(start_tracker(metadata, PREVIOUS))
    assert [e["event"] for e in events] == ["session_started", "slot", "action"]
    assert events[1]["name"] == "language"


def test_session_start_carries_nothing_over_when_the_domain_says_so(levels: List[Any]) -> None:
    metadata = {"identity": {"channel": "web", "subject": "vip"}}
    events = run_start(start_tracker(metadata, PREVIOUS),
                       {"session_config": {"carry_over_slots_to_new_session": False}})
    assert [(e["event"], e.get("name")) for e in events] == [
        ("session_started", None), ("slot", "member_level"), ("action", "action_listen")]


def test_a_typed_level_is_no_level(levels: List[Any]) -> None:
    """Only a channel's identity names a customer; no identity, no look-up."""
    events = run_start(start_tracker({"member_level": "platinum"}, []))
    assert levels == []
    assert [e["event"] for e in events] == ["session_started", "action"]


def test_the_desk_config_module_is_what_the_policy_reads() -> None:
    import bot.policies.dialogue as dialogue

    assert dialogue.desk_config is desk.desk_config
