"""A tracker's past states, computed once per turn instead of once per policy.

Each policy's prediction featurizes the conversation (`tracker.past_states`):
Rasa replays every event into a fresh tracker, one prefix at a time, and
describes the state after each. Memoization and rule policies ask again for
the same tracker at every prediction, and a turn makes several: under 16
customers at once this was ~12 % of the Rasa server's time holding the GIL,
which is what one Rasa process's throughput is bound by (py-spy --gil).

The states are a function of the events (each prefix is replayed from the
domain's initial slots), so they are kept on the tracker with the events they
describe, keyed by the event count, the last event and the arguments; a new
event, a different domain or other flags compute them afresh. Callers get
their own copy of each state (Rasa's featurizer edits the last user state in
place), as they got a fresh list before.
"""

from __future__ import annotations

from typing import Any, Dict, List

from rasa.shared.core.domain import Domain, State
from rasa.shared.core.trackers import DialogueStateTracker

_rasa_past_states = DialogueStateTracker.past_states
_ATTRIBUTE = "_past_states_cache"


def _copied(states: List[State]) -> List[State]:
    return [{key: dict(sub) for key, sub in state.items()} for state in states]


def past_states(
    self: DialogueStateTracker,
    domain: Domain,
    omit_unset_slots: bool = False,
    ignore_rule_only_turns: bool = False,
    rule_only_data: Dict[str, Any] | None = None,
) -> List[State]:
    if type(self) is not DialogueStateTracker or not self.events:
        # Training's trackers (TrackerWithCachedStates) keep their own cache.
        return _rasa_past_states(self, domain, omit_unset_slots, ignore_rule_only_turns,
                                 rule_only_data)
    # id()s of objects the key's owners keep alive: the domain (as long as the
    # model), the tracker's last event, the policy's rule-only data.
    events_key = (id(domain), len(self.events), id(self.events[-1]))
    cached = self.__dict__.get(_ATTRIBUTE)
    if cached is None or cached[0] != events_key:
        cached = (events_key, {})  # policies ask with different flags: keep each
        self.__dict__[_ATTRIBUTE] = cached
    arguments = (omit_unset_slots, ignore_rule_only_turns, id(rule_only_data))
    states = cached[1].get(arguments)
    if states is None:
        states = _rasa_past_states(self, domain, omit_unset_slots, ignore_rule_only_turns,
                                   rule_only_data)
        cached[1][arguments] = states
    return _copied(states)


def install() -> None:
    if DialogueStateTracker.past_states is _rasa_past_states:
        DialogueStateTracker.past_states = past_states  # type: ignore[method-assign]
