"""Rasa's model inference off its event loop.

Rasa 3.6 runs NLU (`MessageProcessor._parse_message_with_graph`) and the
policies (`predict_next_with_tracker_if_should`) on the Sanic event loop. One
customer's inference then holds up everything else the process does: other
customers' turns, socket.io frames, an agent's message relayed to a customer.
Here both run in one worker thread: the loop stays free while they compute
(TensorFlow and NumPy release the GIL; pure Python parts yield it every few
milliseconds), and one thread keeps the components' state touched by one
thread at a time, as Rasa expects. The results are the same; only where the
work runs changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, TypeVar

from rasa.core.channels.channel import UserMessage
from rasa.core.processor import ActionLimitReached, MessageProcessor
from rasa.shared.core.trackers import DialogueStateTracker

from bot import heap

T = TypeVar("T")
logger = logging.getLogger(__name__)
_inference = ThreadPoolExecutor(1, thread_name_prefix="rasa-inference")


async def in_inference_thread(work: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_inference, work, *args)


async def _parse_message(
    self: MessageProcessor,
    message: UserMessage,
    tracker: DialogueStateTracker | None = None,
    only_output_properties: bool = True,
) -> Dict[str, Any]:
    """MessageProcessor.parse_message with the NLU graph run in the inference thread."""
    if self.http_interpreter:
        parse_data = await self.http_interpreter.parse(message)
    else:
        if tracker is None:
            tracker = DialogueStateTracker.from_events(message.sender_id, [])
        parse_data = await in_inference_thread(
            self._parse_message_with_graph, message, tracker, only_output_properties
        )
    self._update_full_retrieval_intent(parse_data)
    self._check_for_unseen_features(parse_data)
    return parse_data


async def _run_prediction_loop(self: MessageProcessor, output_channel: Any,
                               tracker: DialogueStateTracker) -> None:
    """MessageProcessor._run_prediction_loop with each prediction in the inference thread."""
    should_predict_another_action = True
    while should_predict_another_action and self._should_handle_message(tracker):
        try:
            action, prediction = await in_inference_thread(
                self.predict_next_with_tracker_if_should, tracker
            )
        except ActionLimitReached:
            logger.warning("Circuit breaker tripped. Stopped predicting more actions "
                           "for sender '%s'.", tracker.sender_id)
            if self.on_circuit_break:
                self.on_circuit_break(tracker, output_channel, self.nlg)
            break
        if prediction.is_end_to_end_prediction:
            tracker = await self.run_action_extract_slots(output_channel, tracker)
        should_predict_another_action = await self._run_action(
            action, tracker, output_channel, self.nlg, prediction
        )


def install() -> None:
    if getattr(MessageProcessor.parse_message, "__module__", "") == __name__:
        return
    # We are imported while Rasa loads the model, inside its start-up coroutine:
    # once that yields, the model is in memory and stays. No loop: not a server
    # (training, tests), nothing to keep the heap for.
    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop().call_soon(heap.freeze)
    MessageProcessor.parse_message = _parse_message  # type: ignore[method-assign]
    MessageProcessor._run_prediction_loop = _run_prediction_loop  # type: ignore[method-assign]
