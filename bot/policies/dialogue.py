"""Rasa's rules plus the conversation's general behaviour, for every form and turn.

`DialoguePolicy` is Rasa's RulePolicy (the project's rules and forms work as
before) with what a customer expects of any conversation, whatever the rules
say:

- **Never silent.** A turn never ends without a bot message: where the rules
  would listen without having said anything, or no rule applies, the bot does
  what the message's intent normally starts (when NLU understood it), or offers
  the main topics and a person (the core fallback). Rasa's core fallback never
  fires for an intent that has a rule of its own.
- **Inside a form** (a message that doesn't fill the slot the form asked for):
  another task (an intent whose rule starts something else) switches to it at
  once, replaying the message without the form, so slots already known (the
  order number) carry over; a side question (FAQ, chit-chat) is answered and
  the form asks again; "bye", "thanks", "never mind" end the form politely;
  anything else makes the form ask again. A form asks the same question at most
  `max_asks` times in a row, then lets go ("we can pick this up any time").
- **Several requests in one message** (NLU's `requests`, the first of which is
  the message's intent): when the first is handled, the next is injected as a
  turn of its own, so each gets the whole dialogue machinery, in order.
- **Straight to a person** (desk.yml's `direct` rules): a verified member of a
  listed level (the `member_level` slot) asking about a listed task gets
  `handoff_action` at once, before rules or forms start the bot's own flow, once
  a session (after a handoff, or when nobody could come, the bot carries on).
  The rules are read from the desk file (`DESK_FILE`) when first needed, not
  trained into the model.

The policy predicts one action per call and keeps no state: it reads the turn
from the tracker (`bot.policies.turn`). Its predictions carry confidence 1.0 and,
inside forms, count as "no user" predictions so they outrank the form's own
happy path in Rasa's ensemble.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, List

from rasa.core.constants import DEFAULT_CORE_FALLBACK_THRESHOLD
from rasa.core.policies.policy import PolicyPrediction
from rasa.core.policies.rule_policy import RulePolicy
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.shared.core.constants import (
    ACTION_DEACTIVATE_LOOP_NAME,
    ACTION_LISTEN_NAME,
    ACTION_TWO_STAGE_FALLBACK_NAME,
    REQUESTED_SLOT,
)
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    LoopInterrupted,
    Restarted,
    SessionStarted,
    SlotSet,
)
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import INTENT_NAME_KEY

from bot.desk.config import BadDeskConfig, DeskConfig, desk_config
from bot.policies.turn import Turn, read_turn

logger = logging.getLogger(__name__)

RULES = "rules"
OUT_OF_SCOPE = "out_of_scope"
# Below this NLU confidence an intent's usual first action is not taken on its
# own authority (the two-stage fallback asks "did you mean…?" instead).
UNDERSTOOD = 0.5
# Ends a turn when no rule says what comes next and the bot has spoken; below
# any rule or memorized story (1.0), above Rasa's core fallback.
END_OF_TURN = 0.9


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.POLICY_WITH_END_TO_END_SUPPORT, is_trainable=True
)
class DialoguePolicy(RulePolicy):
    """RulePolicy with task switching, form limits, multi-request turns, no silence."""

    @staticmethod
    def get_default_config() -> Dict[str, Any]:
        return {
            **RulePolicy.get_default_config(),
            "core_fallback_threshold": DEFAULT_CORE_FALLBACK_THRESHOLD,
            # Answered inside a form, which then asks its question again.
            "side_intents": ["faq", "bot_challenge", "greet", "out_of_scope"],
            # End a form: intent -> the bot's answer.
            "stop_intents": {
                "deny": "utter_task_stopped",
                "goodbye": "utter_goodbye",
                "thank": "utter_thank",
            },
            # Never a task of their own inside a form: the form asks again.
            "non_task_intents": ["affirm", "inform", "nlu_fallback"],
            # The same question at most this many times in a row.
            "max_asks": 2,
            "let_go_action": "utter_task_let_go",
            "switch_action": "action_switch_task",
            "next_request_action": "action_next_request",
            "trouble_action": "utter_technical_trouble",
            # Queues for a person (desk.yml's `direct` rules) and the slot it reads.
            "handoff_action": "action_handoff",
            "member_level_slot": "member_level",
            # What the two-stage fallback's rephrase question says.
            "rephrase_response": "utter_ask_rephrase",
            # Custom actions that always answer and always return an event (e.g.
            # a slot): one that returned nothing failed (the action server is
            # down), and in `rasa test`, where actions don't run, the event in
            # the story stands for their answer.
            "speaking_actions": [],
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._first_actions_cache: Dict[str, str] | None = None
        self._direct_rules: DeskConfig | None = None

    # --- prediction ---------------------------------------------------------------------

    def predict_action_probabilities(
        self,
        tracker: DialogueStateTracker,
        domain: Domain,
        rule_only_data: Dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        turn = read_turn(tracker)
        ours = self._direct_handoff(tracker, domain, turn) or self._general_behaviour(
            tracker, domain, turn
        )
        if ours is not None:
            return ours
        prediction = super().predict_action_probabilities(
            tracker, domain, rule_only_data, **kwargs
        )
        return self._end_of_turn(prediction, tracker, domain, turn)

    def _direct_handoff(
        self, tracker: DialogueStateTracker, domain: Domain, turn: Turn
    ) -> PolicyPrediction | None:
        """A person at once for a verified member's task that desk.yml's `direct` rules
        name, as the first step of the turn."""
        handoff = self.config["handoff_action"]
        level = tracker.get_slot(self.config["member_level_slot"])
        if (
            not level
            or turn.user is None
            or tracker.latest_action_name != ACTION_LISTEN_NAME
            or tracker.is_paused()
            or handoff not in domain.action_names_or_texts
            or not self._direct_for(str(level), turn.intent)
            or _handed_off_this_session(tracker, handoff)
        ):
            return None
        form = tracker.active_loop_name
        if form in domain.form_names:
            required = set(domain.required_slots_for_form(form))
            if any(turn.extracted_slots().get(slot) is not None for slot in required):
                return None  # an answer to the form's question, not a new request
        logger.debug("DialoguePolicy: %s member asks %s: straight to a person.",
                     level, turn.intent)
        # A form or fallback that was asking ends: the person takes over from here.
        leave = [ActiveLoop(None), SlotSet(REQUESTED_SLOT, None)] if form else []
        probabilities = [0.0] * domain.num_actions
        probabilities[domain.index_for_action(handoff)] = 1.0
        # "No user" so that it outranks a form's own happy path in Rasa's ensemble.
        return self._prediction(probabilities, optional_events=leave, is_no_user_prediction=True)

    def _direct_for(self, level: str, intent: str | None) -> bool:
        if self._direct_rules is None:
            # Read once, when a member first needs them; a desk file that can't be
            # read hands nobody over by rule (the bot still serves everyone).
            try:
                self._direct_rules = desk_config()
            except BadDeskConfig:
                logger.exception("DialoguePolicy: no direct handoffs")
                self._direct_rules = DeskConfig(groups={}, default_group="general")
        return self._direct_rules.direct_for(level, intent)

    def _general_behaviour(
        self, tracker: DialogueStateTracker, domain: Domain, turn: Turn
    ) -> PolicyPrediction | None:
        if turn.user is None:
            return None
        if self.config["trouble_action"] in turn.actions:
            # Apologised once: a form whose action server is away would only fail again.
            return self._decide(domain, ACTION_LISTEN_NAME)
        if self._action_failed(turn, domain):
            # A form, a task switch or a speaking action always returns events; none means the call
            # failed (action server unreachable) and its work is lost. Say so rather
            # than go on as if it had worked (e.g. "order None").
            return self._decide(domain, self.config["trouble_action"])
        # At run time these actions end with the message they hand back to the
        # dialogue (action_listen, then the user event). In `rasa test` the story
        # replays that message as its next user step, so the customer's turn is next.
        # (The two-stage fallback's question also ends a turn.)
        if tracker.latest_action_name in self._replaying_actions():
            return self._decide(domain, ACTION_LISTEN_NAME)
        form = turn.loop_at_user
        if form == ACTION_TWO_STAGE_FALLBACK_NAME:
            return self._inside_fallback(tracker, domain, turn)
        if form is None or form not in domain.form_names:
            return None
        return self._inside_form(tracker, domain, turn, form)

    def _inside_fallback(
        self, tracker: DialogueStateTracker, domain: Domain, turn: Turn
    ) -> PolicyPrediction | None:
        """Rasa's two-stage fallback reads out_of_scope as "none of these" and asks
        to rephrase; after the rephrase question, one more out_of_scope message
        would be asked to rephrase again, without end. That message is out of
        scope: the fallback ends and the bot says what it can do."""
        starts = self._first_action(OUT_OF_SCOPE, domain)
        if (
            turn.intent != OUT_OF_SCOPE
            or turn.said_before != self.config["rephrase_response"]
            or starts is None
        ):
            return None
        return self._follow([ACTION_DEACTIVATE_LOOP_NAME, starts], tracker, domain, turn)

    def _inside_form(
        self, tracker: DialogueStateTracker, domain: Domain, turn: Turn, form: str
    ) -> PolicyPrediction | None:
        """The steps of a turn whose message arrived while `form` was asking."""
        required = set(domain.required_slots_for_form(form))
        extracted = turn.extracted_slots()
        if any(extracted.get(slot) is not None for slot in required):
            return None  # an answer: the form validates it (rules and happy path)
        plan = self._plan_inside_form(domain, turn, form)
        done = turn.actions
        logger.debug(
            "DialoguePolicy: inside %s (asked %s times), plan %s, done %s",
            form, turn.asks_at_user, plan, done,
        )
        return self._follow(plan, tracker, domain, turn, form)

    def _follow(
        self, plan: List[str], tracker: DialogueStateTracker, domain: Domain, turn: Turn,
        form: str | None = None,
    ) -> PolicyPrediction | None:
        """The next step of `plan` for this turn, given the actions done so far."""
        done = turn.actions
        if plan[: len(done)] != done:
            return None  # not our plan (e.g. the form ran after all): rules decide
        if len(done) == len(plan):
            return self._end_of_turn(
                self._decide(domain, ACTION_LISTEN_NAME), tracker, domain, turn
            )
        step = plan[len(done)]
        events = [LoopInterrupted(True)] if form and step == form and not done else None
        return self._decide(domain, step, no_user=True, events=events)

    def _plan_inside_form(self, domain: Domain, turn: Turn, form: str) -> List[str]:
        intent = turn.intent or ""
        starts = self._first_action(intent, domain)
        let_go = [ACTION_DEACTIVATE_LOOP_NAME, self.config["let_go_action"]]
        can_ask = turn.asks_at_user < self.config["max_asks"]
        stop = self.config["stop_intents"].get(intent)
        if stop:
            return [ACTION_DEACTIVATE_LOOP_NAME, stop]
        if intent in self.config["side_intents"] and starts:
            return [starts, form] if can_ask else [starts, *let_go]
        is_task = (
            starts is not None
            and intent not in self.config["non_task_intents"]
            and (starts != form or self._asks_for_something_else(turn))
        )
        if is_task:
            return [self.config["switch_action"]]
        # Not an answer and not something else to do: ask again, or let go.
        return [form] if can_ask else let_go

    def _replaying_actions(self) -> tuple[str, ...]:
        return (
            self.config["switch_action"],
            self.config["next_request_action"],
            ACTION_TWO_STAGE_FALLBACK_NAME,
        )

    def _action_failed(self, turn: Turn, domain: Domain) -> bool:
        """Whether the latest action was a form, a task switch or a speaking action
        that returned nothing."""
        last = max(
            (i for i, e in enumerate(turn.since) if isinstance(e, ActionExecuted)), default=None
        )
        if last is None or last != len(turn.since) - 1:
            return False
        name = turn.since[last].action_name  # type: ignore[attr-defined]
        return (
            name in domain.form_names
            or name == self.config["switch_action"]
            or name in self.config["speaking_actions"]
        )

    @staticmethod
    def _asks_for_something_else(turn: Turn) -> bool:
        """Whether a message that starts the active form again changes what it is for
        (a refund, not the status); the same request again is no new task."""
        return any(key != "language" for key in turn.changed_slots())

    def _end_of_turn(
        self,
        prediction: PolicyPrediction,
        tracker: DialogueStateTracker,
        domain: Domain,
        turn: Turn,
    ) -> PolicyPrediction:
        """What a turn that would end now, or has no rule to go on, does instead."""
        if turn.user is None:
            return prediction
        best = _best_action(prediction, domain)
        no_rule = best == self._fallback_action_name and prediction.max_confidence < 1.0
        if best != ACTION_LISTEN_NAME and not no_rule:
            return prediction
        if turn.spoke([*domain.form_names, *self.config["speaking_actions"]]):
            if turn.pending_requests() and not tracker.is_active_loop_rejected:
                return self._decide(domain, self.config["next_request_action"])
            if no_rule:
                return self._decide(domain, ACTION_LISTEN_NAME, confidence=END_OF_TURN)
            return prediction
        # Nothing said yet: never end the turn silently. First what the intent
        # normally starts (when NLU understood it and it hasn't run), else the
        # core fallback (once: if even that said nothing, listening is all that's left).
        starts = self._first_action(turn.intent or "", domain)
        if starts and turn.confidence >= UNDERSTOOD and starts not in turn.actions:
            return self._decide(domain, starts)
        if self._fallback_action_name in turn.actions:
            return self._decide(domain, ACTION_LISTEN_NAME)
        logger.debug("DialoguePolicy: nothing said this turn; core fallback.")
        return self._decide(domain, self._fallback_action_name)

    # --- what each intent starts ----------------------------------------------------------

    def _first_action(self, intent: str, domain: Domain) -> str | None:
        return self._first_actions(domain).get(intent)

    def _first_actions(self, domain: Domain) -> Dict[str, str]:
        """intent -> the first action of its unconditional rule (`intent: X` then `action`).

        Read from the rules Rasa learnt (one state: the intent after action_listen),
        so the policy needs no list of its own.
        """
        if self._first_actions_cache is not None:
            return self._first_actions_cache
        found: Dict[str, str] = {}
        for key, action in self.lookup.get(RULES, {}).items():
            states = json.loads(key)
            if len(states) != 1 or not isinstance(action, str):
                continue
            state = states[0]
            if set(state) != {"user", "prev_action"}:
                continue
            user, prev = state["user"], state["prev_action"]
            if prev.get("action_name") != ACTION_LISTEN_NAME or set(user) != {"intent"}:
                continue
            if action in domain.action_names_or_texts:
                found[user["intent"]] = action
        self._first_actions_cache = found
        return found

    # --- helpers ---------------------------------------------------------------------------

    def _decide(
        self,
        domain: Domain,
        action: str,
        confidence: float = 1.0,
        no_user: bool = False,
        events: List[Any] | None = None,
    ) -> PolicyPrediction:
        # No core-fallback floor under our own decisions.
        probabilities = [0.0] * domain.num_actions
        probabilities[domain.index_for_action(action)] = confidence
        return self._prediction(probabilities, events=events, is_no_user_prediction=no_user)


def _handed_off_this_session(tracker: DialogueStateTracker, handoff: str) -> bool:
    """Whether `handoff` ran in this session, including a run whose turn it took back
    (no person could come and it handed the message back to the dialogue)."""
    for event in reversed(tracker.events):
        if isinstance(event, (SessionStarted, Restarted)):
            return False
        if isinstance(event, ActionExecuted) and event.action_name == handoff:
            return True
    return False


def _best_action(prediction: PolicyPrediction, domain: Domain) -> str | None:
    if not prediction.probabilities or prediction.max_confidence <= 0:
        return None
    return domain.action_names_or_texts[prediction.max_confidence_index]


__all__ = ["DialoguePolicy", "INTENT_NAME_KEY", "REQUESTED_SLOT"]
