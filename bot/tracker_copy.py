"""`DialogueStateTracker.copy()` without replaying the conversation.

Rasa copies the tracker before every action it runs (`MessageProcessor._run_action`,
forms' temporary trackers) by building an empty tracker and replaying every
event of the conversation into it: the cost grows with the conversation and
was ~6 % of the Rasa server's CPU under 16 customers at once. The state a
replay rebuilds is the state the tracker already holds, so it is copied
instead: the events (the same event objects, as a replay shares them), each
slot (a slot holds its value), and the few state fields, with the mutable ones
copied so that changing the copy (a form's validation flags, a new slot value)
leaves the original alone, as before. Like Rasa's copy it does not carry the
model and assistant ids. A tracker whose history is capped (max_event_history)
or that has no domain slots is copied Rasa's way.
"""

from __future__ import annotations

import copy

from rasa.shared.core.trackers import DialogueStateTracker

_rasa_copy = DialogueStateTracker.copy


def copy_tracker(self: DialogueStateTracker) -> DialogueStateTracker:
    if self._max_event_history is not None or type(self.slots) is not dict:
        return _rasa_copy(self)
    tracker = DialogueStateTracker.__new__(DialogueStateTracker)
    tracker.__dict__.update(self.__dict__)
    tracker.sender_id = self.sender_id or tracker.sender_id
    tracker.events = self._create_events(list(self.events))
    tracker.slots = {name: copy.copy(slot) for name, slot in self.slots.items()}
    tracker.latest_action = dict(self.latest_action) if self.latest_action else {}
    tracker.active_loop = copy.copy(self.active_loop)
    tracker.sender_source = None
    tracker.model_id = None
    tracker.assistant_id = None
    return tracker


def install() -> None:
    if DialogueStateTracker.copy is _rasa_copy:
        DialogueStateTracker.copy = copy_tracker  # type: ignore[method-assign]
