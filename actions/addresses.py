"""Changing an order's delivery address: only before dispatch, and only to an
address that looks like one.

After the order form has the number, `action_address_start` checks the order
(the verified customer's own, not shipped); once shipped the customer is told
why not and who can redirect it. `address_form` takes the new address as typed,
`validate_address_form` checks it looks complete, and `action_update_address`
checks the order again (it may have shipped meanwhile) before it changes it.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.orm import Session

from actions.accounts import READY, READY_SLOT, Answer
from actions.forms import LimitedValidation
from actions.orders import ActionOrderStatus, order_facts
from actions.shop import audit, identity_of
from bot.shop.schema import BEFORE_DISPATCH, Order

SHIPPED = ("dispatched", "in_transit", "delivered")
MIN_ADDRESS, MAX_ADDRESS = 8, 200
# A Chinese address names an administrative area or a street; an English one has
# a house number and words.
_ZH_PLACE = re.compile(r"[省市区县镇乡村路街道巷弄号楼室栋]")
_HAN = re.compile(r"[\u4e00-\u9fff]")
_NOT_AN_ADDRESS = re.compile(r"https?://|www\.|[<>{}]", re.IGNORECASE)


def clean_address(text: str) -> str | None:
    """The address as it will be stored, or None when it doesn't look like one."""
    address = " ".join(text.split())
    if not MIN_ADDRESS <= len(address) <= MAX_ADDRESS or _NOT_AN_ADDRESS.search(address):
        return None
    if _HAN.search(address):
        return address if _ZH_PLACE.search(address) else None
    has_number = re.search(r"\d", address) is not None
    words = re.findall(r"[A-Za-z]{2,}", address)
    return address if has_number and len(words) >= 2 else None


def refusal(order: Order, lang: str) -> Answer | None:
    if order.status in SHIPPED:
        return "utter_address_refused_shipped", order_facts(order, lang)
    if order.status not in BEFORE_DISPATCH:
        return "utter_address_refused_closed", {"order_id": order.id}
    return None


class ActionAddressStart(ActionOrderStatus):
    """May this order's address change? Yes: the address form follows (READY)."""

    topic = "address_start"
    not_verified_response = "utter_update_address"

    def about(self, session: Session, order: Order, tracker: Tracker, lang: str) -> Answer:
        refused = refusal(order, lang)
        audit(session, identity_of(tracker),
              "update_address_refused" if refused else "update_address_started",
              order.customer, target=order.id,
              detail={"status": order.status} if refused else None)
        return refused or (READY, {})

    def events_for(self, response: str, parameters: Dict[str, Any]) -> List[Dict[str, Any]]:
        return [SlotSet(READY_SLOT, response == READY), SlotSet("new_address", None)]


class ValidateAddressForm(LimitedValidation):
    def name(self) -> str:
        return "validate_address_form"

    def validate_new_address(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
        domain: DomainDict,
    ) -> Dict[str, Any]:
        if slot_value is None:  # cleared as the form starts: nothing to check
            return {"new_address": None}
        address = clean_address(slot_value) if isinstance(slot_value, str) else None
        if address is None:
            dispatcher.utter_message(response="utter_invalid_address")
        return {"new_address": address}


class ActionUpdateAddress(ActionOrderStatus):
    topic = "update_address"
    form_slots = ("new_address",)
    not_verified_response = "utter_update_address"

    def about(self, session: Session, order: Order, tracker: Tracker, lang: str) -> Answer:
        session.refresh(order, with_for_update=True)
        refused = refusal(order, lang)
        address = clean_address(tracker.get_slot("new_address") or "")
        if refused or address is None:
            return refused or ("utter_invalid_address", {})
        order.address = address
        # The fact, not the address: the order row holds it, the audit trail needn't.
        audit(session, identity_of(tracker), self.topic, order.customer, target=order.id)
        return "utter_address_updated", {"order_id": order.id, "address": address}

    def events_for(self, response: str, parameters: Dict[str, Any]) -> List[Dict[str, Any]]:
        return [SlotSet(READY_SLOT, None), SlotSet("new_address", None)]
