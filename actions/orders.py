"""Order actions: the order-number form.

What happens once the form has the number is chosen by rules on the
`order_request` slot (status, cancel, refund, refund_status).
"""

from __future__ import annotations

import re
from typing import Any, Dict, List

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import say

_ORDER_ID = re.compile(r"^(?:JM)?(\d{12})$", re.IGNORECASE)


def normalize_order_id(value: Any) -> str | None:
    """Canonical form JM + 12 digits, or None when it isn't an order number."""
    if not isinstance(value, str):
        return None
    match = _ORDER_ID.match(value.strip().replace(" ", ""))
    return f"JM{match.group(1)}" if match else None


class ValidateOrderForm(FormValidationAction):
    def name(self) -> str:
        return "validate_order_form"

    def validate_order_id(
        self,
        slot_value: Any,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> Dict[str, Any]:
        order_id = normalize_order_id(slot_value)
        if order_id is None:
            say(dispatcher, tracker, "invalid_order_id")
        return {"order_id": order_id}


class ActionAskOrderId(Action):
    """The form's question for the order number."""

    def name(self) -> str:
        return "action_ask_order_id"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        say(dispatcher, tracker, "ask_order_id")
        return []
