"""Order actions: the order-number form.

What happens once the form has the number is chosen by rules on the
`order_request` slot (status, cancel, refund, refund_status). The questions are
domain responses per request (`utter_ask_order_id_cancel`: "Which order would
you like to cancel?"), so switching from one request to another asks a question
of its own.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

_ORDER_ID = re.compile(r"(?:JM)?(\d{12})", re.IGNORECASE)
# The question for each order_request ("Which order would you like to cancel?").
ASK_ORDER_ID = {
    "status": "utter_ask_order_id",
    "cancel": "utter_ask_order_id_cancel",
    "refund": "utter_ask_order_id_refund",
    "refund_status": "utter_ask_order_id_refund_status",
}


def normalize_order_id(value: Any) -> str | None:
    """Canonical form JM + 12 digits, or None when it isn't an order number."""
    if not isinstance(value, str):
        return None
    match = _ORDER_ID.fullmatch(value.strip().replace(" ", ""))
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
            dispatcher.utter_message(response="utter_invalid_order_id")
        return {"order_id": order_id}


class ActionAskOrderId(Action):
    """The form's question for the order number; shorter when asked again."""

    def name(self) -> str:
        return "action_ask_order_id"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        # The form sets requested_slot when it asks, so it is already ours on a re-ask.
        if tracker.get_slot("requested_slot") == "order_id":
            dispatcher.utter_message(response="utter_ask_order_id_again")
            return []
        request = tracker.get_slot("order_request")
        dispatcher.utter_message(response=ASK_ORDER_ID.get(request, "utter_ask_order_id"))
        return []
